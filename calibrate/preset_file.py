"""The preset file (``headbake.preset/v1``) that ``headbake tune`` writes and calibrate, convert and bake read.

A tuned setting is two things at once, and the file carries both:

* ``params``: the six selection values. ``calibrate``/``convert --preset-file``
  use them as the preset (the rule is re-applied to the S_v they measure,
  and any ``--l-perc`` ... override still applies on top);
* ``gains``: the ``headbake.gains/v1`` document tune derived from the S_v it
  measured, so ``bake --preset-file`` (which never loads a model and so
  cannot measure S_v) bakes exactly the gains that were evaluated.

``tuning`` says how the values were chosen (search, dev data by name and
fingerprint, held-out result); it goes into the bake's record and card. The
file never names a local path: it may be shared between machines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from headbake.calibrate.presets import apply_overrides
from headbake.calibrate.selection import PARAM_NAMES, Params, validate_params
from headbake.checkpoint import read_json
from headbake.errors import HeadbakeError
from headbake.fsutil import write_json_atomic
from headbake.gains import FORMAT as GAINS_FORMAT
from headbake.gains import validate_gains
from headbake.record import local_paths, public_source

FORMAT = "headbake.preset/v1"
SOURCE = "tuned"
SOURCE_NOTE = "chosen by `headbake tune` on the dev data named in the tuning record"


@dataclass(frozen=True)
class PresetFile:
    name: str
    params: Params
    gains: dict  # headbake.gains/v1 document (the gains tune evaluated)
    tuning: dict  # how the values were chosen
    model: dict  # identity of the model it was tuned on (public id, shape)


def _where(path) -> str:
    return f"preset file {Path(path).name}"


def load_preset_file(path) -> PresetFile:
    """Read and check a preset file; every problem is one line naming the file."""
    where = _where(path)
    doc = read_json(Path(path), "preset file", strict=True, allow_nan=True)  # S_v std may be NaN
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise HeadbakeError(f"{where}: not a {FORMAT} file (format {got!r}); `headbake tune` writes one")
    raw = doc.get("params")
    if not isinstance(raw, dict):
        raise HeadbakeError(f"{where}: missing \"params\"")
    missing = [k for k in PARAM_NAMES if k not in raw]
    unknown = sorted(set(raw) - set(PARAM_NAMES))
    if missing or unknown:
        raise HeadbakeError(f"{where}: \"params\" must hold exactly {', '.join(PARAM_NAMES)}"
                            + (f" (missing {', '.join(missing)})" if missing else f" (unknown {', '.join(unknown)})"))
    params = Params(**{k: raw[k] for k in PARAM_NAMES})
    try:
        validate_params(params)
    except HeadbakeError as e:
        raise HeadbakeError(f"{where}: {e}") from None
    gains = doc.get("gains")
    if not isinstance(gains, dict) or gains.get("format") != GAINS_FORMAT:
        raise HeadbakeError(f"{where}: \"gains\" must be a {GAINS_FORMAT} document")
    matrix = gains.get("gains")
    rows = len(matrix) if isinstance(matrix, list) else 0
    heads = len(matrix[0]) if rows and isinstance(matrix[0], list) else 0
    gains = dict(gains, gains=validate_gains(matrix, rows, heads, f"{where} gains"))
    for key in ("tuning", "model"):
        if not isinstance(doc.get(key, {}), dict):
            raise HeadbakeError(f"{where}: \"{key}\" must be a JSON object")
    name = doc.get("name", SOURCE)
    if not isinstance(name, str) or not name.strip():
        raise HeadbakeError(f"{where}: \"name\" must be a non-empty string")
    return PresetFile(name, params, gains, doc.get("tuning") or {}, doc.get("model") or {})


def preset_block(pf: PresetFile, overrides: dict | None = None) -> tuple[Params, dict]:
    """``(Params, the gains file's preset block)`` for a preset file, with command-line ``overrides`` on top.

    The block has the shape ``presets.resolve`` gives, with every value's source ``tuned``.
    """
    values, changed = apply_overrides(pf.params.as_dict(), overrides)
    params = Params(**values)
    sources = {k: ("override" if k in changed else SOURCE) for k in PARAM_NAMES}
    block = {
        "name": pf.name,
        "requested": pf.name,
        "preset_file": True,
        **params.as_dict(),
        "from_paper": False,
        "values_from_paper": [],
        "sources": sources,
        "source_notes": {SOURCE: SOURCE_NOTE},
        "overrides": changed,
    }
    return params, block


def transfer_warning(pf: PresetFile, info, source_id: str | None = None) -> str | None:
    """A warning when the file was tuned on another model (settings transfer poorly between models)."""
    tuned_on = pf.model
    shape = {k: tuned_on.get(k) for k in ("num_layers", "num_heads", "head_dim") if tuned_on.get(k) is not None}
    mine = {k: getattr(info, k) for k in shape}
    if shape != mine:
        return (f"the preset file was tuned on a model with {shape}, this one has {mine}; tuned settings "
                "transfer poorly between models")
    theirs, ours = tuned_on.get("source_id"), _public_id(source_id)
    if theirs and ours and theirs != ours:
        return (f"the preset file was tuned on {theirs}, not {ours}; the paper found that settings transfer "
                "poorly between models")
    return None


def _public_id(source_id: str | None) -> str | None:
    if not source_id:
        return None

    return public_source({"id": source_id}).get("id")


def write_preset_file(path, doc: dict) -> None:
    """Write atomically; refuses a document that would name a local path (the file is meant to travel)."""
    leaks = local_paths(doc)
    if leaks:
        raise HeadbakeError(f"refusing to write {Path(path).name}: it would name local paths ({', '.join(leaks[:3])})")
    write_json_atomic(Path(path), doc)
