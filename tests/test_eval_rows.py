"""JSONL evaluation rows: every bad row is refused with its line number, before any model loads."""

from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from headbake.errors import HeadbakeError
from headbake.evaluate.rows import EvalRow, make_row, prompt_text, read_rows, rows_fingerprint


def _png(path, color=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), color).save(path)
    return path


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = [
    {"id": "q1", "image": "img/a.png", "question": "Which fraction is blue?", "choices": ["3/11", "8/11"], "answer": "B",
     "type": "multiple_choice", "benchmark": "mathvista"},
    {"id": 2, "image": ["img/a.png", "img/b.png"], "question": "Same colour?", "answer": "No", "type": "yes_no"},
    {"id": "q3", "image": "img/b.png", "question": "How many?", "answer": 3, "type": "number", "precision": 0},
    {"id": "q4", "image": "img/b.png", "question": "Colour?", "answer": "red", "type": "free"},
    {"id": "q5", "image": "img/a.png", "question": "Pick", "choices": ["red", "blue", "green"], "answer": "green",
     "type": "multiple_choice"},
]


@pytest.fixture
def data(tmp_path):
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b.png", (30, 30, 200))
    return tmp_path


def test_reads_good_rows(data):
    rows = read_rows(_write(data / "eval.jsonl", GOOD))
    assert [r.id for r in rows] == ["q1", "2", "q3", "q4", "q5"]
    assert rows[0].images == [str((data / "img" / "a.png").resolve())]
    assert len(rows[1].images) == 2
    assert (rows[0].answer, rows[1].answer, rows[2].answer, rows[4].answer) == ("B", "no", "3", "C")
    assert rows[0].benchmark == "mathvista" and rows[1].benchmark is None
    assert rows[2].precision == 0
    assert rows[1].choices is None
    assert rows[0].open_images()[0].size == (8, 6)


def test_limit_returns_first_rows_but_checks_all(data):
    rows = read_rows(_write(data / "eval.jsonl", GOOD), limit=2)
    assert [r.id for r in rows] == ["q1", "2"]
    bad = GOOD + [dict(GOOD[0], id="q9", image="img/missing.png")]
    with pytest.raises(HeadbakeError, match="line 6: image not found"):
        read_rows(_write(data / "eval.jsonl", bad), limit=1)


def _bad(data, row, match):
    rows = [GOOD[0], row] if not isinstance(row, list) else row
    with pytest.raises(HeadbakeError, match=match) as e:
        read_rows(_write(data / "bad.jsonl", rows))
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize(
    "row,match",
    [
        ("{not json", r"line 2: not valid JSON"),
        ("[1, 2]", r"line 2: expected a JSON object"),
        ({"id": "x", "image": "img/a.png", "question": "q", "type": "free"}, r"line 2: missing 'answer'"),
        (dict(GOOD[3], id="x", extra=1), r"line 2: unknown field\(s\) 'extra'"),
        (dict(GOOD[3], id=""), r'line 2: "id" must be'),
        (dict(GOOD[3], id=True), r'line 2: "id" must be'),
        (dict(GOOD[3], id="x", question=""), r'line 2: "question" must be'),
        (dict(GOOD[3], id="x", question=5), r'line 2: "question" must be'),
        (dict(GOOD[3], id="x", image=[]), r'line 2: "image" must be a path'),
        (dict(GOOD[3], id="x", image=7), r'line 2: "image" must be a path'),
        (dict(GOOD[3], id="x", type="essay"), r'line 2: "type" must be one of'),
        (dict(GOOD[3], id="x", answer=None), r'line 2: "answer" must be a string'),
        (dict(GOOD[3], id="x", answer=" "), r'line 2: "answer" is empty'),
        (dict(GOOD[1], id="x", answer="maybe"), r'line 2: "answer" must be "yes" or "no"'),
        (dict(GOOD[0], id="x", choices=None), r"line 2: a multiple_choice row needs \"choices\""),
        (dict(GOOD[0], id="x", choices=["only"]), r"line 2: a multiple_choice row needs"),
        (dict(GOOD[0], id="x", choices=["a", 3]), r'line 2: "choices" must be a list'),
        (dict(GOOD[0], id="x", answer="C"), r"line 2: \"answer\" 'C' is neither a letter A-B"),
        (dict(GOOD[0], id="x", answer="5/11"), r"line 2: \"answer\" '5/11' is neither"),
        (dict(GOOD[0], id="x", choices=["same", "Same"], answer="same"), r"matches 2 choices"),
        (dict(GOOD[3], id="x", benchmark=""), r'line 2: "benchmark" must be'),
        (dict(GOOD[3], id="x", precision=-1), r'line 2: "precision" must be'),
        (dict(GOOD[3], id="q1"), r"line 2: duplicate id 'q1' \(first at .*line 1\)"),
        (dict(GOOD[3], id="x", image="img/missing.png"), r"line 2: image not found: img/missing.png"),
        (dict(GOOD[3], id="x", image="../outside.png"), r"line 2: image path '../outside.png' must not contain '..'"),
        (dict(GOOD[3], id="x", image="/etc/hostname"), r"line 2: image path '/etc/hostname' must be relative"),
        (dict(GOOD[3], id="x", image="img"), r"line 2: image img is not a regular file"),
    ],
)
def test_bad_rows_refused_with_line_number(data, row, match):
    _bad(data, row, match)


