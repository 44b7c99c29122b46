"""Deterministic answer extraction and grading, identical for every arm.

An A/B comparison is only as fair as its scorer: the same raw text must get
the same grade whichever model wrote it, and a reasoning model's scratch work
must not be graded. So the scorer drops the reasoning block, looks for the
final answer where models put it (``<answer>`` tag, ``\\boxed{}``, an
"Answer:" / "the answer is" phrase, else the last line), and grades it by the
row's type. Math goes through ``math-verify`` (LaTeX, fractions, roots, sets)
rather than hand-written normalisation; plain numbers are compared with a
relative tolerance (or the benchmark's decimal precision), integers exactly.
"""

from __future__ import annotations

import math
import re
import string
import threading
import unicodedata
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version

import sympy

from headbake.evaluate.rows import LETTERS, EvalRow

DEFAULT_REL_TOL = 1e-2

_THINK_OPEN = re.compile(r"<think(?:ing)?\s*>|◁think▷", re.I)
_THINK_CLOSE = re.compile(r"</think(?:ing)?\s*>|◁/think▷", re.I)
_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.I | re.S)
_PHRASE = re.compile(
    r"(?:\b(?:final|correct)\s+)?\b(?:answer|option|choice)\b\s*(?:is|:|=|：)\s*[:：]?\s*([^\n]+)", re.I
)
_THOUSANDS = re.compile(r"(?<![\d.,])(\d{1,3}(?:,\d{3})+)(?![\d,]*\d)")


@dataclass(frozen=True)
class Score:
    """What was read from an output, whether it is right, and how it was read (``source:how``)."""
    extracted: str | None
    correct: bool
    method: str

    def as_dict(self) -> dict:
        return asdict(self)


