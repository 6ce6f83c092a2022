"""Puzzle families: one module per family (parse, solve, render, generate) and a registry."""

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
