"""Rows the solvers cannot explain, found by solving rather than by pattern-matching.

A row is flagged when no rule fits its examples (`unexplained`), or when a rule fits
but the given answer differs from the solver's: either another rule that fits every
example gives the gold answer (`tie_break`: the data is ambiguous, the solver chose
differently) or none does (`answer_unexplained`: the gold contradicts every rule found).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reasonlab.data.solve import solve_rows
from reasonlab.metric import is_correct

__all__ = ["AUDIT_COLUMNS", "AuditFinding", "audit_rows"]

AUDIT_COLUMNS = ("id", "family", "subtype", "kind", "solver_answer", "gold", "reason")


@dataclass(frozen=True)
class AuditFinding:
    id: str
    family: str
    subtype: str
    kind: str  # unexplained | tie_break | answer_unexplained | no_solver | error
    solver_answer: str
    gold: str
    reason: str


def audit_rows(
    rows: Sequence[dict[str, str]],
    workers: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> list[AuditFinding]:
    """Every row (with `id,prompt,answer`) that the solvers do not reproduce, and why."""
    findings = []
    for row, result in zip(rows, solve_rows(rows, workers=workers, on_progress=on_progress)):
        gold = row["answer"]
        base = (row["id"], result.family, result.subtype)
        if result.status == "solved":
            if is_correct(gold, result.answer):
                continue
            if any(is_correct(gold, other) for other in result.alternatives):
                kind, reason = (
                    "tie_break",
                    f"gold is another consistent rule's answer ({result.detail})",
                )
            else:
                kind, reason = (
                    "answer_unexplained",
                    f"no rule found gives the gold answer ({result.detail or 'unique rule'})",
                )
        elif result.status == "unsolved":
            kind, reason = "unexplained", result.detail
        else:
            kind, reason = result.status, result.detail
        findings.append(AuditFinding(*base, kind, result.answer, gold, reason))
    return findings
