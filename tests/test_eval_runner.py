"""The eval runner on the planted model: arms, forced and generate modes, the resumable cache."""

from __future__ import annotations

import json

import pytest

import planted as P
from headbake.errors import HeadbakeError
from headbake.evaluate import arms as A
from headbake.evaluate.cache import ResultCache, model_fingerprint
from headbake.evaluate.runner import (
    THINK_CLOSE, EvalSettings, ForcedScorer, _think_suffix, check_settings, option_token_ids, progress_enabled,
    run_arms,
)

FORCED = EvalSettings(mode="forced", batch_size=8)


def _correct(run, arm, rows):
    gold = {r.id: r.answer for r in rows}
    return {r.id for r in run.results[arm] if r.choice is not None and r.choice == gold[r.id]}


@pytest.fixture(scope="module")
def rows(planted):
    return P.eval_rows(planted)


@pytest.fixture(scope="module")
def best_gains():
    return P.scenarios()["best"].gains


@pytest.fixture(scope="module")
def baked_dir(planted, best_gains, tmp_path_factory):
    from headbake.bake.writer import bake_checkpoint
    from headbake.gains import gains_document
    from headbake.model.info import load_model_info

    doc = gains_document(best_gains, load_model_info(planted.model_dir))
    out = tmp_path_factory.mktemp("baked") / "planted-baked"
    bake_checkpoint(planted.model_dir, doc, out, progress=False)
    return out


@pytest.fixture(scope="module")
def forced_run(planted, rows, best_gains, baked_dir):
    arms = [A.vanilla(planted.model_dir), A.baked(baked_dir), A.hooked(planted.model_dir, best_gains)]
    return run_arms(arms, rows, FORCED, question_text=P.question_text, progress=False)


def test_forced_mode_flips_the_known_rows(forced_run, rows):
    sc = P.scenarios()
    vanilla = _correct(forced_run, "vanilla", rows)
    assert vanilla == sc["vanilla"].correct
    for arm in ("hooked", "baked"):
        got = _correct(forced_run, arm, rows)
        assert got - vanilla == sc["best"].fixed == {"yn-00", "yn-01", "yn-02", "yn-03", "mc-00", "mc-01", "mc-02",
                                                      "mc-03", "mc-04"}
        assert not vanilla - got


def test_hooked_agrees_with_baked_on_every_row(forced_run):
    hooked, baked = forced_run.results["hooked"], forced_run.results["baked"]
    assert [r.choice for r in hooked] == [r.choice for r in baked]
    for h, b in zip(hooked, baked):
        assert h.scores.keys() == b.scores.keys()
        for k in h.scores:
            assert h.scores[k] == pytest.approx(b.scores[k], abs=1e-4)
    assert forced_run.arms["hooked"]["model"] == forced_run.arms["vanilla"]["model"]
    assert forced_run.arms["baked"]["model"] != forced_run.arms["vanilla"]["model"]
    assert forced_run.arms["hooked"]["identity"]["gains_sha256"] == A.gains_digest(P.scenarios()["best"].gains)


def test_a_setting_that_breaks_rows(planted, rows):
    sc = P.scenarios()["with_distractor"]
    run = run_arms([A.vanilla(planted.model_dir), A.hooked(planted.model_dir, sc.gains)], rows, FORCED,
                   question_text=P.question_text, progress=False)
    vanilla, hooked = _correct(run, "vanilla", rows), _correct(run, "hooked", rows)
    assert (hooked - vanilla, vanilla - hooked) == (sc.fixed, sc.broken)
    assert sc.broken == {"yn-11", "yn-12"}


def test_generate_mode_answers_like_forced(planted, rows, best_gains, forced_run):
    pick = [r for r in rows if r.id in ("yn-00", "yn-04", "mc-01", "mc-06", "mc-10")]
    settings = EvalSettings(mode="generate", max_new_tokens=3, batch_size=2)
    run = run_arms([A.vanilla(planted.model_dir), A.hooked(planted.model_dir, best_gains)], pick, settings,
                   question_text=P.question_text, progress=False)
    for arm in ("vanilla", "hooked"):
        forced = {r.id: r.choice for r in forced_run.results[arm]}
        for r in run.results[arm]:
            assert r.output.strip().lower() == forced[r.id].lower(), (arm, r.id, r.output)
            assert r.new_tokens == 1 and not r.truncated
    assert run.outputs("vanilla")["yn-00"] == "No" and run.outputs("hooked")["yn-00"] == "Yes"


