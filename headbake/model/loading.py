"""One way to load a model and its processor, for calibrate, verify, eval and tune.

Every command must load the same checkpoint the same way (its own transformers
class from ``architectures.json``, safetensors only, remote code only when the
user allows it), or a bake verified by one command would be evaluated on a
different model by another.
"""

from __future__ import annotations

import torch
import transformers
from transformers import AutoProcessor

from headbake.devices import resolve_device
from headbake.errors import HeadbakeError, first_line
from headbake.model.info import DTYPES
from headbake.progress import quiet_libraries


def torch_dtype(name):
    """``auto`` / a dtype name / a torch dtype -> what ``from_pretrained(dtype=...)`` takes."""
    if name is None or name == "auto":
        return "auto"
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise HeadbakeError(f"--dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return getattr(torch, name)


def check_remote_code(info, trust_remote_code: bool) -> None:
    """Remote-code models run only when the user says so (checked before any download or load)."""
    if info.arch.get("remote_code") and not trust_remote_code:
        raise HeadbakeError(
            f"{info.arch.get('family', info.model_type)} needs the checkpoint's own Python code: "
            "pass --trust-remote-code if you trust it"
        )


def load_model(path, info, *, dtype="auto", device=None, device_map=None, max_memory=None, offload_folder=None,
               trust_remote_code=False, attn_implementation=None, progress=True):
    """The model's own transformers class in eval mode, placed on ``device`` or dispatched by ``device_map``."""
    cls_name = info.arch.get("auto_class", "AutoModelForCausalLM")
    cls = getattr(transformers, cls_name, None)
    if cls is None:
        raise HeadbakeError(f"transformers {transformers.__version__} has no {cls_name}")
    check_remote_code(info, trust_remote_code)
    kwargs = dict(dtype=torch_dtype(dtype), use_safetensors=True, trust_remote_code=trust_remote_code)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if device_map:
        kwargs["device_map"] = device_map
        if max_memory:
            kwargs["max_memory"] = max_memory
        if offload_folder:
            kwargs["offload_folder"] = str(offload_folder)
    quiet_libraries(progress)
    try:
        model = cls.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as e:
        raise HeadbakeError(f"cannot load the model from {path}: {first_line(e)}") from None
    if not device_map:
        model.to(resolve_device(device))
    return model.eval()


def load_processor(path, *, trust_remote_code=False):
    """The checkpoint's own processor (chat template, image processor, tokenizer)."""
    try:
        return AutoProcessor.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, ImportError) as e:
        raise HeadbakeError(f"cannot load the processor from {path}: {first_line(e)}") from None