def strip_reasoning(text: str) -> str:
    """Text after the last ``</think>``; with an unclosed ``<think>``, only the text before it.

    A closing tag with no opening tag is normal: many chat templates put
    ``<think>`` in the prompt. An opening tag with no closing tag means the
    reasoning was cut off (token limit), so nothing after it is an answer.
    """
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        return text[closes[-1].end():].strip()
    opened = _THINK_OPEN.search(text)
    if opened:
        return text[: opened.start()].strip()
    return text.strip()


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces included."""
    starts = [m for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    i = starts[-1].end()
    depth = 1
    for k in range(i, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return text[i:k].strip()
    return None  # unbalanced: the output was cut off inside the box


def answer_spans(output: str) -> list[tuple[str, str]]:
    """Candidate answer texts in priority order, each with where it came from."""
    body = strip_reasoning(output or "")
    spans: list[tuple[str, str]] = []
    tags = _ANSWER_TAG.findall(body)
    if tags and tags[-1].strip():
        spans.append(("answer-tag", tags[-1].strip()))
    boxed = last_boxed(body)
    if boxed:
        spans.append(("boxed", boxed))
    plain = body.replace("**", "")
    phrases = [m.group(1).strip() for m in _PHRASE.finditer(plain)]
    if phrases and phrases[-1]:
        spans.append(("answer-phrase", phrases[-1]))
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    if lines:
        spans.append(("last-line", lines[-1]))
    seen, out = set(), []
    for src, s in spans:
        if s not in seen:
            seen.add(s)
            out.append((src, s))
    return out


def clean_span(span: str) -> str:
    """Unwrap a box, markdown emphasis, math delimiters, quotes and a trailing full stop."""
    s = span.strip()
    inner = last_boxed(s)
    if inner is not None:
        s = inner
    s = re.sub(r"</?answer>", "", s, flags=re.I)
    s = s.replace("**", "").replace("__", "").strip("`").strip().rstrip(".。").strip()
    for _ in range(2):
        if len(s) >= 2 and s[0] == s[-1] and s[0] in "$\"'":
            s = s[1:-1].strip()
        if s.startswith("\\(") and s.endswith("\\)") or s.startswith("\\[") and s.endswith("\\]"):
            s = s[2:-2].strip()
    s = re.sub(r"\\text\{\s*([^{}]*)\}", r"\1", s) if s.startswith("\\text{") and s.endswith("}") else s
    return s.rstrip(".。").strip()


def normalize_text(s: str) -> str:
    """Lower case, NFKC, punctuation and English articles dropped, whitespace collapsed (SQuAD-style)."""
    s = unicodedata.normalize("NFKC", s).lower()
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)  # 3,000 -> 3000 (but 1,2,3 stays a list)
    s = re.sub(r"(?<=\d)\.(?=\d)", "\0", s)  # keep the point of 2.5 through the punctuation pass
    s = "".join(" " if ch in string.punctuation else ch for ch in s).replace("\0", ".")
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


# ---------------------------------------------------------------------------- multiple choice


def _letter(span: str, n: int, explicit: bool) -> str | None:
    valid = LETTERS[:n]
    s = clean_span(span)
    m = re.fullmatch(r"[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:]?", s)
    if m and m.group(1).upper() in valid:
        return m.group(1).upper()
    named = {x.upper() for x in re.findall(r"\b(?:option|choice)\s*[(\[]?\s*([A-Za-z])\b", s, re.I)} & set(valid)
    if len(named) == 1:  # "Option B"; "option A and option C" names two and decides nothing
        return named.pop()
    m = re.match(r"[(\[]\s*([A-Za-z])\s*[)\]]|([A-Z])[.:)](?=\s|$)", s)
    if m:
        got = (m.group(1) or m.group(2)).upper()
        if got in valid:
            return got
    inside = {x.upper() for x in re.findall(r"[(\[]([A-Z])[)\]]", s)} & set(valid)
    if len(inside) == 1:
        return inside.pop()
    if explicit:  # "the answer is B because ..." (an article "A" is unlikely right after an answer marker)
        m = re.match(r"([A-Z])\s", s)
        if m and m.group(1) in valid:
            return m.group(1)
    return None


def _option_text(span: str, choices: list[str]) -> str | None:
    s = normalize_text(clean_span(span))
    if not s:
        return None
    opts = [normalize_text(c) for c in choices]
    exact = [i for i, o in enumerate(opts) if o and o == s]
    if len(exact) == 1:
        return LETTERS[exact[0]]
    found = [i for i, o in enumerate(opts) if o and re.search(rf"(?<![\w.]){re.escape(o)}(?!\w|\.\w)", s)]
    # "dark red" contains "red": keep only matches that are not part of a longer match
    found = [i for i in found if not any(j != i and opts[i] in opts[j] for j in found)]
    if len(set(opts[i] for i in found)) == 1:
        return LETTERS[found[0]]
    return None


def _option_value(span: str, choices: list[str], precision: int | None) -> str | None:
    values = [_plain_number(c) for c in choices]
    if any(v is None for v in values):
        return None
    pred = _parse_number(clean_span(span))
    if pred is None:
        return None
    hits = [i for i, v in enumerate(values) if any(_close(p, v, precision, 1e-9, False) for p in pred)]
    return LETTERS[hits[0]] if len(hits) == 1 else None


# ---------------------------------------------------------------------------- yes / no


def _yes_no(span: str) -> str | None:
    s = clean_span(span).lower()
    m = re.match(r"[^a-z0-9]*(yes|no)\b", s)
    if m:
        return m.group(1)
    words = set(re.findall(r"\b(yes|no)\b", s))
    return words.pop() if len(words) == 1 else None


# ---------------------------------------------------------------------------- numbers and math


def _mv_timeout():
    # math-verify's timeouts use SIGALRM, which only the main thread may set.
    return 5 if threading.current_thread() is threading.main_thread() else None


def _mv_parse(text: str, wrap: bool):
    from math_verify import parse

    t = _mv_timeout()
    return parse(f"${text}$" if wrap else text, parsing_timeout=t)


def _looks_like_math(s: str) -> bool:
    """No English word outside LaTeX commands and \\text{}: safe to read the whole span as one formula."""
    rest = re.sub(r"\\text\{[^{}]*\}|\\[A-Za-z]+", " ", s)
    return not re.search(r"[A-Za-z]{2,}", rest)


def _prep_number_text(s: str) -> tuple[str, bool]:
    s = _THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), s)
    percent = bool(re.search(r"\\?%|\bpercent\b", s))
    s = re.sub(r"\\?%|\bpercent\b", "", s).strip()
    return s, percent


def _as_float(expr) -> float | None:
    if isinstance(expr, sympy.Eq) and isinstance(expr.lhs, sympy.Symbol):
        expr = expr.rhs  # "x = 5"
    if isinstance(expr, sympy.Basic):
        try:
            if not expr.is_number:
                return None
            v = complex(expr.evalf())
        except (TypeError, ValueError, ArithmeticError):
            return None
        return v.real if v.imag == 0 and math.isfinite(v.real) else None
    return None


def _plain_number(s: str) -> float | None:
    t, _ = _prep_number_text(str(s).strip())
    try:
        v = float(t)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _parse_number(span: str) -> list[float] | None:
    text, percent = _prep_number_text(span)
    if not text:
        return None
    parsed = _mv_parse(text, wrap=_looks_like_math(text))
    v = _as_float(parsed[0]) if parsed else None
    if v is None:
        return None
    return [v, v / 100] if percent else [v]


def _close(p: float, g: float, precision: int | None, rel_tol: float, integer: bool) -> bool:
    if precision is not None:
        return round(p, precision) == round(g, precision)
    if integer:
        return abs(p - g) <= 1e-9 * max(1.0, abs(g))
    return math.isclose(p, g, rel_tol=rel_tol, abs_tol=1e-12)


def _grade_math(span: str, answer: str, precision: int | None, rel_tol: float) -> tuple[str, bool, str] | None:
    """(extracted, correct, how) or None when nothing mathematical can be read from ``span``."""
    from math_verify import verify

    s = clean_span(span)
    text, p_percent = _prep_number_text(s)
    if not text:
        return None
    pred = _mv_parse(text, wrap=_looks_like_math(text))
    if not pred:
        return None
    if not _looks_like_math(text) and isinstance(pred[-1], str):
        s = pred[-1] + ("%" if p_percent else "")  # the formula math-verify found in the sentence
    gold_text, g_percent = _prep_number_text(answer.strip())
    gold = _mv_parse(gold_text, wrap=True)
    pv = _as_float(pred[0])
    gv = _as_float(gold[0]) if gold else None
    if pv is not None and gv is not None:
        preds = [pv] + ([pv / 100] if p_percent else [])
        golds = [gv] + ([gv / 100] if g_percent else [])
        integer = re.fullmatch(r"[-+]?\d+", gold_text) is not None
        ok = any(_close(p, g, precision, rel_tol, integer) for p in preds for g in golds)
        return s, ok, "numeric"
    if not gold:
        return s, normalize_text(s) == normalize_text(answer), "normalised"
    return s, bool(verify(gold, pred, timeout_seconds=_mv_timeout())), "math-verify"


# ---------------------------------------------------------------------------- entry points


def score_output(
    output: str,
    answer: str,
    type_: str,
    choices: list[str] | None = None,
    precision: int | None = None,
    rel_tol: float = DEFAULT_REL_TOL,
) -> Score:
    """Grade one raw model output against a canonical answer (see ``rows.canonical_answer``)."""
    for src, span in answer_spans(output):
        explicit = src != "last-line"
        if type_ == "multiple_choice":
            n = len(choices or [])
            got, how = _letter(span, n, explicit), "letter"
            if got is None and choices:
                got, how = _option_text(span, choices), "option-text"
            if got is None and choices:
                got, how = _option_value(span, choices, precision), "option-value"
            if got is not None:
                return Score(got, got == answer.upper(), f"{src}:{how}")
        elif type_ == "yes_no":
            got = _yes_no(span)
            if got is not None:
                return Score(got, got == answer.lower(), f"{src}:yes-no")
        elif type_ == "number":
            graded = _grade_math(span, answer, precision, rel_tol)
            if graded is not None:
                got, ok, how = graded
                return Score(got, ok, f"{src}:{how}")
        elif type_ == "free":
            got = clean_span(span)
            if got:
                return Score(got, normalize_text(got) == normalize_text(answer), f"{src}:normalised")
        else:
            raise ValueError(f"unknown answer type {type_!r}")
    return Score(None, False, "none")


def score_row(row: EvalRow, output: str, rel_tol: float = DEFAULT_REL_TOL) -> Score:
    return score_output(output, row.answer, row.type, row.choices, row.precision, rel_tol)


def scorer_versions() -> dict:
    """Versions that decide grades, for the report (a new math-verify may grade differently)."""
    try:
        return {"math-verify": version("math-verify")}
    except PackageNotFoundError:
        return {"math-verify": None}
