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

from headbake.devices import resolve_device
from headbake.errors import HeadbakeError, first_line

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class CalibrateOptions:
    model: str
    out: str | None = None
    preset: str = "default"
    overrides: dict = field(default_factory=dict)  # l_perc, l_reas, tau_perc, tau_reas, g_perc, g_reas
    data: str | None = None  # JSONL path
    dataset: str | None = None  # Hugging Face dataset name or local path
    split: str = "train"
    image_column: str = "image"
    question_column: str = "question"
    samples: int | None = None
    batch_size: int = 4
    device: str | None = None  # None or "auto": cuda if available, else cpu
    device_map: str | None = None  # "auto": accelerate places the model over devices
    dtype: str = "auto"
    query: str = "last"
    k: int | None = None
    trust_remote_code: bool = False
    visual_token_ids: tuple = ()  # override the config's placeholder ids
    bootstrap_rounds: int = 200
    seed: int = 0
    method: str = "auto"  # probe path: auto | registry | hooks
    source: dict | None = None  # {"id", "revision"}; default: the local directory, no revision
    progress: bool = True


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
    return query_spec(o.query, o.k)


def load_data(o: CalibrateOptions):
    from headbake.calibrate import data

    if o.data:
        return data.load_jsonl(o.data, o.samples)
    if o.dataset:
        return data.load_hf_dataset(o.dataset, o.split, o.image_column, o.question_column, o.samples)
    return data.embedded(o.samples)


def load_model(model_dir, info, o: CalibrateOptions, probe_method: str):
    """The model's own transformers class, safetensors only, in the checkpoint's dtype (or ``--dtype``)."""
    import torch
    import transformers
    from transformers import AutoProcessor

    cls_name = info.arch.get("auto_class", "AutoModelForImageTextToText")
    cls = getattr(transformers, cls_name, None)
    if cls is None:
        raise HeadbakeError(f"transformers {transformers.__version__} has no {cls_name}")
    kwargs = dict(
        dtype="auto" if o.dtype == "auto" else getattr(torch, o.dtype),
        use_safetensors=True,
        trust_remote_code=o.trust_remote_code,
        # The hooks path needs real eager weights from remote-code attention classes.
        attn_implementation="eager" if probe_method == "hooks" else "sdpa",
    )
    if o.device_map:
        kwargs["device_map"] = o.device_map
    if not o.progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        model = cls.from_pretrained(str(model_dir), **kwargs)
    except (OSError, ValueError) as e:
        msg = first_line(e)
        raise HeadbakeError(f"cannot load the model from {model_dir}: {msg}") from None
    if not o.device_map:
        model.to(resolve_device(o.device))
    model.eval()
    try:
        processor = AutoProcessor.from_pretrained(str(model_dir), trust_remote_code=o.trust_remote_code)
    except (OSError, ValueError, ImportError) as e:
        msg = first_line(e)
        raise HeadbakeError(f"cannot load the processor from {model_dir}: {msg}") from None
    return model, processor


def _input_device(model):
    import torch

    try:
        return model.get_input_embeddings().weight.device
    except (AttributeError, NotImplementedError):
        return next(model.parameters()).device if any(True for _ in model.parameters()) else torch.device("cpu")


def preflight(o: CalibrateOptions, model_loaded: bool = False):
    """Every check that needs the model's files but not the model: the model folder, its config and
    architecture, remote code without the flag, the preset against its layers, the image token ids and
    the weights' safetensors headers. ``convert`` runs it before it creates any work folder."""
    from headbake.calibrate.presets import resolve
    from headbake.calibrate.selection import validate_params
    from headbake.calibrate.visual_tokens import probe_path, visual_token_ids
    from headbake.checkpoint import open_checkpoint
    from headbake.modelinfo import load_model_info

    spec = check_options(o)
    model_dir = Path(o.model)
    if not model_dir.is_dir():
        raise HeadbakeError(f"model directory not found: {model_dir}")
    info = load_model_info(model_dir)
    method = probe_path(info.model_type) if o.method == "auto" else o.method
    if info.arch.get("remote_code") and not o.trust_remote_code and not model_loaded:
        raise HeadbakeError(
            f"{info.arch.get('family', info.model_type)} needs the checkpoint's own Python code: "
            "pass --trust-remote-code if you trust it"
        )
    params, preset_block = resolve(o.preset, o.overrides)
    warnings = list(validate_params(params, info.num_layers))
    ids = tuple(int(i) for i in o.visual_token_ids) or info.visual_token_ids or visual_token_ids(info.config)
    if not ids:
        raise HeadbakeError(f"config.json names no image token id for {info.model_type}; pass --visual-token-id")
    if not model_loaded:
        open_checkpoint(model_dir)  # refuses pickle-only, truncated or malformed checkpoints before any loading
    return spec, model_dir, info, method, params, preset_block, warnings, ids


def _rejected(processor, dataset, start: int, batch: list, exc: Exception) -> HeadbakeError:
    """Name the sample (its data line and image files) that the processor refused, retrying a batch one
    sample at a time to find it."""
    from headbake.prompts import build_inputs

    culprit = 0
    if len(batch) > 1:
        for i, sample in enumerate(batch):
            try:
                build_inputs(processor, [sample], device="cpu")
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
    from tqdm.auto import tqdm

    import headbake
    from headbake.calibrate import data as data_mod
    from headbake.calibrate.probe import probe_batch
    from headbake.calibrate.queries import generated_inputs, prompt_positions
    from headbake.calibrate.selection import select_heads
    from headbake.calibrate.stats import RunningStats, bootstrap_jaccard
    from headbake.calibrate.visual_tokens import visual_mask
    from headbake.gains import gains_document, write_json_atomic
    from headbake.prompts import build_inputs

    spec, model_dir, info, method, params, preset_block, warnings, ids = preflight(o, model_loaded=model is not None)
    dataset = load_data(o)
    if dataset.note:
        warnings.append(dataset.note)
    # Images too small for one visual token are refused, before the model is loaded (see check_image_sizes).
    data_mod.check_image_sizes(dataset, data_mod.min_image_side(processor) if processor is not None
                               else data_mod.min_image_side_of_model(model_dir))

    if model is None:
        model, processor = load_model(model_dir, info, o, method)
    device = _input_device(model)
    stats = RunningStats((info.num_layers, info.num_heads))
    per_sample = []
    n = len(dataset.samples)
    bar = tqdm(total=n, desc="calibrate", unit="sample", file=sys.stderr, disable=not o.progress, dynamic_ncols=True)
    try:
        for start in range(0, n, o.batch_size):
            batch = dataset.samples[start:start + o.batch_size]
            try:
                inputs = build_inputs(processor, batch, device=device)
            except (ValueError, TypeError) as e:
                raise _rejected(processor, dataset, start, batch, e) from None
            vis = visual_mask(inputs["input_ids"], ids)
            for i in range(len(batch)):
                if not bool(vis[i].any()):
                    raise HeadbakeError(
                        f"{dataset.origins[start + i]} has no image tokens (ids {list(ids)}) after the processor; "
                        "does the model's chat template place images?"
                    )
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
    source = o.source or {"id": str(model_dir.resolve()), "revision": None}
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
