"""The scorer on real-looking outputs: the same text must get the same grade whatever arm wrote it."""

from __future__ import annotations

import pytest

from headbake.evaluate.rows import make_row
from headbake.evaluate.scoring import (
    answer_spans,
    last_boxed,
    normalize_text,
    score_output,
    score_row,
    strip_reasoning,
)

MC4 = ["3/11", "8/11", "6/11", "3/5"]
COLORS = ["red", "dark red", "blue", "green"]
NUMS = ["1.5", "2", "2.5", "12"]

# (output, answer, type, choices, precision, expected extracted, expected correct)
TABLE = [
    # reasoning blocks: the answer inside <think> is scratch work, never graded
    ("<think>Maybe it is (A)... no, the blue part is 8 of 11.</think>\nThe answer is (B).", "B", "multiple_choice", MC4, None, "B", True),
    ("<think>The answer is B.</think>", "B", "multiple_choice", MC4, None, None, False),
    ("Let me look.\n<think>Counting the shapes: 3 red, 4 blue, so the answer is 7", "7", "number", None, None, None, False),
    ("I count them carefully.</think>\n\n**Answer:** 7", "7", "number", None, None, "7", True),
    ("◁think▷The bars are 3 and 5◁/think▷The difference is 2.", "2", "number", None, None, "2", True),
    # letters, in the shapes models write them
    ("(B)", "B", "multiple_choice", MC4, None, "B", True),
    ("B.", "B", "multiple_choice", MC4, None, "B", True),
    ("B", "B", "multiple_choice", MC4, None, "B", True),
    ("Option B", "B", "multiple_choice", MC4, None, "B", True),
    ("Looking at option A and option C, neither fits; it must be option B.", "B", "multiple_choice", MC4, None, None, False),
    ("The correct option is (C) 6/11.", "B", "multiple_choice", MC4, None, "C", False),
    ("The answer is B because the blue region covers 8 of the 11 cells.", "B", "multiple_choice", MC4, None, "B", True),
    ("A cat is sitting next to the tallest bar.", "A", "multiple_choice", MC4, None, None, False),
    ("Comparing (A) and (C), (C) is larger.\nSo the fraction is 8/11.", "B", "multiple_choice", MC4, None, "B", True),
    ("<answer>\\boxed{D}</answer>", "D", "multiple_choice", MC4, None, "D", True),
    ("Final Answer:\n\n**(b)**", "B", "multiple_choice", MC4, None, "B", True),
    # by option text and by option value
    ("The shaded part is 8/11 of the shape.", "B", "multiple_choice", MC4, None, "B", True),
    ("It is dark red.", "B", "multiple_choice", COLORS, None, "B", True),
    ("The answer is 2.50", "C", "multiple_choice", NUMS, None, "C", True),
    # yes / no
    ("Yes.", "yes", "yes_no", None, None, "yes", True),
    ("yes, because the circle on the left is the same size as the one on the right.", "no", "yes_no", None, None, "yes", False),
    ("No, there is no dog in the image.", "no", "yes_no", None, None, "no", True),
    ("There is no dog in the picture.", "no", "yes_no", None, None, "no", True),
    ("<think>yes? no?</think>**No**", "no", "yes_no", None, None, "no", True),
    ("I can't tell: yes or no are both possible", "yes", "yes_no", None, None, None, False),
    # numbers and LaTeX through math-verify
    ("So the total population is 3,000 people, and the answer is 3,000", "3000", "number", None, None, "3,000", True),
    ("The answer is 3,000.", "3000", "number", None, None, "3,000", True),
    ("The answer is $12$.", "12", "number", None, None, "12", True),
    ("About 30% of the pie is blue.", "30", "number", None, None, "30%", True),
    ("The answer is 30%", "0.3", "number", None, None, "30%", True),
    ("Therefore the ratio is $\\boxed{\\frac{1}{2}}$.", "0.5", "number", None, None, "\\frac{1}{2}", True),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}", "number", None, None, "\\dfrac{3}{4}", True),
    ("The side is \\boxed{2\\sqrt{2}} units.", "\\sqrt{8}", "number", None, None, "2\\sqrt{2}", True),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "0.866", "number", None, None, "\\frac{\\sqrt{3}}{2}", True),
    ("So x = 5.", "5", "number", None, None, "5", True),
    ("The value is 1.449", "1.45", "number", None, 2, "1.449", True),
    ("The value is 1.46", "1.45", "number", None, 2, "1.46", False),
    ("There are 101 cars.", "100", "number", None, None, "101", False),
    ("The angle is \\boxed{70^\\circ}", "70", "number", None, None, "70^\\circ", True),
    ("The area is 12.04 square units.", "12", "number", None, None, "12.04", False),
    ("The mean is 4.02.", "4", "number", None, 1, "4.02", True),
    ("I am not sure.", "4", "number", None, None, None, False),
    # free text: normalised exact match
    ("The Eiffel Tower.", "eiffel tower", "free", None, None, "The Eiffel Tower", True),
    ("Answer: Blue and red", "blue and red", "free", None, None, "Blue and red", True),
    ("Answer: Blue", "blue and red", "free", None, None, "Blue", False),
]


