"""Each benchmark recipe on a local dataset saved in that benchmark's published column layout.

The Hub is unreachable here, so every fixture is written from the dataset's
documented schema (its ``dataset_info.features``): the recipe must read the
real column names and dtypes, derive the right answer type, choices and
canonical answer, and refuse a row it cannot read with that row's index.
"""

from __future__ import annotations

import pytest
from PIL import Image

from headbake.errors import HeadbakeError
from headbake.evaluate.recipes import (
    RECIPES,
    ColumnMap,
    card_dataset,
    load_mapped_rows,
    load_recipe_rows,
    mmstar_options,
    recipe,
)
from headbake.evaluate.rows import prompt_text, rows_fingerprint
from headbake.evaluate.scoring import score_row

datasets = pytest.importorskip("datasets")
F, V, Seq, Img = datasets.Features, datasets.Value, datasets.Sequence, datasets.Image


def _img(color):
    return Image.new("RGB", (12, 8), color)


def _save(tmp_path, name, rows, features, split):
    cols = {k: [r[k] for r in rows] for k in features}
    ds = datasets.Dataset.from_dict(cols, features=F(features))
    path = tmp_path / name
    datasets.DatasetDict({split: ds}).save_to_disk(str(path))
    return str(path)


# AI4Math/MathVista, testmini: pid, question, image (path string), decoded_image, choices, unit,
# precision, answer, question_type, answer_type, metadata{...}, query
MATHVISTA_FEATURES = {
    "pid": V("string"), "question": V("string"), "image": V("string"), "decoded_image": Img(),
    "choices": Seq(V("string")), "unit": V("string"), "precision": V("float64"), "answer": V("string"),
    "question_type": V("string"), "answer_type": V("string"),
    "metadata": {
        "category": V("string"), "context": V("string"), "grade": V("string"), "img_height": V("int64"),
        "img_width": V("int64"), "language": V("string"), "skills": Seq(V("string")), "source": V("string"),
        "split": V("string"), "task": V("string"),
    },
    "query": V("string"),
}


def _mv_meta():
    return {"category": "math-targeted-vqa", "context": "geometry diagram", "grade": "high school", "img_height": 8,
            "img_width": 12, "language": "english", "skills": ["geometry reasoning"], "source": "Geometry3K",
            "split": "testmini", "task": "geometry problem solving"}


@pytest.fixture
def mathvista(tmp_path):
    rows = [
        {"pid": "1", "question": "What fraction of the shape is blue?", "image": "images/1.jpg",
         "decoded_image": _img((0, 0, 255)), "choices": ["3/11", "8/11", "6/11", "3/5"], "unit": None,
         "precision": None, "answer": "8/11", "question_type": "multi_choice", "answer_type": "text",
         "metadata": _mv_meta(),
         "query": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the "
                  "end.\nQuestion: What fraction of the shape is blue?\nChoices:\n(A) 3/11\n(B) 8/11\n(C) 6/11\n(D) 3/5"},
        {"pid": "2", "question": "How many bars are there?", "image": "images/2.jpg", "decoded_image": _img((1, 2, 3)),
         "choices": None, "unit": None, "precision": None, "answer": "7", "question_type": "free_form",
         "answer_type": "integer", "metadata": _mv_meta(),
         "query": "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., "
                  "1, 2, 3, at the end.\nQuestion: How many bars are there?"},
        {"pid": "3", "question": "What is the slope?", "image": "images/3.jpg", "decoded_image": _img((4, 5, 6)),
         "choices": None, "unit": None, "precision": 1.0, "answer": "1.5", "question_type": "free_form",
         "answer_type": "float", "metadata": _mv_meta(),
         "query": "Hint: Please answer the question requiring a floating-point number with one decimal place and "
                  "provide the final value, e.g., 1.2, 1.3, 1.4, at the end.\nQuestion: What is the slope?"},
        {"pid": "4", "question": "List the heights.", "image": "images/4.jpg", "decoded_image": _img((7, 8, 9)),
         "choices": None, "unit": None, "precision": None, "answer": "[1, 2]", "question_type": "free_form",
         "answer_type": "list", "metadata": _mv_meta(),
         "query": "Hint: Please answer the question requiring a Python list as an answer and provide the final "
                  "list, e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.\nQuestion: List the heights."},
    ]
    return tmp_path, rows


