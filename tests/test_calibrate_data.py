"""Calibration data: embedded set, JSONL files, Hugging Face datasets, fingerprints."""

from __future__ import annotations

import json

import pytest

from headbake.calibrate import data
from headbake.errors import HeadbakeError
from headbake.data.samples import fingerprint as samples_fingerprint
from headbake.data.samples import synthetic_samples


def test_embedded_default_set():
    d = data.embedded()
    assert len(d.samples) == data.EMBEDDED_DEFAULT_SAMPLES >= 32
    assert {s.kind for s in d.samples} == {"bar_chart", "line_chart", "pie_chart", "function_plot", "geometry",
                                           "table", "text", "counting", "photo"}
    # deterministic from its seed, and sensitive to every image and question
    assert samples_fingerprint(data.embedded().samples) == samples_fingerprint(d.samples)
    assert samples_fingerprint(data.embedded(8).samples) == samples_fingerprint(d.samples[:8])
    first = d.samples[0]
    pixel = first.image.copy()
    pixel.putpixel((0, 0), tuple(255 - c for c in pixel.getpixel((0, 0))))
    changed_image = [type(first)(**{**first.__dict__, "image": pixel})] + d.samples[1:]
    changed_question = [type(first)(**{**first.__dict__, "question": first.question + "?"})] + d.samples[1:]
    assert len({samples_fingerprint(x) for x in (d.samples, changed_image, changed_question)}) == 3


@pytest.fixture
def images(tmp_path):
    for i, s in enumerate(synthetic_samples(3, seed=7)):
        s.image.save(tmp_path / f"{i}.png")
    return tmp_path


def test_jsonl_single_multi_and_limit(images):
    f = images / "d.jsonl"
    f.write_text("\n".join([
        json.dumps({"image": "0.png", "question": "How many?"}),
        "",
        json.dumps({"image": ["1.png", str(images / "2.png")], "question": "Compare."}),
        json.dumps({"image": "2.png", "question": "Third"}),
    ]) + "\n")
    d = data.load_jsonl(f)
    assert len(d.samples) == 3 and d.note is None
    assert isinstance(d.samples[1].image, list) and len(d.samples[1].image) == 2
    assert d.origins[1].endswith("line 3")
    assert d.samples[0].image.mode == "RGB"
    two = data.load_jsonl(f, limit=2)
    assert len(two.samples) == 2 and two.note is None
    assert data.fingerprint(two.samples) == data.fingerprint(d.samples[:2])
    assert data.fingerprint(two.samples) != data.fingerprint(d.samples[:1] + d.samples[2:3])
    assert "asked for 5" in data.load_jsonl(f, limit=5).note


@pytest.mark.parametrize("text, fragment", [
    ("", "has no samples"),
    ("[1, 2]\n", "line 1: expected a JSON object"),
    ('{"image": "0.png", "question": "q"}\n{"image": 3, "question": "q"}\n', "line 2: \"image\" must be a path"),
    ('{"image": [], "question": "q"}\n', "line 1: \"image\""),
    ('{"image": "0.png", "question": ""}\n', "line 1: \"question\""),
    ('{"image": "0.png", "question": "q"}\n\n{bad\n', "line 3: not valid JSON"),
    ('{"image": "missing.png", "question": "q"}\n', "line 1: image not found"),
])
def test_jsonl_errors_name_the_line(images, text, fragment):
    f = images / "bad.jsonl"
    f.write_text(text)
    with pytest.raises(HeadbakeError, match=fragment.replace("[", r"\[")):
        data.load_jsonl(f)


def test_jsonl_bad_lines_after_limit_still_reported(images):
    """--samples does not hide a broken file: every line is parsed even if its image is not needed."""
    f = images / "d.jsonl"
    f.write_text(json.dumps({"image": "0.png", "question": "q"}) + "\nnot json\n")
    with pytest.raises(HeadbakeError, match="line 2"):
        data.load_jsonl(f, limit=1)


def test_unreadable_image_and_missing_file(images):
    (images / "x.png").write_bytes(b"\x89PNG garbage")
    f = images / "d.jsonl"
    f.write_text(json.dumps({"image": "x.png", "question": "q"}) + "\n")
    with pytest.raises(HeadbakeError, match="line 1: cannot read image"):
        data.load_jsonl(f)
    with pytest.raises(HeadbakeError, match="data file not found"):
        data.load_jsonl(images / "none.jsonl")


def test_hf_dataset_from_local_imagefolder(images):
    pytest.importorskip("datasets")
    meta = [{"file_name": f"{i}.png", "question": f"Question {i}?"} for i in range(3)]
    (images / "metadata.jsonl").write_text("\n".join(json.dumps(m) for m in meta) + "\n")
    d = data.load_hf_dataset(str(images), "train", "image", "question", 2)
    assert len(d.samples) == 2 and d.samples[0].question.startswith("Question")
    assert d.samples[0].image.mode == "RGB"
    with pytest.raises(HeadbakeError, match="no column 'picture'"):
        data.load_hf_dataset(str(images), "train", "picture", "question", 2)
    with pytest.raises(HeadbakeError, match="cannot load dataset"):
        data.load_hf_dataset(str(images / "nothing-here"), "train", "image", "question", 2)
