"""The model card: YAML the Hub accepts, a body a person can read, graceful with partial records."""

from __future__ import annotations

import copy
import json
import re

import pytest
from huggingface_hub import ModelCard

from headbake.model_cards.context import BASE_MODEL_RELATION
from headbake.model_cards.render import card_repo_marker, card_text, render_card

SHA = "0123456789abcdef0123456789abcdef01234567"


def calibrated_record(layers=6, heads=4, model_type="qwen2_5_vl", verified=True) -> dict:
    """A headbake.json as calibrate + bake + verify would leave it (small, but every optional field set)."""
    sv = [[round(0.5 - 0.08 * l + 0.03 * h, 4) if l < 3 else round(0.004 * h, 4) for h in range(heads)]
          for l in range(layers)]
    perc = [[l, h] for l in range(layers) for h in range(heads) if l <= 2 and sv[l][h] >= 0.4]
    reas = [[l, h] for l in range(layers) for h in range(heads) if l >= 3 and sv[l][h] <= 0.005]
    gains = [[1.0] * heads for _ in range(layers)]
    for l, h in perc:
        gains[l][h] = 1.16
    for l, h in reas:
        gains[l][h] = 1.3
    per_layer = [{"layer": l, "perceptual": sum(1 for a, _ in perc if a == l),
                  "reasoning": sum(1 for a, _ in reas if a == l)} for l in range(layers)]
    gdoc = {
        "format": "headbake.gains/v1", "model_type": model_type, "num_layers": layers, "num_heads": heads,
        "head_dim": 16, "source": {"id": "minglingfeng/Ocean_R1_7B_Instruct", "revision": SHA}, "gains": gains,
        "visual_ratio": sv, "visual_ratio_std": [[0.01] * heads for _ in range(layers)], "samples": 32,
        "selected": {"perceptual": perc, "reasoning": reas},
        "counts": {"perceptual": len(perc), "reasoning": len(reas), "both": 0, "total_heads": layers * heads,
                   "share": (len(perc) + len(reas)) / (layers * heads), "per_layer": per_layer},
        "preset": {"name": "default", "l_perc": 7, "l_reas": 3, "tau_perc": 0.22, "tau_reas": 0.01,
                   "g_perc": 1.16, "g_reas": 1.3, "from_paper": True,
                   "values_from_paper": ["g_perc", "g_reas", "l_perc", "l_reas", "tau_perc", "tau_reas"],
                   "overrides": []},
        "query": {"mode": "last", "k": 1},
        "data": {"name": "synthetic", "fingerprint": "ab" * 32, "samples": 32},
        "stability": {"bootstrap_jaccard_mean": 0.875, "bootstrap_rounds": 20},
        "warnings": ["calibrated on synthetic images; real data may select different heads"],
    }
    edited = [{"tensor": f"model.layers.{l}.self_attn.o_proj.weight", "file": "model-00001-of-00002.safetensors",
               "layer": l, "heads": {}, "sha256_before": "0" * 64, "sha256_after": "1" * 64}
              for l in range(layers) if any(g != 1.0 for g in gains[l])]
    verification = None
    if verified:
        verification = {
            "passed": True,
            "tensor": {"passed": True, "files_compared": 9, "tensors": 120, "edited_tensors": len(edited),
                       "edited_bit_exact": len(edited), "problems": []},
            "model": {"dtype": "bfloat16", "device": "cpu", "samples": 4, "inputs": "image+text", "positions": 16,
                      "max_abs_logit": 0.0078125, "kl_mean": 2.1e-6, "kl_max": 9.5e-6, "top1_agreement": 1.0,
                      "greedy_match": 1.0, "greedy_tokens": 8,
                      "noise_floor": {"reference_dtype": "float32", "max_abs_logit": 0.031, "kl_mean": 1e-5,
                                      "kl_max": 4.4e-5, "top1_agreement": 0.99},
                      "effect": {"max_abs_logit": 0.1875, "kl_mean": 0.0042, "kl_max": 0.05, "top1_agreement": 0.97},
                      "limits": {"max_abs_logit": 0.062, "kl_max": 8.8e-5},
                      "rule": "baked vs hooked <= 2 x (hooked bfloat16 vs hooked float32) + slack", "passed": True},
        }
    return {
        "format": "headbake.baked/v1", "headbake_version": "0.1.0", "torch_version": "2.14.1",
        "transformers_version": "5.24.0", "created": "2026-05-01T12:00:00+00:00",
        "source": {"id": "minglingfeng/Ocean_R1_7B_Instruct", "revision": SHA, "path": "/cache/x",
                   "license": "apache-2.0"},
        "model": {"model_type": model_type, "num_layers": layers, "num_heads": heads, "head_dim": 16},
        "gains": gdoc, "edited": edited, "files": {}, "verification": verification,
        "reproduce": "headbake convert Ocean-R1 --preset default -o Ocean-R1-headbake",
    }


