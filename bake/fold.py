"""The fold: scaling head h's output by g before o_proj == scaling W's columns of head h.

``o_proj(x) = W x (+ b)`` with ``x = concat(head_0 .. head_{H-1})``, so
``W (g * x_h)`` equals ``(g * W[:, h*d:(h+1)*d]) x_h``. The bias is outside
the sum and is not scaled. The product is formed in float32 and rounded once
to the stored dtype; heads with gain 1.0 keep their exact bytes.
"""

from __future__ import annotations

SAFETENSORS_TO_TORCH = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def fold_columns(weight, gains, head_dim: int):
    """Return ``weight`` (``[out, heads*head_dim]``) with each head's columns scaled.

    Returns a new tensor in ``weight``'s dtype; the input is not modified.
    """
    import torch

    if weight.shape[1] != len(gains) * head_dim:
        raise ValueError(f"o_proj has {weight.shape[1]} input columns, expected {len(gains)} x {head_dim}")
    out = weight.clone()
    wide = torch.promote_types(weight.dtype, torch.float32)
    for h, g in enumerate(gains):
        if g == 1.0:
            continue
        cols = slice(h * head_dim, (h + 1) * head_dim)
        out[:, cols] = (weight[:, cols].to(wide) * float(g)).to(weight.dtype)
    return out


def fold_bytes(raw: bytes | bytearray, dtype: str, shape, gains, head_dim: int) -> bytes:
    """The fold on a tensor's raw little-endian safetensors bytes."""
    import torch

    t = torch.frombuffer(bytearray(raw), dtype=getattr(torch, SAFETENSORS_TO_TORCH[dtype])).reshape(shape)
    return fold_columns(t, gains, head_dim).contiguous().view(torch.uint8).numpy().tobytes()
