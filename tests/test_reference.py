"""The bounded noise-floor reference: same logits as the full wide cast, weights untouched, offloading too."""

from __future__ import annotations

import hashlib

import pytest
import torch

from headbake.bake.hook import apply_gains
from headbake.bake.reference import plan_upcast, reference_dtype, upcast_forward

GAINS = [[1.0, 1.16, 1.0, 1.0], [1.3, 1.0, 1.0, 1.3], [1.0] * 4, [1.0, 1.0, 1.16, 1.0]]


@pytest.fixture(scope="module")
def tiny_fp16(tmp_path_factory):
    from headbake.demo import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("models") / "tiny-fp16", dtype="float16", seed=2)


@pytest.fixture(scope="module")
def inputs(tiny_bf16):
    from transformers import AutoProcessor

    from headbake.prompts import build_inputs
    from headbake.samples import synthetic_samples

    processor = AutoProcessor.from_pretrained(str(tiny_bf16))
    return dict(build_inputs(processor, synthetic_samples(3, seed=1234)))


def load(path, **kwargs):
    import transformers

    return transformers.AutoModelForImageTextToText.from_pretrained(str(path), dtype="auto", **kwargs).eval()


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode() + str(t.dtype).encode())
        h.update(t.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def logits(model, inputs, gains=GAINS):
    with torch.no_grad(), apply_gains(model, gains):
        return model(**inputs, logits_to_keep=16).logits


@pytest.mark.parametrize("which", ["tiny_bf16", "tiny_fp16", "tiny_fp32"])
def test_bounded_reference_equals_the_full_cast_bit_for_bit(which, inputs, request):
    path = request.getfixturevalue(which)
    model = load(path)
    stored = model.dtype
    wide = reference_dtype(stored)
    before = weights_digest(model)
    hooked = logits(model, inputs)
    with upcast_forward(model) as plan:
        bounded = logits(model, inputs)
    assert weights_digest(model) == before, "weights changed"
    assert {p.dtype for p in model.parameters()} == {stored}
    assert torch.equal(logits(model, inputs), hooked), "the stored-dtype model changed"
    full = logits(load(path).to(wide), inputs)
    assert bounded.dtype == full.dtype == wide
    assert torch.equal(bounded, full), f"max |diff| {(bounded - full).abs().max():.3g}"
    # the floor is real: the stored-dtype logits are measurably off the wide ones
    assert (full - hooked.to(wide)).abs().max() > 0
    # bounded: decoder layers are upcast one at a time, far below a second copy of the model
    names = [n for n, _ in plan.units]
    assert "model.language_model.layers.0" in names and "lm_head" in names
    wide_model = sum(p.numel() for p in model.parameters()) * torch.empty((), dtype=wide).element_size()
    assert plan.extra_bytes < wide_model / 3


def test_weights_are_restored_when_the_forward_fails(tiny_bf16, inputs):
    model = load(tiny_bf16)
    before = weights_digest(model)
    o_proj = model.model.language_model.layers[2].self_attn.o_proj
    seen = []

    def boom(module, args):
        seen.append(module.weight.dtype)  # inside its decoder layer's forward: the unit is wide
        raise RuntimeError("boom")

    h = o_proj.register_forward_pre_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"), upcast_forward(model):
            logits(model, inputs)
    finally:
        h.remove()
    assert seen == [torch.float32]
    assert weights_digest(model) == before
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert not any(m._forward_hooks for m in model.modules())


def test_offloaded_model_gives_the_same_reference(tiny_bf16, inputs, tmp_path):
    """accelerate disk offload (max_memory far below the model): the same bits as the unconstrained full cast."""
    model = load(tiny_bf16, device_map="auto", max_memory={"cpu": 1000}, offload_folder=str(tmp_path / "off"))
    assert set(model.hf_device_map.values()) == {"disk"}
    hooked = logits(model, inputs)
    with upcast_forward(model):
        bounded = logits(model, inputs)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.equal(logits(model, inputs), hooked)
    full = logits(load(tiny_bf16).to(torch.float32), inputs)
    assert torch.equal(bounded, full)


def test_plan_keeps_pixel_dtype_resident_but_not_the_embedding(tiny_bf16):
    model = load(tiny_bf16)
    plan = plan_upcast(model, torch.float32)
    residents = {(type(m).__name__, n) for m, n in plan.residents}
    assert ("Conv3d", "weight") in residents  # visual.dtype: pixel_values are cast to it before any unit runs
    assert not any(kind == "Embedding" for kind, _ in residents)
    assert not any(type(m).__name__ == "ModuleList" for _, m in plan.units)
