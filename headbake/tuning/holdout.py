"""The held-out check of a tuned setting: vanilla, tuned and the default preset on rows the search never saw.

Same mode and settings as the search's accuracy objective, on the model that
is already loaded (the gains through the runtime hook), graded by
``headbake.evaluate.scoring`` and summarised by ``headbake.evaluate.report``
(Wilson intervals, paired bootstrap, exact McNemar): the tuned setting and
the default preset each against vanilla, and the tuned setting against the
default preset.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

from headbake.evaluate.report import build_report
from headbake.evaluate.runner import EvalRun, ForcedScorer, RowResult, generate_batch
from headbake.evaluate.scoring import score_row
from headbake.evaluate.stats import compare
from headbake.runtime import apply_gains


def _answers(model, processor, rows, settings, question_text, gains, forced_scorer=None) -> list:
    """``[RowResult]`` for ``rows`` with ``gains`` hooked in (None: the model as is); unscorable rows skipped."""
    out: list = [None] * len(rows)
    with apply_gains(model, gains) if gains is not None else nullcontext():
        if settings.mode == "forced":
            for i, res in forced_scorer.run(model).items():
                out[i] = res
            for i, r in enumerate(rows):
                if out[i] is None:
                    out[i] = RowResult(str(r.id), "", "forced", skipped=forced_scorer.skipped(r))
        else:
            for start in range(0, len(rows), settings.batch_size):
                batch = rows[start:start + settings.batch_size]
                out[start:start + len(batch)] = generate_batch(model, processor, batch, settings, question_text)
    return out


def evaluate_holdout(model, processor, rows, settings, arms: dict, question_text=None, versions=None,
                     seed: int = 0) -> dict:
    """The ``headbake.eval/v1`` report of ``arms`` (``{name: gains or None}``, ``vanilla`` first) on ``rows``.

    ``report["tuning"]`` adds the tuned-vs-default comparison and each arm's seconds.
    """
    scorer = ForcedScorer(processor, rows, settings, question_text) if settings.mode == "forced" else None
    results, meta = {}, {}
    for name, gains in arms.items():
        t0 = time.perf_counter()
        got = _answers(model, processor, rows, settings, question_text, gains, scorer)
        for r in got:
            r.arm = name
        results[name] = got
        meta[name] = {"seconds": round(time.perf_counter() - t0, 3)}
    graded = EvalRun(results, meta, settings.cache_dict()).graded(rows, score_row)
    report = build_report(rows, graded, settings={**settings.cache_dict(), "purpose": "tune held-out check"},
                          versions=versions, baseline="vanilla", agreement_pairs=[], seed=seed)
    extra = {"arms": meta}
    if "tuned" in graded and "default" in graded:
        flags = {a: {i: g["correct"] for i, g in graded[a].items()} for a in ("tuned", "default")}
        c = compare(flags["default"], flags["tuned"], "tuned", "default", seed=seed)
        extra["tuned_vs_default"] = c.as_dict() if c else None
    report["tuning"] = extra
    return report


def summary(report: dict) -> dict:
    """What tuned.json, the record and the card keep of the held-out report (no row texts)."""
    st = report["statistics"]
    return {"rows": st["overall"]["rows"], "arms": st["overall"]["arms"], "comparisons": st["overall"]["comparisons"],
            "tuned_vs_default": report.get("tuning", {}).get("tuned_vs_default"), "method": st.get("method")}


def format_summary(s: dict) -> list[str]:
    """Plain lines: each arm's held-out accuracy, then each paired comparison's verdict."""
    lines = [f"Held-out check ({s['rows']} rows the search never saw):"]
    for arm, a in s["arms"].items():
        ci = a.get("ci95")
        lines.append(f"  {arm:<8} {a['correct']}/{a['n']} = {100 * a['accuracy']:.1f}%"
                     + (f" (95% CI {100 * ci[0]:.1f}-{100 * ci[1]:.1f})" if ci else ""))
    for c in s["comparisons"].values():
        lines.append(f"  {c['verdict']}")
    if s.get("tuned_vs_default"):
        lines.append(f"  {s['tuned_vs_default']['verdict']}")
    return lines
