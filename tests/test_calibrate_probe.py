"""The probe must reproduce eager attention's own weights, summed over image tokens."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from headbake.errors import HeadbakeError  # noqa: E402

TOL = 1e-5


@pytest.fixture(scope="module")
def fp32_models(tiny_fp32):
    """(sdpa model, eager model, processor) of the float32 tiny Qwen2.5-VL (4 heads over 2 KV heads: GQA)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    kw = dict(dtype="auto", use_safetensors=True)
    sdpa = AutoModelForImageTextToText.from_pretrained(tiny_fp32, attn_implementation="sdpa", **kw).eval()
    eager = AutoModelForImageTextToText.from_pretrained(tiny_fp32, attn_implementation="eager", **kw).eval()
    proc = AutoProcessor.from_pretrained(tiny_fp32)
    assert sdpa.config.text_config.num_key_value_heads < sdpa.config.text_config.num_attention_heads
    return sdpa, eager, proc


def _samples():
    """Different question lengths and image counts, so the batch is left-padded unevenly."""
    from headbake.data.samples import Sample, synthetic_samples

    s = synthetic_samples(4, seed=3)
    return [
        s[0],
        Sample(s[1].image, "Why?", "short"),
        Sample([s[2].image, s[3].image], s[2].question + " Compare both images carefully, one after the other.", "two"),
        Sample(s[3].image.resize((90, 60)), s[3].question, "small"),
    ]


def _eager_sv(eager, inputs, positions, vis):
    """Per-sample S_v [B, layers, heads] from output_attentions=True (the reference)."""
    with torch.no_grad():
        out = eager(**inputs, output_attentions=True, use_cache=False)
    per_layer = []
    for att in out.attentions:  # [B, H, L, L]
        rows = torch.stack([att[b, :, positions[b], :] for b in range(att.shape[0])])  # [B, H, P, L]
        per_layer.append((rows.double() * vis[:, None, None, :].double()).sum(-1).mean(-1))
    return torch.stack(per_layer, 1)


