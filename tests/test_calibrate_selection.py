"""Selection rules, presets and mergeable statistics on hand-made S_v matrices (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from headbake.calibrate.presets import PAPER_OCEAN_R1, PRESETS, describe, resolve
from headbake.calibrate.selection import Params, select_heads, validate_params
from headbake.calibrate.stats import RunningStats, bootstrap_jaccard, jaccard, merge_stats
from headbake.errors import HeadbakeError

# 6 layers x 3 heads, values chosen to sit on both sides of every bound.
SV = [
    [0.30, 0.22, 0.10],  # layer 0: heads 0,1 perceptual (>= 0.22 inclusive)
    [0.21, 0.50, 0.005],  # layer 1: head 1 perceptual; head 2 too low but layer < l_reas
    [0.25, 0.01, 0.02],  # layer 2: head 0 perceptual; head 1 reasoning (<= 0.01 inclusive, l >= 2)
    [0.40, 0.009, 0.011],  # layer 3: above l_perc -> no perceptual; head 1 reasoning
    [0.00, 0.30, 0.012],  # layer 4: head 0 reasoning
    [0.01, 0.01, 0.01],  # layer 5: all reasoning
]
P = Params(l_perc=2, l_reas=2, tau_perc=0.22, tau_reas=0.01, g_perc=1.16, g_reas=1.30)


def test_selection_rules_on_hand_made_matrix():
    s = select_heads(SV, P)
    assert s.perceptual == [[0, 0], [0, 1], [1, 1], [2, 0]]
    assert s.reasoning == [[2, 1], [3, 1], [4, 0], [5, 0], [5, 1], [5, 2]]
    expected = [[1.0] * 3 for _ in SV]
    for l, h in s.perceptual:
        expected[l][h] = 1.16
    for l, h in s.reasoning:
        expected[l][h] = 1.30
    assert s.gains == expected
    c = s.counts
    assert (c["perceptual"], c["reasoning"], c["both"], c["total_heads"]) == (4, 6, 0, 18)
    assert c["share"] == pytest.approx(10 / 18)
    assert c["per_layer"][2] == {"layer": 2, "perceptual": 1, "reasoning": 1}
    assert [r["perceptual"] for r in c["per_layer"]] == [2, 1, 1, 0, 0, 0]
    assert any("18%" in w for w in s.warnings)  # 55% selected is far past the paper's range


def test_numpy_input_and_no_selection_warning():
    s = select_heads(np.full((4, 4), 0.1), Params(3, 0, 0.5, 0.05, 1.1, 1.1))
    assert s.perceptual == [] and s.reasoning == [] and s.counts["share"] == 0
    assert all(g == 1.0 for row in s.gains for g in row)
    assert any("no head was selected" in w for w in s.warnings)


def test_share_in_paper_range_gives_no_share_warning():
    sv = np.full((10, 10), 0.1)
    sv[0, :3] = 0.5  # 3 perceptual
    sv[9, :4] = 0.0  # 4 reasoning -> 7% of 100
    s = select_heads(sv, Params(1, 8, 0.22, 0.01, 1.16, 1.3))
    assert s.counts["share"] == pytest.approx(0.07)
    assert s.warnings == []
    low = select_heads(sv, Params(1, 8, 0.6, 0.01, 1.16, 1.3))  # 4 reasoning heads only: 4%
    assert low.warnings == []
    sv[9, 1:] = 0.1
    low = select_heads(sv, Params(1, 8, 0.6, 0.01, 1.16, 1.3))  # 1 head: 1%
    assert any("below" in w for w in low.warnings)


@pytest.mark.parametrize(
    "params, layers, message",
    [
        (Params(2, 2, 0.2, 0.2, 1.1, 1.1), 6, "tau_reas"),
        (Params(2, 2, 0.1, 0.3, 1.1, 1.1), 6, "tau_reas"),
        (Params(6, 2, 0.2, 0.01, 1.1, 1.1), 6, "l_perc=6 is outside"),
        (Params(2, -1, 0.2, 0.01, 1.1, 1.1), 6, "l_reas=-1 is outside"),
        (Params(2, 2, 0.2, 0.01, 0.0, 1.1), 6, "g_perc must be finite and > 0"),
        (Params(2, 2, 0.2, 0.01, 1.1, -1.0), 6, "g_reas must be finite and > 0"),
        (Params(2, 2, 0.2, 0.01, math.nan, 1.1), 6, "g_perc"),
        (Params(2, 2, 0.2, 0.01, 1.1, math.inf), 6, "g_reas"),
        (Params(2, 2, 1.2, 0.01, 1.1, 1.1), 6, "tau_perc must be"),
    ],
)
def test_invalid_params(params, layers, message):
    with pytest.raises(HeadbakeError, match=message):
        validate_params(params, layers)


def test_unusual_gains_warn():
    assert any("attenuates" in w for w in validate_params(Params(1, 1, 0.2, 0.01, 0.9, 1.1), 4))
    assert any("large" in w for w in validate_params(Params(1, 1, 0.2, 0.01, 1.1, 2.5), 4))
    assert validate_params(Params(1, 1, 0.2, 0.01, 1.16, 1.3), 4) == []


def test_presets_and_overrides():
    params, block = resolve("default")
    assert params.as_dict() == PAPER_OCEAN_R1
    assert block["from_paper"] is True and block["overrides"] == []
    assert PAPER_OCEAN_R1 == {"l_perc": 7, "l_reas": 3, "tau_perc": 0.22, "tau_reas": 0.01,
                              "g_perc": 1.16, "g_reas": 1.30}
    params, block = resolve("default", {"g_perc": 1.2, "l_reas": None, "tau_reas": 0.01})
    assert params.g_perc == 1.2 and params.l_reas == 3
    assert block["from_paper"] is False and block["overrides"] == ["g_perc"]
    assert "g_perc" not in block["values_from_paper"] and "g_reas" in block["values_from_paper"]
    for name in ("r1-onevision", "kimi-vl", "demo"):
        assert resolve(name)[1]["from_paper"] is False
    assert resolve("ocean-r1")[1]["from_paper"] is True
    with pytest.raises(HeadbakeError, match="unknown preset"):
        resolve("nope")
    with pytest.raises(HeadbakeError, match="finite"):
        resolve("default", {"g_reas": math.nan})
    text = describe()
    for name in PRESETS:
        assert name in text
    assert "0.22*" in text and "0-based" in text


def test_stats_merge_split_equals_whole():
    rng = np.random.default_rng(0)
    x = rng.random((37, 5, 3))
    whole = RunningStats((5, 3)).update(x)
    assert whole.count == 37
    np.testing.assert_allclose(whole.mean, x.mean(0), rtol=0, atol=1e-15)
    np.testing.assert_allclose(whole.std, x.std(0, ddof=1), rtol=1e-13)
    # Batches of uneven size in one process, and three "workers" merged via their JSON blocks.
    inc = RunningStats((5, 3))
    for a, b in ((0, 1), (1, 9), (9, 20), (20, 37)):
        inc.update(x[a:b])
    parts = [RunningStats((5, 3)).update(x[a:b]).to_dict() for a, b in ((0, 11), (11, 12), (12, 37))]
    merged = merge_stats(parts)
    for got in (inc, merged):
        assert got.count == 37
        np.testing.assert_allclose(got.mean, whole.mean, rtol=0, atol=1e-14)
        np.testing.assert_allclose(got.m2, whole.m2, rtol=1e-12, atol=1e-14)
    # An empty part merges as a no-op, and the JSON block round-trips.
    merged.merge(RunningStats((5, 3)))
    assert RunningStats.from_dict(merged.to_dict()).count == 37
    with pytest.raises(HeadbakeError):
        merged.merge(RunningStats((4, 3)))
    with pytest.raises(HeadbakeError):
        RunningStats((5, 3)).update(np.full((1, 5, 3), np.nan))


def test_single_sample_std_is_zero():
    s = RunningStats((2, 2)).update(np.ones((1, 2, 2)) * 0.3)
    assert s.count == 1 and (s.std == 0).all()


def test_bootstrap_jaccard():
    assert jaccard(set(), set()) == 1.0
    assert jaccard({1, 2}, {2, 3}) == pytest.approx(1 / 3)
    rng = np.random.default_rng(1)
    # Clear separation: every resample selects the same heads.
    clear = np.tile(np.array([[0.9, 0.1, 0.0]]), (20, 1, 1)) + rng.normal(0, 1e-3, (20, 1, 3))

    def sel(m):
        return select_heads(m, Params(0, 0, 0.5, 0.01, 1.1, 1.1)).labels()

    res = bootstrap_jaccard(clear, sel, rounds=30)
    assert res["bootstrap_jaccard_mean"] == 1.0 and res["bootstrap_rounds"] == 30
    # A head whose mean sits on the threshold flips in and out.
    noisy = np.tile(np.array([[0.9, 0.5, 0.2]]), (20, 1, 1)) + rng.normal(0, 0.05, (20, 1, 3))
    res = bootstrap_jaccard(noisy, sel, rounds=50)
    assert 0 < res["bootstrap_jaccard_mean"] < 1
    assert res["bootstrap_jaccard_p05"] <= res["bootstrap_jaccard_mean"]
    assert bootstrap_jaccard(noisy, sel, rounds=0)["bootstrap_jaccard_mean"] is None


def test_merge_matches_local_models_by_identity_and_hub_models_by_commit():
    import copy

    from headbake.calibrate.merge import merge_documents
    from headbake.calibrate.stats import RunningStats

    def doc(source, fingerprint, seed):
        rng = np.random.default_rng(seed)
        st = RunningStats((2, 2))
        for _ in range(3):
            st.update(rng.random((1, 2, 2)))
        return {"format": "headbake.gains/v1", "model_type": "qwen2_5_vl", "num_layers": 2, "num_heads": 2,
                "head_dim": 8, "source": source, "stats": st.to_dict(), "query": {"mode": "last", "k": 1},
                "preset": {"name": "x", "l_perc": 1, "l_reas": 1, "tau_perc": 0.5, "tau_reas": 0.1,
                           "g_perc": 1.16, "g_reas": 1.3},
                "data": {"name": "d", "fingerprint": fingerprint, "samples": 3}}

    a = doc({"id": "/machine-a/model", "revision": None}, "f1", 0)
    b = doc({"id": "/machine-b/model", "revision": None}, "f2", 1)
    assert merge_documents([a, b])["samples"] == 6  # same local model under two paths
    hub_a = doc({"id": "org/m", "revision": "a" * 40}, "f1", 0)
    hub_b = doc({"id": "org/m", "revision": "b" * 40}, "f2", 1)
    with pytest.raises(HeadbakeError, match="another model"):
        merge_documents([hub_a, hub_b])
    with pytest.raises(HeadbakeError, match="same data"):
        merge_documents([a, copy.deepcopy(a)])
