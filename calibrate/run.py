"""One calibration run: validate everything, load the model, probe the samples, select, write.

Order matters for the user: every check that needs no model (preset values,
layer bounds from config.json, probe path, data and images, output path)
runs before the model is loaded, and the gains file is written atomically at
the very end, so a failed run leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import headbake
from headbake.calibrate import data as data_mod
from headbake.calibrate.agreement import per_input_agreement
from headbake.calibrate.options import CalibrateOptions, check_options, prompt_template  # noqa: F401 (re-exported)
from headbake.calibrate.presets import identify_model, resolve
from headbake.calibrate.probe import probe_batch, visual_positions
from headbake.calibrate.queries import generated_inputs, prompt_positions
from headbake.calibrate.selection import select_heads, validate_params
from headbake.calibrate.stats import RunningStats, bootstrap_jaccard
from headbake.calibrate.token_stats import image_token_warning, summarize, token_counts
from headbake.checkpoint import open_checkpoint
from headbake.data.prompts import build_inputs
from headbake.devices import input_device
from headbake.errors import HeadbakeError, first_line
from headbake.fsutil import write_json_atomic
from headbake.gains import gains_document
from headbake.memory import plan_memory
from headbake.model.info import load_model_info, probe_path
from headbake.model.loading import check_remote_code, load_model, load_processor
from headbake.progress import bar as progress_bar


def load_data(o: CalibrateOptions):
    if o.data:
        return data_mod.load_jsonl(o.data, o.samples)
    if o.dataset:
        return data_mod.load_hf_dataset(o.dataset, o.split, o.image_column, o.question_column, o.samples)
    return data_mod.embedded(o.samples)


def preflight(o: CalibrateOptions, model_loaded: bool = False) -> Preflight:
    """Every check that needs the model's files but not the model: the model folder, its config and
    architecture, remote code without the flag, the preset against its layers, the prompt template, the image
    token ids and the weights' safetensors headers. ``convert`` runs it before it creates any work folder."""
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
        from headbake.calibrate.preset_file import load_preset_file
        from headbake.calibrate.preset_file import preset_block as file_block
        from headbake.calibrate.preset_file import transfer_warning

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


@dataclass
class Measurement:
    """Per-sample S_v ``[samples, layers, heads]`` and what the processor made of each sample."""
    values: np.ndarray
    stats: RunningStats
    image_tokens: list
    prompt_tokens: list


def load_for_probe(o: CalibrateOptions, pf: Preflight):
    """The model (after the memory plan agrees) and its processor, as the probe needs them."""
    plan = plan_memory(pf.model_dir, "calibrate", device=o.device, device_map=o.device_map, max_memory=o.max_memory,
                       offload_folder=o.offload_folder, dtype=o.dtype, batch_size=o.batch_size,
                       eager=pf.method == "hooks", info=pf.info).check()  # refuse before loading, not OOM after
    model = load_model(pf.model_dir, pf.info, dtype=o.dtype, device=o.device, trust_remote_code=o.trust_remote_code,
                       progress=o.progress, **(plan.load_kwargs() or {"device_map": None}),
                       # the hooks path needs real eager weights from remote-code attention classes
                       attn_implementation="eager" if pf.method == "hooks" else "sdpa")
    return model, load_processor(pf.model_dir, trust_remote_code=o.trust_remote_code)