def handwritten_record() -> dict:
    """Hand-written gains: only the matrix and identity, no stats, no preset, never verified."""
    gains = [[1.0, 1.0, 1.0, 1.0], [1.0, 1.25, 1.0, 1.0], [1.0, 1.0, 1.0, 1.1]]
    return {
        "format": "headbake.baked/v1", "headbake_version": "0.1.0",
        "source": {"id": "/data/models/my-vlm", "revision": None, "path": "/data/models/my-vlm"},
        "model": {"model_type": "qwen2_5_vl", "num_layers": 3, "num_heads": 4, "head_dim": 16},
        "gains": {"format": "headbake.gains/v1", "num_layers": 3, "num_heads": 4, "head_dim": 16, "gains": gains},
        "edited": [], "files": {}, "verification": None, "reproduce": None,
    }


def meta(text: str) -> dict:
    return ModelCard(text).data.to_dict()


def tables(text: str) -> list[list[str]]:
    """Markdown tables as lists of rows (consecutive lines starting with '|')."""
    out, cur = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def cells(row: str) -> int:
    return len(re.split(r"(?<!\\)\|", row.strip())) - 2


def test_yaml_fields_of_a_calibrated_card(tmp_path):
    text = render_card(tmp_path, calibrated_record(), repo_id="alice/Ocean-R1-headbake")
    m = meta(text)
    assert m["base_model"] == "minglingfeng/Ocean_R1_7B_Instruct"
    assert m["base_model_relation"] == BASE_MODEL_RELATION == "finetune"
    assert m["library_name"] == "transformers"
    assert m["pipeline_tag"] == "image-text-to-text"
    assert m["license"] == "apache-2.0"
    assert {"headbake", "attention-head-rescaling", "hallucination"} <= set(m["tags"])
    assert text.startswith("---\nbase_model: minglingfeng/Ocean_R1_7B_Instruct\nbase_model_relation: finetune\n")