@pytest.mark.parametrize("output,answer,type_,choices,precision,extracted,correct", TABLE)
def test_scorer_table(output, answer, type_, choices, precision, extracted, correct):
    s = score_output(output, answer, type_, choices, precision)
    assert (s.extracted, s.correct) == (extracted, correct), s
    assert (s.method == "none") == (extracted is None)


def test_table_is_large_and_mixed():
    assert len(TABLE) >= 25
    assert {t[2] for t in TABLE} == {"multiple_choice", "yes_no", "number", "free"}
    assert {t[6] for t in TABLE} == {True, False}


def test_methods_say_where_and_how():
    assert score_output("\\boxed{B}", "B", "multiple_choice", MC4).method == "boxed:letter"
    assert score_output("<answer>8/11</answer>", "B", "multiple_choice", MC4).method == "answer-tag:option-text"
    assert score_output("so it is Yes.", "yes", "yes_no").method == "last-line:yes-no"
    assert score_output("Answer: x^2 + 2x", "x(x+2)", "number").method == "answer-phrase:math-verify"
    assert score_output("Answer: 0.5", "0.5", "number").method == "answer-phrase:numeric"


def test_boxed_with_nested_braces_and_cut_off():
    assert last_boxed("x \\boxed{\\frac{a}{b^{2}}} y") == "\\frac{a}{b^{2}}"
    assert last_boxed("\\boxed{1} then \\boxed{2}") == "2"
    assert last_boxed("\\boxed{\\frac{1}{2") is None


def test_strip_reasoning_variants():
    assert strip_reasoning("<think>a</think> b <think>c</think> d") == "d"
    assert strip_reasoning("before <think> never closed") == "before"
    assert strip_reasoning("template opened it</think>final") == "final"
    assert strip_reasoning("no tags") == "no tags"


def test_answer_spans_priority():
    out = "Work.\nThe answer is 4.\n<answer>5</answer>\n\\boxed{6}\nDone"
    assert [src for src, _ in answer_spans(out)] == ["answer-tag", "boxed", "answer-phrase", "last-line"]
    assert score_output(out, "5", "number").extracted == "5"


def test_later_span_used_when_earlier_unreadable():
    # a box with no letter in it, then an explicit answer phrase
    s = score_output("\\boxed{see above}\nAnswer: (C)", "C", "multiple_choice", MC4)
    assert (s.extracted, s.correct, s.method) == ("C", True, "answer-phrase:letter")


def test_letter_out_of_range_is_not_an_answer():
    assert score_output("E.", "A", "multiple_choice", MC4).extracted is None


def test_relative_tolerance_is_a_parameter():
    assert score_output("3.13", "3.14", "number").correct is True  # 0.3% off: within 1e-2 relative
    assert score_output("3.13", "3.14", "number", rel_tol=1e-3).correct is False
    assert score_output("3.1", "3.14", "number").correct is False  # 1.3% off


def test_normalize_text():
    assert normalize_text("  The  Eiffel-Tower! ") == "eiffel tower"
    assert normalize_text("3,000 and 2.50") == "3000 and 2.50"
    assert normalize_text("[1,2,3]") == normalize_text("[1, 2, 3]") == "1 2 3"


def test_score_row_uses_row_fields(tmp_path):
    row = make_row("r1", ["x"], "Which?", "8/11", "multiple_choice", choices=MC4)
    assert row.answer == "B"
    assert score_row(row, "(B) 8/11").correct is True
    assert score_row(row, "(A) 3/11").correct is False
