"""The shared layout of equation-transformation prompts (numeric and cryptarithm).

Every example is `AB?CD = result` with a 5-character left side: two 2-character
operands around a 1-character operator; the query is a bare 5-character left side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reasonlab.puzzles.base import PuzzleFormatError

__all__ = ["EquationPrompt", "Expression", "format_equation_prompt", "parse_equation_prompt"]

HEADER = (
    "In Alice's Wonderland, a secret set of transformation rules is applied to equations. "
    "Below are a few examples:"
)
QUERY_LEAD = "Now, determine the result for: "
_SHAPE = re.compile(
    re.escape(HEADER) + r"\n(?P<examples>.*)\n" + re.escape(QUERY_LEAD) + r"(?P<query>.*)",
    re.DOTALL,
)


@dataclass(frozen=True)
class Expression:
    """A 5-character left side: `left` and `right` operands (2 chars each), one operator."""

    left: str
    op: str
    right: str

    @classmethod
    def from_text(cls, text: str) -> Expression:
        if len(text) != 5:
            raise PuzzleFormatError(f"expected a 5-character expression, got {text!r}")
        return cls(text[:2], text[2], text[3:])

    @property
    def text(self) -> str:
        return f"{self.left}{self.op}{self.right}"


@dataclass(frozen=True)
class EquationPrompt:
    examples: tuple[tuple[Expression, str], ...]
    query: Expression

    @property
    def is_numeric(self) -> bool:
        """Numeric rows write operands in decimal digits; cryptarithms use symbols."""
        exprs = [lhs for lhs, _ in self.examples] + [self.query]
        return all((e.left + e.right).isdigit() for e in exprs)

    @property
    def query_seen(self) -> bool:
        """`deduce` rows ask about an operator the examples show; `guess` rows do not."""
        return any(lhs.op == self.query.op for lhs, _ in self.examples)


def parse_equation_prompt(prompt: str) -> EquationPrompt:
    match = _SHAPE.fullmatch(prompt.strip("\n"))
    if not match:
        raise PuzzleFormatError(
            "not an equation prompt: header or 'Now, determine the result for:' line missing"
        )
    examples = []
    for line in match["examples"].split("\n"):
        lhs, sep, rhs = line.partition(" = ")
        if not sep:
            raise PuzzleFormatError(f"example line without ' = ': {line!r}")
        examples.append((Expression.from_text(lhs), rhs))
    if not examples:
        raise PuzzleFormatError("equation prompt with no examples")
    return EquationPrompt(tuple(examples), Expression.from_text(match["query"]))


def format_equation_prompt(examples: list[tuple[str, str]], query: str) -> str:
    """The competition's exact wording for given (lhs, rhs) examples and a query lhs."""
    lines = "\n".join(f"{lhs} = {rhs}" for lhs, rhs in examples)
    return f"{HEADER}\n{lines}\n{QUERY_LEAD}{query}"