def test_generate_marks_truncation(planted, rows):
    pick = [r for r in rows if r.id in ("yn-04", "mc-05")]
    run = run_arms([A.vanilla(planted.model_dir)], pick, EvalSettings(max_new_tokens=1), question_text=P.question_text,
                   progress=False)
    assert [(r.output, r.new_tokens, r.truncated) for r in run.results["vanilla"]] == [("Yes", 1, True), ("A", 1, True)]
    with pytest.raises(HeadbakeError, match="max-new-tokens"):
        run_arms([A.vanilla(planted.model_dir)], pick, EvalSettings(max_new_tokens=0), progress=False)


def test_interrupted_run_resumes_with_the_same_results(planted, rows, best_gains, tmp_path):
    arms = [A.vanilla(planted.model_dir), A.hooked(planted.model_dir, best_gains)]
    settings = EvalSettings(mode="forced", batch_size=5)
    reference = run_arms(arms, rows, settings, cache=tmp_path / "fresh.jsonl", question_text=P.question_text,
                         progress=False)

    cache = tmp_path / "cache.jsonl"
    seen = []

    def stop_after_30(result):
        seen.append(result.id)
        if len(seen) == 30:  # mid-way through the hooked arm, inside a batch
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_arms(arms, rows, settings, cache=cache, question_text=P.question_text, progress=False,
                 on_row=stop_after_30)
    assert len(cache.read_text().splitlines()) == 30
    with open(cache, "a") as f:  # a write cut short by the interruption
        f.write('{"format": "headbake.eval-cache/v1", "key": "ab')

    resumed = run_arms(arms, rows, settings, cache=cache, question_text=P.question_text, progress=False)
    assert resumed.arms["vanilla"]["computed"] == 0 and resumed.arms["hooked"]["computed"] == 2 * len(rows) - 30
    for arm in ("vanilla", "hooked"):
        assert [r.to_dict() for r in resumed.results[arm]] == [r.to_dict() for r in reference.results[arm]]
    assert len(cache.read_text().splitlines()) == 2 * len(rows)

    # Complete: a third run loads no model at all.
    import headbake.evaluate.runner as runner

    def no_load(*a, **k):
        raise AssertionError("a fully cached run must not load the model")

    orig, runner.load_model = runner.load_model, no_load
    try:
        again = run_arms(arms, rows, settings, cache=cache, question_text=P.question_text, progress=False)
    finally:
        runner.load_model = orig
    assert [r.to_dict() for r in again.results["hooked"]] == [r.to_dict() for r in reference.results["hooked"]]


def test_cache_key_follows_settings_gains_and_rows(planted, rows, tmp_path):
    cache = ResultCache(tmp_path / "c.jsonl")
    sub = rows[:3]
    kw = dict(cache=cache, question_text=P.question_text, progress=False)
    first = run_arms([A.vanilla(planted.model_dir)], sub, FORCED, **kw)
    assert first.arms["vanilla"]["computed"] == 3
    assert run_arms([A.vanilla(planted.model_dir)], sub, FORCED, **kw).arms["vanilla"]["computed"] == 0
    other = EvalSettings(mode="forced", batch_size=8, answer_prefix="The answer is")
    assert run_arms([A.vanilla(planted.model_dir)], sub, other, **kw).arms["vanilla"]["computed"] == 3
    g = P.unit_gains()
    g[0][3] = 1.1
    assert run_arms([A.hooked(planted.model_dir, g)], sub, FORCED, **kw).arms["hooked"]["computed"] == 3
    reworded = [P.Row(r.id, r.images, r.question + " Look closely.", r.answer, r.choices, r.type) for r in sub]
    assert run_arms([A.vanilla(planted.model_dir)], reworded, FORCED, **kw).arms["vanilla"]["computed"] == 3
    relabelled = [P.Row(r.id, r.images, r.question, "no", r.choices, r.type) for r in sub]
    assert run_arms([A.vanilla(planted.model_dir)], relabelled, FORCED, **kw).arms["vanilla"]["computed"] == 0


