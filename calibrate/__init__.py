"""Calibrate: measure each head's visual attention share S_v and select heads."""
