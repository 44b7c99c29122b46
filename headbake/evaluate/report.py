"""The evaluation report: every row of every arm, the statistics, and their renderings.

One dict (written as ``report.json``) holds everything needed to audit a
claim: each row's raw output, extracted answer and grade per arm, the
settings and versions, and the statistics computed from those rows. The text
table (stdout), the markdown table and the ``model-index`` results (model
card) are all rendered from that dict, so the card can never say more than
the report supports. Nothing here names a local path: rows carry ids, not
image paths, and datasets are named by benchmark.
"""

from __future__ import annotations

import json
from pathlib import Path

from headbake.errors import HeadbakeError
from headbake.evaluate.cache import model_fingerprint
from headbake.evaluate.recipes import card_dataset
from headbake.evaluate.rows import EvalRow
from headbake.evaluate.scoring import scorer_versions
from headbake.evaluate.stats import DEFAULT_RESAMPLES, statistics

REPORT_FORMAT = "headbake.eval/v1"
MAX_REPORT_BYTES = 512 << 20
NO_EVALUATION = "No benchmark was run for this checkpoint, so no task accuracy is claimed."


def agreement(results: dict, a: str, b: str) -> dict | None:
    """How often arms ``a`` and ``b`` gave the same extracted answer (and the same grade) on shared rows."""
    ids = [i for i in results.get(a, {}) if i in results.get(b, {})]
    if not ids:
        return None
    ra, rb = results[a], results[b]
    differ = [i for i in ids if ra[i].get("extracted") != rb[i].get("extracted")]
    return {
        "arms": [a, b], "rows": len(ids), "same_answer": len(ids) - len(differ),
        "same_grade": sum(1 for i in ids if bool(ra[i]["correct"]) == bool(rb[i]["correct"])),
        "same_output": sum(1 for i in ids if ra[i].get("raw") == rb[i].get("raw")),
        "rate": (len(ids) - len(differ)) / len(ids), "differing_rows": differ,
    }