def test_corrupt_cache_is_refused(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"format": "headbake.eval-cache/v1", "key": "k", "result": {}}\nnot json\n{}\n')
    with pytest.raises(HeadbakeError, match="line 2 is not JSON"):
        ResultCache(path)


def test_model_fingerprint_tracks_weights(planted, baked_dir):
    assert model_fingerprint(planted.model_dir) == model_fingerprint(planted.model_dir)
    assert model_fingerprint(planted.model_dir) != model_fingerprint(baked_dir)


def test_forced_scorer_returns_logprobs_for_kl(planted, rows, best_gains):
    import torch

    from headbake.runtime import apply_gains

    model, processor = P.load(planted.model_dir)
    scorer = ForcedScorer(processor, rows, FORCED, P.question_text, keep_inputs=True)
    base, lp0 = scorer.run(model, keep_logprobs=True)
    tuned, lp1 = scorer.run(model, context=lambda m: apply_gains(m, best_gains), keep_logprobs=True)
    assert lp0.shape == (len(rows), len(processor.tokenizer))
    kl = torch.sum(lp0.exp() * (lp0 - lp1), -1)
    assert (kl >= -1e-6).all() and kl.max() > 1e-3
    assert sum(base[i].choice != tuned[i].choice for i in base) == len(P.scenarios()["best"].fixed)


def test_option_tokens(planted):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(planted.model_dir))
    yn = option_token_ids(tok, P.Row("r", [], "q", "yes", None, "yes_no"))
    ids = P.answer_token_ids(tok)
    assert yn["yes"][:2] == [ids["Yes"], ids[" Yes"]] and ids["No"] in yn["no"]
    mc = option_token_ids(tok, P.Row("r", [], "q", "A", ["x", "y", "z"], "multiple_choice"))
    assert list(mc) == ["A", "B", "C"] and mc["A"] == [ids["A"], ids[" A"]]


class _PieceTokenizer:
    """SentencePiece-like: a leading space is its own piece; "Yes" and "yes" share their first piece."""

    vocab = {"▁": 0, "A": 1, "B": 2, "Y": 3, "es": 4, "No": 5, "y": 6}

    def encode(self, text, add_special_tokens=False):
        pieces = (["▁"] if text.startswith(" ") else []) + {
            "A": ["A"], "B": ["B"], "Yes": ["Y", "es"], "yes": ["Y", "es"], "No": ["No"], "no": ["No"],
        }[text.strip()]
        return [self.vocab[p] for p in pieces]

    def decode(self, ids):
        inv = {v: k for k, v in self.vocab.items()}
        return "".join(inv[i] for i in ids).replace("▁", " ")


def test_option_tokens_skip_a_lone_space_piece_and_refuse_clashes():
    tok = _PieceTokenizer()
    assert option_token_ids(tok, P.Row("r", [], "q", "A", ["x", "y"], "multiple_choice")) == {"A": [1], "B": [2]}
    with pytest.raises(HeadbakeError, match="cannot tell options 'yes' and 'no' apart") as e:
        tok.encode = lambda text, add_special_tokens=False: [3, 4]  # every option starts with "Y"
        option_token_ids(tok, P.Row("r", [], "q", "yes", None, "yes_no"))
    assert "\n" not in str(e.value)


def test_think_close():
    class Tok:
        def __init__(self, vocab):
            self.v = vocab

        def get_vocab(self):
            return self.v

    plain = Tok({"a": 0})
    assert _think_suffix("<|im_start|>assistant\n", plain, "auto") == ""
    assert _think_suffix("Think in <think> </think> tags.\n<|im_start|>assistant\n", plain, "auto") == THINK_CLOSE
    assert _think_suffix("...assistant\n", Tok({"</think>": 5}), "auto") == THINK_CLOSE
    assert _think_suffix("...assistant\n<think>\n", Tok({"</think>": 5}), "auto") == "\n</think>\n\n"
    assert _think_suffix("x", plain, "</reasoning>") == "</reasoning>"
    assert _think_suffix("<think>", plain, None) == ""


