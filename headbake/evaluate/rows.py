"""Evaluation rows: one image question with a gold answer, from a JSONL file or a dataset recipe.

Every row is checked before any model loads, so a typo on line 900 costs a
second, not an hour of generation: the first bad row stops the run with its
line number. Image paths are confined to the JSONL's folder (no ``..``, no
absolute paths, no symlink leading out) so a shared data file cannot make
headbake read, hash or show a model arbitrary files.
"""

from __future__ import annotations

import hashlib
import json
import math
import stat
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from headbake.bounded import read_bounded, read_text
from headbake.errors import HeadbakeError

ANSWER_TYPES = ("multiple_choice", "yes_no", "number", "free")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_DATA_BYTES = 256 << 20  # a JSONL of questions, not of images
MAX_IMAGE_BYTES = 256 << 20
REQUIRED = ("id", "image", "question", "answer", "type")
OPTIONAL = ("choices", "benchmark", "precision")

# Appended to the question by prompt_text() unless the row says otherwise; identical for every arm.
DEFAULT_INSTRUCTIONS = {
    "multiple_choice": "Answer with the option's letter from the given choices.",
    "yes_no": "Answer yes or no.",
    "number": "Put the final answer in \\boxed{}.",
    "free": "Answer with a single word or phrase.",
}


@dataclass(frozen=True)
class EvalRow:
    """One question. ``answer`` is canonical: a letter for multiple choice, "yes"/"no" for yes/no."""
    id: str
    images: list  # absolute paths (str) or decoded PIL images
    question: str
    answer: str
    choices: list[str] | None
    type: str
    benchmark: str | None = None
    precision: int | None = None  # decimal places a numeric answer is graded to (MathVista)
    options_in_question: bool = False  # the question text already lists the options (MMStar, MathVista query)
    instruction: str | None = None  # overrides DEFAULT_INSTRUCTIONS[type]; "" for none
    meta: dict = field(default_factory=dict, compare=False)  # e.g. a benchmark's category, for reports

    def open_images(self) -> list:
        """The row's images as RGB PIL images (paths are opened now, not at load time)."""
        return [_open_rgb(im) if isinstance(im, str) else im.convert("RGB") for im in self.images]


def letter(i: int) -> str:
    return LETTERS[i]


def prompt_text(row: EvalRow) -> str:
    """The user text shown to the model: question, lettered options, answer-format instruction."""
    parts = [row.question.strip()]
    if row.choices and not row.options_in_question:
        parts.append("\n".join(f"{letter(i)}. {c}" for i, c in enumerate(row.choices)))
    instruction = DEFAULT_INSTRUCTIONS[row.type] if row.instruction is None else row.instruction
    if instruction and instruction.lower() not in row.question.lower():
        parts.append(instruction)
    return "\n".join(parts)


def _norm_option(s: str) -> str:
    return " ".join(str(s).strip().lower().split()).rstrip(".")


def canonical_answer(answer, type_: str, choices: list[str] | None) -> str:
    """Validate ``answer`` for ``type_`` and return its canonical form; ValueError with a short reason."""
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise ValueError(f'"answer" must be a string (got {type(answer).__name__})')
    if isinstance(answer, float) and not math.isfinite(answer):
        raise ValueError('"answer" must be finite')
    text = str(answer).strip()
    if not text:
        raise ValueError('"answer" is empty')
    if type_ == "multiple_choice":
        n = len(choices or [])
        if len(text) == 1 and text.upper() in LETTERS[:n]:
            return text.upper()
        stripped = text.strip("()").strip()
        if len(stripped) == 1 and stripped.upper() in LETTERS[:n]:
            return stripped.upper()
        matches = [i for i, c in enumerate(choices or []) if _norm_option(c) == _norm_option(text)]
        if len(matches) == 1:
            return letter(matches[0])
        if len(matches) > 1:
            raise ValueError(f'"answer" {text!r} matches {len(matches)} choices; give its letter')
        raise ValueError(f'"answer" {text!r} is neither a letter A-{LETTERS[n - 1]} nor one of the choices')
    if type_ == "yes_no":
        if text.lower() not in ("yes", "no"):
            raise ValueError(f'"answer" must be "yes" or "no" for a yes_no row (got {text!r})')
        return text.lower()
    return text


def make_row(
    id_, images, question, answer, type_, choices=None, benchmark=None, precision=None, **extra
) -> EvalRow:
    """Check every field of one row (from any source) and build it; ValueError names the bad field."""
    if isinstance(id_, bool) or not isinstance(id_, (str, int)) or not str(id_).strip():
        raise ValueError('"id" must be a non-empty string or an integer')
    if not isinstance(question, str) or not question.strip():
        raise ValueError('"question" must be a non-empty string')
    if type_ not in ANSWER_TYPES:
        raise ValueError(f'"type" must be one of {", ".join(ANSWER_TYPES)} (got {type_!r})')
    if choices is not None:
        if not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices):
            raise ValueError('"choices" must be a list of non-empty strings')
        if len(choices) > len(LETTERS):
            raise ValueError(f'"choices" has {len(choices)} options; at most {len(LETTERS)}')
    if type_ == "multiple_choice" and (not choices or len(choices) < 2):
        raise ValueError('a multiple_choice row needs "choices" with at least two options')
    if benchmark is not None and (not isinstance(benchmark, str) or not benchmark.strip()):
        raise ValueError('"benchmark" must be a non-empty string')
    if precision is not None and (isinstance(precision, bool) or not isinstance(precision, int) or not 0 <= precision <= 12):
        raise ValueError('"precision" must be an integer number of decimal places (0-12)')
    if not images:
        raise ValueError("the row has no image")
    return EvalRow(
        id=str(id_).strip(),
        images=list(images),
        question=question,
        answer=canonical_answer(answer, type_, choices),
        choices=list(choices) if type_ == "multiple_choice" else None,  # other types are scored without options
        type=type_,
        benchmark=benchmark.strip() if isinstance(benchmark, str) else None,
        precision=precision,
        **extra,
    )


