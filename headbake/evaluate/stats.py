"""Accuracy intervals and paired A/B tests for per-row right/wrong results.

Every arm answers the same rows, so the comparison is paired: what matters
is the rows one arm fixes and the other breaks, not two independent
accuracies. Three views, all exact or seeded so a report reproduces:

- accuracy with a Wilson 95% interval (well-behaved near 0 and 1 and for small n);
- the paired difference with a percentile bootstrap 95% interval over rows;
- the exact McNemar test: a two-sided binomial test on the discordant rows.

A difference is called real only when the bootstrap interval excludes 0 *and*
McNemar's p < 0.05; anything else is reported as within noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile
DEFAULT_RESAMPLES = 10_000
ALPHA = 0.05


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for ``k`` successes in ``n`` trials (None when n == 0)."""
    if n == 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"{k} successes out of {n}")
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, center - half)  # exact ends: the float sum misses them by 1 ulp
    hi = 1.0 if k == n else min(1.0, center + half)
    return lo, hi


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value: P(X <= min) doubled, X ~ Binomial(fixed + broken, 1/2)."""
    n = fixed + broken
    if n == 0:
        return 1.0
    k = min(fixed, broken)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)  # exact integers until this one division


def paired_bootstrap_interval(
    fixed: int, broken: int, n: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean paired difference over ``n`` rows resampled with replacement.

    Each row's difference is +1 (fixed), -1 (broken) or 0, so a resample of
    rows is exactly a multinomial draw of those three counts; drawing the
    counts gives the same distribution as resampling row indices without an
    ``n_resamples x n`` index array.
    """
    if n <= 0:
        raise ValueError("no paired rows")
    if fixed < 0 or broken < 0 or fixed + broken > n:
        raise ValueError(f"fixed={fixed}, broken={broken} do not fit in {n} rows")
    rng = np.random.default_rng(seed)
    same = n - fixed - broken
    counts = rng.multinomial(n, [fixed / n, broken / n, same / n], size=n_resamples)
    diffs = (counts[:, 0] - counts[:, 1]) / n
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(diffs, [tail, 100 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Accuracy:
    n: int
    correct: int
    accuracy: float | None
    ci95: tuple[float, float] | None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ci95"] = list(self.ci95) if self.ci95 else None
        return d


def accuracy(flags) -> Accuracy:
    flags = [bool(f) for f in flags]
    n, k = len(flags), sum(flags)
    return Accuracy(n, k, k / n if n else None, wilson_interval(k, n))


@dataclass(frozen=True)
class Comparison:
    arm: str
    baseline: str
    n: int  # rows both arms answered
    fixed: int  # wrong in the baseline, right in the arm
    broken: int  # right in the baseline, wrong in the arm
    difference: float  # accuracy(arm) - accuracy(baseline) on the paired rows
    ci95: tuple[float, float]
    mcnemar_p: float
    outcome: str  # "better" | "worse" | "within noise" | "no difference"
    verdict: str  # one plain sentence

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        return d


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def verdict(arm: str, baseline: str, n: int, fixed: int, broken: int, diff: float, ci, p: float) -> tuple[str, str]:
    """(outcome, sentence) for a paired comparison, saying plainly when it is noise."""
    if fixed == 0 and broken == 0:
        return "no difference", f"no difference: {arm} and {baseline} are right and wrong on the same {n} rows"
    stats = (
        f"{_pts(diff)} points (95% CI {_pts(ci[0])} to {_pts(ci[1])}), "
        f"{fixed} fixed / {broken} broken, McNemar p={p:.3g}"
    )
    if ci[0] > 0 and p < ALPHA:
        return "better", f"{arm} is better than {baseline}: {stats}"
    if ci[1] < 0 and p < ALPHA:
        return "worse", f"{arm} is worse than {baseline}: {stats}"
    why = "the interval includes 0" if ci[0] <= 0 <= ci[1] else f"only {fixed + broken} rows differ"
    return "within noise", f"within noise ({why}): {arm} vs {baseline} {stats}"


def compare(
    baseline: dict, other: dict, arm: str = "arm", baseline_name: str = "baseline",
    n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
) -> Comparison | None:
    """Paired comparison of two ``{row_id: correct}`` maps on the rows both have (None if none)."""
    ids = sorted(set(baseline) & set(other))
    if not ids:
        return None
    fixed = sum(1 for i in ids if other[i] and not baseline[i])
    broken = sum(1 for i in ids if baseline[i] and not other[i])
    n = len(ids)
    diff = (fixed - broken) / n
    ci = paired_bootstrap_interval(fixed, broken, n, n_resamples, seed)
    p = mcnemar_exact(fixed, broken)
    outcome, sentence = verdict(arm, baseline_name, n, fixed, broken, diff, ci, p)
    return Comparison(arm, baseline_name, n, fixed, broken, diff, ci, p, outcome, sentence)


def group_statistics(
    correct: dict[str, dict], baseline: str | None = "vanilla", n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> dict:
    """Accuracy per arm and each arm against ``baseline``, for one group of rows ``{arm: {row_id: bool}}``."""
    out = {
        "rows": len(set().union(*correct.values())) if correct else 0,
        "arms": {arm: accuracy(flags.values()).as_dict() for arm, flags in correct.items()},
        "comparisons": {},
    }
    if baseline in correct:
        for arm, flags in correct.items():
            if arm == baseline:
                continue
            c = compare(correct[baseline], flags, arm, baseline, n_resamples, seed)
            if c is not None:
                out["comparisons"][arm] = c.as_dict()
    return out


def statistics(
    correct: dict[str, dict], benchmarks: dict[str, str | None], baseline: str | None = "vanilla",
    n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
) -> dict:
    """Overall and per-benchmark statistics; ``benchmarks`` maps row id to benchmark name (or None)."""
    names = sorted({b for b in benchmarks.values() if b is not None})
    per = {}
    for name in names:
        subset = {arm: {i: v for i, v in flags.items() if benchmarks.get(i) == name} for arm, flags in correct.items()}
        per[name] = group_statistics({a: f for a, f in subset.items() if f}, baseline, n_resamples, seed)
    return {
        "overall": group_statistics(correct, baseline, n_resamples, seed),
        "benchmarks": per,
        "method": {
            "accuracy_interval": "Wilson score, 95%",
            "difference_interval": f"paired percentile bootstrap over rows, 95%, {n_resamples} resamples, seed {seed}",
            "test": "exact McNemar (two-sided binomial on discordant rows)",
            "decision": f"better/worse only if the interval excludes 0 and McNemar p < {ALPHA}",
        },
    }
