"""Which family a prompt belongs to, and the module that solves it.

Classification reads only the fixed opening sentence each generator writes (and, for
equations, whether operands are digits and whether the query operator was shown), so
it never fails: a prompt no family claims is `unknown`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal, get_args

from reasonlab.puzzles.base import FamilyModule, PuzzleFormatError, Solution, Unsolved
from reasonlab.puzzles.equations.prompt import parse_equation_prompt

__all__ = [
    "FAMILIES",
    "UNKNOWN",
    "Classification",
    "classify",
    "family_module",
    "solve_prompt",
]

Family = Literal[
    "bit_manipulation",
    "gravity",
    "unit_conversion",
    "cipher",
    "numeral",
    "equation_numeric",
    "cryptarithm",
]
FAMILIES: tuple[str, ...] = get_args(Family)
UNKNOWN = "unknown"

# The sentence each generator opens with, after "In Alice's Wonderland, ".
_OPENINGS = {
    "a secret bit manipulation rule transforms 8-bit binary numbers": "bit_manipulation",
    "the gravitational constant has been secretly changed": "gravity",
    "a secret unit conversion is applied to measurements": "unit_conversion",
    "secret encryption rules are used on text": "cipher",
    "numbers are secretly converted into a different numeral system": "numeral",
    "a secret set of transformation rules is applied to equations": "equation",
}


@dataclass(frozen=True)
class Classification:
    family: str  # one of FAMILIES, or UNKNOWN
    subtype: str = ""  # "deduce" / "guess" for the two equation families


def classify(prompt: str) -> Classification:
    head = prompt.lstrip()
    for opening, family in _OPENINGS.items():
        if opening in head[:200]:
            break
    else:
        return Classification(UNKNOWN)
    if family != "equation":
        return Classification(family)
    try:
        equation = parse_equation_prompt(prompt)
    except PuzzleFormatError:
        return Classification(UNKNOWN)
    kind = "equation_numeric" if equation.is_numeric else "cryptarithm"
    return Classification(kind, "deduce" if equation.query_seen else "guess")


# The module implementing each family's four verbs; families of several modules live in a
# subpackage (bits/, equations/).
_MODULES = {
    "bit_manipulation": "reasonlab.puzzles.bits.family",
    "gravity": "reasonlab.puzzles.gravity",
    "unit_conversion": "reasonlab.puzzles.unit_conversion",
    "cipher": "reasonlab.puzzles.cipher",
    "numeral": "reasonlab.puzzles.numeral",
    "equation_numeric": "reasonlab.puzzles.equations.numeric",
    "cryptarithm": "reasonlab.puzzles.equations.cryptarithm",
}


def family_module(family: str) -> FamilyModule:
    """The module implementing `family` (imported on first use)."""
    if family not in FAMILIES:
        raise KeyError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return importlib.import_module(_MODULES[family])  # type: ignore[return-value]


def solve_prompt(prompt: str, family: str | None = None) -> Solution | Unsolved:
    """Parse and solve one prompt; a malformed prompt becomes `Unsolved`, not an exception."""
    family = family or classify(prompt).family
    if family == UNKNOWN:
        return Unsolved("unknown family: no generator's opening sentence found")
    module = family_module(family)
    try:
        puzzle = module.parse(prompt)
    except PuzzleFormatError as err:
        return Unsolved(f"malformed prompt: {err}")
    return module.solve(puzzle)
