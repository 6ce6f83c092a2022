"""The line layout most families share: fixed header line(s), example lines, a query line.

Each family states its layout once (`PromptLayout`) and `match_lines` does the
splitting and the error messages, so a malformed prompt is reported the same way in
every family: which family, which line, what was expected.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reasonlab.puzzles.base import PuzzleFormatError

__all__ = ["PromptLayout", "example_count", "match_lines"]


@dataclass(frozen=True)
class PromptLayout:
    family: str
    header: tuple[str, ...]  # the fixed lines before the examples, in order
    example: re.Pattern[str]  # one example line, fully matched
    query: re.Pattern[str]  # the last line, fully matched


def match_lines(prompt: str, layout: PromptLayout) -> tuple[list[re.Match[str]], re.Match[str]]:
    """(matches of the example lines, match of the query line); blank lines are ignored."""
    lines = [line.strip() for line in prompt.strip().splitlines() if line.strip()]
    name, width = layout.family, len(layout.header)
    for position, expected in enumerate(layout.header):
        if len(lines) <= position or lines[position] != expected:
            which = (
                "first line"
                if position == 0
                else "second line"
                if position == 1
                else f"line {position + 1}"
            )
            shown = expected if len(expected) <= 80 else expected[:60] + "..."
            raise PuzzleFormatError(f"{name}: {which} is not the header {shown!r}")
    if len(lines) < width + 2:
        raise PuzzleFormatError(f"{name}: need at least one example line and a query line")
    query = layout.query.fullmatch(lines[-1])
    if not query:
        raise PuzzleFormatError(f"{name}: malformed query line {lines[-1]!r}")
    examples = []
    for number, line in enumerate(lines[width:-1], start=1):
        match = layout.example.fullmatch(line)
        if not match:
            raise PuzzleFormatError(f"{name}: example {number} malformed: {line!r}")
        examples.append(match)
    return examples, query


def example_count(
    rng: random.Random,
    family: str,
    n_examples: int | None,
    knobs: Mapping[str, Any],
    choices: Sequence[int],
) -> int:
    """How many examples a generated puzzle shows (`choices` uniformly unless given).

    Unknown knobs are an error: a misspelt knob must not silently generate the default.
    """
    if knobs:
        raise TypeError(f"{family}.generate: unknown knobs {sorted(knobs)}")
    count = n_examples if n_examples is not None else rng.choice(choices)
    if count < 1:
        raise ValueError(f"{family}.generate: n_examples must be >= 1, got {count}")
    return count
