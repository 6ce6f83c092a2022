"""Rows the solvers cannot explain, found by solving rather than by pattern-matching.

A row is flagged exactly when the solvers do not give its gold answer, in one category:
`tie_break` (rules fit every example and one of them gives the gold, but the tie-break
chose another), `answer_unexplained` (rules fit, none found gives the gold),
`unexplained` (no rule fits every example; a best guess, if any, is wrong), or the
row's status when there is no solver or it failed (`no_solver`, `error`). A row whose
answer is right, however it was reached, is never flagged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reasonlab.data.solve import SOLUTION_STATUSES, SolvedRow, solve_rows
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


def _rules(result: SolvedRow) -> str:
    if result.candidates == 1:
        return "the one rule that fits every example gives the solver's answer"
    verb = "gives" if result.agreeing == 1 else "give"
    return (
        f"{result.agreeing} of the {result.candidates} rules that fit every example "
        f"{verb} the solver's answer"
    )


def _finding(result: SolvedRow, gold: str) -> tuple[str, str] | None:
    """(kind, reason) for a row the solvers do not reproduce; None when they do."""
    if result.answer and is_correct(gold, result.answer):
        return None
    if result.status in SOLUTION_STATUSES:
        if any(is_correct(gold, other) for other in result.alternatives):
            return "tie_break", f"another fitting rule gives the gold; {_rules(result)}"
        return "answer_unexplained", f"no fitting rule found gives the gold; {_rules(result)}"
    if result.status in ("guessed", "unsolved"):
        return "unexplained", result.detail
    return result.status, result.detail


def audit_rows(
    rows: Sequence[dict[str, str]],
    workers: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> list[AuditFinding]:
    """Every row (with `id,prompt,answer`) that the solvers do not reproduce, and why."""
    findings = []
    for row, result in zip(rows, solve_rows(rows, workers=workers, on_progress=on_progress)):
        found = _finding(result, row["answer"])
        if found is not None:
            kind, reason = found
            base = (row["id"], result.family, result.subtype)
            findings.append(AuditFinding(*base, kind, result.answer, row["answer"], reason))
    return findings
