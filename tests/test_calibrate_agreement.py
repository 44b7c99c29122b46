"""Static vs per-input agreement and the comparison of two calibrations, on hand-made S_v."""

from __future__ import annotations

import numpy as np
import pytest

from headbake.calibrate.agreement import compare_calibrations, format_comparison, per_input_agreement
from headbake.calibrate.selection import Params, select_heads
from headbake.errors import HeadbakeError

P = Params(l_perc=0, l_reas=1, tau_perc=0.5, tau_reas=0.1, g_perc=1.2, g_reas=1.3)


def test_agreement_by_hand():
    # 2 layers x 3 heads, 4 inputs. Head (0,0) is visual on every input, (0,1) on inputs 0 and 1 only,
    # (1,2) looks away from the image on inputs 0-2, the rest never qualify.
    x = np.full((4, 2, 3), 0.3)
    x[:, 0, 0] = 0.9
    x[[0, 1], 0, 1] = 0.8
    x[[0, 1, 2], 1, 2] = 0.05
    x[3, 1, 2] = 0.6  # mean of (1,2) = 0.1875: not static
    sel = select_heads(x.mean(0), P)
    assert sel.perceptual == [[0, 0], [0, 1]] and sel.reasoning == []  # (0,1) mean 0.55 >= 0.5
    ag = per_input_agreement(x, P, sel.perceptual, sel.reasoning)
    # per-input sets: {p00,p01,r12}, {p00,p01,r12}, {p00,r12}, {p00}; static {p00,p01}
    assert ag["mean_jaccard"] == pytest.approx(np.mean([2 / 3, 2 / 3, 1 / 3, 1 / 2]))
    assert ag["coverage"] == pytest.approx((2 + 2 + 1 + 1) / (3 + 3 + 2 + 1))
    q = np.asarray(ag["qualify_fraction"])
    assert q[0, 0] == 1.0 and q[0, 1] == 0.5 and q[1, 2] == 0.75 and q[1, 0] == 0.0
    assert ag["static_selected"] == 2 and ag["static_qualify_half"] == 2
    assert ag["summary"] == ("The static bake covers 67% of the heads the per-input rule selects (mean Jaccard "
                             "0.54 over 4 inputs); 2 of its 2 heads qualify on at least half of the inputs.")


def test_agreement_edge_cases():
    x = np.full((3, 2, 2), 0.3)  # nothing ever qualifies
    ag = per_input_agreement(x, P, [], [])
    assert ag["coverage"] is None and ag["mean_jaccard"] == 1.0
    assert ag["summary"].startswith("The per-input rule selects no head")
    with pytest.raises(HeadbakeError, match="samples, layers, heads"):
        per_input_agreement(np.zeros((2, 3)), P, [], [])


def _doc(perc, reas, layers=2, heads=3):
    return {"num_layers": layers, "num_heads": heads, "selected": {"perceptual": perc, "reasoning": reas}}


def test_compare_calibrations():
    a = _doc([[0, 0], [0, 1]], [[1, 2]])
    b = _doc([[0, 0]], [[1, 2], [1, 1]])
    r = compare_calibrations(a, b)
    assert r["jaccard"] == pytest.approx(2 / 4)
    assert [(x["class"], x["layer"], x["head"]) for x in r["only_a"]] == [("perceptual", 0, 1)]
    assert [(x["class"], x["layer"], x["head"]) for x in r["only_b"]] == [("reasoning", 1, 1)]
    assert len(r["both"]) == 2 and (r["a_selected"], r["b_selected"]) == (3, 3)
    text = format_comparison(r, "a.json", "b.json")
    assert "Jaccard 0.500" in text and "only in a.json (1): P0.1" in text and "only in b.json (1): R1.1" in text
    # a class change counts as a difference; hand-written gains compare by head
    assert compare_calibrations(_doc([[0, 0]], []), _doc([], [[0, 0]]))["jaccard"] == 0.0
    hand = {"num_layers": 2, "num_heads": 3, "gains": [[1.2, 1.0, 1.0], [1.0, 1.0, 1.3]]}
    r = compare_calibrations(a, hand)
    assert r["jaccard"] == pytest.approx(2 / 3) and r["only_b"] == []
    with pytest.raises(HeadbakeError, match="different models"):
        compare_calibrations(a, _doc([], [], layers=3))
    assert compare_calibrations(_doc([], []), _doc([], []))["jaccard"] == 1.0


def test_heads_table_shows_the_qualify_share_and_tokens():
    from headbake.calibrate.heatmap import format_table

    x = np.full((4, 2, 3), 0.3)
    x[:, 0, 0] = 0.9
    x[[0, 1], 0, 1] = 0.8
    sel = select_heads(x.mean(0), P)
    doc = {"gains": sel.gains, "visual_ratio": x.mean(0).tolist(),
           "selected": {"perceptual": sel.perceptual, "reasoning": sel.reasoning},
           "agreement": per_input_agreement(x, P, sel.perceptual, sel.reasoning),
           "tokens": {"image_tokens": {"mean": 512.4, "min": 192, "max": 1296, "n": 4},
                      "prompt_tokens": {"mean": 600.0, "min": 250, "max": 1400, "n": 4}}}
    text = format_table(doc)
    assert "P0(100%) P1(50%)" in text
    assert "per input: The static bake covers" in text
    assert "tokens per sample: image 512 mean (192-1296), whole prompt 600 mean (250-1400)" in text
