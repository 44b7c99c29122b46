"""The fold: scaling head h's output by g before o_proj == scaling W's columns of head h.

``o_proj(x) = W x (+ b)`` with ``x = concat(head_0 .. head_{H-1})``, so
``W (g * x_h)`` equals ``(g * W[:, h*d:(h+1)*d]) x_h``. The bias is outside
the sum and is not scaled. The product is formed in float32 (float64 for
float64 weights) and rounded once to the stored dtype; heads with gain 1.0
keep their exact bytes.

Two implementations of the same arithmetic: ``fold_columns`` on torch
tensors (for code that already holds a model) and ``fold_bytes`` on raw
safetensors bytes with numpy, so that baking never imports torch (saving
seconds of start-up and hundreds of MB of RSS). Tests hold them bit-equal.
"""

from __future__ import annotations

import numpy as np

_NUMPY = {"F32": np.float32, "F16": np.float16}
DTYPE_MAX = {"F16": 65504.0, "BF16": 3.3895313892515355e38, "F32": 3.4028234663852886e38}


class FoldOverflow(ValueError):
    """A head whose folded columns would not fit the stored dtype (they would become inf)."""
    def __init__(self, head: int, gain: float, amax: float, product: float, dtype: str):
        self.head, self.gain, self.amax, self.product, self.dtype = head, gain, amax, product, dtype
        super().__init__(
            f"head {head}: max |W[:, cols]| = {amax:.4g} times gain {gain:.6g} = {product:.4g} overflows "
            f"{dtype} (largest finite {DTYPE_MAX[dtype]:.4g})"
        )


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


def _bf16_to_f32(u16: np.ndarray) -> np.ndarray:
    return (u16.astype(np.uint32) << 16).view(np.float32)


def _f32_to_bf16(f: np.ndarray) -> np.ndarray:
    """Round to nearest even, as torch does (NaN payloads are not specified: any NaN stays NaN)."""
    u = f.view(np.uint32)
    rounded = ((u + (((u >> 16) & 1) + 0x7FFF)) >> 16).astype(np.uint16)
    return np.where(np.isnan(f), np.uint16(0x7FC0), rounded)


def _decode(raw, dtype: str, rows: int, cols: int) -> np.ndarray:
    if dtype == "BF16":
        return np.frombuffer(raw, dtype="<u2").reshape(rows, cols)
    if dtype in _NUMPY:
        return np.frombuffer(raw, dtype=np.dtype(_NUMPY[dtype]).newbyteorder("<")).reshape(rows, cols)
    raise ValueError(f"cannot fold {dtype} weights")


def nonfinite_count(raw: bytes | bytearray, dtype: str) -> int:
    """How many inf/NaN values a tensor's raw bytes hold (a damaged or hostile source)."""
    if dtype == "BF16":
        u = np.frombuffer(raw, dtype="<u2")
        return int(np.count_nonzero((u & 0x7F80) == 0x7F80))  # exponent all ones
    if dtype not in _NUMPY:
        raise ValueError(f"cannot read {dtype} weights")
    return int(np.count_nonzero(~np.isfinite(np.frombuffer(raw, dtype=np.dtype(_NUMPY[dtype]).newbyteorder("<")))))


def _check_head(block: np.ndarray, dtype: str, h: int, g: float) -> None:
    """Raise FoldOverflow if max |finite W| x g (in float32, as the fold computes it) rounds to inf in
    ``dtype``. Rounding is monotonic, so the largest element overflows iff any element does."""
    f = _bf16_to_f32(block) if dtype == "BF16" else block.astype(np.float32)
    a = np.abs(f)
    amax = np.float32(np.max(a, where=np.isfinite(a), initial=0.0))
    prod = amax * np.float32(g)
    stored = {"BF16": lambda x: _bf16_to_f32(_f32_to_bf16(np.array([x], np.float32)))[0],
              "F16": np.float16, "F32": np.float32}[dtype](prod)
    if np.isinf(stored) or np.isinf(np.float32(g)):
        raise FoldOverflow(h, g, float(amax), float(prod), dtype)


def fold_bytes(raw: bytes | bytearray, dtype: str, shape, gains, head_dim: int, *, check: bool = False) -> bytes:
    """The fold on a tensor's raw little-endian safetensors bytes (numpy only).

    ``check`` raises ``FoldOverflow`` before any head is scaled if a gain would
    push a finite weight to inf in the stored dtype (values that already are
    inf/NaN stay so; see ``nonfinite_count``).
    """
    rows, cols = int(shape[0]), int(shape[1])
    if cols != len(gains) * head_dim:
        raise ValueError(f"o_proj has {cols} input columns, expected {len(gains)} x {head_dim}")
    w = _decode(raw, dtype, rows, cols).copy()
    with np.errstate(over="ignore", invalid="ignore"):  # inf stays inf, as in torch
        if check:
            for h, g in enumerate(gains):
                if g != 1.0:
                    _check_head(w[:, h * head_dim:(h + 1) * head_dim], dtype, h, g)
        _scale_heads(w, dtype, gains, head_dim)
    return w.tobytes()


def _scale_heads(w: np.ndarray, dtype: str, gains, head_dim: int) -> None:
    for h, g in enumerate(gains):
        if g == 1.0:
            continue
        sl = slice(h * head_dim, (h + 1) * head_dim)
        if dtype == "BF16":
            w[:, sl] = _f32_to_bf16(_bf16_to_f32(w[:, sl]) * np.float32(g))
        else:
            w[:, sl] = (w[:, sl].astype(np.float32) * np.float32(g)).astype(w.dtype)
