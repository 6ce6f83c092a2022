"""Puzzle families: one module (or subpackage) per family, each with the same four verbs
(parse, solve, render, generate), and a registry that classifies a prompt to its family.

Single-module families: `numeral`, `unit_conversion`, `gravity`, `cipher` (with their shared
helpers `prompt_lines` and `linear_fit`); several-module families: `bits/`, `equations/`.
May import: `competition`, `metric`. Never `formats`, a stage or an ML library.
"""

from reasonlab.puzzles.base import Generated, PuzzleFormatError, Solution, Unsolved
from reasonlab.puzzles.registry import (
    FAMILIES,
    UNKNOWN,
    Classification,
    classify,
    family_module,
    solve_prompt,
)

__all__ = [
    "FAMILIES",
    "UNKNOWN",
    "Classification",
    "Generated",
    "PuzzleFormatError",
    "Solution",
    "Unsolved",
    "classify",
    "family_module",
    "solve_prompt",
]
