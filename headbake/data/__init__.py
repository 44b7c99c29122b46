"""Inputs shared by calibrate, verify and eval: the embedded image set (``samples``) and prompt building (``prompts``)."""
