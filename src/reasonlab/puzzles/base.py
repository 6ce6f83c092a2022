"""The contract every puzzle family implements, and the values it passes around.

A family module exposes four verbs and a name:

    NAME: str                                   e.g. "gravity"
    parse(prompt: str) -> Puzzle                raises PuzzleFormatError on a malformed prompt
    solve(puzzle) -> Solution | Unsolved        never raises on a well-formed puzzle
    render(solution: Solution) -> str           chain of thought ending in \\boxed{answer}
    generate(rng: random.Random, **knobs) -> Generated   a fresh puzzle with its exact answer

A `Solution` keeps the structured rule the solver found (a family-specific frozen
dataclass), so rendering, auditing and statistics all read the same object rather
than re-deriving it from text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "FamilyModule",
    "Generated",
    "PuzzleFormatError",
    "Solution",
    "Unsolved",
    "boxed",
]


class PuzzleFormatError(ValueError):
    """A prompt that does not have the shape its family's generator produces."""


@dataclass(frozen=True)
class Solution:
    """A solved puzzle: the answer plus everything needed to explain it.

    `puzzle` is the family's parsed puzzle; `rule` is the family's structured
    description of what was found (e.g. the gravity constant, the cipher mapping,
    the bit rule), `candidates` how many distinct rules fit every example and
    `agreeing` how many of those give this answer (1/1 = unambiguous).
    `trace_complete` is False when the answer came from a search too long to render.
    `alternatives` lists the other answers that rules consistent with every example
    give (the audit uses it to tell a tie-break miss from an unexplained gold answer).
    """

    puzzle: Any
    answer: str
    rule: Any
    candidates: int = 1
    agreeing: int = 1
    trace_complete: bool = True
    notes: tuple[str, ...] = ()
    alternatives: tuple[str, ...] = ()

    @property
    def ambiguous(self) -> bool:
        return self.agreeing < self.candidates


@dataclass(frozen=True)
class Unsolved:
    """Why no answer could be justified; `partial` is a best guess when one exists."""

    reason: str
    partial: str | None = None


@dataclass(frozen=True)
class Generated:
    """A generated puzzle in the competition's exact wording, with its exact answer.

    `rule` is the generator's ground truth (used by tests to check the solver found
    the same or an equivalent rule); `subtype` is e.g. "deduce" or "guess".
    """

    prompt: str
    answer: str
    rule: Any = None
    subtype: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class FamilyModule(Protocol):
    NAME: str

    def parse(self, prompt: str) -> Any: ...

    def solve(self, puzzle: Any) -> Solution | Unsolved: ...

    def render(self, solution: Solution) -> str: ...

    def generate(self, rng: random.Random, **knobs: Any) -> Generated: ...


def boxed(answer: str) -> str:
    """The closing line of every trace; the metric reads the last `\\boxed{...}`."""
    return f"\\boxed{{{answer}}}"
