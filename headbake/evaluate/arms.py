"""The arms of an evaluation: which checkpoint is loaded, and what runs around its forward passes.

* ``vanilla``: the model as is.
* ``baked``: a baked directory, loaded by plain transformers (no headbake code
  in the forward pass: what a user of the published checkpoint runs).
* ``hooked``: the model with static gains through ``headbake.runtime.apply_gains``,
  the reference the bake is verified against; it must answer like ``baked``.
* ``per-input``: the model with any context-manager factory ``model -> ctx``
  entered around its forward passes (the paper's per-input plug-in,
  ``apply_per_input(model, params, ...)``, plugs in here).

An arm's ``identity`` is what, besides the checkpoint's files, decides its
outputs (the gains, the per-input settings): it goes into the cache key and
the report.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from headbake.errors import HeadbakeError
from headbake.gains import load_gains, validate_gains
from headbake.model.info import load_model_info
from headbake.runtime import apply_gains

ARM_NAMES = ("vanilla", "baked", "hooked", "per-input")


@dataclass(frozen=True)
class Arm:
    name: str
    model_dir: Path
    context: Callable | None = None  # model -> context manager, entered once around the arm's passes
    identity: dict = field(default_factory=dict)  # JSON-able; part of the cache key

    @property
    def plain(self) -> bool:
        """Nothing but the checkpoint decides the outputs (so another engine, e.g. vLLM, can run it)."""
        return self.context is None


def _model_dir(path, what: str) -> Path:
    p = Path(path)
    if not (p / "config.json").is_file():
        raise HeadbakeError(f"{what} is not a model directory (no config.json): {p}")
    return p


def gains_digest(gains) -> str:
    """sha256 of a gains matrix in canonical JSON (floats as Python writes them)."""
    text = json.dumps([[float(g) for g in row] for row in gains], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def gains_matrix(model_dir, gains) -> list[list[float]]:
    """``gains``: a gains file / baked directory path, a gains document, or a matrix; checked against the model."""
    info = load_model_info(model_dir)
    if isinstance(gains, (str, os.PathLike)):
        return load_gains(gains, info)["gains"]
    if isinstance(gains, dict):
        gains = gains.get("gains")
    return validate_gains(gains, info.num_layers, info.num_heads)


def vanilla(model_dir) -> Arm:
    return Arm("vanilla", _model_dir(model_dir, "the model"))


def baked(baked_dir) -> Arm:
    return Arm("baked", _model_dir(baked_dir, "--baked"))


def hooked(model_dir, gains, name: str = "hooked") -> Arm:
    """The model with static ``gains`` applied by the runtime hook (what ``baked`` must reproduce)."""
    model_dir = _model_dir(model_dir, "the model")
    matrix = gains_matrix(model_dir, gains)
    return Arm(name, model_dir, lambda model: apply_gains(model, matrix), {"gains_sha256": gains_digest(matrix)})


def per_input(model_dir, factory: Callable, identity: dict, name: str = "per-input") -> Arm:
    """The model with ``factory(model)`` entered around its passes; ``identity`` names its settings (JSON-able)."""
    if not callable(factory):
        raise HeadbakeError("the per-input arm needs a factory: model -> context manager")
    try:
        json.dumps(identity, sort_keys=True)
    except (TypeError, ValueError):
        raise HeadbakeError("the per-input arm's identity must be JSON (it keys the result cache)") from None
    return Arm(name, _model_dir(model_dir, "the model"), factory, dict(identity))


def check_arms(arms) -> None:
    names = [a.name for a in arms]
    if not arms:
        raise HeadbakeError("no arms to evaluate")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise HeadbakeError(f"arm names must be unique; {', '.join(dup)} appears more than once")
