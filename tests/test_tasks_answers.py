"""Table-driven tests of the shared final-answer extraction and number normalisation."""

from __future__ import annotations

from fractions import Fraction

import pytest

from irpo.tasks.answers import (
    answer_is_span,
    extract_number,
    final_answer_span,
    format_number,
    last_boxed,
    normalize_number,
    parse_number,
    unwrap_answer,
)


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("Final answer: 42", "42"),
        ("final ANSWER: 42", "42"),
        ("**Final answer:** 42", "42"),
        ("**Final Answer**: 42", "42"),
        ("__Final answer:__ 42", "42"),
        ("Final answer: **42**", "42"),
        ("Final answer: $42$", "42"),
        ("Final answer: $\\boxed{42}$.", "42"),
        ("Final answer: \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("Final answer: \\(x^2\\)", "x^2"),
        ("Final answer: $\\$18.90$", "\\$18.90"),
        ("Final answer: 42.", "42"),
        ("The final answer is 42", "42"),
        ("The final answer is: $42$", "42"),
        ("Final answer:\n\n42\n", "42"),
        ("Final answer: $$\n\\frac{3}{4}\n$$", "\\frac{3}{4}"),
        ("Final answer: 7\nQuestion: what is 2+2?\nFinal", "7"),
        ("Final answer: 1\nFinal answer: 2", "2"),  # the last one wins
        ('use the format "Final answer: ..." then Final answer: 9', "9"),
        ("Final answer: ", None),  # a clipped generation
        ("Final answer:\n\n", None),
        ("No marker here, 42", None),
        ("The final answer", None),  # no colon and no "is"
        ("", None),
    ],
)
def test_final_answer_span(text: str, span: str | None) -> None:
    assert final_answer_span(text) == span


@pytest.mark.parametrize(
    ("text", "content"),
    [
        ("so \\boxed{12}", "12"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),
        ("\\fbox{7} wait \\boxed{8}", "8"),
        ("\\boxed{8} then \\fbox{x^{2}}", "x^{2}"),
        ("\\boxed 5", "5"),
        ("\\boxed{3} and then \\boxed{unclosed", None),  # clipped: not the earlier box
        ("\\boxed{3}; wrap it in \\boxed, then", "3"),  # prose mention is passed over
        ("\\boxed{", None),
        ("no box", None),
    ],
)
def test_last_boxed(text: str, content: str | None) -> None:
    assert last_boxed(text) == content


@pytest.mark.parametrize(
    ("span", "number"),
    [
        ("42", "42"),
        ("1,080", "1080"),
        ("$1,080.00", "1080"),
        ("-7", "-7"),
        ("\u22127", "-7"),  # unicode minus
        ("3.50", "3.5"),
        ("5.0", "5"),
        ("0.125", "0.125"),
        (".5", "0.5"),
        ("42%", "42"),
        ("42 apples", "42"),
        ("$18 per day. Next question: 5", "18"),
        ("18 dollars", "18"),
        ("\\$18", "18"),
        ("1{,}080", "1080"),
        ("\\frac{3}{4}", "0.75"),
        ("\\dfrac{-1}{3}", "-1/3"),
        ("3/4", "0.75"),
        ("9 * 2 = $18", "18"),
        ("16 - 3 - 4 = 9 eggs", "9"),
        ("x = 5", "5"),
        ("she makes $18 a day", "18"),
        ("10\\%", "10"),
        ("18 * 2", None),  # a bare expression: ambiguous
        ("2 or 3", None),
        ("5, 6", None),
        ("from 3 to 5", None),
        ("2^3", None),
        ("= eighteen", None),
        ("eighteen", None),
        ("", None),
        ("1/0", None),
        ("H2O", None),
    ],
)
def test_normalize_number(span: str, number: str | None) -> None:
    assert normalize_number(span) == number


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Fraction(7), "7"),
        (Fraction(-3), "-3"),
        (Fraction(7, 2), "3.5"),
        (Fraction(-1, 8), "-0.125"),
        (Fraction(1, 40), "0.025"),
        (Fraction(1, 3), "1/3"),
        (Fraction(0), "0"),
    ],
)
def test_format_number(value: Fraction, text: str) -> None:
    assert format_number(value) == text
    assert parse_number(text) == value


@pytest.mark.parametrize(
    ("completion", "number"),
    [
        ("She makes 9 * 2 = $18 every day.\nFinal answer: 18", "18"),
        ("Final answer: $18.00", "18"),
        ("Final answer: The answer is 70,000 dollars", "70000"),
        ("**Final answer:** 1,080 square feet.", "1080"),
        ("Final answer: -12", "-12"),
        ("Final answer: \\boxed{33}", "33"),
        ("Final answer: 7 hours\n\nQuestion: A farmer has 12 cows.", "7"),
        # fall-backs only without any marker
        ("... so the total is \\boxed{45}.", "45"),
        ("3 + 4 = 7. The answer is 7.", "7"),
        ("The answer is 5. Wait, the answer is 6.", "6"),
        ("\\boxed{12}. The answer is 13.", "12"),  # the box comes first among fall-backs
        # a marker followed by nothing falls back (flexible; strict: unparsed)
        ("\\boxed{12} Final answer:", "12"),
        ("Final answer: not sure", None),
        ("I think it is 5", None),
    ],
)
def test_extract_number(completion: str, number: str | None) -> None:
    value = extract_number(completion)
    assert (format_number(value) if value is not None else None) == number


def test_strict_mode_reads_the_marker_only() -> None:
    assert extract_number("so \\boxed{45}", mode="strict") is None
    assert extract_number("The answer is 7.", mode="strict") is None
    assert extract_number("\\boxed{12} Final answer:", mode="strict") is None
    assert extract_number("Final answer: 7", mode="strict") == 7


def test_answer_is_span_and_unwrap() -> None:
    assert answer_is_span("blah. The answer is $\\frac{1}{2}$.") == "\\frac{1}{2}"
    assert answer_is_span("no such phrase") is None
    assert unwrap_answer("  **$42$** ") == "42"
    assert unwrap_answer("$42$ dollars.") == "42"
    assert unwrap_answer("$unclosed") == "$unclosed"
