"""Per-head statistics of ``S_v`` that merge across batches, workers and machines.

Each head keeps ``(count, mean, M2)`` in float64 (Welford); two partial runs
combine with Chan et al.'s parallel formula, so a calibration split over
several processes gives the same mean and std as one run (up to float64
rounding, ~1e-15 relative). The stored ``std`` is the sample standard
deviation (n - 1 in the denominator; 0 for a single sample).

Stability: a bake is static while attention varies per input, so we report
how reproducible the selected set is — the mean Jaccard overlap between the
selection from all samples and selections from bootstrap resamples of them.
"""

from __future__ import annotations

import numpy as np

from headbake.errors import HeadbakeError

STATS_FORMAT = "headbake.welford/v1"


class RunningStats:
    """Mergeable per-head mean/variance of per-sample ``S_v`` matrices ``[layers, heads]``."""
    def __init__(self, shape, count: int = 0, mean=None, m2=None):
        self.shape = tuple(int(s) for s in shape)
        self.count = int(count)
        self.mean = np.zeros(self.shape, np.float64) if mean is None else np.asarray(mean, np.float64)
        self.m2 = np.zeros(self.shape, np.float64) if m2 is None else np.asarray(m2, np.float64)
        if self.mean.shape != self.shape or self.m2.shape != self.shape:
            raise HeadbakeError(f"stats arrays do not have shape {self.shape}")

    def update(self, values) -> "RunningStats":
        """Add a batch ``[n, layers, heads]`` of per-sample values."""
        x = np.asarray(values, np.float64)
        if x.ndim == len(self.shape):
            x = x[None]
        if x.shape[1:] != self.shape:
            raise HeadbakeError(f"stats update has shape {x.shape[1:]}, expected {self.shape}")
        if not np.isfinite(x).all():
            raise HeadbakeError("non-finite S_v value in a batch")
        n = x.shape[0]
        if n == 0:
            return self
        mean = x.mean(0)
        m2 = ((x - mean) ** 2).sum(0)
        self._combine(n, mean, m2)
        return self

    def _combine(self, n, mean, m2) -> None:
        if n == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = n, np.array(mean, np.float64), np.array(m2, np.float64)
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def merge(self, other: "RunningStats") -> "RunningStats":
        """Fold ``other`` into this one (Chan's parallel update) and return self."""
        if other.shape != self.shape:
            raise HeadbakeError(f"cannot merge stats of shape {other.shape} into {self.shape}")
        self._combine(other.count, other.mean, other.m2)
        return self

    @property
    def std(self):
        if self.count < 2:
            return np.zeros(self.shape, np.float64)
        return np.sqrt(np.maximum(self.m2, 0.0) / (self.count - 1))

    def to_dict(self) -> dict:
        return {
            "format": STATS_FORMAT,
            "count": self.count,
            "mean": self.mean.tolist(),
            "m2": self.m2.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RunningStats":
        if not isinstance(d, dict) or d.get("format") != STATS_FORMAT:
            raise HeadbakeError(f"stats block is not {STATS_FORMAT}")
        try:
            mean = np.asarray(d["mean"], np.float64)
            m2 = np.asarray(d["m2"], np.float64)
            count = int(d["count"])
        except (KeyError, TypeError, ValueError):
            raise HeadbakeError("stats block lacks count/mean/m2") from None
        if mean.ndim != 2 or count < 0:
            raise HeadbakeError("stats block has malformed count/mean/m2")
        return cls(mean.shape, count, mean, m2)


def merge_stats(blocks) -> RunningStats:
    """Combine several ``to_dict()`` blocks (e.g. from the ``stats`` of gains files)."""
    blocks = list(blocks)
    if not blocks:
        raise HeadbakeError("no stats to merge")
    out = RunningStats.from_dict(blocks[0])
    for b in blocks[1:]:
        out.merge(RunningStats.from_dict(b))
    return out


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def bootstrap_jaccard(per_sample, select, rounds: int = 200, seed: int = 0) -> dict:
    """Mean (and 5th percentile) Jaccard overlap of ``select(mean over a resample)`` with the full selection.

    ``per_sample``: ``[n, layers, heads]``; ``select``: maps a mean ``S_v``
    matrix to a set of hashable head labels (class, layer, head).
    """
    x = np.asarray(per_sample, np.float64)
    n = x.shape[0]
    full = select(x.mean(0))
    if rounds <= 0 or n == 0:
        return {"bootstrap_jaccard_mean": None, "bootstrap_jaccard_p05": None, "bootstrap_rounds": 0}
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(rounds):
        idx = rng.integers(0, n, size=n)
        scores.append(jaccard(full, select(x[idx].mean(0))))
    arr = np.asarray(scores)
    return {
        "bootstrap_jaccard_mean": float(arr.mean()),
        "bootstrap_jaccard_p05": float(np.quantile(arr, 0.05)),
        "bootstrap_rounds": int(rounds),
    }
