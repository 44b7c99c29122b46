"""The bounded noise-floor reference: same logits as the full wide cast, weights untouched, offloading too."""

from __future__ import annotations

import hashlib

import pytest
import torch

from headbake.runtime import apply_gains
from headbake.bake.reference import plan_upcast, reference_dtype, upcast_forward

GAINS = [[1.0, 1.16, 1.0, 1.0], [1.3, 1.0, 1.0, 1.3], [1.0] * 4, [1.0, 1.0, 1.16, 1.0]]


@pytest.fixture(scope="module")
def tiny_fp16(tmp_path_factory):
    from headbake.demo import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("models") / "tiny-fp16", dtype="float16", seed=2)


@pytest.fixture(scope="module")
def inputs(tiny_bf16):
    from transformers import AutoProcessor

    from headbake.data.prompts import build_inputs
    from headbake.data.samples import synthetic_samples

    processor = AutoProcessor.from_pretrained(str(tiny_bf16))
    return dict(build_inputs(processor, synthetic_samples(3, seed=1234)))


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


def load(path, device="cpu", **kwargs):
    import transformers

    model = transformers.AutoModelForImageTextToText.from_pretrained(str(path), dtype="auto", **kwargs).eval()
    return model if "device_map" in kwargs else model.to(device)


def on(inputs, device):
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode() + str(t.dtype).encode())
        h.update(t.detach().contiguous().view(torch.uint8).cpu().numpy().tobytes())
    return h.hexdigest()


def logits(model, inputs, gains=GAINS):
    with torch.no_grad(), apply_gains(model, gains):
        return model(**inputs, logits_to_keep=16).logits


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("which", ["tiny_bf16", "tiny_fp16", "tiny_fp32"])
def test_bounded_reference_equals_the_full_cast_bit_for_bit(which, device, inputs, request):
    path = request.getfixturevalue(which)
    inputs = on(inputs, device)
    model = load(path, device)
    stored = model.dtype
    wide = reference_dtype(stored)
    before = weights_digest(model)
    hooked = logits(model, inputs)
    with upcast_forward(model) as plan:
        bounded = logits(model, inputs)
    assert weights_digest(model) == before, "weights changed"
    assert {p.dtype for p in model.parameters()} == {stored}
    assert torch.equal(logits(model, inputs), hooked), "the stored-dtype model changed"
    full = logits(load(path, device).to(wide), inputs)
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


@pytest.mark.parametrize("device", DEVICES)
def test_offloaded_model_gives_the_same_reference(tiny_bf16, inputs, tmp_path, device):
    """accelerate offload (max_memory far below the model): the same bits as the unconstrained full cast.

    On CPU every weight goes to disk; on CUDA the GPU holds almost nothing and runs modules loaded from CPU/disk.
    """
    from headbake.devices import input_device

    limits = {"cpu": 1000} if device == "cpu" else {0: 150_000, "cpu": 150_000}
    model = load(tiny_bf16, device_map="auto", max_memory=limits, offload_folder=str(tmp_path / "off"))
    assert "disk" in set(model.hf_device_map.values())
    assert input_device(model).type == device
    inputs = on(inputs, input_device(model))
    hooked = logits(model, inputs)
    with upcast_forward(model):
        bounded = logits(model, inputs)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.equal(logits(model, inputs), hooked)
    full = logits(load(tiny_bf16, device).to(torch.float32), inputs)
    assert torch.equal(bounded.to(full.device), full)


def test_plan_keeps_pixel_dtype_resident_but_not_the_embedding(tiny_bf16):
    model = load(tiny_bf16)
    plan = plan_upcast(model, torch.float32)
    residents = {(type(m).__name__, n) for m, n in plan.residents}
    assert ("Conv3d", "weight") in residents  # visual.dtype: pixel_values are cast to it before any unit runs
    assert not any(kind == "Embedding" for kind, _ in residents)
    assert not any(type(m).__name__ == "ModuleList" for _, m in plan.units)
