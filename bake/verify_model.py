"""Model-level verification: the source with the runtime hook vs the baked checkpoint, as plain transformers loads it.

Only one model is in memory at a time: the source is run (vanilla, hooked,
hooked at a wider reference dtype), its logits kept for the last few
positions only, and freed before the baked model is loaded. The wider run
upcasts one module at a time (``headbake.bake.reference``), never the whole
model: a 7B bf16 model cast to float32 would need 33 GB.

Pass rule (the noise floor comes from the same run): baked-vs-hooked may be
no further apart than ``FLOOR_FACTOR`` x the distance between the hooked
model in its stored dtype and the hooked model in the reference dtype
(float32 for bf16/fp16 checkpoints, float64 for float32 ones), plus a tiny
absolute slack for exact ties. Both max |delta logit| and max KL must pass.
The effect size (hooked vs vanilla) is reported so a reader can see the
bake changed something the rounding cannot explain.
"""

from __future__ import annotations

import gc

import torch
from transformers.utils import logging as hf_logging

from headbake.bake.reference import reference_dtype, stored_dtype, upcast_forward
from headbake.data.prompts import build_inputs
from headbake.data.samples import synthetic_samples
from headbake.devices import input_device, resolve_device
from headbake.model.loading import load_model, load_processor
from headbake.progress import bar as progress_bar
from headbake.runtime import apply_gains

FLOOR_FACTOR = 2.0
ABS_SLACK = {"max_abs_logit": 1e-5, "kl_max": 1e-9}


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def _load(path, info, dtype, device, device_map, trust_remote_code, max_memory=None, offload_folder=None):
    return load_model(path, info, dtype=dtype, device=device, device_map=device_map, max_memory=max_memory,
                      offload_folder=offload_folder, trust_remote_code=trust_remote_code, progress=False)


def _inputs(path, info, samples: int, trust_remote_code: bool, template=None):
    """Real image+text prompts through the model's own processor (token ids for text-only models)."""
    if info.arch.get("multimodal"):
        processor = load_processor(path, trust_remote_code=trust_remote_code)
        batch = build_inputs(processor, synthetic_samples(samples, seed=1234), template=template)
        return dict(batch), getattr(processor, "tokenizer", None)
    g = torch.Generator().manual_seed(1234)
    vocab = int(info.config.get("vocab_size") or info.config.get("text_config", {}).get("vocab_size", 1000))
    ids = torch.randint(0, vocab, (samples, 32), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, None


def _run(model, inputs, positions: int, new_tokens: int, pad_id):
    dev = input_device(model)  # not a parameter's device: an offloaded one is on "meta"
    batch = {k: (v.to(dev) if hasattr(v, "to") else v) for k, v in inputs.items()}
    with torch.no_grad():
        try:  # only the compared positions' logits: [batch, L, vocab] is GBs for a 150k vocabulary
            out = model(**batch, logits_to_keep=positions)
        except TypeError:
            out = model(**batch)
        logits = out.logits[:, -positions:].float().cpu()
        gen = None
        if new_tokens:
            out = model.generate(**batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=pad_id)
            gen = out[:, batch["input_ids"].shape[1]:].cpu()
    return logits, gen


def compare_logits(a, b) -> dict:
    """Distances between two logit tensors ``[batch, positions, vocab]``; KL is KL(a || b)."""
    a64, b64 = a.double(), b.double()
    la, lb = torch.log_softmax(a64, -1), torch.log_softmax(b64, -1)
    kl = (la.exp() * (la - lb)).sum(-1)
    return {
        "max_abs_logit": float((a64 - b64).abs().max()),
        "kl_mean": float(kl.mean()),
        "kl_max": float(kl.max()),
        "top1_agreement": float((a.argmax(-1) == b.argmax(-1)).float().mean()),
    }


def greedy_match(a, b) -> float:
    """Mean fraction of each sequence's tokens before the first divergence."""
    if a is None or b is None:
        return float("nan")
    same = (a == b).int().cumprod(-1)
    return float(same.sum(-1).float().mean() / a.shape[1])


def verify_model(src, baked, gains, *, info, samples=4, new_tokens=8, positions=16, device="auto",
                 device_map=None, trust_remote_code=False, progress=True, max_memory=None, offload_folder=None,
                 template=None) -> dict:

    device = resolve_device(device)
    inputs, tok = _inputs(src, info, samples, trust_remote_code, template)
    pad_id = getattr(tok, "pad_token_id", None) if tok is not None else 0
    steps = ["load source", "vanilla", "hooked", "reference dtype", "load baked", "baked"]


    hf_logging.disable_progress_bar()
    bar = progress_bar(len(steps), "verify model", unit="step", enabled=progress)

    def step():
        bar.update()
        if bar.n < len(steps):
            bar.set_postfix_str(steps[bar.n])

    bar.set_postfix_str(steps[0])
    model = _load(src, info, "auto", device, device_map, trust_remote_code, max_memory, offload_folder)
    stored = stored_dtype(model)
    ref_dtype = reference_dtype(stored)
    step()
    vanilla, _ = _run(model, inputs, positions, 0, pad_id)
    step()
    handle = apply_gains(model, gains)
    try:
        hooked, gen_h = _run(model, inputs, positions, new_tokens, pad_id)
        step()
        if ref_dtype == torch.float64 and hasattr(model, "set_experts_implementation"):
            # grouped_mm kernels have no float64 path; the eager expert loop is the same math.
            try:
                model.set_experts_implementation("eager")
            except (ValueError, AttributeError):
                pass
        with upcast_forward(model, ref_dtype):  # one module wide at a time, weights restored bit for bit
            reference, _ = _run(model, inputs, positions, 0, pad_id)
    finally:
        handle.remove()
    step()
    del model
    _free()
    model = _load(baked, info, "auto", device, device_map, trust_remote_code, max_memory, offload_folder)
    step()
    baked_logits, gen_b = _run(model, inputs, positions, new_tokens, pad_id)
    step()
    bar.close()
    del model
    _free()

    res = compare_logits(hooked, baked_logits)
    floor = compare_logits(reference, hooked)
    effect = compare_logits(hooked, vanilla)
    limit_abs = FLOOR_FACTOR * floor["max_abs_logit"] + ABS_SLACK["max_abs_logit"]
    limit_kl = FLOOR_FACTOR * floor["kl_max"] + ABS_SLACK["kl_max"]
    passed = res["max_abs_logit"] <= limit_abs and res["kl_max"] <= limit_kl
    return {
        "dtype": _name(stored),
        "device": device if not device_map else f"device_map={device_map}",
        "samples": samples,
        "inputs": "image+text" if info.arch.get("multimodal") else "text",
        "prompt": template.source if template is not None else "the question alone",
        "positions": positions,
        **res,
        "greedy_match": greedy_match(gen_h, gen_b),
        "greedy_tokens": new_tokens,
        "noise_floor": {"reference_dtype": _name(ref_dtype), **floor},
        "effect": effect,
        "limits": {"max_abs_logit": limit_abs, "kl_max": limit_kl},
        "rule": f"baked vs hooked <= {FLOOR_FACTOR:g} x (hooked {_name(stored)} vs hooked {_name(ref_dtype)}) "
                "+ slack, for both max |delta logit| and max KL",
        "passed": passed,
    }
