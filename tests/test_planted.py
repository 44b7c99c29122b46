"""The planted model does what tests/planted.py says it does: checked by running it, not by trusting the design."""

from __future__ import annotations

import pytest

import planted as P

BEST_FIXED = {"yn-00", "yn-01", "yn-02", "yn-03", "mc-00", "mc-01", "mc-02", "mc-03", "mc-04"}
VICTIMS = {"yn-11", "yn-12"}  # the green-cyan rows the nuisance heads break


def test_design_has_one_best_selection():
    found = P.search_design()
    best = found[(frozenset({"P"}), frozenset({"R"}))][0]
    others = {k: v[0] for k, v in found.items() if k != (frozenset({"P"}), frozenset({"R"}))}
    assert best == 22
    assert max(others.values()) == 20  # every other head set, at its own best gains, is worse
    assert len(P.predicted_correct(P.unit_gains())) == 13
    cells = P.best_gain_cells()
    assert (1.25, 1.30) in cells and (1.25, 1.0) not in cells and (1.4, 1.3) not in cells
    assert min(g for g, _ in cells) == pytest.approx(1.19) and max(g for g, _ in cells) == pytest.approx(1.31)


def test_scenarios_state_the_known_rows():
    sc = P.scenarios()
    assert sc["best"].fixed == BEST_FIXED and not sc["best"].broken
    assert P.in_best_selection(sc["best"].params)
    assert sc["perceptual_only"].fixed == {"yn-00", "yn-01", "yn-02", "yn-03", "mc-04"}
    assert sc["reasoning_only"].fixed == {"mc-04"}
    for name in ("with_distractor", "reasoning_too_shallow"):
        assert sc[name].fixed == BEST_FIXED and sc[name].broken == VICTIMS
        assert not P.in_best_selection(sc[name].params)
    assert sc["perceptual_too_strong"].broken == {"yn-06", "yn-07", "mc-06", "mc-07"}
    # the rule's selection on the design S_v: P perceptual, R reasoning, nothing else
    g = sc["best"].gains
    changed = {(l, h) for l in range(P.LAYERS) for h in range(P.HEADS) if g[l][h] != 1.0}
    assert changed == {P.ROLE["P"], P.ROLE["R"]}


@pytest.fixture(scope="module")
def loaded(planted):
    model, processor = P.load(planted.model_dir)
    return model, processor, P.eval_rows(planted)


def test_real_model_answers_as_designed(loaded):
    from headbake.runtime import apply_gains

    model, processor, rows = loaded
    spec = {s.id: s for s in P.ROW_SPECS}
    for name, sc in P.scenarios().items():
        with apply_gains(model, sc.gains):
            margins = P.forced_margins(model, processor, rows)
        right = {r.id for m, r in zip(margins, rows) if (m > 0) == (r.answer in ("yes", "A"))}
        assert right == set(sc.correct), name
        for m, r in zip(margins, rows):  # one design unit is 8 logits; deeper layers drift a little with gain
            assert m / 8 == pytest.approx(P.design_margin(spec[r.id], sc.gains), abs=0.01, rel=0.02), (name, r.id)


def test_gain_region_on_the_real_model(loaded):
    """Inside the design's best region the model gets 22 rows; just outside it fewer."""
    from headbake.runtime import apply_gains

    model, processor, rows = loaded
    yes = [r.answer in ("yes", "A") for r in rows]
    for (gp, gr), expect in (((1.21, 1.33), 22), ((1.29, 1.25), 22), ((1.12, 1.3), 18), ((1.25, 1.5), 20)):
        gains = P.gains_for(dict(P.BEST_PARAMS, g_perc=gp, g_reas=gr))
        assert len(P.predicted_correct(gains)) == expect
        with apply_gains(model, gains):
            margins = P.forced_margins(model, processor, rows)
        assert sum((m > 0) == y for m, y in zip(margins, yes)) == expect, (gp, gr)


def test_measured_sv_selects_the_planted_heads(loaded):
    from PIL import Image

    from headbake.calibrate.probe import visual_attention_ratio
    from headbake.calibrate.selection import Params, select_heads
    from headbake.data.prompts import build_inputs
    from headbake.data.samples import Sample

    model, processor, rows = loaded
    samples = [Sample(Image.open(r.images[0]).convert("RGB"), r.question, "planted") for r in rows]
    sv = visual_attention_ratio(model, build_inputs(processor, samples))
    assert sum(sv.tolist(), []) == pytest.approx(sum(P.SV_DESIGN, []), abs=0.006)
    for params in (P.BEST_PARAMS, dict(P.BEST_PARAMS, l_perc=1, tau_perc=0.89, l_reas=2, tau_reas=0.02),
                   dict(P.BEST_PARAMS, tau_perc=0.46, tau_reas=0.099)):
        assert P.in_best_selection(params)
        sel = select_heads(sv, Params(**params))
        assert sel.perceptual == [list(P.ROLE["P"])] and P.ROLE["R"] in map(tuple, sel.reasoning)
        assert not {P.ROLE[r] for r in ("R2", "R3")} & set(map(tuple, sel.reasoning))


def test_generation_answers_then_stops(loaded):
    import torch
    from PIL import Image

    from headbake.data.prompts import chat_text

    model, processor, rows = loaded
    pick = [r for r in rows if r.id in ("yn-04", "yn-06", "mc-05", "mc-06")]
    texts = [chat_text(processor, P.question_text(r), 1) for r in pick]
    images = [Image.open(r.images[0]).convert("RGB") for r in pick]
    batch = processor(text=texts, images=images, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    new = out[:, batch["input_ids"].shape[1]:]
    assert processor.batch_decode(new, skip_special_tokens=True) == ["Yes", "No", "A", "B"]
    eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert (new[:, 1] == eos).all()
