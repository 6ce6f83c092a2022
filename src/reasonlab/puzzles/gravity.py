"""Gravity: a secret g with d = 0.5*g*t^2; examples `For t = 4.85s, distance = 204.55 m`.

Generator (read off the train split): 3-5 examples, t = round(uniform(1, 5), 2),
g = uniform(4.9, 19.6) unrounded (0.5x to 2x Earth's 9.8), d = round(0.5*g*t^2, 2);
t, d and the answer are printed as Python prints a float (`1.7`, `25.1`, `50.51`).

The trace works with c = g/2 = d/t^2 (one factor fewer than g): c comes from the
example with the largest t, to 6 significant digits, and the query is d = c * t^2. The examples' rounding interval for c is kept as the evidence they agree.
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

__all__ = ["NAME", "GravityPuzzle", "GravityRule", "generate", "parse", "render", "solve"]

NAME = "gravity"

HEADER = (
    "In Alice's Wonderland, the gravitational constant has been secretly changed. "
    "Here are some example observations:"
)
_NUMBER = r"(\d+(?:\.\d+)?)"
_EXAMPLE = re.compile(rf"For t = {_NUMBER}s, distance = {_NUMBER} m")
_QUERY = re.compile(
    rf"Now, determine the falling distance for t = {_NUMBER}s given d = 0\.5\*g\*t\^2\."
)
_LAYOUT = PromptLayout(NAME, (HEADER,), _EXAMPLE, _QUERY)

# Generator ranges observed on the train split.
T_RANGE = (1.0, 5.0)
G_RANGE = (4.9, 19.6)
EXAMPLE_COUNTS = (3, 4, 5)  # about a third each
# One reference example (the largest t) keeps the trace short: each extra one costs a
# 3-digit square and a sum; two would match the gold string on 88% instead of 85% of
# train rows, and both are always within the metric's 1%.
REFERENCES = 1


@dataclass(frozen=True)
class GravityPuzzle:
    examples: tuple[tuple[Decimal, Decimal], ...]  # (t in s, d in m) as printed
    query: Decimal


@dataclass(frozen=True)
class GravityRule:
    """c = g/2 fitted on (t^2, d); residuals are c*t^2 - d per example (metres)."""

    fit: Fit

    @property
    def g(self) -> Decimal:
        return 2 * self.fit.estimate


def parse(prompt: str) -> GravityPuzzle:
    matches, query = match_lines(prompt, _LAYOUT)
    examples = []
    for number, match in enumerate(matches, start=1):
        t, d = Decimal(match[1]), Decimal(match[2])
        if t <= 0:
            raise PuzzleFormatError(f"gravity: example {number} has t = {t}, need t > 0")
        examples.append((t, d))
    return GravityPuzzle(tuple(examples), Decimal(query[1]))


def _format_float(value: Decimal) -> str:
    """Python's str(round(v, 2)): 50.50 -> '50.5', 50.00 -> '50.0'."""
    text = f"{round_2dp(value):.2f}"
    return text.removesuffix("0")


def solve(puzzle: GravityPuzzle) -> Solution | Unsolved:
    fit = fit_ratio([(t * t, d) for t, d in puzzle.examples], references=REFERENCES)
    if not fit.consistent:
        return Unsolved(
            f"examples contradict: no g reproduces all of them after rounding "
            f"(need g >= {2 * fit.low:.6f} and g <= {2 * fit.high:.6f})"
        )
    answer = _format_float(fit.estimate * puzzle.query * puzzle.query)
    return Solution(puzzle, answer, GravityRule(fit), notes=fit.notes())


def render(solution: Solution) -> str:
    puzzle: GravityPuzzle = solution.puzzle
    fit: Fit = solution.rule.fit
    t, d = puzzle.examples[fit.references[0]]  # REFERENCES = 1: the largest t
    square, square_steps = multiply_steps(puzzle.query, puzzle.query)
    distance, distance_steps = multiply_steps(fit.estimate, square)
    # The generator prints floats Python's way (50.5, not 50.50): say so when it differs.
    rounded = f"{round_2dp(distance)}"
    rounded += "" if rounded == solution.answer else f" = {solution.answer}"
    return "\n".join(
        [
            f"d = 0.5*g*t^2, so c = g/2 = d/t^2. Largest t: t = {t}, d = {d}.",
            f"t^2 = {multiply_steps(t, t)[1]}",
            f"c = {d} / {plain(t * t)} ≈ {plain(fit.estimate)}",
            f"t = {puzzle.query}: t^2 = {square_steps}",
            f"d = c*t^2 = {distance_steps}",
            f"Rounded to 2 decimals: {rounded}",
            boxed(solution.answer),
        ]
    )


def generate(rng: random.Random, n_examples: int | None = None, **knobs: Any) -> Generated:
    """A puzzle in the competition's wording; `n_examples` defaults to uniform 3-5."""
    count = example_count(rng, NAME, n_examples, knobs, EXAMPLE_COUNTS)
    g = rng.uniform(*G_RANGE)
    ts = [round(rng.uniform(*T_RANGE), 2) for _ in range(count + 1)]
    lines = [HEADER]
    lines += [f"For t = {t}s, distance = {round(0.5 * g * t * t, 2)} m" for t in ts[:-1]]
    lines.append(f"Now, determine the falling distance for t = {ts[-1]}s given d = 0.5*g*t^2.")
    return Generated("\n".join(lines), str(round(0.5 * g * ts[-1] ** 2, 2)), rule=g)
