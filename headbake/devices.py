"""Where models run: one resolution of ``--device`` for calibrate and verify."""

from __future__ import annotations

from headbake.errors import EnvironmentProblem, HeadbakeError


def resolve_device(device: str | None) -> str:
    """``None``/``auto`` -> cuda when available, else cpu; anything else must exist on this machine."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise HeadbakeError(f"unknown --device {device!r} (try cpu, cuda, cuda:1 or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EnvironmentProblem(f"--device {device}: CUDA is not available on this machine")
    return device
