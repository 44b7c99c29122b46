"""Named recipes that turn the paper's benchmarks (and any dataset, by column mapping) into eval rows.

Each benchmark stores its question, options and gold answer differently
(MathVista keeps the option *text* as the answer, MMStar writes the options
into the question, HallusionBench encodes yes/no as "1"/"0"), so a recipe
states, for one Hugging Face dataset, the default id, split and config, the
columns it reads and how it derives the answer type, the choices and the
canonical answer. Column layouts follow each dataset's published schema.

Images come out decoded (PIL) and are never written anywhere; an image cell
holding a file path is refused, so a dataset cannot point headbake at
arbitrary local files. ``datasets`` is an optional dependency.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from headbake.errors import HeadbakeError, first_line
from headbake.evaluate.rows import ANSWER_TYPES, EvalRow, check_unique, make_row


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str  # for tables and model cards
    dataset: str  # Hugging Face dataset id
    split: str
    config: str | None
    columns: tuple[str, ...]  # columns read; checked before any row is converted
    answer_type: str  # "multiple_choice", "yes_no", ... or how it is decided per row
    derivation: str  # how choices and the canonical answer are derived
    convert: Callable[[dict], dict] = field(repr=False)  # dataset row -> make_row keyword arguments
    keep: tuple[str, Callable] | None = field(default=None, repr=False)  # (column, predicate) row filter

    def describe(self) -> dict:
        """The recipe as data, for reports and ``--help``-style listings."""
        return {
            "name": self.name, "title": self.title, "dataset": self.dataset, "split": self.split,
            "config": self.config, "columns": list(self.columns), "answer_type": self.answer_type,
            "derivation": self.derivation,
        }


def _pil_images(value) -> list:
    """A datasets image cell (PIL image, {"bytes": ...} dict, or a list of those) as PIL images."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [im for v in value for im in _pil_images(v)]
    if isinstance(value, Image.Image):
        return [value]
    if isinstance(value, dict) and value.get("bytes"):
        try:
            with Image.open(io.BytesIO(value["bytes"])) as im:
                return [im.convert("RGB")]
        except Exception as e:  # noqa: BLE001 - any decoder failure is a bad row
            raise ValueError(f"cannot decode image bytes ({type(e).__name__})") from None
    if isinstance(value, (str, dict)):
        raise ValueError("the image column holds a file path, not an image; headbake reads only embedded images")
    raise ValueError(f"unsupported image value of type {type(value).__name__}")


def _text(r: dict, col: str) -> str:
    v = r.get(col)
    if not isinstance(v, str):
        raise ValueError(f"column {col!r} must hold a string (got {type(v).__name__})")
    return v


# ----------------------------------------------------------------------------- benchmark recipes


def _mathvista(r: dict) -> dict:
    qtype, atype = r.get("question_type"), r.get("answer_type")
    common = {
        "id_": _text(r, "pid"), "images": _pil_images(r.get("decoded_image")),
        # "query" is MathVista's own prompt: hint (answer format), question and, for
        # multiple choice, the lettered choices; shown as is.
        "question": _text(r, "query"), "answer": _text(r, "answer"), "instruction": "",
        "meta": {"question_type": qtype, "answer_type": atype},
    }
    if qtype == "multi_choice":
        # the gold "answer" is the option text; make_row turns it into its letter
        return {**common, "type_": "multiple_choice", "choices": list(r.get("choices") or []),
                "options_in_question": True}
    if qtype != "free_form":
        raise ValueError(f"unknown question_type {qtype!r}")
    if atype in ("integer", "float"):
        prec = r.get("precision")
        precision = int(prec) if atype == "float" and prec is not None else None
        return {**common, "type_": "number", "precision": precision}
    return {**common, "type_": "free"}  # answer_type "text" or "list"


def _mathvision(r: dict) -> dict:
    options = list(r.get("options") or [])
    common = {
        "id_": _text(r, "id"), "images": _pil_images(r.get("decoded_image")),
        # images are passed separately; the "<image1>" markers are layout notes for the original page
        "question": re.sub(r"\s*<image\d*>\s*", " ", _text(r, "question")).strip(),
        "answer": _text(r, "answer"),
        "meta": {"subject": r.get("subject"), "level": r.get("level")},
    }
    if options:
        return {**common, "type_": "multiple_choice", "choices": options}  # answer is a letter A-E
    return {**common, "type_": "number"}  # free-form answers are numbers or LaTeX: graded by math-verify


def _hallusionbench(r: dict) -> dict:
    gt = str(r.get("gt_answer")).strip()
    if gt not in ("0", "1"):
        raise ValueError(f"gt_answer must be '1' (yes) or '0' (no), got {gt!r}")
    parts = [str(r.get(c)) for c in ("category", "subcategory", "set_id", "figure_id", "question_id")]
    return {
        "id_": "/".join(parts), "images": _pil_images(r.get("image")), "question": _text(r, "question"),
        "answer": "yes" if gt == "1" else "no", "type_": "yes_no",
        "meta": {"category": r.get("category"), "subcategory": r.get("subcategory"),
                 "visual_input": r.get("visual_input")},
    }


