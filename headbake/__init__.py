"""headbake: fold the paper's per-head attention gains into ordinary checkpoints."""

__version__ = "0.1.0"
