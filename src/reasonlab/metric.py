"""The competition's metric: answer extraction and answer comparison, nothing else.

A replica of the final scoring version (see the shared competition doc):
`extract_answer(text)` pulls the predicted answer out of a generation, and
`is_correct(gold, pred)` compares it with the gold answer. They are separate so a
saved prediction can be re-scored, and so tests can pin each rule on its own.
"""

from __future__ import annotations

import math
import re

__all__ = ["NOT_FOUND", "extract_answer", "is_correct", "score_text"]

NOT_FOUND = "NOT_FOUND"

_BOX_OPEN = "\\boxed{"
# Tried in this order; the first pattern with any match wins and its last match is used.
# `\s*` may cross a newline, so "Final answer:\n42" reads 42; the answer must be non-empty.
_PHRASES = (
    re.compile(r"The final answer is:\s*([^\n]+)", re.IGNORECASE),
    re.compile(r"Final answer is:\s*([^\n]+)", re.IGNORECASE),
    re.compile(r"Final answer\s*[:：]\s*([^\n]+)", re.IGNORECASE),
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_BIT_STRING = re.compile(r"[01]+")


def _boxed_candidates(text: str) -> list[str]:
    """Each `\\boxed{` opens a stretch up to the next one; cut it at its last `}`."""
    starts = [m.end() for m in re.finditer(re.escape(_BOX_OPEN), text)]
    candidates = []
    for i, start in enumerate(starts):
        end = starts[i + 1] - len(_BOX_OPEN) if i + 1 < len(starts) else len(text)
        stretch = text[start:end]
        close = stretch.rfind("}")
        candidates.append(stretch[:close] if close >= 0 else stretch)
    return candidates


def extract_answer(text: str | None) -> str:
    """The answer the scorer reads from a model's whole generated text."""
    if text is None:
        return NOT_FOUND
    candidates = _boxed_candidates(text)
    if candidates:
        non_empty = [c for c in candidates if c.strip()]
        return (non_empty or candidates)[-1].strip()
    for phrase in _PHRASES:
        matches = phrase.findall(text)
        if matches:
            return matches[-1].strip()
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else NOT_FOUND


def _as_float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def is_correct(gold: str, pred: str) -> bool:
    """Whether `pred` (an extracted answer) scores as `gold` (the reference answer).

    Bit strings compare exactly (`0011` is not `11`); numbers within 1% relative or
    1e-5 absolute; anything else case-insensitively.
    """
    gold, pred = str(gold).strip(), str(pred).strip()
    if _BIT_STRING.fullmatch(gold):
        return pred.lower() == gold.lower()
    gold_num, pred_num = _as_float(gold), _as_float(pred)
    if gold_num is not None and pred_num is not None:
        return math.isclose(gold_num, pred_num, rel_tol=1e-2, abs_tol=1e-5)
    return pred.lower() == gold.lower()


def score_text(gold: str, text: str) -> bool:
    """Extract from a raw generation, then compare: what the scorer does per row."""
    return is_correct(gold, extract_answer(text))
