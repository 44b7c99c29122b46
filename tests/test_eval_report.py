"""The report dict and its renderings, from per-row results with known fixed and broken rows."""

from __future__ import annotations

import json

import pytest

from headbake.errors import HeadbakeError
from headbake.evaluate.report import (
    NO_EVALUATION,
    REPORT_FORMAT,
    agreement,
    build_report,
    card_markdown,
    model_index_results,
    read_report,
    render_markdown,
    render_table,
)
from headbake.evaluate.rows import make_row


def _rows():
    rows = []
    for i in range(30):
        bench = "mmstar" if i < 20 else "pope"
        if bench == "mmstar":
            rows.append(make_row(f"m{i}", ["/data/secret/img.png"], f"Q{i}", "A", "multiple_choice",
                                 choices=["x", "y"], benchmark=bench))
        else:
            rows.append(make_row(f"p{i}", ["/data/secret/img.png"], f"Q{i}", "yes", "yes_no", benchmark=bench))
    return rows


def _res(ok, extracted="A", raw="out"):
    return {"correct": ok, "extracted": extracted, "raw": raw}


def _results(rows):
    # vanilla: right on even rows. baked: additionally fixes m1, m3, m5, m7, m9, m11 and breaks m0.
    vanilla = {r.id: _res(n % 2 == 0) for n, r in enumerate(rows)}
    baked = dict(vanilla)
    for i in (1, 3, 5, 7, 9, 11):
        baked[f"m{i}"] = _res(True, raw="fixed")
    baked["m0"] = _res(False, "B")
    hooked = dict(baked)
    hooked["p21"] = _res(vanilla["p21"]["correct"], extracted="Z")  # one disagreement with baked
    return {"vanilla": vanilla, "baked": baked, "hooked": hooked}


@pytest.fixture
def report():
    rows = _rows()
    return build_report(rows, _results(rows), settings={"mode": "generate", "max_new_tokens": 2048},
                        versions={"headbake": "0.1.0"}, seed=0)


def test_report_structure(report):
    assert report["format"] == REPORT_FORMAT
    assert report["arms"] == ["vanilla", "baked", "hooked"] and report["baseline"] == "vanilla"
    assert report["settings"]["max_new_tokens"] == 2048
    assert report["versions"]["headbake"] == "0.1.0" and "math-verify" in report["versions"]
    assert len(report["rows"]) == 30
    row = report["rows"][1]
    assert row["id"] == "m1" and set(row["results"]) == {"vanilla", "baked", "hooked"}
    assert row["results"]["baked"] == {"correct": True, "extracted": "A", "raw": "fixed"}
    assert "/data/secret" not in json.dumps(report)  # image paths never reach the report


def test_report_statistics_counts(report):
    st = report["statistics"]
    c = st["overall"]["comparisons"]["baked"]
    assert (c["n"], c["fixed"], c["broken"]) == (30, 6, 1)
    assert c["difference"] == pytest.approx(5 / 30)
    assert c["mcnemar_p"] == pytest.approx(2 * (1 + 7) / 2**7)  # exact binomial on 7 discordant rows
    assert st["benchmarks"]["mmstar"]["comparisons"]["baked"]["fixed"] == 6
    assert st["benchmarks"]["pope"]["comparisons"]["baked"]["outcome"] == "no difference"
    assert st["overall"]["arms"]["vanilla"]["correct"] == 15 and st["overall"]["arms"]["baked"]["correct"] == 20
    (ag,) = st["agreement"]
    assert ag["arms"] == ["hooked", "baked"] and (ag["rows"], ag["same_answer"]) == (30, 29)
    assert ag["differing_rows"] == ["p21"] and ag["same_grade"] == 30


def test_report_rejects_bad_results():
    rows = _rows()
    with pytest.raises(ValueError, match="unknown row ids"):
        build_report(rows, {"vanilla": {"nope": _res(True)}})
    with pytest.raises(ValueError, match="'correct' must be a bool"):
        build_report(rows, {"vanilla": {"m0": {"correct": 1}}})


def test_partial_arm_is_paired_on_shared_rows():
    rows = _rows()
    res = _results(rows)
    res["baked"] = {k: v for k, v in res["baked"].items() if k.startswith("m")}
    rep = build_report(rows, res, agreement_pairs=[])
    assert rep["statistics"]["overall"]["comparisons"]["baked"]["n"] == 20
    assert rep["statistics"]["agreement"] == []
    assert rep["rows"][25]["id"] == "p25" and set(rep["rows"][25]["results"]) == {"vanilla", "hooked"}


def test_agreement_none_without_shared_rows():
    assert agreement({"a": {"1": _res(True)}, "b": {"2": _res(True)}}, "a", "b") is None