@pytest.fixture(scope="module")
def padded(fp32_models):
    from headbake.calibrate.probe import visual_positions
    from headbake.model.info import visual_token_ids
    from headbake.data.prompts import build_inputs

    sdpa, _, proc = fp32_models
    inputs = build_inputs(proc, _samples())
    lengths = inputs["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == len(lengths), "test batch must have different lengths"
    vis = visual_positions(inputs["input_ids"], visual_token_ids(sdpa.config))
    assert len(set(vis.sum(1).tolist())) > 1  # different image-token counts too
    return inputs, vis


@pytest.mark.parametrize("method", ["registry", "hooks"])
@pytest.mark.parametrize("query_positions", [(-1,), (-1, -3, -7)])
def test_probe_equals_eager_padded(fp32_models, padded, method, query_positions):
    from headbake.calibrate import visual_attention_ratio
    from headbake.calibrate.probe import probe_batch

    sdpa, eager, _ = fp32_models
    inputs, vis = padded
    length = inputs["input_ids"].shape[1]
    pos = [[length + p for p in query_positions]] * inputs["input_ids"].shape[0]
    ref = _eager_sv(eager, inputs, pos, vis)
    got = probe_batch(sdpa, inputs, torch.tensor(pos), visual_mask=vis, method=method)
    assert got.dtype == torch.float32 and got.shape == ref.shape == (4, 4, 4)
    assert (got.double() - ref).abs().max().item() < TOL
    mean = visual_attention_ratio(sdpa, inputs, query_positions=query_positions, method=method)
    assert mean.shape == (4, 4) and mean.dtype == torch.float32
    assert (mean.double() - ref.mean(0)).abs().max().item() < TOL
    # S_v is a share: between 0 and 1, and not degenerate.
    assert 0 < float(mean.min()) and float(mean.max()) < 1


def test_padded_batch_equals_each_sample_alone(fp32_models, padded):
    """Left padding must not change any sample's S_v (it does if the mask function is not registered)."""
    from headbake.calibrate import visual_attention_ratio
    from headbake.calibrate.probe import probe_batch
    from headbake.data.prompts import build_inputs

    sdpa, _, proc = fp32_models
    inputs, vis = padded
    length = inputs["input_ids"].shape[1]
    per_sample = probe_batch(sdpa, inputs, torch.full((4, 1), length - 1), visual_mask=vis)
    for i, sample in enumerate(_samples()):
        alone = build_inputs(proc, [sample])
        assert bool(alone["attention_mask"].all())
        assert (per_sample[i] - visual_attention_ratio(sdpa, alone)).abs().max().item() < TOL


def test_probe_changes_nothing_and_restores(fp32_models, padded):
    """Outputs identical to plain sdpa (vision tower passed through), implementation restored."""
    from headbake.calibrate.probe import PROBE_NAME, _AttnSwitch, register_probe, visual_attention_ratio

    sdpa, _, _ = fp32_models
    inputs, _ = padded
    with torch.no_grad():
        plain = sdpa(**inputs, use_cache=False).logits
    register_probe()
    with _AttnSwitch(sdpa, PROBE_NAME):
        assert sdpa.config._attn_implementation == PROBE_NAME
        assert sdpa.config.vision_config._attn_implementation == PROBE_NAME
        with torch.no_grad():
            probed = sdpa(**inputs, use_cache=False).logits
    assert torch.equal(plain, probed)
    for method in ("registry", "hooks"):
        visual_attention_ratio(sdpa, inputs, method=method)
        assert sdpa.config._attn_implementation == "sdpa"
        assert sdpa.config.text_config._attn_implementation == "sdpa"
        assert sdpa.config.vision_config._attn_implementation == "sdpa"


def test_unpadded_single_sample(fp32_models):
    from headbake.calibrate import visual_attention_ratio
    from headbake.calibrate.probe import visual_positions
    from headbake.model.info import visual_token_ids
    from headbake.data.prompts import build_inputs

    sdpa, eager, proc = fp32_models
    inputs = build_inputs(proc, _samples()[:1])
    assert bool(inputs["attention_mask"].all())
    vis = visual_positions(inputs["input_ids"], visual_token_ids(sdpa.config))
    length = inputs["input_ids"].shape[1]
    ref = _eager_sv(eager, inputs, [[length - 1, length - 2]], vis)
    got = visual_attention_ratio(sdpa, inputs, query_positions=(-1, -2))
    assert (got.double() - ref[0]).abs().max().item() < TOL
    # Absolute indices are the same positions.
    got_abs = visual_attention_ratio(sdpa, inputs, query_positions=(length - 1, length - 2))
    assert torch.equal(got, got_abs)
    # An explicit visual mask with no image positions gives a clear error, not zeros.
    with pytest.raises(HeadbakeError, match="no image tokens"):
        visual_attention_ratio(sdpa, inputs, visual_mask=torch.zeros_like(vis))


def test_probe_rejects_padding_rows(fp32_models, padded):
    from headbake.calibrate import visual_attention_ratio

    sdpa, _, _ = fp32_models
    inputs, _ = padded
    shortest = int(inputs["attention_mask"].sum(1).min())
    length = inputs["input_ids"].shape[1]
    with pytest.raises(HeadbakeError, match="padding"):
        visual_attention_ratio(sdpa, inputs, query_positions=(-(shortest + 1),))
    with pytest.raises(HeadbakeError, match="outside"):
        visual_attention_ratio(sdpa, inputs, query_positions=(length,))


def test_generated_k_positions_match_eager(fp32_models, padded):
    """generated-k: greedy tokens appended, rows at the generated positions, EOS tail excluded."""
    from headbake.calibrate.probe import probe_batch
    from headbake.calibrate.queries import generated_inputs

    sdpa, eager, _ = fp32_models
    inputs, _ = padded
    plen = inputs["input_ids"].shape[1]
    ext, positions, weights = generated_inputs(sdpa, inputs, 3)
    assert ext["input_ids"].shape[1] == plen + positions.shape[1]
    assert torch.equal(ext["input_ids"][:, :plen], inputs["input_ids"])
    assert positions[0].tolist() == list(range(plen, plen + positions.shape[1]))
    with torch.no_grad():
        ref_tokens = sdpa.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert torch.equal(ref_tokens[:, plen:plen + positions.shape[1]], ext["input_ids"][:, plen:])
    from headbake.calibrate.probe import visual_positions
    from headbake.model.info import visual_token_ids

    vis = visual_positions(ext["input_ids"], visual_token_ids(sdpa.config))
    got = probe_batch(sdpa, ext, positions, weights, visual_mask=vis)
    with torch.no_grad():
        out = eager(**ext, output_attentions=True, use_cache=False)
    for l, att in enumerate(out.attentions):
        for b in range(att.shape[0]):
            keep = [p for p, w in zip(positions[b].tolist(), weights[b].tolist()) if w > 0]
            want = (att[b, :, keep, :].double() * vis[b].double()).sum(-1).mean(-1)
            assert (got[b, l].double() - want).abs().max().item() < TOL


def test_bf16_probe_close_to_eager(tiny_bf16):
    """bf16: the probe computes in float32, eager rounds its weights to bf16; they agree to bf16 precision."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from headbake.calibrate import visual_attention_ratio
    from headbake.data.prompts import build_inputs

    kw = dict(dtype="auto", use_safetensors=True)
    model = AutoModelForImageTextToText.from_pretrained(tiny_bf16, **kw).eval()
    eager = AutoModelForImageTextToText.from_pretrained(tiny_bf16, attn_implementation="eager", **kw).eval()
    proc = AutoProcessor.from_pretrained(tiny_bf16)
    inputs = build_inputs(proc, _samples()[:2])
    got = visual_attention_ratio(model, inputs)
    from headbake.calibrate.probe import visual_positions
    from headbake.model.info import visual_token_ids

    vis = visual_positions(inputs["input_ids"], visual_token_ids(model.config))
    length = inputs["input_ids"].shape[1]
    ref = _eager_sv(eager, inputs, [[length - 1]] * 2, vis).mean(0)
    assert got.dtype == torch.float32
    assert (got.double() - ref).abs().max().item() < 2e-2


@pytest.mark.parametrize("behaviour", ["raises", "ignores"])
def test_auto_falls_back_to_hooks_when_registry_is_bypassed(fp32_models, padded, monkeypatch, behaviour):
    """A model that cannot (raises) or silently does not (ignores) switch to the probe gets the hooks path."""
    from headbake.calibrate.probe import PROBE_NAME, probe_batch

    sdpa, eager, _ = fp32_models
    inputs, vis = padded
    real = sdpa.set_attn_implementation

    def switch(name, *a, **kw):
        if name == PROBE_NAME:
            if behaviour == "raises":
                raise ValueError("custom attention not supported")
            return None
        return real(name, *a, **kw)

    monkeypatch.setattr(sdpa, "set_attn_implementation", switch)
    length = inputs["input_ids"].shape[1]
    pos = [[length - 1, length - 2]] * 4
    got = probe_batch(sdpa, inputs, torch.tensor(pos), visual_mask=vis, method="auto")
    ref = _eager_sv(eager, inputs, pos, vis)
    assert (got.double() - ref).abs().max().item() < TOL
    assert sdpa.config._attn_implementation == "sdpa"
    if behaviour == "raises":
        with pytest.raises(HeadbakeError, match="cannot switch"):
            probe_batch(sdpa, inputs, torch.tensor(pos), visual_mask=vis, method="registry")
    else:
        with pytest.raises(HeadbakeError, match="saw 0 of 4 decoder layers"):
            probe_batch(sdpa, inputs, torch.tensor(pos), visual_mask=vis, method="registry")
