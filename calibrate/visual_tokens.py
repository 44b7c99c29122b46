"""Which tokens are image tokens, and how each architecture can be probed.

``S_v`` sums attention over the positions that hold image (or video)
features. In every supported model the processor expands one placeholder id
per visual feature, so those positions are exactly where ``input_ids``
equals a placeholder id: Qwen2/2.5-VL ``image_token_id`` / ``video_token_id``,
Kimi-VL ``media_placeholder_token_id``. The field names live in
``architectures.json`` (``visual_token_ids``); users can override the ids.
"""

from __future__ import annotations

from headbake.errors import HeadbakeError

# How the probe reaches each architecture's attention scores:
#   "registry": the attention call goes through transformers' AttentionInterface,
#               so one registered function sees q/k (fast path).
#   "hooks":    remote code that bypasses the registry (Kimi-VL); forward hooks on
#               the eager attention modules reduce their weights layer by layer.
PROBE_PATHS = {
    "qwen2_5_vl": "registry",
    "qwen2_vl": "registry",
    "kimi_vl": "hooks",
}


def probe_path(model_type: str) -> str:
    """The probe method for ``model_type``; a clear error for text-only or unknown types."""
    path = PROBE_PATHS.get(model_type)
    if path is None:
        raise HeadbakeError(
            f"model type {model_type!r} has no probe path: calibrate measures attention to image tokens and "
            f"supports {', '.join(sorted(PROBE_PATHS))}"
        )
    return path


def _get(config, name):
    if isinstance(config, dict):
        return config.get(name)
    return getattr(config, name, None)


def visual_token_ids(config, fields=None) -> tuple[int, ...]:
    """Placeholder ids named by ``fields`` (default: the architecture's list), from the root or text config."""
    if fields is None:
        from headbake.modelinfo import architectures

        arch = architectures().get(_get(config, "model_type"), {})
        fields = arch.get("visual_token_ids", ["image_token_id", "video_token_id", "media_placeholder_token_id"])
    ids = []
    for field in fields:
        for src in (config, _get(config, "text_config")):
            if src is not None and isinstance(_get(src, field), int):
                ids.append(int(_get(src, field)))
                break
    return tuple(dict.fromkeys(ids))


def visual_mask(input_ids, ids):
    """Boolean ``[batch, seq]`` mask of the positions holding any of ``ids``."""
    import torch

    if not ids:
        raise HeadbakeError("no visual token ids known for this model; pass them explicitly (--visual-token-id)")
    ref = torch.tensor(list(ids), device=input_ids.device, dtype=input_ids.dtype)
    return torch.isin(input_ids, ref)
