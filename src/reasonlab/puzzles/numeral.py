"""Numeral system: integers written in a "Wonderland" system, which is Roman in every row.

Generator (read off the train split): 3-5 examples `n -> numeral`, each n drawn
independently from 1..100 (repeats and the query itself may appear), query from
1..100. The solver checks every example against standard subtractive Roman numerals
before trusting that system; a contradicting example gives Unsolved.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from reasonlab.puzzles.base import Generated, Solution, Unsolved, boxed
from reasonlab.puzzles.prompt_lines import PromptLayout, example_count, match_lines

__all__ = [
    "NAME",
    "NumeralPuzzle",
    "NumeralRule",
    "generate",
    "parse",
    "render",
    "solve",
    "to_roman",
]

NAME = "numeral"

HEADER = (
    "In Alice's Wonderland, numbers are secretly converted into a different numeral system. "
    "Some examples are given below:"
)
_EXAMPLE = re.compile(r"(\d+) -> (\S+)")
_QUERY = re.compile(r"Now, write the number (\d+) in the Wonderland numeral system\.")
_LAYOUT = PromptLayout(NAME, (HEADER,), _EXAMPLE, _QUERY)

VALUE_RANGE = (1, 100)  # examples and query, inclusive
EXAMPLE_COUNTS = (3, 4, 5)  # about a third each
_ROMAN_MAX = 3999  # largest number standard Roman numerals write

# Roman digits per place value: index = digit (0-9).
_PLACES = (
    (1000, ("", "M", "MM", "MMM", "", "", "", "", "", "")),
    (100, ("", "C", "CC", "CCC", "CD", "D", "DC", "DCC", "DCCC", "CM")),
    (10, ("", "X", "XX", "XXX", "XL", "L", "LX", "LXX", "LXXX", "XC")),
    (1, ("", "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX")),
)


@dataclass(frozen=True)
class NumeralPuzzle:
    examples: tuple[tuple[int, str], ...]
    query: int


@dataclass(frozen=True)
class NumeralRule:
    """The system the examples fit and the query's place-value parts, e.g. ((30, 'XXX'), (8, 'VIII'))."""

    system: str
    parts: tuple[tuple[int, str], ...]


def roman_parts(number: int) -> tuple[tuple[int, str], ...]:
    """Nonzero place values of `number` (1..3999) with their Roman spelling."""
    if not 1 <= number <= _ROMAN_MAX:
        raise ValueError(f"Roman numerals cover 1..{_ROMAN_MAX}, got {number}")
    parts = []
    for place, spellings in _PLACES:
        digit = number // place % 10
        if digit:
            parts.append((digit * place, spellings[digit]))
    return tuple(parts)


def to_roman(number: int) -> str:
    return "".join(spelling for _, spelling in roman_parts(number))


def parse(prompt: str) -> NumeralPuzzle:
    matches, query = match_lines(prompt, _LAYOUT)
    examples = [(int(match[1]), match[2]) for match in matches]
    return NumeralPuzzle(tuple(examples), int(query[1]))


def solve(puzzle: NumeralPuzzle) -> Solution | Unsolved:
    for number, written in puzzle.examples:
        if not 1 <= number <= _ROMAN_MAX:
            return Unsolved(
                f"example {number} -> {written}: outside Roman numerals' 1..{_ROMAN_MAX}"
            )
        if to_roman(number) != written:
            return Unsolved(
                f"example {number} -> {written} is not Roman (Roman is {to_roman(number)}); "
                "no other numeral system is known"
            )
    if not 1 <= puzzle.query <= _ROMAN_MAX:
        return Unsolved(f"query {puzzle.query} is outside Roman numerals' 1..{_ROMAN_MAX}")
    parts = roman_parts(puzzle.query)
    return Solution(puzzle, to_roman(puzzle.query), NumeralRule("roman", parts))


def _decomposition(number: int, parts: tuple[tuple[int, str], ...]) -> str:
    """'38 = 30 + 8 -> XXX + VIII = XXXVIII'; a single part is just '100 -> C'."""
    spelled = "".join(s for _, s in parts)
    if len(parts) == 1:
        return f"{number} -> {spelled}"
    values = " + ".join(str(v) for v, _ in parts)
    return f"{number} = {values} -> {' + '.join(s for _, s in parts)} = {spelled}"


def render(solution: Solution) -> str:
    puzzle: NumeralPuzzle = solution.puzzle
    # One example, the one with the most parts, shows the examples follow Roman rules.
    number, _ = max(puzzle.examples, key=lambda e: (len(roman_parts(e[0])), e[0]))
    return "\n".join(
        [
            f"The examples are Roman numerals, e.g. {_decomposition(number, roman_parts(number))}.",
            _decomposition(puzzle.query, solution.rule.parts),
            boxed(solution.answer),
        ]
    )


def generate(rng: random.Random, n_examples: int | None = None, **knobs: Any) -> Generated:
    """A puzzle in the competition's wording; `n_examples` defaults to uniform 3-5."""
    count = example_count(rng, NAME, n_examples, knobs, EXAMPLE_COUNTS)
    numbers = [rng.randint(*VALUE_RANGE) for _ in range(count + 1)]
    lines = [HEADER]
    lines += [f"{n} -> {to_roman(n)}" for n in numbers[:-1]]
    lines.append(f"Now, write the number {numbers[-1]} in the Wonderland numeral system.")
    return Generated("\n".join(lines), to_roman(numbers[-1]), rule="roman")
