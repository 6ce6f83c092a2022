"""The competition metric, rule by rule (see the shared competition doc, 'The metric')."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonlab.metric import NOT_FOUND, extract_answer, is_correct, score_text

# ---------------------------------------------------------------- extraction: boxes
BOXED_CASES = [
    # (generated text, extracted answer)
    ("so \\boxed{42}", "42"),
    ("\\boxed{ 42 }", "42"),
    # several boxes: the last non-empty one wins
    ("\\boxed{1} then \\boxed{2}", "2"),
    ("\\boxed{1} then \\boxed{}", "1"),
    ("\\boxed{1} then \\boxed{   }", "1"),
    # all empty: the last one (stripped, so empty)
    ("\\boxed{} \\boxed{}", ""),
    # answers containing '}' or '\\': cut at the LAST '}' before the next box
    ("\\boxed{a}b}", "a}b"),
    ("\\boxed{)}#}", ")}#"),
    ("\\boxed{\\^?}", "\\^?"),
    ("\\boxed{\\\\}", "\\\\"),
    ("\\boxed{x}} done.", "x}"),
    ("\\boxed{x} and {y}", "x} and {y"),
    # each stretch ends where the next box opens
    ("\\boxed{a}} \\boxed{b}", "b"),
    ("\\boxed{a}} \\boxed{", "a}"),
    # unclosed box: the stretch is kept whole
    ("\\boxed{17", "17"),
    ("\\boxed{12.5 is my answer", "12.5 is my answer"),
    # a box in the middle of thinking still counts
    ("<think>\\boxed{3}</think>", "3"),
    # bit strings keep leading zeros
    ("\\boxed{00011011}", "00011011"),
]


@pytest.mark.parametrize(("text", "expected"), BOXED_CASES)
def test_extract_boxed(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


# ---------------------------------------------------------------- extraction: fallbacks
FALLBACK_CASES = [
    # phrases, in priority order, last match, rest of the line
    ("The final answer is: 12\nmore", "12"),
    ("The final answer is: 1\nThe final answer is: XIV", "XIV"),
    ("Final answer is: cat\nThe final answer is: dog", "dog"),  # first pattern wins
    ("final answer: 7 apples\nthen 9", "7 apples"),
    ("FINAL ANSWER：ok", "ok"),  # full-width colon
    ("Final answer :  spaced ", "spaced"),
    ("Final answer:\n42", "42"),  # the whitespace after the colon may cross a line
    # no phrase: the last number
    ("values 3 and -4.5 here", "-4.5"),
    ("x = 10.\n", "10"),
    # no number: the last non-empty line
    ("first\n  second  \n\n", "second"),
    # nothing at all
    ("", NOT_FOUND),
    ("   \n\t\n", NOT_FOUND),
]


@pytest.mark.parametrize(("text", "expected"), FALLBACK_CASES)
def test_extract_fallbacks(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_extract_none_is_not_found() -> None:
    assert extract_answer(None) == NOT_FOUND


# ---------------------------------------------------------------- comparison
COMPARE_CASES = [
    # (gold, pred, correct)
    # bit strings: exact, leading zeros matter
    ("00011011", "00011011", True),
    ("00011011", "11011", False),
    ("11011", "00011011", False),
    ("0101", " 0101 ", True),
    ("1", "1.0", False),  # gold '1' is a bit string: compared as a string
    # other digit strings compare as numbers: 0234 equals 234
    ("0234", "234", True),
    ("234", "0234", True),
    # tolerance: rel 1e-2, abs 1e-5
    ("200", "201.98", True),
    ("200", "202.03", False),
    ("200", "198.02", True),
    ("200", "197.97", False),
    # a gold of only 0s and 1s is a bit string even when it reads as a number
    ("100", "100.0", False),
    ("10", "10", True),
    ("19.00", "19", True),
    ("12.50", "12.5", True),
    ("0.000001", "0.000009", True),  # inside abs_tol
    ("0.0001", "0.00012", False),
    ("-5", "5", False),
    # NaN and infinities parse as floats; NaN never equals anything
    ("nan", "nan", False),
    ("inf", "inf", True),
    ("inf", "1e308", False),
    # strings: case-insensitive, stripped
    ("XXXVIII", "xxxviii", True),
    ("cat imagines book", "Cat Imagines Book ", True),
    ("cat imagines book", "cat imagines  book", False),
    ("\\^?", "\\^?", True),
    ("17/", "17", False),
    # a number against a non-number is a string comparison
    ("12", "twelve", False),
]


@pytest.mark.parametrize(("gold", "pred", "correct"), COMPARE_CASES)
def test_is_correct(gold: str, pred: str, correct: bool) -> None:
    assert is_correct(gold, pred) is correct


# ---------------------------------------------------------------- properties
answers = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"),
    min_size=1,
    max_size=40,
).filter(lambda a: a.strip() and "\\boxed{" not in a)


@settings(max_examples=300, deadline=None)
@given(answer=answers, preamble=st.text(max_size=60))
def test_text_ending_in_box_scores_its_answer(answer: str, preamble: str) -> None:
    """For any answer A, a generation ending in \\boxed{A} is scored correct against A."""
    text = f"{preamble}\n\\boxed{{{answer}}}"
    if math.isnan(_as_float_or_zero(answer)):
        return  # NaN never equals NaN under math.isclose: the metric itself says so
    assert score_text(answer, text)


def _as_float_or_zero(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0
