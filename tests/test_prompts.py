"""The prompt builder: the model's own chat template, per-alias wording, and --prompt-template files."""

from __future__ import annotations

import json

import pytest

from headbake.errors import HeadbakeError
from headbake.data.prompts import BARE, PromptTemplate, build_inputs, chat_text, load_prompt_template, prompt_for


def test_alias_prompts():
    ocean = prompt_for("Ocean-R1")
    assert ocean.render("Q?").startswith("Q? You FIRST think") and "<answer> </answer>" in ocean.user
    assert prompt_for("R1-Onevision").render("Q?") == (
        "Hint: Please answer the question and provide the final answer at the end. Question: Q?")
    for alias in ("Kimi-VL", "Kimi-VL-2506", "demo", None, "unknown"):
        assert prompt_for(alias).render("Q?") == "Q?"
    assert "Ocean-R1" in ocean.as_dict()["source"] and len(ocean.as_dict()["sha256"]) == 64
    assert ocean.as_dict()["sha256"] != BARE.as_dict()["sha256"]


def test_template_files(tmp_path):
    t = tmp_path / "p.txt"
    t.write_text("Look closely. {question} Answer in JSON like {\"a\": 1}.\n")
    tpl = load_prompt_template(t)
    assert tpl.render("Q?") == 'Look closely. Q? Answer in JSON like {"a": 1}.' and tpl.system is None
    assert tpl.source == "file p.txt"  # the name only, never the path
    j = tmp_path / "p.json"
    j.write_text(json.dumps({"system": "Think first.", "user": "{question}"}))
    tpl = load_prompt_template(j)
    assert tpl.messages("Q?", 2) == [
        {"role": "system", "content": "Think first."},
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Q?"}]},
    ]


@pytest.mark.parametrize("name, content, fragment", [
    ("none.txt", None, "not found"),
    ("noslot.txt", "Answer this.", "exactly once (found 0)"),
    ("twice.txt", "{question} and {question}", "exactly once (found 2)"),
    ("empty.txt", "\n", "empty"),
    ("bad.json", "{oops", "not valid JSON"),
    ("nouser.json", json.dumps({"system": "x"}), "with \"user\""),
    ("extra.json", json.dumps({"user": "{question}", "assistant": "x"}), "unknown field(s) assistant"),
    ("blanksys.json", json.dumps({"user": "{question}", "system": " "}), "\"system\" must be a non-empty"),
    ("binary.txt", b"\xff\xfe{question}", "not UTF-8"),
])
def test_bad_template_files(tmp_path, name, content, fragment):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(HeadbakeError, match=None) as e:
        load_prompt_template(p)
    assert fragment in str(e.value)


def test_builder_uses_the_chat_template_and_the_instruction(tiny_fp32):
    from transformers import AutoProcessor

    from headbake.data.samples import synthetic_samples

    proc = AutoProcessor.from_pretrained(tiny_fp32)
    tpl = PromptTemplate("Hint: think. Question: {question}", "Be careful.", "test")
    text = chat_text(proc, "How many?", 1, tpl)
    assert text.index("<|im_start|>system\nBe careful.") < text.index("<|vision_start|>") < text.index(
        "Hint: think. Question: How many?") and text.endswith("<|im_start|>assistant\n")
    assert "You are a helpful assistant" in chat_text(proc, "How many?")  # the template's own default system
    samples = synthetic_samples(2, seed=3)
    plain = build_inputs(proc, samples)
    framed = build_inputs(proc, samples, template=tpl)
    assert framed["input_ids"].shape[1] > plain["input_ids"].shape[1]
    decoded = proc.tokenizer.decode(framed["input_ids"][0])
    assert "Be careful." in decoded and "Hint: think. Question:" in decoded
