"""The trials as points (dev accuracy, KL from vanilla): the Pareto front, the choice rule, a table and a plot.

The choice rule, with ``--kl-budget X``: the most accurate trial whose KL is
at most X. Without a budget: the most accurate trial on the front. Ties go to
the lower KL (the setting closest to the original model), then to the earlier
trial. Both rules pick a point of the Pareto front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from headbake.calibrate.selection import PARAM_NAMES
from headbake.errors import HeadbakeError
from headbake.fsutil import atomic_path

RULE = ("most accurate trial on the dev rows{budget}; ties go to the lower KL from the original model, then to the "
        "earlier trial")


@dataclass
class Point:
    number: int  # Optuna trial number (-1: a reference point, not a trial)
    params: dict
    accuracy: float
    kl: float
    correct: int
    n: int
    perceptual: int = 0
    reasoning: int = 0
    share: float = 0.0
    gains_sha256: str | None = None
    label: str = ""
    same: list = field(default_factory=list)  # later trials with the same gains (same values)

    def as_dict(self) -> dict:
        d = {"trial": self.number, "accuracy": self.accuracy, "kl": self.kl, "correct": self.correct, "n": self.n,
             "perceptual": self.perceptual, "reasoning": self.reasoning, "share": self.share,
             **{k: self.params.get(k) for k in PARAM_NAMES}}
        if self.same:
            d["same_gains_trials"] = list(self.same)
        if self.label:
            d["label"] = self.label
        return d


def from_trial(t) -> Point:
    a = t.user_attrs
    return Point(t.number, dict(a["params"]), float(t.values[0]), float(t.values[1]), int(a.get("correct", 0)),
                 int(a.get("n", 0)), int(a.get("perceptual", 0)), int(a.get("reasoning", 0)),
                 float(a.get("share", 0.0)), a.get("gains_sha256"))


def _key(p: Point):
    return (-p.accuracy, p.kl, p.number)


def dedupe(points: list[Point]) -> list[Point]:
    """One point per gains matrix (the earliest trial), the others listed in its ``same``."""
    first: dict = {}
    out = []
    for p in sorted(points, key=lambda p: p.number):
        k = p.gains_sha256
        if k is not None and k in first:
            first[k].same.append(p.number)
            continue
        if k is not None:
            first[k] = p
        out.append(p)
    return out


def pareto_front(points: list[Point]) -> list[Point]:
    """Points no other point beats on both objectives (higher accuracy, lower KL), most accurate first."""
    front = []
    for p in points:
        dominated = any((q.accuracy >= p.accuracy and q.kl <= p.kl) and (q.accuracy > p.accuracy or q.kl < p.kl)
                        for q in points)
        if not dominated:
            front.append(p)
    return sorted(front, key=_key)


def choose(points: list[Point], kl_budget: float | None = None) -> Point:
    if not points:
        raise HeadbakeError("no trial was evaluated (every trial so far was infeasible); run more --trials or "
                            "raise --max-share")
    pool = points
    if kl_budget is not None:
        pool = [p for p in points if p.kl <= kl_budget]
        if not pool:
            low = min(p.kl for p in points)
            raise HeadbakeError(f"no trial has KL <= --kl-budget {kl_budget:g} (the lowest is {low:.4g}); raise the "
                                "budget or run more --trials")
    return min(pool, key=_key)


def rule_text(kl_budget: float | None) -> str:
    return RULE.format(budget=f" with KL <= {kl_budget:g}" if kl_budget is not None else "")


def _fmt_params(p: dict) -> list[str]:
    return [str(p["l_perc"]), f"{p['tau_perc']:.3g}", f"{p['g_perc']:.2f}", str(p["l_reas"]), f"{p['tau_reas']:.3g}",
            f"{p['g_reas']:.2f}"]


def format_front(front: list[Point], chosen: Point, vanilla: Point, default: dict, objective: str,
                 dev_name: str) -> str:
    """The Pareto front as a fixed-width table, with the vanilla model and the default preset as references."""
    head = ["", "trial", "dev acc", "correct", "KL", "heads P+R", "share", "l_perc", "tau_perc", "g_perc", "l_reas",
            "tau_reas", "g_reas"]
    rows = []
    for p in front:
        mark = "*" if p.number == chosen.number else ""
        rows.append([mark, str(p.number) + (f" (+{len(p.same)})" if p.same else ""), f"{100 * p.accuracy:.1f}%",
                     f"{p.correct}/{p.n}", f"{p.kl:.3g}", f"{p.perceptual}+{p.reasoning}", f"{100 * p.share:.1f}%",
                     *_fmt_params(p.params)])
    rows.append(["", "vanilla", f"{100 * vanilla.accuracy:.1f}%", f"{vanilla.correct}/{vanilla.n}", "0", "0+0", "0.0%",
                 *["-"] * 6])
    dp = default.get("point")
    if dp is not None:
        rows.append(["", f"default ({default['name']})", f"{100 * dp.accuracy:.1f}%", f"{dp.correct}/{dp.n}",
                     f"{dp.kl:.3g}", f"{dp.perceptual}+{dp.reasoning}", f"{100 * dp.share:.1f}%",
                     *_fmt_params(dp.params)])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [f"Pareto front ({len(front)} settings; dev: {dev_name}, {vanilla.n} rows; "
             f"{'forced-answer' if objective == 'forced' else 'generation'} accuracy vs KL from the original, nats):"]
    for r in [head, *rows]:
        lines.append("  " + "  ".join(c.rjust(w) if i > 0 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    if dp is None:
        lines.append(f"  default preset ({default['name']}): {default['why']}")
    lines.append("  * chosen; (+k): k later trials picked the same gains")
    return "\n".join(lines)


def plot_front(points: list[Point], front: list[Point], chosen: Point, vanilla: Point, default: dict, path,
               title: str) -> None:
    """PNG: every evaluated trial, the front as a step line, the chosen one, vanilla and the default preset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    try:
        ax.scatter([p.kl for p in points], [100 * p.accuracy for p in points], s=14, color="0.7", label="trials",
                   zorder=1)
        fx = [p.kl for p in sorted(front, key=lambda p: p.kl)]
        fy = [100 * p.accuracy for p in sorted(front, key=lambda p: p.kl)]
        ax.step(fx, fy, where="post", color="tab:blue", lw=1.2, zorder=2)
        ax.scatter(fx, fy, s=26, color="tab:blue", label="Pareto front", zorder=3)
        ax.scatter([0.0], [100 * vanilla.accuracy], marker="s", s=46, color="black", label="vanilla", zorder=4)
        dp = default.get("point")
        if dp is not None:
            ax.scatter([dp.kl], [100 * dp.accuracy], marker="D", s=46, color="tab:orange",
                       label=f"default preset ({default['name']})", zorder=4)
        else:
            ax.text(0.98, 0.02, f"default preset ({default['name']}): {default['why']}", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=7, color="tab:orange", wrap=True)
        ax.scatter([chosen.kl], [100 * chosen.accuracy], marker="*", s=180, color="tab:red",
                   label=f"chosen (trial {chosen.number})", zorder=5)
        ax.set_xlabel("KL(original || tuned), next-token, mean over dev prompts (nats)")
        ax.set_ylabel("dev accuracy (%)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right" if dp is not None else "center right")
        if any(math.isfinite(p.kl) and p.kl > 0 for p in points):
            ax.set_xscale("symlog", linthresh=max(1e-4, min(p.kl for p in points if p.kl > 0)))
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
