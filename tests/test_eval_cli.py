"""``headbake eval``, ``card --eval`` and ``convert --eval-data`` end to end on the planted model.

The planted model (tests/planted.py) states in advance which rows its best
gains fix; the command must find exactly those, with the right McNemar
counts, the hooked arm agreeing with the baked checkpoint on every row, and
the same report after an interruption and a rerun.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import planted as P
from headbake.cli import main
from headbake.evaluate.stats import mcnemar_exact

BEST = ["--l-perc", "0", "--tau-perc", "0.70", "--g-perc", "1.25", "--l-reas", "3", "--tau-reas", "0.05",
        "--g-reas", "1.30"]
FAST = ["-q", "--resamples", "2000"]


def run(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


def _comparable(report: dict) -> dict:
    """The report without what varies between runs of the same evaluation (timings, cache hits, date)."""
    return {k: v for k, v in report.items() if k != "runtime"}


@pytest.fixture(scope="module")
def baked(planted, tmp_path_factory):
    """The planted model baked with its best gains (a real ``headbake bake``)."""
    from headbake.gains import gains_document
    from headbake.model.info import load_model_info

    folder = tmp_path_factory.mktemp("bake")
    gains = folder / "best.json"
    gains.write_text(json.dumps(gains_document(P.scenarios()["best"].gains, load_model_info(planted.model_dir))))
    out = folder / "planted-headbake"
    r = run("bake", planted.model_dir, "--gains", gains, "-o", out, "-q")
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def forced(planted, baked, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "report.json"
    r = run("eval", planted.model_dir, "--baked", baked, "--data", planted.rows_path, "--mode", "forced",
            "--arms", "vanilla,baked,hooked,per-input", *BEST, "-o", out, *FAST)
    assert r.exit_code == 0, r.output
    return out, json.loads(out.read_text()), r.output


def _fixed(report, arm):
    rows = report["rows"]
    return ({r["id"] for r in rows if r["results"][arm]["correct"] and not r["results"]["vanilla"]["correct"]},
            {r["id"] for r in rows if r["results"]["vanilla"]["correct"] and not r["results"][arm]["correct"]})


def test_eval_finds_the_planted_fixed_rows(forced):
    _, report, stdout = forced
    sc = P.scenarios()
    assert len(report["rows"]) == 24 and report["arms"] == ["vanilla", "baked", "hooked", "per-input"]
    overall = report["statistics"]["overall"]
    assert overall["arms"]["vanilla"]["correct"] == len(sc["vanilla"].correct) == 13
    for arm in ("baked", "hooked", "per-input"):
        c = overall["comparisons"][arm]
        assert (c["fixed"], c["broken"]) == (len(sc["best"].fixed), 0) == (9, 0)
        assert c["difference"] == pytest.approx(9 / 24) and c["ci95"][0] > 0
        assert c["mcnemar_p"] == pytest.approx(mcnemar_exact(9, 0)) and c["outcome"] == "better"
        assert _fixed(report, arm) == (set(sc["best"].fixed), set())
    assert "baked is better than vanilla: +37.5 points" in stdout
    assert "agreement hooked vs baked: same answer on 24/24 rows" in stdout


def test_hooked_agrees_with_baked_on_every_row(forced):
    _, report, _ = forced
    (ag,) = [a for a in report["statistics"]["agreement"] if a["arms"] == ["hooked", "baked"]]
    assert ag["same_answer"] == ag["rows"] == 24 and ag["differing_rows"] == []
    for row in report["rows"]:
        h, b = row["results"]["hooked"], row["results"]["baked"]
        assert h["extracted"] == b["extracted"]
        assert h["scores"] == pytest.approx(b["scores"], abs=1e-4)


def test_per_input_arm_ran_with_the_given_rule(forced):
    _, report, _ = forced
    assert all("per-input" in r["results"] for r in report["rows"])
    assert report["per_input"]["preset"]["l_perc"] == 0 and report["per_input"]["preset"]["g_reas"] == 1.3
    assert report["per_input"]["query"] == {"mode": "last", "k": 1}
    assert report["arm_details"]["per-input"]["model_sha256"] == report["arm_details"]["vanilla"]["model_sha256"]
    assert report["arm_details"]["baked"]["model_sha256"] != report["arm_details"]["vanilla"]["model_sha256"]


def test_report_is_complete_and_names_no_local_path(forced, planted, baked):
    out, report, _ = forced
    from headbake.record import local_paths

    assert report["data"] == {"source": "jsonl", "name": "rows.jsonl", "rows": 24, "limit": None,
                              "fingerprint": report["data"]["fingerprint"]}
    assert report["model"]["id"] == "model" and report["arm_details"]["baked"]["checkpoint"] == "planted-headbake"
    assert report["settings"]["mode"] == "forced" and report["settings"]["prompt"]["source"] == "the question alone"
    assert {"headbake_version", "torch_version", "transformers_version", "math-verify"} <= set(report["versions"])
    row = next(r for r in report["rows"] if r["id"] == "mc-00")
    assert row["results"]["vanilla"]["extracted"] == "B" and row["results"]["baked"]["extracted"] == "A"
    text = out.read_text()
    for p in (planted.model_dir, planted.rows_path.parent, baked, out.parent, Path.home()):
        assert str(p) not in text
    assert not local_paths(report)
    assert out.with_name("report.cache.jsonl").is_file()


def test_json_is_one_document(forced, planted, baked):
    out, report, _ = forced
    r = run("eval", planted.model_dir, "--baked", baked, "--data", planted.rows_path, "--mode", "forced",
            "--arms", "vanilla,baked,hooked,per-input", *BEST, "-o", out, *FAST, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # the whole of stdout is one JSON document
    assert doc["out"] == str(out) and doc["statistics"]["overall"]["comparisons"]["baked"]["fixed"] == 9
    assert "rows" in doc and not isinstance(doc["rows"], list)  # a summary: the per-row results are in the file
    assert _comparable(json.loads(out.read_text())) == _comparable(report)  # served from the cache, same report


def test_generate_and_forced_agree_and_are_compared(planted, baked, tmp_path):
    out = tmp_path / "both.json"
    r = run("eval", planted.model_dir, "--baked", baked, "--data", planted.rows_path, "--mode", "both",
            "--max-new-tokens", "4", "-o", out, *FAST)
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert report["mode"] == "both" and report["settings"]["mode"] == "generate"
    assert report["statistics"]["overall"]["comparisons"]["baked"]["fixed"] == 9
    cross = report["cross_mode"]
    assert cross["mode"] == "forced" and cross["statistics"]["overall"]["comparisons"]["baked"]["fixed"] == 9
    for arm in ("vanilla", "baked"):
        assert cross["forced_vs_generate"][arm]["same_answer"] == 24
    yn = next(r for r in report["rows"] if r["id"] == "yn-00")
    assert yn["results"]["baked"]["raw"] == "Yes" and yn["cross_mode_results"]["baked"]["raw"] == "yes"
    assert "--- forced mode ---" in r.output and "forced vs generate (baked): same answer on 24/24" in r.output

    # forced alone, on the same cache: compared with the generate answers found there, not summarised
    out2 = tmp_path / "forced.json"
    r = run("eval", planted.model_dir, "--baked", baked, "--data", planted.rows_path, "--mode", "forced",
            "--max-new-tokens", "4", "--cache", tmp_path / "both.cache.jsonl", "-o", out2, *FAST)
    assert r.exit_code == 0, r.output
    rep2 = json.loads(out2.read_text())
    assert rep2["runtime"]["arms"]["baked"]["forced"] == {"computed": 0, "from_cache": 24,
                                                          "seconds": rep2["runtime"]["arms"]["baked"]["forced"]["seconds"]}
    assert rep2["cross_mode"]["mode"] == "generate" and rep2["cross_mode"]["statistics"] is None
    assert rep2["cross_mode"]["forced_vs_generate"]["vanilla"]["rows"] == 24


def test_interrupted_eval_resumes_to_the_same_report(planted, baked, tmp_path, monkeypatch):
    from headbake.evaluate import runner

    args = ["eval", planted.model_dir, "--baked", baked, "--data", planted.rows_path, "--mode", "forced",
            "--batch-size", "5"]
    fresh = tmp_path / "fresh.json"
    assert run(*args, "-o", fresh, *FAST).exit_code == 0

    real, calls = runner.ForcedScorer.run_batch, []

    def interrupted(self, *a, **k):
        calls.append(1)
        if len(calls) == 8:  # the 3rd batch of the baked arm (5 batches per arm)
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(runner.ForcedScorer, "run_batch", interrupted)
    out = tmp_path / "report.json"
    r = run(*args, "-o", out, *FAST)
    assert r.exit_code == 130 and "Interrupted: 34 finished row results are kept" in r.output
    assert not out.exists()
    cache = tmp_path / "report.cache.jsonl"
    assert len(cache.read_text().splitlines()) == 24 + 10

    monkeypatch.setattr(runner.ForcedScorer, "run_batch", real)
    r = run(*args, "-o", out, *FAST)
    assert r.exit_code == 0, r.output
    resumed = json.loads(out.read_text())
    assert resumed["runtime"]["arms"]["vanilla"]["forced"]["computed"] == 0
    assert resumed["runtime"]["arms"]["baked"]["forced"]["computed"] == 14
    assert _comparable(resumed) == _comparable(json.loads(fresh.read_text()))
    assert resumed["statistics"]["overall"]["comparisons"]["baked"]["fixed"] == 9


@pytest.fixture
def no_loading(monkeypatch):
    """Any attempt to load weights fails the test: refusals must come first."""
    import headbake.evaluate.runner as runner
    import headbake.model.loading as loading

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(runner, "load_model", refuse)
    monkeypatch.setattr(loading, "load_model", refuse)


def _one_line_error(r, code, text):
    assert r.exit_code == code, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0], r.output


def test_bad_inputs_are_refused_in_one_line_before_loading(planted, baked, tmp_path, no_loading, monkeypatch):
    data = tmp_path / "rows.jsonl"
    shutil.copytree(planted.rows_path.parent / "images", tmp_path / "images")
    good = planted.rows[:2]
    bad = dict(planted.rows[2], type="essay")
    data.write_text("".join(json.dumps(r) + "\n" for r in [*good, bad]))
    base = ["eval", planted.model_dir, "-o", tmp_path / "r.json", "-q"]

    _one_line_error(run(*base, "--baked", baked, "--data", data), 2, "rows.jsonl line 3: \"type\" must be one of")
    data.write_text("".join(json.dumps(r) + "\n" for r in good))
    _one_line_error(run(*base, "--data", data), 2, "the baked arm needs --baked DIR")
    _one_line_error(run(*base, "--baked", baked, "--data", data, "--arms", "vanilla,bogus"), 2,
                    "unknown arm 'bogus'; choose from vanilla, baked, hooked, per-input")
    _one_line_error(run(*base, "--arms", "vanilla,hooked", "--data", data), 2, "the hooked arm needs --gains")
    _one_line_error(run(*base, "--baked", baked), 2, "no evaluation data")
    _one_line_error(run(*base, "--baked", baked, "--data", data, "--split", "val"), 2,
                    "--split and --config apply to --dataset and --recipe")
    _one_line_error(run(*base, "--baked", baked, "--recipe", "pope", "--answer-column", "gt"), 2,
                    "--answer-column applies to --dataset without --recipe")
    _one_line_error(run(*base, "--baked", baked, "--data", data, "--mode", "forced", "--engine", "vllm"), 2,
                    "--engine vllm runs --mode generate only")
    _one_line_error(run(*base, "--baked", baked, "--data", data, "--arms", "vanilla,hooked", "--engine", "vllm"), 2,
                    "hooked needs the runtime hook")
    _one_line_error(run(*base, "--baked", baked, "--data", data, "--arms", "vanilla,per-input", "--query", "last",
                        "--k", "2"), 2, "--k applies to --query last-k")
    _one_line_error(run(*base, "--baked", tmp_path, "--data", data), 2, "--baked is not a model directory")

    import importlib.util

    import torch

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "vllm" else real(n, *a))
    _one_line_error(run(*base, "--baked", baked, "--data", data, "--engine", "vllm"), 3,
                    "--engine vllm needs vLLM, which is not installed")
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "vllm" else real(n, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _one_line_error(run(*base, "--baked", baked, "--data", data, "--engine", "vllm"), 3,
                    "--engine vllm needs a CUDA GPU")
    assert not (tmp_path / "r.json").exists()


def test_a_bake_of_another_model_is_refused(planted, tmp_path, no_loading):
    from headbake.demo import build_tiny_qwen25vl

    other = build_tiny_qwen25vl(tmp_path / "two-layers", dtype="float32", num_layers=2)
    _one_line_error(run("eval", planted.model_dir, "--baked", other, "--data", planted.rows_path,
                        "-o", tmp_path / "r.json", "-q"), 2, "--baked two-layers is not a bake of this model: it "
                    "has qwen2_5_vl, 2 layers")


def test_mapped_dataset_gives_the_same_answers(planted, baked, tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    base = planted.rows_path.parent
    cols = {"qid": [], "picture": [], "text": [], "gold": [], "kind": [], "options": []}
    for r in planted.rows:
        cols["qid"].append(r["id"])
        cols["picture"].append(Image.open(base / r["image"]).convert("RGB"))
        cols["text"].append(r["question"])
        cols["gold"].append(r["answer"])
        cols["kind"].append(r["type"])
        cols["options"].append(r.get("choices"))
    feats = datasets.Features({"qid": datasets.Value("string"), "picture": datasets.Image(),
                               "text": datasets.Value("string"), "gold": datasets.Value("string"),
                               "kind": datasets.Value("string"), "options": datasets.Sequence(datasets.Value("string"))})
    folder = tmp_path / "squares"
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(cols, features=feats)}).save_to_disk(str(folder))
    out = tmp_path / "mapped.json"
    r = run("eval", planted.model_dir, "--baked", baked, "--dataset", folder, "--image-column", "picture",
            "--question-column", "text", "--answer-column", "gold", "--type-column", "kind", "--choices-column",
            "options", "--id-column", "qid", "--benchmark", "squares", "--mode", "forced", "-o", out, *FAST)
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert report["data"]["name"] == "squares" and report["data"]["source"] == "dataset"
    assert str(tmp_path) not in out.read_text()
    assert _fixed(report, "baked") == (set(P.scenarios()["best"].fixed), set())
    assert list(report["statistics"]["benchmarks"]) == ["squares"]


def test_cli_recipe_choices_are_the_recipes():
    from headbake.cli.evaluate import RECIPE_NAMES
    from headbake.evaluate.recipes import RECIPES

    assert set(RECIPE_NAMES) == set(RECIPES)


# ----------------------------------------------------------------------------- the card
def test_card_eval_renders_table_and_model_index(forced, baked, tmp_path):
    from huggingface_hub import ModelCard

    from headbake.record import local_paths, read_record

    out, report, _ = forced
    folder = tmp_path / "planted-headbake"
    shutil.copytree(baked, folder)
    r = run("card", folder)
    assert r.exit_code == 0, r.output
    assert "No benchmark was run for this checkpoint" in (folder / "README.md").read_text()
    assert "model-index" not in (folder / "README.md").read_text()

    r = run("card", folder, "--eval", out)
    assert r.exit_code == 0, r.output
    assert "evaluation: baked is better than vanilla: +37.5 points" in r.output
    text = (folder / "README.md").read_text()
    card = ModelCard(text)
    (res,) = card.data.eval_results
    assert card.data.model_name == "planted-headbake"
    assert res.metric_type == "accuracy" and res.metric_value == pytest.approx(100 * 22 / 24, abs=0.01)
    assert res.dataset_name == "planted" and res.task_type == "visual-question-answering"
    assert "| planted | 24 | 54.2 (35.1–72.1) | 91.7 (74.2–97.7) |" in text and "| 9 / 0 |" in text
    assert "No benchmark was run" not in text and "Mode: forced choice" in text
    assert "Hooked and baked gave the same answer on 24 of 24 rows" in text
    rec = read_record(folder)
    assert rec.evaluation["statistics"]["overall"]["comparisons"]["baked"]["fixed"] == 9
    assert rec.evaluation["data"]["fingerprint"] == report["data"]["fingerprint"]
    summary = json.dumps(rec.evaluation)
    assert "differing_rows" not in summary and '"raw"' not in summary and "mc-00" not in summary  # no per-row data
    assert not local_paths(rec.to_dict()) and str(tmp_path) not in text

    r = run("card", folder)  # re-rendering keeps the recorded evaluation
    assert r.exit_code == 0 and (folder / "README.md").read_text() == text


def test_card_refuses_a_report_of_another_checkpoint(forced, baked, tmp_path):
    out, report, _ = forced
    folder = tmp_path / "planted-headbake"
    shutil.copytree(baked, folder)
    other = tmp_path / "other.json"
    report = json.loads(out.read_text())
    report["arm_details"]["baked"]["model_sha256"] = "0" * 64
    other.write_text(json.dumps(report))
    r = CliRunner().invoke(main, ["card", str(folder), "--eval", str(other)])
    _one_line_error(r, 2, "other.json evaluated another checkpoint as its baked arm")
    report["arms"] = ["vanilla"]
    other.write_text(json.dumps(report))
    _one_line_error(CliRunner().invoke(main, ["card", str(folder), "--eval", str(other)]), 2, "has no baked arm")
    assert not (folder / "README.md").exists() or "No benchmark" in (folder / "README.md").read_text()


# ----------------------------------------------------------------------------- convert
@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("headbake-home")
        mp.setenv("HEADBAKE_HOME", str(home))
        yield home


def test_convert_eval_data_puts_results_in_the_card(home, planted, tmp_path):
    from huggingface_hub import ModelCard

    from headbake.record import local_paths

    out = tmp_path / "demo-headbake"
    args = ["convert", "demo", "--samples", "8", "--verify-samples", "2", "-q", "--eval-data", planted.rows_path,
            "-o", out]
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert "eval (forced, 24 rows):" in r.output
    rec = json.loads((out / "headbake.json").read_text())
    ev = rec["evaluation"]
    assert ev["mode"] == "forced" and ev["arms"] == ["vanilla", "baked"] and ev["rows"] == 24
    assert ev["model"]["id"] == "demo" and ev["data"]["name"] == "rows.jsonl"
    text = (out / "README.md").read_text()
    card = ModelCard(text)
    assert card.data.model_name == "demo-headbake" and len(card.data.eval_results) == 1
    assert "| planted | 24 |" in text and "No benchmark was run" not in text
    assert not local_paths(text) and not local_paths(rec)
    work = out.parent / ".demo-headbake.headbake-work"
    assert sorted(p.name for p in work.iterdir()) == [".lock", "state.json"]  # the eval cache is gone too

    r = run(*args)
    assert r.exit_code == 0 and "up to date" in r.output

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    r = CliRunner().invoke(main, ["convert", "demo", "-q", "--eval-data", str(bad), "-o", str(tmp_path / "x")])
    _one_line_error(r, 2, "bad.jsonl line 1: missing")
    assert not (tmp_path / "x").exists() and not (tmp_path / ".x.headbake-work").exists()
