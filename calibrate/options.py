"""Every calibration setting, declared once, and the checks that need neither the model nor its files.

Kept apart from ``run`` so the command line can build its flags from these
fields without importing torch (``headbake --help`` stays instant).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from headbake.errors import HeadbakeError
from headbake.model.info import DTYPES


def _opt(default=None, help="", **cli):
    """A calibration setting; ``cli`` holds what the command line needs (flag, type, choices, is_flag)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class CalibrateOptions:
    """Every calibration setting, declared once: ``headbake.cli.options`` turns the fields that carry a
    ``help`` into command-line flags for ``calibrate`` and ``convert``."""
    model: str
    out: str | None = None
    preset: str = _opt("default", "Selection preset (see `headbake presets`; default: the model's own).")
    preset_file: str | None = _opt(None, "Selection values from a preset file written by `headbake tune` "
                                   "(instead of --preset).", path=True)
    l_perc: int | None = _opt(None, "Override: last decoder layer (0-based) for perceptual heads.", min=0)
    l_reas: int | None = _opt(None, "Override: first decoder layer (0-based) for reasoning heads.", min=0)
    tau_perc: float | None = _opt(None, "Override: perceptual heads need S_v >= tau_perc.")
    tau_reas: float | None = _opt(None, "Override: reasoning heads need S_v <= tau_reas.")
    g_perc: float | None = _opt(None, "Override: gain of perceptual heads.")
    g_reas: float | None = _opt(None, "Override: gain of reasoning heads.")
    data: str | None = _opt(None, 'JSONL file of {"image": path | [paths], "question": str}.', path=True)
    dataset: str | None = _opt(None, "Hugging Face dataset name or local path (needs the 'datasets' extra).")
    split: str = _opt("train", "Dataset split.")
    image_column: str = _opt("image", "Dataset column holding the image(s).")
    question_column: str = _opt("question", "Dataset column holding the question.")
    samples: int | None = _opt(None, "Number of samples (embedded set: default 64; files: all).", min=1)
    batch_size: int = _opt(4, "Samples per forward pass.", min=1)
    device: str | None = _opt(None, "auto, cpu, cuda, cuda:1, ... [default: auto: cuda if available].")
    device_map: str | None = _opt(None, "Spread the model over devices (and CPU/disk) with accelerate.",
                                  choices=("auto",))
    max_memory: str | None = _opt(None, "With --device-map auto: per-device limits, e.g. 'cpu=8GiB,0=20GiB' or "
                                  "one size for every device.")
    offload_folder: str | None = _opt(None, "With --device-map auto: folder for weights that fit in no memory "
                                      "(disk offload).", dir=True)
    dtype: str = _opt("auto", "The checkpoint's dtype (auto), or float32, bfloat16, float16.", choices=DTYPES)
    query: str = _opt("last", "Query position i* (the paper does not say which; this is a choice): the last prompt "
                      "token, the mean over the last k prompt tokens, or over the first k generated tokens.",
                      choices=("last", "last-k", "generated-k"))
    k: int | None = _opt(None, "Positions to average for last-k / generated-k.", min=1)
    visual_token_ids: tuple = _opt((), "Override the image/video placeholder token ids (repeatable).",
                                   flag="--visual-token-id", type=int, multiple=True)
    bootstrap_rounds: int = _opt(200, "Bootstrap resamples for the selection-stability estimate (0: skip).",
                                 flag="--bootstrap", min=0)
    seed: int = _opt(0, "Bootstrap seed.")
    trust_remote_code: bool = _opt(False, "Allow the checkpoint's own Python code (Kimi-VL needs it).", is_flag=True)
    method: str = "auto"  # probe path: auto | registry | hooks
    source: dict | None = None  # {"id", "revision"}; default: the local directory, no revision
    prompt_template: str | None = _opt(None, "User message with one {question} slot (.txt), or JSON "
                                       '{"user", "system"}; default: the model\'s own prompt.', path=True)
    alias: str | None = None  # the alias the model was named by (else found from source["id"])
    progress: bool = True

    @property
    def overrides(self) -> dict:
        return {k: getattr(self, k) for k in OVERRIDES}


OVERRIDES = ("l_perc", "l_reas", "tau_perc", "tau_reas", "g_perc", "g_reas")


def check_options(o: CalibrateOptions):
    """Every check that needs neither the model nor its files (the CLI runs it before a download)."""
    # deferred: this module builds the CLI's flags, which must not load torch
    from headbake.calibrate.queries import query_spec
    from headbake.data.prompts import load_prompt_template
    from headbake.devices import resolve_device
    if o.samples is not None and (isinstance(o.samples, bool) or o.samples < 1):
        raise HeadbakeError(f"--samples must be at least 1, got {o.samples}")
    if o.batch_size < 1:
        raise HeadbakeError(f"--batch-size must be at least 1, got {o.batch_size}")
    if o.dtype not in DTYPES:
        raise HeadbakeError(f"--dtype must be one of {', '.join(DTYPES)}, got {o.dtype!r}")
    if o.data and o.dataset:
        raise HeadbakeError("give either --data or --dataset, not both")
    if o.device_map not in (None, "auto"):
        raise HeadbakeError(f"--device-map supports only 'auto', got {o.device_map!r}")
    if o.device_map and o.device not in (None, "auto"):
        raise HeadbakeError("give either --device or --device-map auto, not both")
    if not o.device_map:
        resolve_device(o.device)  # a wrong --device fails before the model is loaded
    if o.bootstrap_rounds < 0:
        raise HeadbakeError("--bootstrap must be >= 0")
    if o.out is not None:
        out = Path(o.out)
        if str(o.out).endswith(("/", os.sep)):
            raise HeadbakeError(f"--out names a folder ({o.out}); give the gains file to write, e.g. {o.out}heads.json")
        if out.is_dir():
            raise HeadbakeError(f"--out is a directory: {out}")
    if o.prompt_template is not None:
        load_prompt_template(o.prompt_template)
    if o.preset_file is not None:
        from headbake.calibrate.preset_file import load_preset_file

        if o.preset != "default":
            raise HeadbakeError("give either --preset or --preset-file, not both")
        load_preset_file(o.preset_file)
    return query_spec(o.query, o.k)


def prompt_template(o: CalibrateOptions, alias: str | None):
    """The prompt calibration uses: ``--prompt-template`` if given, else the alias's own (else the bare question)."""
    from headbake.data.prompts import load_prompt_template, prompt_for
    return load_prompt_template(o.prompt_template) if o.prompt_template else prompt_for(alias)
