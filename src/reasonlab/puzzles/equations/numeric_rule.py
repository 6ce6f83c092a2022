"""What the numeric equation solver settles on, in a module of its own.

The solver (`numeric`) builds it and the trace (`numeric_trace`) renders it; keeping the
type apart lets both import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from reasonlab.puzzles.equations.ops import Setting

__all__ = ["EquationRule"]


@dataclass(frozen=True)
class EquationRule:
    """What the solver settled on: the setting, one operation per shown operator (with
    the other candidates that also fit), the query's operation and whether it is guessed."""

    setting: Setting
    operations: tuple[tuple[str, str, tuple[str, ...]], ...]  # (symbol, chosen, also fitting)
    query_operation: str
    guessed: bool
    probability: float  # the chosen answer's expected score under the prior
    rejected: tuple[tuple[str, str], ...]  # (setting name, why it fails)
    other_settings: tuple[str, ...]  # settings that also fit (less likely)