def test_body_has_every_section_a_reader_needs(tmp_path):
    (tmp_path / "headbake_heatmap.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    rec = calibrated_record()
    text = render_card(tmp_path, rec, repo_id="alice/Ocean-R1-headbake")
    assert (tmp_path / "README.md").read_text() == text
    body = ModelCard(text).text
    # what and why, and the citation
    assert "amplified" in body and "hallucination" in body
    assert "arxiv.org/abs/2510.10285" in body and "@inproceedings{" in body and "CVPR" in body
    # usage: plain transformers, the repo id
    assert 'AutoModelForImageTextToText.from_pretrained(model_id' in body
    assert "AutoProcessor.from_pretrained(model_id" in body and 'model_id = "alice/Ocean-R1-headbake"' in body
    assert "trust_remote_code" not in body and "import headbake" not in body
    # preset and every hyperparameter
    for name, value in [("l_perc", "7"), ("tau_perc", "0.22"), ("g_perc", "1.16"), ("l_reas", "3"),
                        ("tau_reas", "0.01"), ("g_reas", "1.3")]:
        assert f"| `{name}` | {value} |" in body
    assert "Preset **`default`** (the paper's published setting)" in body
    # per-layer counts match the record
    layer_table = next(t for t in tables(body) if t[0].startswith("| Layer | Perceptual | Reasoning |"))
    per_layer = rec["gains"]["counts"]["per_layer"]
    assert len(layer_table) == 2 + len(per_layer) + 1
    for row, item in zip(layer_table[2:], per_layer):
        got = [c.strip() for c in row.strip("|").split("|")]
        assert got[0] == str(item["layer"])
        assert got[1] == (str(item["perceptual"]) if item["perceptual"] else "·")
        assert got[2] == (str(item["reasoning"]) if item["reasoning"] else "·")
    assert f"**{rec['gains']['counts']['perceptual']}**" in layer_table[-1]
    # heatmap, data, fingerprint, stability, caveats
    assert "](headbake_heatmap.png)" in body
    assert "ab" * 32 in body and "**synthetic**, 32 samples" in body and "87.5%" in body
    assert "calibrated on synthetic images" in body
    # verification: baked vs hooked, noise floor and the effect of the edit
    assert "**Tensor level: passed.**" in body and "**Model level: passed.**" in body
    vtable = next(t for t in tables(body) if t[0].startswith("| Metric |"))
    assert "0.0078" in vtable[2] and "0.031" in vtable[2] and "0.188" in vtable[2]
    # reproduce
    assert "headbake convert Ocean-R1 --preset default -o Ocean-R1-headbake" in body
    assert "headbake 0.1.0" in body and "transformers 5.24.0" in body


def test_preset_rows_say_where_each_value_came_from():
    rec = calibrated_record()
    body = card_text(rec)
    assert "| `g_perc` | 1.16 | gain applied to perceptual heads | paper |" in body
    assert "| `query` | the last prompt token |" in body
    assert "values_from_paper" not in body and "overrides" not in body
    rec["gains"]["preset"].update(g_perc=1.2, overrides=["g_perc"], from_paper=False)
    rec["gains"]["preset"]["values_from_paper"].remove("g_perc")
    body = card_text(rec)
    assert "| `g_perc` | 1.2 | gain applied to perceptual heads | set for this run |" in body
    assert "(the paper's published setting)" not in body


def test_counts_are_worded_in_singular_and_plural():
    rec = calibrated_record(layers=4, heads=4)
    sel = rec["gains"]["selected"]
    sel["perceptual"], sel["reasoning"] = [[0, 1]], []
    rec["gains"]["gains"] = [[1.0, 1.16, 1.0, 1.0]] + [[1.0] * 4 for _ in range(3)]
    rec["gains"]["counts"]["per_layer"] = []
    rec["edited"] = rec["edited"][:1]
    body = card_text(rec)
    assert "1 *perceptual* head in layer 0 by ×1.16 — by scaling its columns" in body
    assert "1 `o_proj` weight tensor in 1 shard file;" in body


def test_every_table_is_well_formed(tmp_path):
    for rec in (calibrated_record(), handwritten_record()):
        text = card_text(rec, heatmap=None)
        for t in tables(text):
            widths = {cells(r) for r in t}
            assert len(widths) == 1, t
            assert set(t[1].replace("|", "").strip()) <= set("-: ")


def test_handwritten_gains_and_no_verification_degrade_gracefully(tmp_path):
    text = render_card(tmp_path, handwritten_record())  # no heatmap file, no stats, no preset
    m = meta(text)
    assert "base_model" not in m and "base_model_relation" not in m  # a local path is no Hub id
    assert "license" not in m  # unknown: omitted, never guessed
    assert m["library_name"] == "transformers" and "headbake" in m["tags"]
    body = ModelCard(text).text
    assert "2 of its 12 attention heads" in body and "hand-chosen gains (×1.1 to ×1.25)" in body
    assert "Preset" not in body and "Calibration data" not in body and "heatmap" not in body.lower()
    assert "has not been verified" in body and f"headbake verify my-vlm {tmp_path.name}" in body
    assert "/data/models" not in text  # a local source is named by its folder name only
    assert "| Layer | Heads rescaled | Gains |" in body and "| 1 | 1 | ×1.25 |" in body
    assert f"headbake convert my-vlm --gains headbake.json -o {tmp_path.name}" in body
    assert "{{" not in body and "None" not in body


def test_bare_minimum_record_still_renders():
    text = card_text({"source": {"id": "org/model"}, "gains": {"gains": [[1.0, 1.5], [1.0, 1.0]]}})
    m = meta(text)
    assert m["base_model"] == "org/model" and m["base_model_relation"] == "finetune"
    assert "1 of its 4 attention heads" in text and "has not been verified" in text


def test_unverified_calibrated_card_and_missing_heatmap(tmp_path):
    text = render_card(tmp_path, calibrated_record(verified=False))
    assert "has not been verified" in text and "](headbake_heatmap.png)" not in text
    assert "| Verified | not verified |" in text


def test_remote_code_architecture_gets_its_auto_class():
    text = card_text(calibrated_record(model_type="kimi_vl"), repo_id="a/b")
    assert "AutoModelForCausalLM.from_pretrained(model_id, dtype=\"auto\", device_map=\"auto\", trust_remote_code=True)" in text
    assert "AutoProcessor.from_pretrained(model_id, trust_remote_code=True)" in text
    assert "Kimi-VL" in text


def test_demo_source_is_not_cited_as_a_hub_base_model():
    rec = handwritten_record()
    rec["source"] = {"id": "demo", "revision": None, "license": "apache-2.0"}
    text = card_text(rec)
    m = meta(text)
    assert "base_model" not in m and m["license"] == "apache-2.0"
    assert "built-in `demo` model" in text


def test_failed_verification_is_reported_as_failed():
    rec = calibrated_record()
    rec["verification"]["passed"] = False
    rec["verification"]["model"]["passed"] = False
    text = card_text(rec)
    assert "**Model level: FAILED.**" in text and "| Verified | FAILED" in text


def test_write_is_atomic_and_marker_names_the_repo(tmp_path):
    text = render_card(tmp_path, calibrated_record(), repo_id="me/x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]
    assert card_repo_marker(text) == "me/x"
    assert card_repo_marker(render_card(tmp_path, calibrated_record())) == ""
    assert card_repo_marker("# not ours") is None


def test_bad_record_leaves_no_file(tmp_path):
    rec = calibrated_record()
    rec["source"]["license"] = ["not", "a", "string"]  # the Hub expects a string: YAML still parses
    render_card(tmp_path, rec)
    before = (tmp_path / "README.md").read_text()
    with pytest.raises(Exception):
        render_card(tmp_path, {"gains": {"gains": "nonsense"}, "model": {"num_layers": 2, "num_heads": "x"}})
    assert (tmp_path / "README.md").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_card_of_a_real_bake(tiny_bf16, tmp_path):
    """Render from the record the real bake writes (hand-written gains, tensor-level verification)."""
    from headbake.bake.writer import bake_checkpoint
    from headbake.bake.verify import run_verify
    from headbake.gains import gains_document
    from headbake.model.info import load_model_info

    info = load_model_info(tiny_bf16)
    gains = [[1.0] * info.num_heads for _ in range(info.num_layers)]
    gains[0][1] = 1.2
    gains[3][2] = 1.3
    out = tmp_path / "baked"
    bake_checkpoint(tiny_bf16, gains_document(gains, info), out, source={"id": "demo", "revision": None},
                    progress=False)
    run_verify(tiny_bf16, out, tensors_only=True, progress=False, record=True)
    rec = json.loads((out / "headbake.json").read_text())
    text = render_card(out, copy.deepcopy(rec))
    body = ModelCard(text).text
    assert "2 of its 16 attention heads" in body
    assert "**Tensor level: passed.**" in body and "2 of 2 edited `o_proj` weights equal the fold" in body
    assert "model-level comparison (hooked base vs this checkpoint, by logits) was not run" in body


def test_reproduce_names_prompt_and_token_ids_by_fingerprint_never_by_path():
    from headbake.record import reproduce_command

    cmd = reproduce_command({"id": "/home/alice/models/vlm", "revision": None},
                            {"preset": "default", "visual_token_ids": [7, 9], "prompt_template": "ab12",
                             "data": {"kind": "dataset", "name": "org/set", "split": "train",
                                      "image_column": "img", "question_column": "question"}}, "out")
    assert "/home/alice" not in cmd and "headbake convert vlm " in cmd
    assert "--visual-token-id 7 --visual-token-id 9" in cmd and "--prompt-template PROMPT.txt" in cmd
    assert "fingerprint ab12" in cmd and "--dataset org/set --image-column img -o out" in cmd
