"""Statistics against values worked out by hand (and, where scipy is present, against scipy)."""

from __future__ import annotations

import math

import pytest

from headbake.evaluate.stats import (
    accuracy,
    compare,
    mcnemar_exact,
    paired_bootstrap_interval,
    statistics,
    verdict,
    wilson_interval,
)


def test_wilson_known_values():
    # 0/10: centre = half = (z^2/20) / (1 + z^2/10) = 0.13877 -> [0, 0.2775]
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.27753, abs=1e-5)
    # 5/10: half = z*sqrt(0.025 + z^2/400) / (1 + z^2/10) = 0.26341
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.23659, abs=1e-5), pytest.approx(0.76341, abs=1e-5))
    lo, hi = wilson_interval(10, 10)
    assert lo == pytest.approx(0.72247, abs=1e-5) and hi == 1.0
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_accuracy_object():
    a = accuracy([True, True, False, True])
    assert (a.n, a.correct, a.accuracy) == (4, 3, 0.75)
    assert a.ci95[0] < 0.75 < a.ci95[1]
    assert accuracy([]).as_dict() == {"n": 0, "correct": 0, "accuracy": None, "ci95": None}


@pytest.mark.parametrize(
    "fixed,broken,p",
    [
        (0, 0, 1.0),
        (5, 0, 2 / 32),  # 2 * C(5,0) / 2^5
        (0, 5, 2 / 32),
        (3, 1, 10 / 16),  # 2 * (C(4,0) + C(4,1)) / 2^4
        (10, 2, 158 / 4096),  # 2 * (1 + 12 + 66) / 2^12
        (6, 6, 1.0),  # capped
    ],
)
def test_mcnemar_exact_hand_values(fixed, broken, p):
    assert mcnemar_exact(fixed, broken) == pytest.approx(p, rel=1e-12)


def test_mcnemar_matches_scipy_binomtest():
    scipy_stats = pytest.importorskip("scipy.stats")
    for fixed, broken in [(60, 40), (7, 19), (123, 98), (1, 0), (400, 350)]:
        ref = scipy_stats.binomtest(fixed, fixed + broken, 0.5).pvalue
        assert mcnemar_exact(fixed, broken) == pytest.approx(ref, rel=1e-9)


def test_mcnemar_large_counts_stay_finite():
    p = mcnemar_exact(5000, 4000)
    assert 0 < p < 1e-20 and math.isfinite(p)


def test_bootstrap_degenerate_and_seeded():
    assert paired_bootstrap_interval(10, 0, 10) == (1.0, 1.0)
    assert paired_bootstrap_interval(0, 0, 50) == (0.0, 0.0)
    a = paired_bootstrap_interval(300, 200, 2000, n_resamples=200, seed=3)
    assert a == paired_bootstrap_interval(300, 200, 2000, n_resamples=200, seed=3)
    assert a != paired_bootstrap_interval(300, 200, 2000, n_resamples=200, seed=4)
    with pytest.raises(ValueError):
        paired_bootstrap_interval(8, 5, 10)


def test_bootstrap_width_matches_normal_approximation():
    # d = 0.04, var = (0.06 + 0.02 - 0.04^2) / 1000 -> sd 0.008854, 95% half-width 0.01735
    lo, hi = paired_bootstrap_interval(60, 20, 1000, n_resamples=20000, seed=0)
    assert lo == pytest.approx(0.04 - 0.01735, abs=0.002)
    assert hi == pytest.approx(0.04 + 0.01735, abs=0.002)


def test_compare_counts_fixed_and_broken_on_common_rows():
    base = {"a": False, "b": False, "c": True, "d": True, "e": False}
    arm = {"a": True, "b": True, "c": False, "d": True, "x": True}  # "e" and "x" are unpaired
    c = compare(base, arm, "baked", "vanilla")
    assert (c.n, c.fixed, c.broken) == (4, 2, 1)
    assert c.difference == pytest.approx(0.25)
    assert c.mcnemar_p == pytest.approx(1.0)  # 2 * (1 + 3) / 8
    assert c.outcome == "within noise" and c.verdict.startswith("within noise")
    assert compare({"a": True}, {"b": True}) is None


def test_verdicts():
    assert verdict("baked", "vanilla", 100, 0, 0, 0.0, (0.0, 0.0), 1.0)[0] == "no difference"
    out, text = verdict("baked", "vanilla", 1000, 60, 20, 0.04, (0.023, 0.057), 1e-5)
    assert out == "better" and "+4.0 points" in text and "60 fixed / 20 broken" in text
    assert verdict("baked", "vanilla", 1000, 20, 60, -0.04, (-0.057, -0.023), 1e-5)[0] == "worse"
    # interval excludes 0 but too few discordant rows for McNemar: still noise, and says why
    out, text = verdict("baked", "vanilla", 100, 4, 0, 0.04, (0.01, 0.08), 0.125)
    assert out == "within noise" and "only 4 rows differ" in text
    out, text = verdict("baked", "vanilla", 100, 5, 3, 0.02, (-0.03, 0.07), 0.73)
    assert out == "within noise" and "includes 0" in text


def test_statistics_per_benchmark_and_overall():
    ids = [f"r{i}" for i in range(40)]
    bench = {i: ("mmstar" if n < 20 else "pope") for n, i in enumerate(ids)}
    vanilla = {i: n % 2 == 0 for n, i in enumerate(ids)}
    baked = dict(vanilla)
    for i in ids[1:12:2]:  # six wrong mmstar rows fixed
        baked[i] = True
    st = statistics({"vanilla": vanilla, "baked": baked}, bench, seed=1)
    mm = st["benchmarks"]["mmstar"]
    assert mm["rows"] == 20
    assert mm["arms"]["vanilla"]["correct"] == 10 and mm["arms"]["baked"]["correct"] == 16
    assert (mm["comparisons"]["baked"]["fixed"], mm["comparisons"]["baked"]["broken"]) == (6, 0)
    assert mm["comparisons"]["baked"]["mcnemar_p"] == pytest.approx(2 / 64)
    assert st["benchmarks"]["pope"]["comparisons"]["baked"]["outcome"] == "no difference"
    assert st["overall"]["comparisons"]["baked"]["fixed"] == 6
    assert st["overall"]["arms"]["baked"]["n"] == 40
    assert "Wilson" in st["method"]["accuracy_interval"]


def test_statistics_without_baseline_has_no_comparisons():
    st = statistics({"baked": {"a": True}}, {"a": None})
    assert st["overall"]["comparisons"] == {} and st["benchmarks"] == {}
