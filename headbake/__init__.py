"""headbake: fold the paper's per-head attention gains into ordinary checkpoints."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("headbake")  # the one place the version lives is pyproject.toml
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
    __version__ = "0+unknown"