def build_report(
    rows: list[EvalRow],
    results: dict[str, dict[str, dict]],
    settings: dict | None = None,
    versions: dict | None = None,
    baseline: str = "vanilla",
    agreement_pairs: list[tuple[str, str]] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict:
    """Assemble ``{arm: {row_id: {"correct", "extracted", "raw", ...}}}`` into the report dict.

    ``agreement_pairs`` defaults to ``[("hooked", "baked")]`` when both arms ran:
    the baked checkpoint must answer exactly as the hooked original does.
    """
    by_id = {r.id: r for r in rows}
    for arm, per_row in results.items():
        unknown = [i for i in per_row if i not in by_id]
        if unknown:
            raise ValueError(f"arm {arm!r} has results for unknown row ids: {unknown[:3]}")
        for i, res in per_row.items():
            if not isinstance(res.get("correct"), bool):
                raise ValueError(f"arm {arm!r} row {i!r}: 'correct' must be a bool")
    correct = {arm: {i: res["correct"] for i, res in per_row.items()} for arm, per_row in results.items()}
    stats = statistics(correct, {r.id: r.benchmark for r in rows}, baseline, n_resamples, seed)
    if agreement_pairs is None:
        agreement_pairs = [("hooked", "baked")]
    stats["agreement"] = [
        a for a in (agreement(results, x, y) for x, y in agreement_pairs if x in results and y in results) if a
    ]
    return {
        "format": REPORT_FORMAT,
        "settings": dict(settings or {}),
        "versions": {**scorer_versions(), **(versions or {})},
        "arms": list(results),
        "baseline": baseline if baseline in results else None,
        "rows": [
            {
                "id": r.id, "benchmark": r.benchmark, "type": r.type, "question": r.question, "answer": r.answer,
                "choices": r.choices, "meta": r.meta,
                "results": {arm: results[arm][r.id] for arm in results if r.id in results[arm]},
            }
            for r in rows
        ],
        "statistics": stats,
    }


def mode_agreement(forced: dict, generated: dict) -> dict:
    """Per arm, on rows both modes answered: how often the forced choice is generation's extracted answer."""
    out = {}
    for arm, per in forced.items():
        ids = [i for i in per if i in generated.get(arm, {})]
        if not ids:
            continue
        gen = generated[arm]
        differ = [i for i in ids if per[i].get("extracted") != gen[i].get("extracted")]
        out[arm] = {"rows": len(ids), "same_answer": len(ids) - len(differ),
                    "same_grade": sum(1 for i in ids if bool(per[i]["correct"]) == bool(gen[i]["correct"])),
                    "rate": (len(ids) - len(differ)) / len(ids), "differing_rows": differ}
    return out


def attach_cross_mode(report: dict, rows: list[EvalRow], mode: str, results: dict, primary: str,
                      settings: dict | None = None, with_statistics: bool = False,
                      n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Add the other mode's per-row results and its agreement with the primary mode (``report["cross_mode"]``).

    ``with_statistics``: the other mode ran on every row in this run (``--mode both``), so its accuracies and
    paired tests are reported too; results merely found in the cache are compared, never summarised.
    """
    results = {arm: per for arm, per in results.items() if per}
    if not results:
        report["cross_mode"] = None
        return report
    for r in report["rows"]:
        got = {arm: per[r["id"]] for arm, per in results.items() if r["id"] in per}
        if got:
            r["cross_mode_results"] = got
    primary_results = {arm: {r["id"]: r["results"][arm] for r in report["rows"] if arm in r["results"]}
                       for arm in report["arms"]}
    forced, generated = (results, primary_results) if mode == "forced" else (primary_results, results)
    cross = {"mode": mode, "primary": primary, "settings": settings or {},
             "forced_vs_generate": mode_agreement(forced, generated), "statistics": None}
    if with_statistics:
        correct = {arm: {i: res["correct"] for i, res in per.items()} for arm, per in results.items()}
        cross["statistics"] = statistics(correct, {r.id: r.benchmark for r in rows}, report.get("baseline") or "vanilla",
                                         n_resamples, seed)
    report["cross_mode"] = cross
    return report


def read_report(path) -> dict:
    """A ``report.json`` written by ``headbake eval`` (for ``headbake card --eval``)."""
    path = Path(path)
    try:
        if not path.is_file():
            raise HeadbakeError(f"evaluation report not found or not a file: {path}")
        if path.stat().st_size > MAX_REPORT_BYTES:
            raise HeadbakeError(f"evaluation report is too large: {path}")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise HeadbakeError(f"cannot read evaluation report {path}: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != REPORT_FORMAT:
        raise HeadbakeError(f"{path} is not a headbake evaluation report (expected format {REPORT_FORMAT})")
    if not isinstance(doc.get("statistics"), dict) or "overall" not in doc["statistics"]:
        raise HeadbakeError(f"{path} has no statistics")
    return doc


# ----------------------------------------------------------------------------- rendering


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _ci(ci, signed=False) -> str:
    if not ci:
        return "-"
    f = "{:+.1f}" if signed else "{:.1f}"
    return f"[{f.format(100 * ci[0])}, {f.format(100 * ci[1])}]"


def _groups(report: dict):
    st = report["statistics"]
    yield "overall", st["overall"]
    for name, g in st["benchmarks"].items():
        yield name, g


def render_table(report: dict) -> str:
    """Fixed-width text for the terminal: per group, each arm's accuracy and its comparison with the baseline."""
    base = report.get("baseline")
    st = report["statistics"]
    head = f"{'arm':<12} {'correct':>11} {'acc %':>6} {'95% CI':>14}"
    if base:
        head += f" {'diff':>6} {'95% CI':>15} {'fixed':>6} {'broken':>6} {'McNemar p':>10}  verdict"
    mode = (report.get("settings") or {}).get("mode")
    out = [f"{len(report['rows'])} rows; arms: {', '.join(report['arms'])}" + (f"; baseline: {base}" if base else "")
           + (f"; mode: {mode}" if mode else "")]
    groups = list(_groups(report))
    if len(groups) == 2 and groups[1][1]["rows"] == groups[0][1]["rows"]:
        groups = [(f"overall: {groups[1][0]}", groups[0][1])]  # one benchmark covering every row: one table
    for name, g in groups:
        out += ["", f"{name} ({g['rows']} rows)", "  " + head]
        for arm, a in g["arms"].items():
            line = f"{arm:<12} {str(a['correct']) + '/' + str(a['n']):>11} {_pct(a['accuracy']):>6} {_ci(a['ci95']):>14}"
            c = g["comparisons"].get(arm)
            if c:
                line += (f" {100 * c['difference']:>+6.1f} {_ci(c['ci95'], True):>15} {c['fixed']:>6} {c['broken']:>6}"
                         f" {c['mcnemar_p']:>10.3g}  {c['outcome']}")
            out.append("  " + line.rstrip())
    if st["overall"]["comparisons"]:
        out.append("")
        out += [c["verdict"] for c in st["overall"]["comparisons"].values()]
    for ag in st.get("agreement", []):
        a, b = ag["arms"]
        out.append(f"agreement {a} vs {b}: same answer on {ag['same_answer']}/{ag['rows']} rows "
                   f"({100 * ag['rate']:.1f}%), same grade on {ag['same_grade']}")
    cross = report.get("cross_mode")
    if cross and cross.get("statistics"):
        sub = {"rows": report["rows"], "arms": [a for a in report["arms"] if a in cross["statistics"]["overall"]["arms"]],
               "baseline": base, "statistics": {**cross["statistics"], "agreement": []}}
        out += ["", f"--- {cross['mode']} mode ---"] + render_table(sub).rstrip("\n").split("\n")[1:]
    if cross:
        for arm, ag in cross["forced_vs_generate"].items():
            out.append(f"forced vs generate ({arm}): same answer on {ag['same_answer']}/{ag['rows']} rows "
                       f"({100 * ag['rate']:.1f}%)")
    return "\n".join(out) + "\n"


def _md(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict, arms: list[str] | None = None) -> str:
    """A markdown table (one row per benchmark, then overall) of accuracies and paired comparisons."""
    arms = [a for a in (arms or report["arms"]) if a in report["arms"]]
    base = report.get("baseline")
    compared = [a for a in arms if a != base and base]
    header = ["Benchmark", "Rows"] + [f"{a} accuracy (95% CI)" for a in arms]
    for a in compared:
        header += [f"{a} − {base} (95% CI)", "Fixed / broken", "McNemar p", "Verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = list(_groups(report))
    for name, g in groups[1:] + groups[:1]:  # benchmarks first, overall last
        if name == "overall" and len(groups) == 2 and groups[1][1]["rows"] == g["rows"]:
            continue  # a single benchmark covering every row: its line is the overall line
        cells = ["**overall**" if name == "overall" else _md(card_dataset(name)["name"]), str(g["rows"])]
        for a in arms:
            acc = g["arms"].get(a)
            cells.append(f"{_pct(acc['accuracy'])} ({_ci(acc['ci95'])[1:-1].replace(', ', '–')})" if acc else "-")
        for a in compared:
            c = g["comparisons"].get(a)
            if c:
                cells += [f"{100 * c['difference']:+.1f} ({_ci(c['ci95'], True)[1:-1].replace(', ', ' to ')})",
                          f"{c['fixed']} / {c['broken']}", f"{c['mcnemar_p']:.3g}", c["outcome"]]
            else:
                cells += ["-"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def model_index_results(report: dict, arm: str = "baked") -> list[dict]:
    """``model-index`` results (Hub card YAML) for ``arm``: one entry per benchmark, accuracy in percent."""
    if arm not in report["arms"]:
        raise HeadbakeError(f"the evaluation report has no {arm!r} arm (arms: {', '.join(report['arms'])})")
    st = report["statistics"]
    groups = list(st["benchmarks"].items()) or [(None, st["overall"])]
    how = ", forced choice" if report.get("mode") == "forced" else ""
    out = []
    for name, g in groups:
        acc = g["arms"].get(arm)
        if not acc or acc["accuracy"] is None:
            continue
        out.append({
            "task": {"type": "visual-question-answering", "name": "Visual Question Answering"},
            "dataset": card_dataset(name),
            "metrics": [{"type": "accuracy", "value": round(100 * acc["accuracy"], 2),
                         "name": f"Accuracy{how} ({acc['n']} rows)"}],
        })
    return out


def card_markdown(report: dict | None, arms: tuple[str, ...] = ("vanilla", "baked")) -> str:
    """The card's evaluation section: the table and how it was computed, or a plain no-benchmark note.

    ``report`` may be a full report or its ``evaluation_summary`` (what a baked record keeps).
    """
    if report is None:
        return NO_EVALUATION + "\n"
    method = report["statistics"].get("method", {})
    notes = "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in method.items())
    about = _about(report)
    return render_markdown(report, list(arms)) + (f"\n{about}\n" if about else "") + (f"\n{notes}.\n" if notes else "")


def _about(report: dict) -> str:
    """What was run, in words: data, mode, arms, and the hooked-vs-baked agreement."""
    parts = []
    data = report.get("data") or {}
    if data:
        what = data.get("recipe") or data.get("name") or "an evaluation set"
        where = f" (`{data['name']}`)" if data.get("recipe") and data.get("name") else ""
        fp = f", fingerprint `{data['fingerprint'][:16]}`" if data.get("fingerprint") else ""
        parts.append(f"Evaluated with `headbake eval` on {data.get('rows', '?')} rows of **{_md(what)}**{_md(where)}"
                     f"{fp}.")
    mode, settings = report.get("mode"), report.get("settings") or {}
    if mode == "forced":
        parts.append("Mode: forced choice (the option whose first token the model finds most likely after "
                     "\"Answer:\"; a fast proxy for multiple-choice and yes/no rows, not full generation).")
    elif mode in ("generate", "both"):
        mnt = settings.get("max_new_tokens")
        parts.append("Mode: greedy generation" + (f" (up to {mnt} new tokens)" if mnt else "")
                     + ", answers extracted and graded by headbake's deterministic scorer.")
    names = {"vanilla": "the base model", "baked": "this checkpoint", "hooked": "the base model with the gains "
             "applied by a runtime hook", "per-input": "the paper's per-input plug-in"}
    arms = [f"{a} = {names[a]}" for a in report.get("arms", []) if a in names]
    if arms:
        parts.append("Arms: " + "; ".join(arms) + "; every arm saw identical prompts and settings.")
    for ag in report.get("statistics", {}).get("agreement", []):
        if ag["arms"] == ["hooked", "baked"]:
            parts.append(f"Hooked and baked gave the same answer on {ag['same_answer']} of {ag['rows']} rows.")
    return " ".join(parts)


def evaluation_summary(report: dict) -> dict:
    """What a baked record (``headbake.json``'s ``evaluation``) keeps of a report: no rows, no local paths.

    Enough to render the card's table and ``model-index`` and to find the full report again by its data
    fingerprint and settings.
    """
    st = report["statistics"]

    def slim(stats):
        if not stats:
            return stats
        return {**stats, "agreement": [{k: v for k, v in ag.items() if k != "differing_rows"}
                                       for ag in stats.get("agreement", [])]}

    settings = report.get("settings") or {}
    keep = ("mode", "max_new_tokens", "batch_size", "dtype", "engine", "think_close", "answer_prefix",
            "runner_version", "settings_sha256")
    prompt = settings.get("prompt") or {}
    cross = report.get("cross_mode")
    return {
        "format": REPORT_FORMAT,
        "mode": report.get("mode"),
        "rows": len(report.get("rows") or []) or st["overall"]["rows"],
        "arms": list(report["arms"]),
        "baseline": report.get("baseline"),
        "data": report.get("data"),
        "model": report.get("model"),
        "arm_details": report.get("arm_details"),
        "per_input": report.get("per_input"),
        "settings": {**{k: settings[k] for k in keep if k in settings},
                     "prompt": {k: prompt.get(k) for k in ("source", "sha256")} if prompt else None},
        "statistics": slim(st),
        "forced_vs_generate": {arm: {k: v for k, v in ag.items() if k != "differing_rows"}
                               for arm, ag in ((cross or {}).get("forced_vs_generate") or {}).items()},
        "versions": report.get("versions"),
        "created": (report.get("runtime") or {}).get("created"),
    }


def attach_to_record(record, report_path, baked_dir) -> dict:
    """Put the summary of the report at ``report_path`` into ``record.evaluation``, if it evaluated ``baked_dir``.

    The report's baked arm names its checkpoint by content digest; a report of another checkpoint (or of an
    earlier bake into the same folder) is refused rather than published on the wrong card.
    """
    report = read_report(report_path)
    name = Path(report_path).name
    if "baked" not in report.get("arms", []):
        raise HeadbakeError(f"{name} has no baked arm; run `headbake eval MODEL --baked {Path(baked_dir).name} ...`")
    digest = ((report.get("arm_details") or {}).get("baked") or {}).get("model_sha256")
    if not digest:
        raise HeadbakeError(f"{name} does not say which checkpoint its baked arm was (write it with `headbake eval`)")
    if digest != model_fingerprint(baked_dir):
        raise HeadbakeError(f"{name} evaluated another checkpoint as its baked arm: the files of "
                            f"{Path(baked_dir).name} differ from the ones it ran")
    record.evaluation = evaluation_summary(report)
    return record.evaluation


def headline(summary: dict | None) -> str:
    """One line for the terminal: the baked arm against vanilla over every row."""
    if not summary:
        return "no benchmark was run"
    overall = summary["statistics"]["overall"]
    comp = overall["comparisons"].get("baked")
    if comp is None:
        acc = overall["arms"].get("baked") or {}
        return f"baked {_pct(acc.get('accuracy'))}% on {acc.get('n', '?')} rows"
    return comp["verdict"]