def test_settings_are_checked_before_loading(planted, monkeypatch):
    van, hk = A.vanilla(planted.model_dir), A.hooked(planted.model_dir, P.unit_gains())
    for bad, msg in ((EvalSettings(mode="fast"), "--mode"), (EvalSettings(batch_size=0), "--batch-size"),
                     (EvalSettings(dtype="int8"), "--dtype"), (EvalSettings(engine="tgi"), "--engine")):
        with pytest.raises(HeadbakeError, match=msg):
            check_settings(bad, [van])
    with pytest.raises(HeadbakeError, match="generate only"):
        check_settings(EvalSettings(engine="vllm", mode="forced"), [van])
    with pytest.raises(HeadbakeError, match="hooked needs the runtime hook"):
        check_settings(EvalSettings(engine="vllm"), [van, hk])
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(HeadbakeError, match="needs vLLM, which is not installed"):
        check_settings(EvalSettings(engine="vllm"), [van])
    with pytest.raises(HeadbakeError, match="unique"):
        run_arms([van, A.vanilla(planted.model_dir)], [], FORCED)


def test_arms_check_their_inputs(planted, tmp_path):
    with pytest.raises(HeadbakeError, match="not a model directory"):
        A.baked(tmp_path)
    with pytest.raises(HeadbakeError):
        A.hooked(planted.model_dir, [[1.0] * 3])
    gains_file = tmp_path / "g.json"
    from headbake.gains import gains_document
    from headbake.model.info import load_model_info

    gains_file.write_text(json.dumps(gains_document(P.unit_gains(), load_model_info(planted.model_dir))))
    assert A.hooked(planted.model_dir, gains_file).identity == {"gains_sha256": A.gains_digest(P.unit_gains())}
    arm = A.per_input(planted.model_dir, lambda m: None, {"preset": "default", "query": "last"})
    assert arm.name == "per-input" and not arm.plain
    with pytest.raises(HeadbakeError, match="JSON"):
        A.per_input(planted.model_dir, lambda m: None, {"bad": object()})


def test_progress_switch(monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    assert progress_enabled() is False and progress_enabled(True) is True
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS")
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress_enabled() is True


def test_a_per_input_factory_plugs_in(planted, rows, best_gains, forced_run):
    """Any ``model -> context manager`` runs as an arm; entered once, removed after (the vanilla arm after it is clean)."""
    from headbake.runtime import apply_gains

    entered = []

    def factory(model):
        entered.append(1)
        return apply_gains(model, best_gains)

    arm = A.per_input(planted.model_dir, factory, {"stand_in": "static best gains"})
    run = run_arms([arm, A.vanilla(planted.model_dir)], rows, FORCED, question_text=P.question_text, progress=False)
    assert entered == [1]
    assert [r.choice for r in run.results["per-input"]] == [r.choice for r in forced_run.results["hooked"]]
    assert [r.choice for r in run.results["vanilla"]] == [r.choice for r in forced_run.results["vanilla"]]


def test_graded_results_feed_the_report(forced_run, rows):
    from dataclasses import asdict, dataclass

    @dataclass
    class Score:  # the shape of headbake.evaluate.scoring.Score
        extracted: str | None
        correct: bool
        method: str

        def as_dict(self):
            return asdict(self)

    graded = forced_run.graded(rows, lambda row, out: Score(out, out == row.answer, "stand-in"))
    assert set(graded) == {"vanilla", "baked", "hooked"}
    assert {i for i, g in graded["vanilla"].items() if g["correct"]} == P.scenarios()["vanilla"].correct
    first = graded["hooked"]["yn-00"]
    assert first["raw"] == first["extracted"] == "yes" and first["mode"] == "forced" and set(first["scores"]) == {"yes", "no"}


def test_fingerprint_uses_hub_blob_names(tmp_path):
    """A Hub snapshot's LFS files are symlinks to blobs named by their sha256: no hashing needed."""
    from headbake.evaluate.cache import file_digest

    blobs = tmp_path / "blobs"
    blobs.mkdir()
    name = "ab" * 32
    (blobs / name).write_bytes(b"not what the name says")
    snap = tmp_path / "snapshots" / "rev"
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(blobs / name)
    (snap / "config.json").write_text("{}")
    assert file_digest(snap / "model.safetensors") == name
    assert file_digest(snap / "config.json") == __import__("hashlib").sha256(b"{}").hexdigest()
