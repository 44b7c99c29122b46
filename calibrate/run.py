"""One calibration run: validate everything, load the model, probe the samples, select, write.

Order matters for the user: every check that needs no model (preset values,
layer bounds from config.json, probe path, data and images, output path)
runs before the model is loaded, and the gains file is written atomically at
the very end, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from headbake.devices import input_device, resolve_device
from headbake.model.loading import DTYPES, check_remote_code, load_model, load_processor
from headbake.errors import HeadbakeError, first_line
from headbake.progress import bar as progress_bar



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
    from headbake.calibrate.queries import query_spec

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
        if out.is_dir():
            raise HeadbakeError(f"--out is a directory: {out}")
    if o.prompt_template is not None:
        from headbake.data.prompts import load_prompt_template

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


def load_data(o: CalibrateOptions):
    from headbake.calibrate import data

    if o.data:
        return data.load_jsonl(o.data, o.samples)
    if o.dataset:
        return data.load_hf_dataset(o.dataset, o.split, o.image_column, o.question_column, o.samples)
    return data.embedded(o.samples)


def preflight(o: CalibrateOptions, model_loaded: bool = False) -> Preflight:
    """Every check that needs the model's files but not the model: the model folder, its config and
    architecture, remote code without the flag, the preset against its layers, the prompt template, the image
    token ids and the weights' safetensors headers. ``convert`` runs it before it creates any work folder."""
    from headbake.calibrate.presets import identify_model, resolve
    from headbake.calibrate.selection import validate_params
    from headbake.checkpoint import open_checkpoint
    from headbake.model.info import load_model_info, probe_path

    spec = check_options(o)
    model_dir = Path(o.model)
    if not model_dir.is_dir():
        raise HeadbakeError(f"model directory not found: {model_dir}")
    info = load_model_info(model_dir)
    method = probe_path(info.model_type) if o.method == "auto" else o.method
    if not model_loaded:
        check_remote_code(info, o.trust_remote_code)
    source = o.source or {"id": str(model_dir.resolve()), "revision": None}
    alias = identify_model(source.get("id"), o.alias)
    if o.preset_file is not None:
        from headbake.calibrate.preset_file import load_preset_file, preset_block as file_block, transfer_warning

        pfile = load_preset_file(o.preset_file)
        params, preset_block = file_block(pfile, o.overrides)
        warnings = [w for w in (transfer_warning(pfile, info, source.get("id")),) if w]
    else:
        params, preset_block = resolve(o.preset, o.overrides, model_id=source.get("id"), alias=alias)
        warnings = [preset_block["notice"]] if preset_block.get("notice") else []
    warnings += validate_params(params, info.num_layers)
    template = prompt_template(o, alias)
    ids = tuple(int(i) for i in o.visual_token_ids) or info.visual_token_ids
    if not ids:
        raise HeadbakeError(f"config.json names no image token id for {info.model_type}; pass --visual-token-id")
    if not model_loaded:
        open_checkpoint(model_dir)  # refuses pickle-only, truncated or malformed checkpoints before any loading
    return Preflight(spec, model_dir, info, method, source, alias, params, preset_block, warnings, template, ids)


@dataclass
class Preflight:
    """What the checks before loading found out, for the run that follows."""

    spec: object
    model_dir: Path
    info: object
    method: str
    source: dict
    alias: str | None
    params: object
    preset_block: dict
    warnings: list
    template: object
    ids: tuple


def _rejected(processor, dataset, start: int, batch: list, exc: Exception, template=None) -> HeadbakeError:
    """Name the sample (its data line and image files) that the processor refused, retrying a batch one
    sample at a time to find it."""
    from headbake.data.prompts import build_inputs

    culprit = 0
    if len(batch) > 1:
        for i, sample in enumerate(batch):
            try:
                build_inputs(processor, [sample], device="cpu", template=template)
            except (ValueError, TypeError) as e:
                culprit, exc = i, e
                break
    where = dataset.origins[start + culprit]
    if dataset.image_files:
        where += f" ({', '.join(dataset.image_files[start + culprit])})"
    return HeadbakeError(f"the processor rejected {where}: {first_line(exc)}")