def measure(o: CalibrateOptions, pf: Preflight, model, processor, dataset) -> Measurement:
    """S_v of every sample at the query positions, batch by batch (``tune`` reuses it: measured once)."""
    info, ids, spec = pf.info, pf.ids, pf.spec
    device = input_device(model)
    stats = RunningStats((info.num_layers, info.num_heads))
    per_sample, image_tokens, prompt_tokens = [], [], []
    n = len(dataset.samples)
    with progress_bar(n, "calibrate", unit="sample", enabled=o.progress) as bar:
        for start in range(0, n, o.batch_size):
            batch = dataset.samples[start:start + o.batch_size]
            try:
                inputs = build_inputs(processor, batch, device=device, template=pf.template)
            except (ValueError, TypeError) as e:
                raise _rejected(processor, dataset, start, batch, e, pf.template) from None
            vis = visual_positions(inputs["input_ids"], ids)
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
                vis = visual_positions(inputs["input_ids"], ids)
            else:
                positions, weights = prompt_positions(inputs, spec)
            values = probe_batch(model, inputs, positions, weights, visual_mask=vis, method=pf.method)
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
    return Measurement(np.concatenate(per_sample, 0), stats, image_tokens, prompt_tokens)


def calibrate(o: CalibrateOptions, model=None, processor=None) -> dict:
    """Run a calibration and return the gains document (written to ``o.out`` when set).

    ``model``/``processor`` may be passed in (already loaded) to skip loading.
    """
    pf = preflight(o, model_loaded=model is not None)
    warnings = pf.warnings
    dataset = load_data(o)
    if dataset.note:
        warnings.append(dataset.note)
    # Images too small for one visual token are refused, before the model is loaded (see check_image_sizes).
    data_mod.check_image_sizes(dataset, data_mod.min_image_side(processor) if processor is not None
                               else data_mod.min_image_side_of_model(pf.model_dir))
    if model is None:
        model, processor = load_for_probe(o, pf)
    m = measure(o, pf, model, processor, dataset)
    doc = gains_document_for(o, pf, m, dataset, warnings,
                             dtype=str(next(model.parameters()).dtype).replace("torch.", ""))
    if o.out is not None:
        out = Path(o.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, doc)
    return doc


def gains_document_for(o: CalibrateOptions, pf: Preflight, m: Measurement, dataset, warnings: list, dtype: str,
                       params=None) -> dict:
    """Select heads from the measured S_v (with ``params``, default the preflight's) and describe the run."""
    params = params or pf.params
    mean = m.stats.mean
    selection = select_heads(mean, params)
    warnings += [w for w in selection.warnings if w not in warnings]
    stability = bootstrap_jaccard(
        m.values, lambda x: select_heads(x, params).labels(), rounds=o.bootstrap_rounds, seed=o.seed
    )
    if stability["bootstrap_jaccard_mean"] is not None and stability["bootstrap_jaccard_mean"] < 0.5:
        warnings.append(
            f"unstable selection: mean bootstrap Jaccard {stability['bootstrap_jaccard_mean']:.2f}; "
            "use more samples or thresholds further from the S_v values"
        )
    tokens = {"image_tokens": summarize(m.image_tokens), "prompt_tokens": summarize(m.prompt_tokens),
              "note": "per sample, as the model's processor expanded the prompt (prompt tokens exclude padding)"}
    tok_warning = image_token_warning(tokens["image_tokens"]["mean"], is_demo=pf.alias == "demo")
    if tok_warning:
        warnings.append(tok_warning)
    return gains_document(
        selection.gains,
        pf.info,
        pf.source,
        visual_ratio=mean.tolist(),
        visual_ratio_std=m.stats.std.tolist(),
        samples=m.stats.count,
        stats=m.stats.to_dict(),
        selected={"perceptual": selection.perceptual, "reasoning": selection.reasoning},
        counts=selection.counts,
        preset=pf.preset_block,
        query=pf.spec.as_dict(),
        prompt=pf.template.as_dict(),
        tokens=tokens,
        agreement=per_input_agreement(m.values, params, selection.perceptual, selection.reasoning),
        data={"name": dataset.name, "fingerprint": data_mod.fingerprint(dataset.samples),
              "samples": len(dataset.samples)},
        stability=stability,
        probe={
            "method": pf.method,
            "visual_token_ids": list(pf.ids),
            "dtype": dtype,
            "headbake_version": headbake.__version__,
            "torch_version": torch.__version__,
        },
        warnings=warnings,
    )
