"""``headbake verify``: both verification levels, a summary, and the optional provenance update."""

from __future__ import annotations

from pathlib import Path

from headbake.bake.verify_tensors import verify_tensors
from headbake.data.prompts import PromptTemplate, prompt_for
from headbake.errors import HeadbakeError
from headbake.model.aliases import identify_model
from headbake.gains import load_gains, validate_gains
from headbake.model.info import load_model_info
from headbake.record import RECORD, has_record, read_record, write_record


def _gains_for(baked: Path, gains_file, info):
    if gains_file:
        return load_gains(gains_file, info)["gains"]
    if not has_record(baked):
        raise HeadbakeError(f"{baked} has no {RECORD}; pass --gains to say which gains to check")
    doc = read_record(baked).gains
    return validate_gains(doc.get("gains"), info.num_layers, info.num_heads, f"{baked / RECORD}")


def prompt_of(baked: Path):
    """The prompt the bake was calibrated with (recorded in its gains), else the model's own; verify asks the
    same way, so its figures describe the inputs the bake was made for."""
    if not has_record(baked):
        return None
    rec = read_record(baked)
    p = rec.gains.get("prompt")
    if isinstance(p, dict) and isinstance(p.get("user"), str):
        return PromptTemplate(p["user"], p.get("system"), str(p.get("source") or "the recorded prompt"))
    return prompt_for(identify_model((rec.source or {}).get("id")))


def run_verify(src, baked, *, gains_file=None, tensors_only=False, samples=4, new_tokens=8, device="auto",
               device_map=None, trust_remote_code=False, progress=True, record=False, max_memory=None,
               offload_folder=None) -> dict:

    src, baked = Path(src), Path(baked)
    for p, what in ((src, "source"), (baked, "baked")):
        if not p.is_dir():
            raise HeadbakeError(f"{what} directory not found: {p}")
    info = load_model_info(src)
    gains = _gains_for(baked, gains_file, info)
    if device_map and device not in (None, "auto"):
        raise HeadbakeError("give either --device or --device-map auto, not both")
    if not tensors_only:
        from headbake.devices import resolve_device
        from headbake.memory import plan_memory

        if not device_map:
            device = resolve_device(device)  # a wrong --device fails now, not after the tensor pass
        plan = plan_memory(src, "verify", device=None if device_map else device, device_map=device_map,
                           max_memory=max_memory, offload_folder=offload_folder, samples=samples,
                           new_tokens=new_tokens, info=info).check()
        max_memory = plan.load_kwargs().get("max_memory", max_memory)
    tensor = verify_tensors(src, baked, gains, progress=progress)
    summary = [
        f"tensors: {'ok' if tensor['passed'] else 'FAILED'} — {tensor['files_compared']} files compared, "
        f"{tensor['edited_bit_exact']}/{tensor['edited_tensors']} edited o_proj bit-exact, "
        f"all other bytes {'identical' if tensor['passed'] else 'checked'}"
    ] + [f"  - {p}" for p in tensor["problems"]]
    model = None
    if not tensors_only:
        from headbake.bake.verify_model import verify_model

        model = verify_model(src, baked, gains, info=info, template=prompt_of(baked), samples=samples, new_tokens=new_tokens, device=device,
                             device_map=device_map, trust_remote_code=trust_remote_code, progress=progress,
                             max_memory=max_memory, offload_folder=offload_folder)
        summary.append(
            f"model ({model['dtype']}, {model['samples']} {model['inputs']} inputs): baked vs hooked max|dlogit| "
            f"{model['max_abs_logit']:.3g} (limit {model['limits']['max_abs_logit']:.3g}), KL mean "
            f"{model['kl_mean']:.3g} max {model['kl_max']:.3g} (limit {model['limits']['kl_max']:.3g}), top-1 "
            f"{model['top1_agreement']:.1%}, greedy {model['greedy_match']:.1%} of {model['greedy_tokens']} tokens"
        )
        summary.append(
            f"  noise floor (hooked {model['dtype']} vs {model['noise_floor']['reference_dtype']}): max|dlogit| "
            f"{model['noise_floor']['max_abs_logit']:.3g}, KL max {model['noise_floor']['kl_max']:.3g}; "
            f"effect (hooked vs original): max|dlogit| {model['effect']['max_abs_logit']:.3g}, "
            f"KL mean {model['effect']['kl_mean']:.3g}"
        )
    passed = tensor["passed"] and (model is None or model["passed"])
    report = {"passed": passed, "tensor": tensor, "model": model, "summary": summary}
    if record:
        rec = read_record(baked)
        rec.verification = {k: v for k, v in report.items() if k != "summary"}
        rec.verification["tensor"] = {k: v for k, v in tensor.items() if k != "files"}
        rec.files.update(tensor["files"])
        write_record(baked, rec)
    return report
