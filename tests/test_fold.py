"""The fold math and the runtime hook agree, and untouched heads keep their bytes."""

import pytest
import torch

from headbake.bake.fold import fold_bytes, fold_columns
from headbake.runtime import apply_gains


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fold_scales_only_the_heads_columns(dtype):
    torch.manual_seed(0)
    w = torch.randn(12, 4 * 8).to(dtype)
    before = w.view(torch.uint8).clone() if dtype != torch.float32 else w.view(torch.int32).clone()
    gains = [1.0, 1.3, 1.0, 1.16]
    out = fold_columns(w, gains, 8)
    assert out.dtype == dtype
    assert torch.equal(out[:, 0:8], w[:, 0:8]) and torch.equal(out[:, 16:24], w[:, 16:24])
    want = (w[:, 8:16].float() * 1.3).to(dtype)
    assert torch.equal(out[:, 8:16], want)
    assert not torch.equal(out[:, 24:32], w[:, 24:32])
    after = w.view(torch.uint8) if dtype != torch.float32 else w.view(torch.int32)
    assert torch.equal(after, before)  # the input's bytes are untouched (the fold returns a new tensor)


def test_fold_bytes_matches_tensor_fold():
    w = torch.randn(6, 16).to(torch.bfloat16)
    raw = w.view(torch.uint8).numpy().tobytes()
    got = fold_bytes(raw, "BF16", (6, 16), [1.5, 1.0], 8)
    assert len(got) == len(raw)
    rows_in, rows_out = raw, bytes(got)
    for r in range(6):  # head 1 (gain 1.0) keeps its bytes, head 0 does not
        assert rows_out[r * 32 + 16:(r + 1) * 32] == rows_in[r * 32 + 16:(r + 1) * 32]
    assert any(rows_out[r * 32:r * 32 + 16] != rows_in[r * 32:r * 32 + 16] for r in range(6))
    back = torch.frombuffer(bytearray(got), dtype=torch.bfloat16).reshape(6, 16)
    assert torch.equal(back, fold_columns(w, [1.5, 1.0], 8))


def test_fold_rejects_wrong_width():
    with pytest.raises(ValueError):
        fold_columns(torch.zeros(4, 10), [1.0, 1.0], 4)


class _Attn(torch.nn.Module):
    def __init__(self, heads, d, hidden):
        super().__init__()
        self.o_proj = torch.nn.Linear(heads * d, hidden, bias=True)


class _Layer(torch.nn.Module):
    def __init__(self, *a):
        super().__init__()
        self.self_attn = _Attn(*a)


class _Toy(torch.nn.Module):
    def __init__(self, layers=2, heads=3, d=4, hidden=5):
        super().__init__()
        self.layers = torch.nn.ModuleList(_Layer(heads, d, hidden) for _ in range(layers))

    def forward(self, x):
        return torch.stack([layer.self_attn.o_proj(x) for layer in self.layers])


def test_hook_equals_fold_in_float64_and_removes_cleanly():
    torch.manual_seed(0)
    model = _Toy().double()
    x = torch.randn(7, 12, dtype=torch.float64)
    gains = [[1.0, 1.3, 1.0], [1.16, 1.0, 2.0]]
    plain = model(x)
    with apply_gains(model, gains, paths=["layers"]):
        hooked = model(x)
    assert torch.equal(model(x), plain)  # hook removed
    folded = _Toy().double()
    folded.load_state_dict(model.state_dict())
    for layer, row in zip(folded.layers, gains):
        w = layer.self_attn.o_proj.weight
        with torch.no_grad():
            w.copy_(fold_columns(w, row, 4))
    # the bias is not scaled: only the W x part changes
    assert torch.allclose(folded(x), hooked, atol=1e-12, rtol=0)
    assert not torch.allclose(hooked, plain)


@pytest.mark.parametrize("dtype,name", [(torch.bfloat16, "BF16"), (torch.float16, "F16"), (torch.float32, "F32")])
def test_numpy_byte_fold_is_bit_identical_to_torch(dtype, name):
    """bake (numpy, no torch) and fold_columns (torch) must round identically, edge values included."""
    torch.manual_seed(1)
    w = (torch.randn(64, 48) * torch.logspace(-30, 30, 48)).to(dtype)
    special = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), 1e-40, -1e-40, 65504.0, 3.3e38, 1e-45])
    w[0, : len(special)] = special.to(dtype)
    w[1, 16 : 16 + len(special)] = special.to(dtype)
    gains = [1.16, 1.0, 1.3]
    raw = w.contiguous().view(torch.uint8).numpy().tobytes()
    got = fold_bytes(raw, name, tuple(w.shape), gains, 16)
    want = fold_columns(w, gains, 16).contiguous().view(torch.uint8).numpy().tobytes()
    assert got == want


def test_nan_stays_nan():
    # NaN payloads differ between torch's scalar and vector paths; only NaN-ness is specified.
    w = torch.full((2, 4), float("nan"), dtype=torch.bfloat16)
    raw = w.view(torch.uint8).numpy().tobytes()
    back = torch.frombuffer(bytearray(fold_bytes(raw, "BF16", (2, 4), [1.3, 1.0], 2)), dtype=torch.bfloat16)
    assert torch.isnan(back).all()
