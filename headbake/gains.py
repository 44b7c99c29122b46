"""The gains file (``headbake.gains/v1``): the one contract between calibrate and bake.

Bake reads only ``gains`` (plus the identity for a shape check), so gains
written by hand or by another tuner bake the same way.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from headbake.checkpoint import read_json
from headbake.errors import HeadbakeError
from headbake.model.info import ModelInfo

FORMAT = "headbake.gains/v1"


def validate_gains(gains, num_layers: int, num_heads: int, where: str = "gains") -> list[list[float]]:
    if num_layers < 1 or num_heads < 1:
        raise HeadbakeError(f"{where}: the gains matrix is empty")
    if not isinstance(gains, list) or len(gains) != num_layers:
        n = len(gains) if isinstance(gains, list) else type(gains).__name__
        raise HeadbakeError(f"{where}: expected {num_layers} layers of gains, got {n}")
    out = []
    for layer, row in enumerate(gains):
        if not isinstance(row, list) or len(row) != num_heads:
            n = len(row) if isinstance(row, list) else type(row).__name__
            raise HeadbakeError(f"{where}: layer {layer} has {n} gains, expected {num_heads} heads")
        clean = []
        for head, g in enumerate(row):
            if isinstance(g, bool) or not isinstance(g, (int, float)):
                raise HeadbakeError(f"{where}: gain at layer {layer} head {head} is not a number: {g!r}")
            try:
                g = float(g)
            except OverflowError:  # an integer beyond a double
                g = math.inf
            if not math.isfinite(g) or g <= 0:
                raise HeadbakeError(f"{where}: gain at layer {layer} head {head} must be finite and > 0, got {g}")
            clean.append(g)
        out.append(clean)
    return out


def load_gains(path: str | os.PathLike, info: ModelInfo | None = None) -> dict:
    """Load and validate a gains file (or the gains recorded in a baked directory or its headbake.json);
    with ``info``, check it fits that model."""
    path = Path(path)
    if path.is_dir() and (path / "headbake.json").is_file():
        path = path / "headbake.json"  # a baked directory carries its gains in its record
    # Bounded, regular files only, and strict: a key given twice would make the gains ambiguous.
    # NaN/Infinity are read so that validate_gains refuses them naming the layer and head.
    doc = read_json(path, "gains file", strict=True, allow_nan=True)
    if isinstance(doc, dict) and str(doc.get("format", "")).startswith("headbake.baked/") \
            and isinstance(doc.get("gains"), dict):
        if doc.get("previous_bake"):
            raise HeadbakeError(f"{path} records a bake on top of an earlier bake; its gains alone would not "
                                "reproduce it")
        doc = doc["gains"]  # the gains document embedded in a baked directory's headbake.json
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise HeadbakeError(f"{path}: not a {FORMAT} gains file (missing or wrong \"format\")")
    if info is not None:
        for key in ("num_layers", "num_heads", "head_dim"):
            if key in doc and doc[key] != getattr(info, key):
                raise HeadbakeError(f"{path}: written for {key}={doc[key]}, but the model has {getattr(info, key)}")
        doc["gains"] = validate_gains(doc.get("gains"), info.num_layers, info.num_heads, str(path))
    else:
        g = doc.get("gains")
        rows = len(g) if isinstance(g, list) else 0
        heads = len(g[0]) if rows and isinstance(g[0], list) else 0
        doc["gains"] = validate_gains(g, rows, heads, str(path))
    return doc


def gains_document(gains: list[list[float]], info: ModelInfo, source: dict | None = None, **extra) -> dict:
    doc = {"format": FORMAT, **info.identity(), "source": source or {}, "gains": gains}
    doc.update(extra)
    return doc