def mmstar_options(question: str) -> list[str]:
    """Options written into an MMStar question: ``...\\nOptions: A: first, B: second, C: ...``."""
    at = question.rfind("Options:")
    if at < 0:
        raise ValueError("the question has no 'Options:' list")
    text = question[at + len("Options:"):]
    marks, expected = [], 0
    for m in re.finditer(r"(?:(?<=^)|(?<=[\s,]))([A-Z])\s*[:.]\s", text):
        if ord(m.group(1)) - ord("A") == expected:
            marks.append(m)
            expected += 1
    opts = [text[m.end(): marks[k + 1].start() if k + 1 < len(marks) else len(text)] for k, m in enumerate(marks)]
    opts = [o.strip().rstrip(",").strip() for o in opts]
    if len(opts) < 2 or not all(opts):
        raise ValueError("cannot read the options from the question's 'Options:' list")
    return opts


def _mmstar(r: dict) -> dict:
    q = _text(r, "question")
    return {
        "id_": str(r.get("index")), "images": _pil_images(r.get("image")), "question": q,
        "answer": _text(r, "answer"), "type_": "multiple_choice", "choices": mmstar_options(q),
        "options_in_question": True,
        "meta": {"category": r.get("category"), "l2_category": r.get("l2_category")},
    }


def _seed_bench(r: dict) -> dict:
    return {
        "id_": _text(r, "question_id"), "images": _pil_images(r.get("image")), "question": _text(r, "question"),
        "answer": _text(r, "answer"), "type_": "multiple_choice",
        "choices": [_text(r, f"choice_{c}") for c in "abcd"],
        "meta": {"question_type_id": r.get("question_type_id")},
    }


def _pope(r: dict) -> dict:
    return {
        # question_id restarts in each of POPE's three categories
        "id_": f"{r.get('category')}/{r.get('question_id')}", "images": _pil_images(r.get("image")),
        "question": _text(r, "question"), "answer": _text(r, "answer"), "type_": "yes_no",
        "meta": {"category": r.get("category"), "image_source": r.get("image_source")},
    }


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "mathvista-testmini", "MathVista (testmini)", "AI4Math/MathVista", "testmini", None,
            ("pid", "query", "decoded_image", "choices", "answer", "question_type", "answer_type", "precision"),
            "multiple_choice if question_type is multi_choice; number if answer_type is integer/float; else free",
            "prompt is the 'query' column (MathVista's hint + question + lettered choices); a multiple-choice "
            "answer is the option text, mapped to its letter; float answers are graded to 'precision' decimals",
            _mathvista,
        ),
        Recipe(
            "mathvision-testmini", "MATH-Vision (testmini)", "MathLLMs/MathVision", "testmini", None,
            ("id", "question", "options", "decoded_image", "answer"),
            "multiple_choice if 'options' is non-empty, else number (numbers or LaTeX, via math-verify)",
            "choices are 'options' lettered A-E; the answer is a letter for multiple choice, else a value",
            _mathvision,
        ),
        Recipe(
            "hallusionbench", "HallusionBench", "lmms-lab/HallusionBench", "image", None,
            ("category", "subcategory", "set_id", "figure_id", "question_id", "question", "gt_answer", "image"),
            "yes_no",
            "gt_answer '1' is yes, '0' is no; id is category/subcategory/set_id/figure_id/question_id",
            _hallusionbench,
        ),
        Recipe(
            "mmstar", "MMStar", "Lin-Chen/MMStar", "val", None,
            ("index", "question", "image", "answer"),
            "multiple_choice",
            "options are written in the question ('Options: A: ..., B: ...') and read back from it for "
            "option-text scoring; the answer is a letter",
            _mmstar,
        ),
        Recipe(
            "seed-bench-image", "SEED-Bench (image)", "lmms-lab/SEED-Bench", "test", None,
            ("question_id", "question", "choice_a", "choice_b", "choice_c", "choice_d", "answer", "image",
             "data_type"),
            "multiple_choice",
            "rows with data_type 'image' only (the video rows are dropped); choices are choice_a..choice_d, "
            "the answer is a letter",
            _seed_bench,
            keep=("data_type", lambda v: str(v).strip().lower() == "image"),
        ),
        Recipe(
            "pope", "POPE", "lmms-lab/POPE", "test", "default",
            ("question_id", "question", "answer", "image", "category"),
            "yes_no",
            "the answer is 'yes' or 'no'; id is category/question_id (question ids restart per category)",
            _pope,
        ),
    )
}


def recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise HeadbakeError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})") from None


# ----------------------------------------------------------------------------- generic column mapping


