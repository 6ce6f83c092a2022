"""Unit conversion: a secret factor k with `x m becomes y`, y = round(k*x, 2).

Generator (read off the train split): 3-5 examples, x = round(uniform(5, 50), 2)
printed as Python prints a float (`13.0`, `10.9`, `25.09`), k = uniform(0.5, 2.0)
unrounded, y and the answer printed with exactly 2 decimals (`8.90`).

Because k is an arbitrary real, the examples only pin it to an interval; the traced
estimate is (y1 + y2) / (x1 + x2) over the two largest x, to 6 significant digits.
That reproduces the gold string on ~87% of train rows and is always within the
metric's 1% (the remaining rows fall within 0.01 of a rounding boundary).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from reasonlab.puzzles.base import Generated, PuzzleFormatError, Solution, Unsolved, boxed
from reasonlab.puzzles.linear_fit import Fit, fit_ratio, multiply_steps, plain, round_2dp
from reasonlab.puzzles.prompt_lines import PromptLayout, example_count, match_lines

__all__ = ["NAME", "UnitConversionPuzzle", "UnitRule", "generate", "parse", "render", "solve"]

NAME = "unit_conversion"

HEADER = "In Alice's Wonderland, a secret unit conversion is applied to measurements. For example:"
_EXAMPLE = re.compile(r"(\d+(?:\.\d+)?) m becomes (\d+(?:\.\d+)?)")
_QUERY = re.compile(r"Now, convert the following measurement: (\d+(?:\.\d+)?) m")
_LAYOUT = PromptLayout(NAME, (HEADER,), _EXAMPLE, _QUERY)

# Generator ranges observed on the train split (min/max over 6,000+ values).
X_RANGE = (5.0, 50.0)
K_RANGE = (0.5, 2.0)
EXAMPLE_COUNTS = (3, 4, 5)  # about a third each


@dataclass(frozen=True)
class UnitConversionPuzzle:
    examples: tuple[tuple[Decimal, Decimal], ...]  # (x, y) as printed
    query: Decimal


@dataclass(frozen=True)
class UnitRule:
    """k as traced (`fit.estimate`) and the interval every example allows (`fit.low..high`)."""

    fit: Fit

    @property
    def k(self) -> Decimal:
        return self.fit.estimate


def parse(prompt: str) -> UnitConversionPuzzle:
    matches, query = match_lines(prompt, _LAYOUT)
    examples = []
    for number, match in enumerate(matches, start=1):
        x, y = Decimal(match[1]), Decimal(match[2])
        if x <= 0:
            raise PuzzleFormatError(f"unit_conversion: example {number} has x = {x}, need x > 0")
        examples.append((x, y))
    return UnitConversionPuzzle(tuple(examples), Decimal(query[1]))


def solve(puzzle: UnitConversionPuzzle) -> Solution | Unsolved:
    fit = fit_ratio(puzzle.examples)
    if not fit.consistent:
        return Unsolved(
            f"examples contradict: no k reproduces all of them after rounding "
            f"(need k >= {fit.low:.6f} and k <= {fit.high:.6f})"
        )
    answer = f"{round_2dp(fit.estimate * puzzle.query):.2f}"
    return Solution(puzzle, answer, UnitRule(fit), notes=fit.notes())


def render(solution: Solution) -> str:
    puzzle: UnitConversionPuzzle = solution.puzzle
    fit: Fit = solution.rule.fit
    refs = [puzzle.examples[i] for i in fit.references]
    # Example values as the prompt prints them (`39.60`), so the model copies, not reformats.
    shown = ", ".join(f"{x} -> {y}" for x, y in refs)
    ys, xs = " + ".join(str(y) for _, y in refs), " + ".join(str(x) for x, _ in refs)
    _, steps = multiply_steps(fit.estimate, puzzle.query)
    return "\n".join(
        [
            f"y = k*x. Largest examples: {shown}.",
            f"k = ({ys}) / ({xs}) = {plain(fit.sum_y)} / {plain(fit.sum_f)} ≈ {plain(fit.estimate)}",
            f"x = {puzzle.query}: {steps}",
            f"Rounded to 2 decimals: {solution.answer}",
            boxed(solution.answer),
        ]
    )


def _format_x(value: float) -> str:
    """How the generator prints a measurement: Python's float repr of round(v, 2)."""
    return str(round(value, 2))


def generate(rng: random.Random, n_examples: int | None = None, **knobs: Any) -> Generated:
    """A puzzle in the competition's wording; `n_examples` defaults to uniform 3-5."""
    count = example_count(rng, NAME, n_examples, knobs, EXAMPLE_COUNTS)
    k = rng.uniform(*K_RANGE)
    xs = [round(rng.uniform(*X_RANGE), 2) for _ in range(count + 1)]
    lines = [HEADER]
    lines += [f"{_format_x(x)} m becomes {round(k * x, 2):.2f}" for x in xs[:-1]]
    lines.append(f"Now, convert the following measurement: {_format_x(xs[-1])} m")
    return Generated("\n".join(lines), f"{round(k * xs[-1], 2):.2f}", rule=k)
