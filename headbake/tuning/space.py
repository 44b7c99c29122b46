"""The search space of ``headbake tune``: the paper's six selection values and the rule's constraints.

* ``l_perc``, ``l_reas``: any decoder layer (0-based).
* ``tau_perc``, ``tau_reas``: searched through the number of heads they let
  in (Optuna parameters ``n_perc``/``n_reas``, 0 to the most heads
  ``max_share`` allows): ``n_perc`` perceptual heads are the ``n_perc``
  largest S_v in layers 0..``l_perc``, and ``tau_perc`` is written halfway
  between the last head in and the first head out (likewise ``tau_reas``
  from the smallest S_v in layers ``l_reas``..last). A threshold only matters
  through the heads it lets in, so no trial is spent on two thresholds that
  select the same heads; the sparsity the paper found decisive (~6.4% best,
  ~18% degrading) is a searched quantity; and the written threshold sits in
  the middle of a gap, never on a head's own S_v, so a small S_v change does
  not flip a head. ``n = 0`` switches that class off. The S_v is the one
  stored in the study, so every machine sharing the storage searches the
  same space.
* ``g_perc``, ``g_reas``: [1.0, ``max_gain``] on a ``gain_step`` grid
  (default 1.0-1.5 in steps of 0.05: the paper found ~1.14 best and larger
  gains degrading), so 1.0 (that class switched off, which the paper's
  ablations show sometimes wins) is a value the sampler can draw. A coarse
  grid is deliberate: it gives the sampler 11 values to learn per gain instead
  of 51, and a dev set of a few hundred rows cannot tell 1.14 from 1.15.

Constraints, checked after the cheap selection step and before any forward
pass: ``tau_reas < tau_perc`` (the rule needs it) and the share of rescaled
heads (those with a gain other than 1.0) at most ``max_share`` (the paper saw
results degrade at ~18%). A trial that breaks one is recorded as pruned,
with the reason, and costs no model time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from headbake.calibrate.selection import PAPER_DEGRADED_SHARE, Params, select_heads
from headbake.errors import HeadbakeError

DEFAULT_MAX_GAIN = 1.5  # the paper: gains near 1.14 best, larger ones degrading (selection.HIGH_GAIN)
DEFAULT_GAIN_STEP = 0.05  # finer steps than a dev set of a few hundred rows can tell apart


def rescaled_share(gains) -> float:
    """Share of heads whose gain is not 1.0 (a class at gain 1.0 is switched off: its heads do not count)."""
    total = sum(len(row) for row in gains)
    return sum(1 for row in gains for g in row if g != 1.0) / total if total else 0.0


@dataclass(frozen=True)
class SearchSpace:
    sv: tuple  # [num_layers][num_heads] S_v, as tuples
    max_share: float = PAPER_DEGRADED_SHARE
    max_gain: float = DEFAULT_MAX_GAIN
    gain_step: float = DEFAULT_GAIN_STEP

    def __post_init__(self):
        check_limits(self.max_share, self.max_gain, self.gain_step)
        if not self.sv or not self.sv[0]:
            raise HeadbakeError("empty S_v matrix: nothing to search")
        object.__setattr__(self, "sv", tuple(tuple(float(x) for x in row) for row in self.sv))
        if self.max_heads < 1:
            raise HeadbakeError(f"--max-share {self.max_share:g} allows no head of this model's {self.total} "
                                f"(at least {1 / self.total:.3g} is needed for one)")

    @property
    def num_layers(self) -> int:
        return len(self.sv)

    @property
    def total(self) -> int:
        return sum(len(row) for row in self.sv)

    @property
    def max_heads(self) -> int:
        """The most heads one class may select (``max_share`` of all heads)."""
        return math.floor(self.max_share * self.total + 1e-9)

    def as_dict(self) -> dict:
        return {"max_share": self.max_share, "max_gain": self.max_gain, "gain_step": self.gain_step,
                "layers": [0, self.num_layers - 1], "heads_per_class": [0, self.max_heads],
                "thresholds": "halfway between the last head in and the first head out"}

    def _gain_high(self) -> float:
        """``max_gain`` rounded down to the grid (Optuna wants the range to be a whole number of steps)."""
        n = math.floor((self.max_gain - 1.0) / self.gain_step + 1e-9)
        return round(1.0 + n * self.gain_step, 10)

    def _candidates(self, layers) -> list[float]:
        return [x for l in layers for x in self.sv[l]]

    def tau_perc(self, l_perc: int, n: int) -> float:
        """Halfway between the ``n``-th largest S_v of layers 0..l_perc and the next one (0 heads: above all)."""
        c = sorted(self._candidates(range(l_perc + 1)), reverse=True)
        above = 1.0 if n == 0 else c[min(n, len(c)) - 1]
        below = c[n] if n < len(c) else 0.0
        return (above + below) / 2 if n else (1.0 + c[0]) / 2

    def tau_reas(self, l_reas: int, n: int) -> float:
        """Halfway between the ``n``-th smallest S_v of layers l_reas..last and the next one (0 heads: below all)."""
        c = sorted(self._candidates(range(l_reas, self.num_layers)))
        below = c[min(n, len(c)) - 1] if n else 0.0
        above = c[n] if n < len(c) else 1.0
        return (below + above) / 2 if n else c[0] / 2

    def params(self, l_perc: int, l_reas: int, n_perc: int, n_reas: int, g_perc: float, g_reas: float) -> Params:
        return Params(l_perc=l_perc, l_reas=l_reas, tau_perc=round(self.tau_perc(l_perc, n_perc), 6),
                      tau_reas=round(self.tau_reas(l_reas, n_reas), 6), g_perc=g_perc, g_reas=g_reas)

    def suggest(self, trial) -> Params:
        """Draw the values from an Optuna trial (define-by-run; the same names and ranges every trial)."""
        top = self.num_layers - 1
        g_hi = self._gain_high()
        return self.params(
            trial.suggest_int("l_perc", 0, top),
            trial.suggest_int("l_reas", 0, top),
            trial.suggest_int("n_perc", 0, self.max_heads),
            trial.suggest_int("n_reas", 0, self.max_heads),
            round(trial.suggest_float("g_perc", 1.0, g_hi, step=self.gain_step), 6),
            round(trial.suggest_float("g_reas", 1.0, g_hi, step=self.gain_step), 6),
        )

    def encode(self, p: Params) -> dict | None:
        """Optuna parameters that select the same heads as ``p`` (to enqueue it), or None if out of the space."""
        top, g_hi = self.num_layers - 1, self._gain_high()

        def on_grid(g):
            k = (g - 1.0) / self.gain_step
            return 1.0 <= g <= g_hi + 1e-9 and abs(k - round(k)) < 1e-6

        if not (0 <= p.l_perc <= top and 0 <= p.l_reas <= top and on_grid(p.g_perc) and on_grid(p.g_reas)):
            return None
        n_perc = sum(1 for x in self._candidates(range(p.l_perc + 1)) if x >= p.tau_perc)
        n_reas = sum(1 for x in self._candidates(range(p.l_reas, self.num_layers)) if x <= p.tau_reas)
        if max(n_perc, n_reas) > self.max_heads:
            return None
        return {"l_perc": p.l_perc, "l_reas": p.l_reas, "n_perc": n_perc, "n_reas": n_reas,
                "g_perc": p.g_perc, "g_reas": p.g_reas}

    def select(self, params: Params):
        """``(Selection, None)`` or ``(None, why the trial is infeasible)``."""
        if not params.tau_reas < params.tau_perc:
            return None, f"tau_reas {params.tau_reas:.4g} >= tau_perc {params.tau_perc:.4g}"
        sel = select_heads(self.sv, params)
        share = rescaled_share(sel.gains)
        if share > self.max_share + 1e-12:
            return None, f"{100 * share:.1f}% of heads rescaled (max {100 * self.max_share:.1f}%)"
        return sel, None


def check_limits(max_share: float, max_gain: float, gain_step: float = DEFAULT_GAIN_STEP) -> None:
    if isinstance(max_share, bool) or not isinstance(max_share, (int, float)) or not 0 < max_share <= 1:
        raise HeadbakeError(f"--max-share must be in (0, 1], got {max_share}")
    if isinstance(max_gain, bool) or not isinstance(max_gain, (int, float)) or not (
            math.isfinite(max_gain) and max_gain > 1.0):
        raise HeadbakeError(f"--max-gain must be a finite number above 1.0, got {max_gain}")
    if not 0 < gain_step <= max_gain - 1.0:
        raise HeadbakeError(f"the gain step must be in (0, max_gain - 1], got {gain_step}")