@dataclass(frozen=True)
class ColumnMap:
    """How to read rows from a dataset that has no recipe (the ``--*-column`` options)."""
    image: str = "image"
    question: str = "question"
    answer: str = "answer"
    choices: str | None = None  # a list-of-strings column
    type: str | None = None  # a column naming each row's answer type ...
    answer_type: str | None = None  # ... or one answer type for every row
    id: str | None = None  # default: the row index
    benchmark: str | None = None  # a name for the per-benchmark statistics

    def check(self) -> None:
        if (self.type is None) == (self.answer_type is None):
            raise HeadbakeError("give either a type column or one answer type for every row (not both)")
        if self.answer_type is not None and self.answer_type not in ANSWER_TYPES:
            raise HeadbakeError(f"answer type must be one of {', '.join(ANSWER_TYPES)} (got {self.answer_type!r})")

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in (self.image, self.question, self.answer, self.choices, self.type, self.id) if c)

    def convert(self, r: dict, index: int) -> dict:
        return {
            "id_": r.get(self.id) if self.id else index,
            "images": _pil_images(r.get(self.image)), "question": r.get(self.question),
            "answer": r.get(self.answer), "type_": r.get(self.type) if self.type else self.answer_type,
            "choices": list(r[self.choices]) if self.choices and r.get(self.choices) is not None else None,
            "benchmark": self.benchmark,
        }


# ----------------------------------------------------------------------------- loading


def open_dataset(name: str, split: str, config: str | None = None):
    """A dataset split from the Hub (``load_dataset``) or from a folder saved with ``save_to_disk``."""
    try:
        import datasets
    except ImportError:
        raise HeadbakeError("--dataset needs the optional 'datasets' package: pip install 'headbake[datasets]'") from None
    path = Path(name).expanduser()
    try:
        if path.exists():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise HeadbakeError(f"dataset {name} has no split {split!r} (splits: {', '.join(ds)})")
                ds = ds[split]
            return ds
        return datasets.load_dataset(name, config, split=split)
    except HeadbakeError:
        raise
    except Exception as e:  # noqa: BLE001 - datasets raises many types; report in one line
        raise HeadbakeError(f"cannot load dataset {name!r} split {split!r}: {first_line(e)}") from None


def _rows_from(ds, columns, convert, where, limit, keep=None, benchmark=None) -> list[EvalRow]:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise HeadbakeError(
            f"{where(None)} has no column(s) {', '.join(map(repr, missing))} (columns: {', '.join(ds.column_names)})"
        )
    if keep is not None:
        col, pred = keep
        ds = ds.filter(lambda v: pred(v), input_columns=[col], load_from_cache_file=False, keep_in_memory=True)
    if limit is not None:
        if limit < 1:
            raise HeadbakeError(f"--limit must be at least 1 (got {limit})")
        ds = ds.select(range(min(limit, len(ds))))
    rows = []
    for i, r in enumerate(ds):
        try:
            kwargs = convert(r, i)
            if benchmark is not None:
                kwargs["benchmark"] = benchmark
            rows.append(make_row(**kwargs))
        except ValueError as e:
            raise HeadbakeError(f"{where(i)}: {e}") from None
    if not rows:
        raise HeadbakeError(f"{where(None)} has no rows")
    check_unique(rows, where)
    return rows


def load_recipe_rows(
    name: str, dataset: str | None = None, split: str | None = None, config: str | None = None,
    limit: int | None = None,
) -> list[EvalRow]:
    """Rows of benchmark recipe ``name``; ``dataset`` may be another Hub id or a local saved copy."""
    rc = recipe(name)
    dataset, split = dataset or rc.dataset, split or rc.split
    config = config if config is not None else rc.config
    ds = open_dataset(dataset, split, config)

    def where(i):
        return f"{rc.name} ({dataset} [{split}])" + ("" if i is None else f" row {i}")

    return _rows_from(ds, rc.columns, lambda r, i: rc.convert(r), where, limit, rc.keep, benchmark=rc.name)


def load_mapped_rows(
    dataset: str, split: str, columns: ColumnMap, config: str | None = None, limit: int | None = None
) -> list[EvalRow]:
    """Rows of any dataset through an explicit column mapping."""
    columns.check()
    ds = open_dataset(dataset, split, config)

    def where(i):
        return f"dataset {dataset} [{split}]" + ("" if i is None else f" row {i}")

    return _rows_from(ds, columns.columns, columns.convert, where, limit)


def card_dataset(benchmark: str | None) -> dict:
    """``model-index`` dataset entry for a benchmark name: the recipe's Hub id, else the bare name."""
    if benchmark in RECIPES:
        rc = RECIPES[benchmark]
        d = {"name": rc.title, "type": rc.dataset, "split": rc.split}
        if rc.config:
            d["config"] = rc.config
        return d
    name = benchmark or "evaluation set"
    return {"name": name, "type": name}