def check_unique(rows: list[EvalRow], where) -> None:
    """Duplicate ids would silently merge two rows in the cache and the paired statistics."""
    seen = {}
    for i, r in enumerate(rows):
        if r.id in seen:
            raise HeadbakeError(f"{where(i)}: duplicate id {r.id!r} (first at {where(seen[r.id])})")
        seen[r.id] = i


def _resolve_image(base: Path, value: str) -> str:
    """An image path relative to ``base``, refused if it (or a symlink on the way) leaves ``base``."""
    p = Path(value)
    if p.is_absolute() or value.startswith("~"):
        raise ValueError(f"image path {value!r} must be relative to the data file's folder")
    if ".." in p.parts:
        raise ValueError(f"image path {value!r} must not contain '..'")
    target = (base / p).resolve()
    if not target.is_relative_to(base):
        raise ValueError(f"image path {value!r} leads outside the data file's folder")
    try:
        st = target.stat()
    except FileNotFoundError:
        raise ValueError(f"image not found: {value}") from None
    except OSError as e:
        raise ValueError(f"cannot read image {value}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"image {value} is not a regular file")
    if st.st_size > MAX_IMAGE_BYTES:
        raise ValueError(f"image {value} is too large ({st.st_size} bytes)")
    _check_image_header(target, value)
    return str(target)


def _check_image_header(path: Path, shown: str) -> None:
    """Identify the format without decoding pixels, so a text file named .png fails now."""
    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - header parsed on open
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"cannot read image {shown} ({type(e).__name__})") from None


def _open_rgb(path: str):
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as e:  # noqa: BLE001 - a decoder failure on a checked file is still the user's data
        raise HeadbakeError(f"cannot decode image {Path(path).name} ({type(e).__name__}: {e})") from None


def read_rows(path, limit: int | None = None) -> list[EvalRow]:
    """Rows of a JSONL file: ``{"id", "image": path | [paths], "question", "answer", "type", "choices"?, "benchmark"?}``.

    Every line is checked (ids must be unique across the whole file); only the
    first ``limit`` rows are returned.
    """
    path = Path(path)
    text = read_text(path, "data file", MAX_DATA_BYTES)
    if limit is not None and limit < 1:
        raise HeadbakeError(f"--limit must be at least 1 (got {limit})")
    base = path.parent.resolve()
    rows, lines = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise HeadbakeError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(rec, dict):
            raise HeadbakeError(f"{where}: expected a JSON object")
        missing = [k for k in REQUIRED if k not in rec]
        if missing:
            raise HeadbakeError(f"{where}: missing {', '.join(repr(k) for k in missing)}")
        unknown = sorted(set(rec) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise HeadbakeError(f"{where}: unknown field(s) {', '.join(repr(k) for k in unknown)}")
        img = rec["image"]
        paths = img if isinstance(img, list) else [img]
        if not paths or not all(isinstance(p, str) and p.strip() for p in paths):
            raise HeadbakeError(f'{where}: "image" must be a path or a non-empty list of paths')
        try:
            images = [_resolve_image(base, p) for p in paths]
            row = make_row(
                rec["id"], images, rec["question"], rec["answer"], rec["type"],
                choices=rec.get("choices"), benchmark=rec.get("benchmark"), precision=rec.get("precision"),
            )
        except ValueError as e:
            raise HeadbakeError(f"{where}: {e}") from None
        rows.append(row)
        lines.append(where)
    if not rows:
        raise HeadbakeError(f"data file has no rows: {path}")
    check_unique(rows, lambda i: lines[i])
    return rows if limit is None else rows[:limit]


def _image_digest(image) -> bytes:
    if isinstance(image, str):
        return hashlib.sha256(read_bounded(Path(image), "image", MAX_IMAGE_BYTES)).digest()
    # Decoded dataset images: hash the pixels (mode and size included), not an encoding of them.
    h = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes())
    return h.digest()


def rows_fingerprint(rows: list[EvalRow]) -> str:
    """sha256 over every row's text fields and image content, in order: names a data set in reports and caches."""
    h = hashlib.sha256()
    for r in rows:
        text = {
            "id": r.id, "question": r.question, "answer": r.answer, "choices": r.choices, "type": r.type,
            "benchmark": r.benchmark, "precision": r.precision, "options_in_question": r.options_in_question,
            "instruction": r.instruction,
        }
        h.update(json.dumps(text, sort_keys=True, ensure_ascii=False).encode())
        for im in r.images:
            h.update(_image_digest(im))
    return h.hexdigest()