def calibrate(o: CalibrateOptions, model=None, processor=None) -> dict:
    """Run a calibration and return the gains document (written to ``o.out`` when set).

    ``model``/``processor`` may be passed in (already loaded) to skip loading.
    """
    import numpy as np
    import torch

    import headbake
    from headbake.calibrate import data as data_mod
    from headbake.calibrate.agreement import per_input_agreement
    from headbake.calibrate.probe import probe_batch
    from headbake.calibrate.queries import generated_inputs, prompt_positions
    from headbake.calibrate.selection import select_heads
    from headbake.calibrate.stats import RunningStats, bootstrap_jaccard
    from headbake.calibrate.token_stats import image_token_warning, summarize, token_counts
    from headbake.data.prompts import build_inputs
    from headbake.gains import gains_document, write_json_atomic
    from headbake.model.info import visual_mask

    pf = preflight(o, model_loaded=model is not None)
    spec, model_dir, info, method, source = pf.spec, pf.model_dir, pf.info, pf.method, pf.source
    params, preset_block, warnings, template, ids = pf.params, pf.preset_block, pf.warnings, pf.template, pf.ids
    alias = pf.alias
    dataset = load_data(o)
    if dataset.note:
        warnings.append(dataset.note)
    # Images too small for one visual token are refused, before the model is loaded (see check_image_sizes).
    data_mod.check_image_sizes(dataset, data_mod.min_image_side(processor) if processor is not None
                               else data_mod.min_image_side_of_model(model_dir))

    if model is None:
        from headbake.memory import plan_memory

        plan = plan_memory(model_dir, "calibrate", device=o.device, device_map=o.device_map, max_memory=o.max_memory,
                           offload_folder=o.offload_folder, dtype=o.dtype, batch_size=o.batch_size,
                           eager=method == "hooks", info=info).check()  # refuse before loading, not OOM after
        model = load_model(model_dir, info, dtype=o.dtype, device=o.device, trust_remote_code=o.trust_remote_code,
                           progress=o.progress, **(plan.load_kwargs() or {"device_map": None}),
                           # the hooks path needs real eager weights from remote-code attention classes
                           attn_implementation="eager" if method == "hooks" else "sdpa")
        processor = load_processor(model_dir, trust_remote_code=o.trust_remote_code)
    device = input_device(model)
    stats = RunningStats((info.num_layers, info.num_heads))
    per_sample, image_tokens, prompt_tokens = [], [], []
    n = len(dataset.samples)
    bar = progress_bar(n, "calibrate", unit="sample", enabled=o.progress)
    try:
        for start in range(0, n, o.batch_size):
            batch = dataset.samples[start:start + o.batch_size]
            try:
                inputs = build_inputs(processor, batch, device=device, template=template)
            except (ValueError, TypeError) as e:
                raise _rejected(processor, dataset, start, batch, e, template) from None
            vis = visual_mask(inputs["input_ids"], ids)
            for i in range(len(batch)):
                if not bool(vis[i].any()):
                    raise HeadbakeError(
                        f"{dataset.origins[start + i]} has no image tokens (ids {list(ids)}) after the processor; "
                        "does the model's chat template place images?"
                    )
            imgs, lengths = token_counts(inputs, vis)
            image_tokens += imgs
            prompt_tokens += lengths
            if spec.mode == "generated_k":
                inputs, positions, weights = generated_inputs(model, inputs, spec.k, ids)
                vis = visual_mask(inputs["input_ids"], ids)
            else:
                positions, weights = prompt_positions(inputs, spec)
            values = probe_batch(model, inputs, positions, weights, visual_mask=vis, method=method)
            if values.shape[1:] != (info.num_layers, info.num_heads):
                raise HeadbakeError(
                    f"probe measured {tuple(values.shape[1:])} layers x heads, config.json says "
                    f"{(info.num_layers, info.num_heads)}"
                )
            arr = values.double().numpy()
            if not np.isfinite(arr).all():
                raise HeadbakeError(f"non-finite S_v in the batch starting at {dataset.origins[start]}")
            stats.update(arr)
            per_sample.append(arr)
            bar.update(len(batch))
    finally:
        bar.close()

    mean = stats.mean
    selection = select_heads(mean, params)
    warnings += [w for w in selection.warnings if w not in warnings]
    all_values = np.concatenate(per_sample, 0)
    stability = bootstrap_jaccard(
        all_values, lambda m: select_heads(m, params).labels(), rounds=o.bootstrap_rounds, seed=o.seed
    )
    if stability["bootstrap_jaccard_mean"] is not None and stability["bootstrap_jaccard_mean"] < 0.5:
        warnings.append(
            f"unstable selection: mean bootstrap Jaccard {stability['bootstrap_jaccard_mean']:.2f}; "
            "use more samples or thresholds further from the S_v values"
        )
    tokens = {"image_tokens": summarize(image_tokens), "prompt_tokens": summarize(prompt_tokens),
              "note": "per sample, as the model's processor expanded the prompt (prompt tokens exclude padding)"}
    tok_warning = image_token_warning(tokens["image_tokens"]["mean"], is_demo=alias == "demo")
    if tok_warning:
        warnings.append(tok_warning)
    agreement = per_input_agreement(all_values, params, selection.perceptual, selection.reasoning)
    doc = gains_document(
        selection.gains,
        info,
        source,
        visual_ratio=mean.tolist(),
        visual_ratio_std=stats.std.tolist(),
        samples=stats.count,
        stats=stats.to_dict(),
        selected={"perceptual": selection.perceptual, "reasoning": selection.reasoning},
        counts=selection.counts,
        preset=preset_block,
        query=spec.as_dict(),
        prompt=template.as_dict(),
        tokens=tokens,
        agreement=agreement,
        data={"name": dataset.name, "fingerprint": data_mod.fingerprint(dataset.samples), "samples": n},
        stability=stability,
        probe={
            "method": method,
            "visual_token_ids": list(ids),
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "headbake_version": headbake.__version__,
            "torch_version": torch.__version__,
        },
        warnings=warnings,
    )
    if o.out is not None:
        out = Path(o.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, doc)
    return doc