def test_mathvista(mathvista):
    tmp_path, rows = mathvista
    path = _save(tmp_path, "mathvista", rows, MATHVISTA_FEATURES, "testmini")
    got = load_recipe_rows("mathvista-testmini", dataset=path)
    assert [r.id for r in got] == ["1", "2", "3", "4"]
    mc, integer, flt, lst = got
    assert (mc.type, mc.answer, mc.choices) == ("multiple_choice", "B", ["3/11", "8/11", "6/11", "3/5"])
    assert mc.options_in_question and prompt_text(mc) == rows[0]["query"]  # MathVista's own prompt, unchanged
    assert (integer.type, integer.answer, integer.precision) == ("number", "7", None)
    assert (flt.type, flt.answer, flt.precision) == ("number", "1.5", 1)
    assert (lst.type, lst.answer) == ("free", "[1, 2]")
    assert all(r.benchmark == "mathvista-testmini" for r in got)
    assert mc.images[0].size == (12, 8) and mc.images[0].getpixel((0, 0)) == (0, 0, 255)
    assert score_row(mc, "The answer is (B).").correct
    assert score_row(flt, "The slope is 1.46").correct  # graded to one decimal place
    assert not score_row(flt, "The slope is 1.56").correct
    assert score_row(lst, "[1,2]").correct


def test_mathvista_answer_not_among_choices(mathvista):
    tmp_path, rows = mathvista
    rows[0]["answer"] = "5/11"
    path = _save(tmp_path, "mv-bad", rows, MATHVISTA_FEATURES, "testmini")
    with pytest.raises(HeadbakeError, match=r"mathvista-testmini \(.* \[testmini\]\) row 0: \"answer\" '5/11' is neither"):
        load_recipe_rows("mathvista-testmini", dataset=path)


# MathLLMs/MathVision: id, question, options, image (path string), decoded_image, answer, solution, level, subject
MATHVISION_FEATURES = {
    "id": V("string"), "question": V("string"), "options": Seq(V("string")), "image": V("string"),
    "decoded_image": Img(), "answer": V("string"), "solution": V("string"), "level": V("int64"),
    "subject": V("string"),
}


def test_mathvision(tmp_path):
    rows = [
        {"id": "1", "question": "Which of the figures can be cut out?\n<image1>", "options": ["A", "B", "C", "D", "E"],
         "image": "images/1.jpg", "decoded_image": _img((9, 9, 9)), "answer": "C", "solution": None, "level": 1,
         "subject": "combinatorial geometry"},
        {"id": "2", "question": "<image1>\nThe square has side 2. How long is its diagonal?", "options": [],
         "image": "images/2.jpg", "decoded_image": _img((8, 8, 8)), "answer": "2\\sqrt{2}", "solution": None,
         "level": 3, "subject": "metric geometry - length"},
    ]
    path = _save(tmp_path, "mathvision", rows, MATHVISION_FEATURES, "testmini")
    mc, free = load_recipe_rows("mathvision-testmini", dataset=path)
    assert (mc.type, mc.answer, mc.choices) == ("multiple_choice", "C", ["A", "B", "C", "D", "E"])
    assert "<image1>" not in mc.question and mc.question == "Which of the figures can be cut out?"
    assert prompt_text(mc).splitlines()[1:3] == ["A. A", "B. B"]
    assert (free.type, free.answer) == ("number", "2\\sqrt{2}")
    assert score_row(free, "The diagonal is $\\boxed{\\sqrt{8}}$.").correct
    assert score_row(free, "about 2.83").correct
    assert not score_row(free, "\\boxed{2}").correct
    assert free.meta == {"subject": "metric geometry - length", "level": 3}


# lmms-lab/HallusionBench, split "image": category, subcategory, visual_input, set_id, figure_id, sample_note,
# question_id, question, gt_answer_details, gt_answer, filename, image
HALLUSION_FEATURES = {
    k: V("string") for k in ("category", "subcategory", "visual_input", "set_id", "figure_id", "sample_note",
                             "question_id", "question", "gt_answer_details", "gt_answer", "filename")
} | {"image": Img()}


def _hb(fig, q, gt, question):
    return {"category": "VD", "subcategory": "illusion", "visual_input": "1", "set_id": "0", "figure_id": fig,
            "sample_note": "circle", "question_id": q, "question": question, "gt_answer_details": "",
            "gt_answer": gt, "filename": f"./hallusion_bench/VD/illusion/0_{fig}.png", "image": _img((5, 5, 5))}


def test_hallusionbench(tmp_path):
    rows = [_hb("0", "0", "1", "Is the right orange circle the same size as the left orange circle?"),
            _hb("1", "0", "0", "Is the right orange circle larger than the left orange circle?")]
    path = _save(tmp_path, "hb", rows, HALLUSION_FEATURES, "image")
    same, larger = load_recipe_rows("hallusionbench", dataset=path)
    assert (same.id, same.type, same.answer) == ("VD/illusion/0/0/0", "yes_no", "yes")
    assert (larger.id, larger.answer) == ("VD/illusion/0/1/0", "no")
    assert prompt_text(same).endswith("\nAnswer yes or no.")
    assert score_row(same, "Yes, they are the same size.").correct
    assert not score_row(larger, "Yes.").correct


