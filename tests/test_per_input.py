"""Per-input selection on a tiny Qwen2.5-VL whose attention is known by construction.

Every decoder layer's q/k projections are set to zero weights plus a bias, so
attention does not depend on the hidden states at all:

* "uniform" heads (query bias 0): every real token gets the same score, so at
  the last prompt token S_v = image tokens / real tokens of that input -- high
  for a large image with a short question, low for a small image with a long one;
* "self" heads (query and key bias large on the fastest RoPE pair): the last
  token attends to itself, so S_v ~ 0 on every input.

With l_perc=1, l_reas=2 the rule makes the uniform heads of layers 0-1
perceptual on exactly the inputs whose image share reaches tau_perc, and the
self heads of layers 2-3 reasoning on every input; the agreement figures
follow from the image shares alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headbake.calibrate.selection import Params
from headbake.errors import HeadbakeError
from headbake.data.samples import Sample

UNIFORM, SELF = (0, 1), (2, 3)  # query heads 0,1 share KV head 0; 2,3 share KV head 1
BIG = 40.0


@pytest.fixture(scope="module")
def constructed(tiny_fp32):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_fp32, dtype=torch.float32,
                                                        attn_implementation="sdpa").eval()
    cfg = model.config.get_text_config()
    d = cfg.hidden_size // cfg.num_attention_heads
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            att = layer.self_attn
            att.q_proj.weight.zero_()
            att.k_proj.weight.zero_()
            qb = torch.zeros(cfg.num_attention_heads, d)
            kb = torch.zeros(cfg.num_key_value_heads, d)
            kb[:, 0] = kb[:, d // 2] = BIG  # the RoPE pair (0, d/2) turns fastest: one radian per position
            for h in SELF:
                qb[h, 0] = qb[h, d // 2] = BIG
            att.q_proj.bias.copy_(qb.flatten())
            att.k_proj.bias.copy_(kb.flatten())
    return model, AutoProcessor.from_pretrained(tiny_fp32), tiny_fp32


def _samples():
    from PIL import Image

    big, small = Image.new("RGB", (112, 112), (200, 30, 30)), Image.new("RGB", (28, 28), (30, 30, 200))
    short, long = "How many?", "Describe every shape, every colour and every position you can see, step by step, twice."
    # image share differs per sample: big+short high, small+long low, the others in between
    return [Sample(big, short, "t"), Sample(small, long, "t"), Sample(big, long, "t"), Sample(small, short, "t"),
            Sample(big, short + " Why?", "t"), Sample(small, long + " Again.", "t")]


def _shares(model, proc, samples):
    """Image tokens / real tokens per sample, counted from the processor output alone."""
    from headbake.calibrate.probe import visual_positions
    from headbake.model.info import visual_token_ids
    from headbake.data.prompts import build_inputs

    ids = visual_token_ids(model.config)
    inp = build_inputs(proc, samples)
    vis = visual_positions(inp["input_ids"], ids)
    return (vis.sum(1).double() / inp["attention_mask"].sum(1).double()).numpy()


def _params(tau_perc):
    return Params(l_perc=1, l_reas=2, tau_perc=float(tau_perc), tau_reas=0.01, g_perc=1.16, g_reas=1.3)


U = {(l, h) for l in (0, 1) for h in UNIFORM}
R = {(l, h) for l in (2, 3) for h in SELF}


def test_construction_gives_the_intended_s_v(constructed):
    from headbake.calibrate.probe import probe_batch
    from headbake.calibrate.queries import QuerySpec, prompt_positions
    from headbake.data.prompts import build_inputs

    model, proc, _ = constructed
    samples = _samples()
    rho = _shares(model, proc, samples)
    assert rho.max() - rho.min() > 0.1  # the inputs really differ in image share
    inp = build_inputs(proc, samples)
    pos, w = prompt_positions(inp, QuerySpec("last", 1))
    sv = probe_batch(model, inp, pos, w).double().numpy()  # [B, layers, heads]
    for h in UNIFORM:
        np.testing.assert_allclose(sv[:, :, h], np.repeat(rho[:, None], sv.shape[1], 1), rtol=1e-5)
    for h in SELF:
        assert sv[:, :, h].max() < 1e-3


def test_agreement_figures_match_the_construction(constructed, tmp_path):
    import json

    from headbake.calibrate.run import CalibrateOptions, calibrate

    model, proc, path = constructed
    samples = _samples()
    rho = _shares(model, proc, samples)
    n = len(samples)
    # tau between the shares: the top 2 of 6 inputs reach it, the mean stays below it.
    order = np.sort(rho)
    tau = (order[-2] + order[-3]) / 2
    assert rho.mean() < tau
    high = rho >= tau
    f = high.mean()
    lines = []
    for i, s in enumerate(samples):
        s.image.save(tmp_path / f"{i}.png")
        lines.append(json.dumps({"image": f"{i}.png", "question": s.question}))
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    o = CalibrateOptions(model=str(path), preset="demo", data=str(tmp_path / "d.jsonl"), batch_size=4,
                         bootstrap_rounds=0, progress=False, **_params(tau).as_dict())
    doc = calibrate(o, model=model, processor=proc)
    static = {tuple(x) for x in doc["selected"]["perceptual"]} | {tuple(x) for x in doc["selected"]["reasoning"]}
    assert static == R  # the mean share is below tau: only the self heads are static
    ag = doc["agreement"]
    u, r = len(U), len(R)
    expected_jaccard = np.mean([r / (r + u) if h else 1.0 for h in high])
    assert ag["mean_jaccard"] == pytest.approx(expected_jaccard)
    assert ag["coverage"] == pytest.approx(r / (r + u * f))
    q = np.asarray(ag["qualify_fraction"])
    for l in range(4):
        for h in range(4):
            want = f if (l, h) in U else 1.0 if (l, h) in R else 0.0
            assert q[l, h] == pytest.approx(want), (l, h)
    assert ag["static_selected"] == r and ag["static_qualify_half"] == r
    assert ag["summary"].startswith(f"The static bake covers {100 * r / (r + u * f):.0f}% of the heads")
    assert f"{r} of its {r} heads qualify on at least half of the inputs" in ag["summary"]
    # token statistics of the same run
    img = doc["tokens"]["image_tokens"]
    assert img["n"] == n and img["min"] < img["max"]


def test_per_input_hook_selects_per_sample_in_one_batch(constructed):
    from headbake.calibrate.per_input import apply_per_input
    from headbake.data.prompts import build_inputs

    model, proc, _ = constructed
    samples = _samples()
    rho = _shares(model, proc, samples)
    tau = np.sort(rho)[-3] / 2 + np.sort(rho)[-2] / 2
    with apply_per_input(model, _params(tau)) as handle:
        with torch.no_grad():
            model(**build_inputs(proc, samples))
        sel = handle.selected()
        gains = handle.gains
    assert len(sel) == len(samples) and tuple(gains.shape) == (len(samples), 4, 4)
    for b, s in enumerate(sel):
        assert {tuple(x) for x in s["perceptual"]} == (U if rho[b] >= tau else set())
        assert {tuple(x) for x in s["reasoning"]} == R
    # removed: the model is back to its own attention and no hook remains
    assert all(not m._forward_pre_hooks for m in model.modules())
    assert model.config._attn_implementation == "sdpa"


def test_per_input_equals_static_when_every_input_selects_the_same_set(constructed):
    from headbake.runtime import apply_gains
    from headbake.calibrate.per_input import apply_per_input
    from headbake.data.prompts import build_inputs

    model, proc, _ = constructed
    samples = _samples()
    rho = _shares(model, proc, samples)
    params = _params(rho.min() / 2)  # every input reaches tau_perc: every input selects U and R
    static = [[params.g_perc if (l, h) in U else params.g_reas if (l, h) in R else 1.0 for h in range(4)]
              for l in range(4)]
    inputs = build_inputs(proc, samples)
    with torch.no_grad():
        plain = model(**inputs).logits
        with apply_gains(model, static):
            want = model(**inputs).logits
            want_gen = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        with apply_per_input(model, params) as handle:
            got = model(**inputs).logits
            got_gen = model.generate(**inputs, max_new_tokens=6, do_sample=False)
            assert handle.gains.tolist() == [static] * len(samples)  # kept through the decode steps
    assert (want - plain).abs().max() > 1e-3  # the gains do something
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert torch.equal(got_gen, want_gen)


def test_per_input_refuses_what_it_cannot_do(constructed):
    from headbake.calibrate.per_input import apply_per_input
    from headbake.data.prompts import build_inputs

    model, proc, _ = constructed
    with pytest.raises(HeadbakeError, match="last or last-k"):
        apply_per_input(model, _params(0.1), query="generated-k", k=2)
    with pytest.raises(HeadbakeError, match="outside the model's decoder layers"):
        apply_per_input(model, Params(9, 2, 0.1, 0.01, 1.16, 1.3))
    inputs = build_inputs(proc, _samples()[:2])
    right = dict(inputs)
    right["attention_mask"] = inputs["attention_mask"].flip(1)  # a padded last position
    with apply_per_input(model, _params(0.1)):
        with pytest.raises(HeadbakeError, match="left-padded"):
            with torch.no_grad():
                model(**right)
