"""Where models run: one resolution of ``--device`` for calibrate and verify."""

from __future__ import annotations

import torch

from headbake.errors import EnvironmentProblem, HeadbakeError


def resolve_device(device: str | None) -> str:
    """``None``/``auto`` -> cuda when available, else cpu; anything else must exist on this machine."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise HeadbakeError(f"unknown --device {device!r} (try cpu, cuda, cuda:1 or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EnvironmentProblem(f"--device {device}: CUDA is not available on this machine")
    return device


def input_device(model):
    """Where a model wants its inputs: where its input embedding runs.

    For a model dispatched by ``device_map`` that is read from
    ``hf_device_map``, not from the weight (an offloaded weight sits on the
    meta device between forwards): accelerate runs modules mapped to "cpu"
    or "disk" on the map's first accelerator, or on the CPU when it has none.
    """
    try:
        emb = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        emb = None
    dmap = getattr(model, "hf_device_map", None)
    if dmap:
        name = next((n for n, m in model.named_modules() if m is emb), "") if emb is not None else ""
        keys = [k for k in dmap if k == "" or name == k or name.startswith(k + ".")]
        where = dmap[max(keys, key=len)] if keys else next(iter(dmap.values()))
        if where in ("cpu", "disk"):
            accel = [v for v in dmap.values() if v not in ("cpu", "disk")]
            where = accel[0] if accel else "cpu"
        return torch.device(where)
    tensor = getattr(emb, "weight", None) if emb is not None else None
    if tensor is None:
        tensor = next(model.parameters(), None)
    return tensor.device if tensor is not None else torch.device("cpu")