def test_blank_lines_keep_line_numbers(data):
    path = data / "gaps.jsonl"
    path.write_text(json.dumps(GOOD[0]) + "\n\n\n" + json.dumps(dict(GOOD[3], type="x")) + "\n")
    with pytest.raises(HeadbakeError, match="line 4:"):
        read_rows(path)


def test_symlink_leading_outside_is_refused(data, tmp_path_factory):
    outside = _png(tmp_path_factory.mktemp("elsewhere") / "secret.png")
    os.symlink(outside, data / "img" / "link.png")
    _bad(data, dict(GOOD[3], id="x", image="img/link.png"), r"line 2: image path 'img/link.png' leads outside")
    os.symlink(data / "img" / "a.png", data / "inside.png")  # a symlink that stays inside is fine
    assert read_rows(_write(data / "ok.jsonl", [dict(GOOD[3], image="inside.png")]))[0].id == "q4"


def test_not_an_image_is_refused(data):
    (data / "img" / "notes.png").write_text("not an image")
    _bad(data, dict(GOOD[3], id="x", image="img/notes.png"), r"line 2: cannot read image img/notes.png")


def test_data_file_problems(data, monkeypatch):
    with pytest.raises(HeadbakeError, match="data file not found"):
        read_rows(data / "nope.jsonl")
    with pytest.raises(HeadbakeError, match="data file is a directory"):
        read_rows(data / "img")
    with pytest.raises(HeadbakeError, match="not a regular file"):
        read_rows("/dev/zero")
    (data / "latin.jsonl").write_bytes(b'{"id": "\xe9"}\n')
    with pytest.raises(HeadbakeError, match="not UTF-8"):
        read_rows(data / "latin.jsonl")
    (data / "empty.jsonl").write_text("\n\n")
    with pytest.raises(HeadbakeError, match="has no rows"):
        read_rows(data / "empty.jsonl")
    import headbake.evaluate.rows as rows_mod

    monkeypatch.setattr(rows_mod, "MAX_DATA_BYTES", 100)
    with pytest.raises(HeadbakeError, match="more than the 100 bytes"):
        read_rows(_write(data / "eval.jsonl", GOOD))


def test_fifo_is_refused_without_blocking(data):
    fifo = data / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(HeadbakeError, match="not a regular file"):
        read_rows(fifo)


def test_bad_limit(data):
    with pytest.raises(HeadbakeError, match="--limit"):
        read_rows(_write(data / "eval.jsonl", GOOD), limit=0)


def test_fingerprint_tracks_text_and_pixels(data):
    path = _write(data / "eval.jsonl", GOOD)
    fp = rows_fingerprint(read_rows(path))
    assert fp == rows_fingerprint(read_rows(path)) and len(fp) == 64
    _write(path, [dict(GOOD[0], question="Which fraction is red?")] + GOOD[1:])
    assert rows_fingerprint(read_rows(path)) != fp
    _write(path, GOOD)
    _png(data / "img" / "a.png", (0, 255, 0))  # same names, new pixels
    assert rows_fingerprint(read_rows(path)) != fp


def test_fingerprint_of_decoded_images():
    a = make_row("1", [Image.new("RGB", (4, 4), (1, 2, 3))], "q", "x", "free")
    b = make_row("1", [Image.new("RGB", (4, 4), (1, 2, 4))], "q", "x", "free")
    assert rows_fingerprint([a]) != rows_fingerprint([b])
    assert rows_fingerprint([a]) == rows_fingerprint([make_row("1", [Image.new("RGB", (4, 4), (1, 2, 3))], "q", "x", "free")])


def test_prompt_text():
    mc = make_row("1", ["x"], "Which fraction is blue?", "B", "multiple_choice", choices=["3/11", "8/11"])
    assert prompt_text(mc) == (
        "Which fraction is blue?\nA. 3/11\nB. 8/11\nAnswer with the option's letter from the given choices."
    )
    shown = make_row("2", ["x"], "Which?\nOptions: A: red, B: blue", "A", "multiple_choice", choices=["red", "blue"],
                     options_in_question=True)
    assert prompt_text(shown) == "Which?\nOptions: A: red, B: blue\nAnswer with the option's letter from the given choices."
    yn = make_row("3", ["x"], "Is it red? Please answer yes or no.", "yes", "yes_no")
    assert prompt_text(yn) == "Is it red? Please answer yes or no."  # the instruction is not repeated
    raw = make_row("4", ["x"], "Hint: answer with an integer.\nQuestion: how many?", "3", "number", instruction="")
    assert prompt_text(raw) == "Hint: answer with an integer.\nQuestion: how many?"


def test_rows_are_plain_dataclasses():
    r = make_row(7, ["/abs/a.png"], "q", "Yes", "yes_no", benchmark="pope", meta={"category": "random"})
    assert isinstance(r, EvalRow) and r.id == "7" and r.answer == "yes" and r.meta == {"category": "random"}
