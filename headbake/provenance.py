"""The ``headbake.json`` record written into every baked directory."""

from __future__ import annotations

import datetime as _dt
from importlib import metadata

from headbake import __version__

FORMAT = "headbake.baked/v1"
RECORD = "headbake.json"
# Files a baked directory may hold beyond the source's own (README.md replaces the source's card).
ADDED_FILES = (RECORD, "README.md", "headbake_heatmap.png")


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    return {
        "headbake_version": __version__,
        "torch_version": _version("torch"),
        "transformers_version": _version("transformers"),
    }


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