def test_render_table(report):
    text = render_table(report)
    lines = text.splitlines()
    assert lines[0] == "30 rows; arms: vanilla, baked, hooked; baseline: vanilla; mode: generate"
    assert "overall (30 rows)" in lines and "mmstar (20 rows)" in lines and "pope (10 rows)" in lines
    baked = next(ln for ln in lines if ln.strip().startswith("baked") and "20/30" in ln)
    assert "+16.7" in baked and baked.split()[-1] in ("better", "noise")
    assert any(ln.startswith("agreement hooked vs baked: same answer on 29/30 rows (96.7%)") for ln in lines)
    assert any("6 fixed / 1 broken" in ln for ln in lines)


def test_render_markdown_and_card(report):
    md = render_markdown(report, ["vanilla", "baked"])
    lines = md.splitlines()
    assert lines[0].startswith("| Benchmark | Rows | vanilla accuracy (95% CI) | baked accuracy (95% CI) | baked − vanilla")
    assert lines[2].startswith("| MMStar | 20 | 50.0 (29.9–70.1) | 75.0 (53.1–88.8) | +25.0 (") and "| 6 / 1 |" in lines[2]
    assert lines[3].startswith("| POPE | 10 |") and "no difference" in lines[3]
    assert lines[4].startswith("| **overall** | 30 |") and "| 6 / 1 |" in lines[4]
    assert "hooked" not in md
    card = card_markdown(report)
    assert card.startswith(md) and "Wilson" in card and "McNemar" in card
    assert card_markdown(None) == NO_EVALUATION + "\n"


def test_single_benchmark_has_no_duplicate_overall_line():
    rows = [r for r in _rows() if r.benchmark == "mmstar"]
    res = {arm: {k: v for k, v in per.items() if k.startswith("m")} for arm, per in _results(_rows()).items()}
    md = render_markdown(build_report(rows, res))
    assert "overall" not in md and md.count("| MMStar |") == 1


def test_model_index_results_are_valid_hub_metadata(report):
    from huggingface_hub.repocard_data import model_index_to_eval_results

    results = model_index_results(report, "baked")
    assert [r["dataset"]["type"] for r in results] == ["Lin-Chen/MMStar", "lmms-lab/POPE"]
    assert results[0]["metrics"][0]["value"] == pytest.approx(75.0)
    name, evals = model_index_to_eval_results([{"name": "my-baked-model", "results": results}])
    assert name == "my-baked-model" and len(evals) == 2
    assert evals[1].dataset_type == "lmms-lab/POPE" and evals[1].dataset_split == "test"
    assert evals[0].metric_type == "accuracy" and evals[0].task_type == "visual-question-answering"
    with pytest.raises(HeadbakeError, match="no 'per-input' arm"):
        model_index_results(report, "per-input")


def test_model_index_without_benchmarks_uses_overall():
    rows = [make_row("a", ["x"], "q", "yes", "yes_no"), make_row("b", ["x"], "q", "no", "yes_no")]
    rep = build_report(rows, {"baked": {"a": _res(True), "b": _res(False)}})
    (res,) = model_index_results(rep)
    assert res["dataset"] == {"name": "evaluation set", "type": "evaluation set"}
    assert res["metrics"][0]["value"] == 50.0


def test_read_report_roundtrip_and_errors(report, tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert read_report(path)["statistics"]["overall"]["rows"] == 30
    with pytest.raises(HeadbakeError, match="not found"):
        read_report(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(HeadbakeError, match="cannot read evaluation report"):
        read_report(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something/v1"}))
    with pytest.raises(HeadbakeError, match="not a headbake evaluation report"):
        read_report(tmp_path / "other.json")


def test_summary_renders_the_same_card_without_rows(report):
    from headbake.evaluate.report import evaluation_summary, headline

    summary = evaluation_summary(report)
    assert summary["rows"] == 30 and summary["arms"] == ["vanilla", "baked", "hooked"]
    assert summary["statistics"]["overall"]["comparisons"] == report["statistics"]["overall"]["comparisons"]
    text = json.dumps(summary)
    assert "differing_rows" not in text and "fixed" in text and '"raw"' not in text and "Q1" not in text
    assert card_markdown(summary) == card_markdown(report)
    assert model_index_results(summary) == model_index_results(report)
    assert headline(summary) == report["statistics"]["overall"]["comparisons"]["baked"]["verdict"]
    assert headline(None) == "no benchmark was run"


def test_forced_vs_generate_agreement_counts_differences():
    from headbake.evaluate.report import mode_agreement

    forced = {"baked": {"a": _res(True, "A"), "b": _res(False, "B"), "c": _res(True, "A")}}
    generated = {"baked": {"a": _res(True, "A"), "b": _res(True, "A")}, "vanilla": {"a": _res(True, "A")}}
    ag = mode_agreement(forced, generated)
    assert list(ag) == ["baked"]
    assert ag["baked"] == {"rows": 2, "same_answer": 1, "same_grade": 1, "rate": 0.5, "differing_rows": ["b"]}