def test_hallusionbench_bad_gt_and_missing_split(tmp_path):
    path = _save(tmp_path, "hb", [_hb("0", "0", "yes", "Same?")], HALLUSION_FEATURES, "image")
    with pytest.raises(HeadbakeError, match=r"row 0: gt_answer must be '1' \(yes\) or '0' \(no\)"):
        load_recipe_rows("hallusionbench", dataset=path)
    with pytest.raises(HeadbakeError, match=r"has no split 'non_image' \(splits: image\)"):
        load_recipe_rows("hallusionbench", dataset=path, split="non_image")


# Lin-Chen/MMStar, split "val": index, question (options written in it), image, answer, category,
# l2_category, meta_info{source, split, image_path}
MMSTAR_FEATURES = {
    "index": V("int64"), "question": V("string"), "image": Img(), "answer": V("string"), "category": V("string"),
    "l2_category": V("string"), "meta_info": {"source": V("string"), "split": V("string"), "image_path": V("string")},
}


def test_mmstar(tmp_path):
    q = ("Which option describe the object relationship in the image correctly?\nOptions: A: The suitcase is on the "
         "book., B: The suitcase is beneath the cat., C: The suitcase is beneath the bed., D: The suitcase is "
         "beneath the book.")
    rows = [{"index": 0, "question": q, "image": _img((3, 3, 3)), "answer": "A", "category": "coarse perception",
             "l2_category": "image scene and topic",
             "meta_info": {"source": "MMBench", "split": "val", "image_path": "images/0.jpg"}}]
    path = _save(tmp_path, "mmstar", rows, MMSTAR_FEATURES, "val")
    (row,) = load_recipe_rows("mmstar", dataset=path)
    assert (row.id, row.type, row.answer) == ("0", "multiple_choice", "A")
    assert row.choices == ["The suitcase is on the book.", "The suitcase is beneath the cat.",
                           "The suitcase is beneath the bed.", "The suitcase is beneath the book."]
    assert prompt_text(row) == q + "\nAnswer with the option's letter from the given choices."  # options not repeated
    assert score_row(row, "The suitcase is on the book.").correct  # graded by option text
    assert not score_row(row, "D").correct


def test_mmstar_options_parser():
    assert mmstar_options("Q?\nOptions: A: 3, B: 4, C: 5, D: 6") == ["3", "4", "5", "6"]
    assert mmstar_options("Q?\nOptions: A: x, y, B: z") == ["x, y", "z"]
    with pytest.raises(ValueError, match="no 'Options:'"):
        mmstar_options("Which one?")


# lmms-lab/SEED-Bench, split "test": answer, choice_a..choice_d, data_id, data_type, question, question_id,
# question_type_id, image (a list of images: one for image rows, frames for video rows)
SEED_FEATURES = {
    "answer": V("string"), "choice_a": V("string"), "choice_b": V("string"), "choice_c": V("string"),
    "choice_d": V("string"), "data_id": V("string"), "data_type": V("string"), "question": V("string"),
    "question_id": V("string"), "question_type_id": V("int64"), "image": Seq(Img()),
}


def test_seed_bench_image_keeps_image_rows_only(tmp_path):
    def row(qid, dtype, images, answer="B"):
        return {"answer": answer, "choice_a": "One", "choice_b": "Two", "choice_c": "Three", "choice_d": "Four",
                "data_id": f"{qid}.jpg", "data_type": dtype, "question": "How many people are in the image?",
                "question_id": qid, "question_type_id": 5, "image": images}

    rows = [row("101", "image", [_img((1, 1, 1))]), row("v1", "video", [_img((2, 2, 2))] * 3),
            row("102", "image", [_img((3, 3, 3))], "D")]
    path = _save(tmp_path, "seed", rows, SEED_FEATURES, "test")
    got = load_recipe_rows("seed-bench-image", dataset=path)
    assert [r.id for r in got] == ["101", "102"]
    assert (got[0].choices, got[0].answer, len(got[0].images)) == (["One", "Two", "Three", "Four"], "B", 1)
    assert score_row(got[1], "D. Four").correct
    assert [r.id for r in load_recipe_rows("seed-bench-image", dataset=path, limit=1)] == ["101"]


# lmms-lab/POPE, split "test": id, question_id, question, answer, image_source, image, category
POPE_FEATURES = {"id": V("string"), "question_id": V("string"), "question": V("string"), "answer": V("string"),
                 "image_source": V("string"), "image": Img(), "category": V("string")}


