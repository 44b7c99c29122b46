"""The paper's head selection rules, applied to a mean ``S_v`` matrix.

Layer index convention: ``l`` is the 0-based index of a decoder layer of the
language model, in checkpoint order (``model.layers.0`` is layer 0); the
vision tower's blocks are never counted. We read the paper's ``l_perc=7,
l_reas=3`` in that convention, so perceptual heads come from the first eight
decoder layers (0..7) and reasoning heads from layer 3 on. (Had the paper
counted from 1, each bound moves by one layer: pass ``--l-perc 6 --l-reas 2``.)

* perceptual: ``l <= l_perc and S_v >= tau_perc`` -> gain ``g_perc``
* reasoning:  ``l >= l_reas and S_v <= tau_reas`` -> gain ``g_reas``
* every other head: 1.0

A head in both sets: impossible with valid thresholds, since ``tau_reas <
tau_perc`` is required (no ``S_v`` can be both >= tau_perc and <= tau_reas).
``validate_params`` enforces it, and ``select_heads`` would still give such a
head the larger of the two gains and count it under ``both``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from headbake.errors import HeadbakeError

PAPER_BEST_SHARE = 0.064  # share of heads the paper found best (50-150 heads)
PAPER_DEGRADED_SHARE = 0.18  # share at which the paper saw performance degrade
LOW_SHARE = PAPER_BEST_SHARE / 2
PAPER_BEST_GAIN = 1.14
HIGH_GAIN = 1.5

PARAM_NAMES = ("l_perc", "l_reas", "tau_perc", "tau_reas", "g_perc", "g_reas")


@dataclass(frozen=True)
class Params:
    l_perc: int
    l_reas: int
    tau_perc: float
    tau_reas: float
    g_perc: float
    g_reas: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Selection:
    perceptual: list  # [[layer, head], ...]
    reasoning: list
    gains: list  # [num_layers][num_heads]
    counts: dict
    warnings: list

    def labels(self) -> set:
        return {("p", l, h) for l, h in self.perceptual} | {("r", l, h) for l, h in self.reasoning}


def _num(name, value, kind=float):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HeadbakeError(f"{name} must be a number, got {value!r}")
    if kind is int:
        if float(value) != int(value):
            raise HeadbakeError(f"{name} must be an integer layer index, got {value}")
        return int(value)
    return float(value)


def validate_params(p: Params, num_layers: int | None = None) -> list[str]:
    """Raise ``HeadbakeError`` for impossible settings; return warnings for unusual ones."""
    l_perc = _num("l_perc", p.l_perc, int)
    l_reas = _num("l_reas", p.l_reas, int)
    warnings = []
    for name in ("tau_perc", "tau_reas"):
        v = _num(name, getattr(p, name))
        if not math.isfinite(v) or not 0.0 <= v <= 1.0:
            raise HeadbakeError(f"{name} must be an attention share in [0, 1], got {v}")
    if not p.tau_reas < p.tau_perc:
        raise HeadbakeError(
            f"tau_reas ({p.tau_reas}) must be below tau_perc ({p.tau_perc}): reasoning heads look at the image "
            "less than perceptual heads"
        )
    for name in ("g_perc", "g_reas"):
        g = _num(name, getattr(p, name))
        if not math.isfinite(g) or g <= 0:
            raise HeadbakeError(f"{name} must be finite and > 0, got {g}")
        if g < 1.0:
            warnings.append(f"{name}={g} < 1 attenuates heads; the paper only amplifies (g >= 1)")
        elif g > HIGH_GAIN:
            warnings.append(
                f"{name}={g} is large; the paper found gains near {PAPER_BEST_GAIN} best and larger ones degrading"
            )
    if num_layers is not None:
        for name, v in (("l_perc", l_perc), ("l_reas", l_reas)):
            if not 0 <= v < num_layers:
                raise HeadbakeError(
                    f"{name}={v} is outside the model's decoder layers 0..{num_layers - 1} "
                    f"(0-based); pass --{name.replace('_', '-')} with a layer in range"
                )
    elif l_perc < 0 or l_reas < 0:
        raise HeadbakeError("layer bounds must be >= 0 (0-based decoder layer indices)")
    return warnings


def select_heads(sv, p: Params) -> Selection:
    """Apply the rules to ``sv`` (``[num_layers][num_heads]`` mean ``S_v``)."""
    rows = [[float(x) for x in row] for row in (sv.tolist() if hasattr(sv, "tolist") else sv)]
    num_layers = len(rows)
    if not num_layers or not rows[0]:
        raise HeadbakeError("empty S_v matrix")
    warnings = validate_params(p, num_layers)
    perceptual, reasoning, gains, per_layer = [], [], [], []
    both = 0
    for l, row in enumerate(rows):
        grow = []
        np_, nr = 0, 0
        for h, s in enumerate(row):
            is_p = l <= p.l_perc and s >= p.tau_perc
            is_r = l >= p.l_reas and s <= p.tau_reas
            g = 1.0
            if is_p:
                perceptual.append([l, h])
                np_ += 1
                g = float(p.g_perc)
            if is_r:
                reasoning.append([l, h])
                nr += 1
                g = float(p.g_reas) if not is_p else max(g, float(p.g_reas))
            both += int(is_p and is_r)
            grow.append(g)
        gains.append(grow)
        per_layer.append({"layer": l, "perceptual": np_, "reasoning": nr})
    total = sum(len(r) for r in rows)
    selected = len(perceptual) + len(reasoning) - both
    share = selected / total
    counts = {
        "perceptual": len(perceptual),
        "reasoning": len(reasoning),
        "both": both,
        "total_heads": total,
        "share": share,
        "per_layer": per_layer,
    }
    warnings += share_warnings(selected, total)
    return Selection(perceptual, reasoning, gains, counts, warnings)


def share_warnings(selected: int, total: int) -> list[str]:
    share = selected / total if total else 0.0
    pct = f"{100 * share:.1f}% ({selected} of {total} heads)"
    if selected == 0:
        return ["no head was selected: the bake would change nothing; loosen tau_perc/tau_reas or the layer bounds"]
    if share >= PAPER_DEGRADED_SHARE:
        return [f"{pct} selected: the paper saw results degrade at ~18%; best was ~6.4%"]
    if share < LOW_SHARE:
        return [f"only {pct} selected, well below the paper's best ~6.4%"]
    return []