def test_pope(tmp_path):
    rows = [{"id": str(i), "question_id": "1", "question": "Is there a snowboard in the image?",
             "answer": ans, "image_source": "COCO_val2014_000000310196", "image": _img((i, i, i)), "category": cat}
            for i, (cat, ans) in enumerate([("adversarial", "yes"), ("popular", "no"), ("random", "yes")])]
    path = _save(tmp_path, "pope", rows, POPE_FEATURES, "test")
    got = load_recipe_rows("pope", dataset=path)
    assert [r.id for r in got] == ["adversarial/1", "popular/1", "random/1"]
    assert [r.answer for r in got] == ["yes", "no", "yes"] and got[1].meta["category"] == "popular"
    assert len({rows_fingerprint([r]) for r in got}) == 3


def test_recipe_refuses_missing_columns_and_path_images(tmp_path):
    path = _save(tmp_path, "wrong", [{"question": "q", "answer": "yes", "image": _img((0, 0, 0))}],
                 {"question": V("string"), "answer": V("string"), "image": Img()}, "test")
    with pytest.raises(HeadbakeError, match=r"pope \(.*\) has no column\(s\) 'question_id', 'category' \(columns: "):
        load_recipe_rows("pope", dataset=path)
    rows = [{"id": "0", "question_id": "1", "question": "q?", "answer": "yes", "image_source": "x",
             "image": "/etc/hostname", "category": "random"}]
    feats = dict(POPE_FEATURES, image=V("string"))
    path = _save(tmp_path, "pathimg", rows, feats, "test")
    with pytest.raises(HeadbakeError, match="row 0: the image column holds a file path"):
        load_recipe_rows("pope", dataset=path)


def test_duplicate_ids_refused(tmp_path):
    row = {"id": "0", "question_id": "1", "question": "q?", "answer": "yes", "image_source": "x",
           "image": _img((0, 0, 0)), "category": "random"}
    path = _save(tmp_path, "dup", [row, dict(row, id="1")], POPE_FEATURES, "test")
    with pytest.raises(HeadbakeError, match=r"row 1: duplicate id 'random/1'"):
        load_recipe_rows("pope", dataset=path)


def test_every_recipe_states_its_layout():
    assert set(RECIPES) == {"mathvista-testmini", "mathvision-testmini", "hallusionbench", "mmstar",
                            "seed-bench-image", "pope"}
    for rc in RECIPES.values():
        d = rc.describe()
        assert d["dataset"] and d["split"] and d["columns"] and d["answer_type"] and d["derivation"]
    with pytest.raises(HeadbakeError, match="unknown recipe 'mmmu' \\(known: mathvista-testmini"):
        recipe("mmmu")


def test_card_dataset():
    assert card_dataset("pope") == {"name": "POPE", "type": "lmms-lab/POPE", "split": "test", "config": "default"}
    assert card_dataset("mine") == {"name": "mine", "type": "mine"}
    assert card_dataset(None)["name"] == "evaluation set"


def test_column_mapping(tmp_path):
    rows = [{"img": _img((1, 1, 1)), "prompt": "Colour?", "gold": "red", "kind": "free", "opts": None, "key": "a"},
            {"img": _img((2, 2, 2)), "prompt": "Pick", "gold": "B", "kind": "multiple_choice",
             "opts": ["x", "y"], "key": "b"}]
    feats = {"img": Img(), "prompt": V("string"), "gold": V("string"), "kind": V("string"),
             "opts": Seq(V("string")), "key": V("string")}
    path = _save(tmp_path, "custom", rows, feats, "train")
    cmap = ColumnMap(image="img", question="prompt", answer="gold", choices="opts", type="kind", id="key",
                     benchmark="custom")
    got = load_mapped_rows(path, "train", cmap)
    assert [(r.id, r.type, r.answer, r.choices, r.benchmark) for r in got] == [
        ("a", "free", "red", None, "custom"), ("b", "multiple_choice", "B", ["x", "y"], "custom")]
    fixed = load_mapped_rows(path, "train", ColumnMap(image="img", question="prompt", answer="gold",
                                                      answer_type="free"), limit=1)
    assert [(r.id, r.type) for r in fixed] == [("0", "free")]
    with pytest.raises(HeadbakeError, match="either a type column or one answer type"):
        load_mapped_rows(path, "train", ColumnMap(image="img", question="prompt", answer="gold"))
    with pytest.raises(HeadbakeError, match=r"row 1: a multiple_choice row needs"):
        load_mapped_rows(path, "train", ColumnMap(image="img", question="prompt", answer="gold", type="kind"))


def test_missing_datasets_package(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "datasets":
            raise ImportError("no datasets")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(HeadbakeError, match=r"needs the optional 'datasets' package: pip install 'headbake\[datasets\]'"):
        load_recipe_rows("pope")


def test_unreachable_hub_dataset_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(HeadbakeError, match=r"cannot load dataset 'nobody/no-such-dataset-xyz' split 'test'") as e:
        load_recipe_rows("pope", dataset="nobody/no-such-dataset-xyz")
    assert "\n" not in str(e.value)
