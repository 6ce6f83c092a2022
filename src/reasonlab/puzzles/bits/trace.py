"""An executable search for a bit-manipulation rule, written column by column.

A small model cannot guess the rule, so the trace finds it the way a person with pencil
would. The examples are transposed into columns: `Xj` is bit j (0 = leftmost) of every
input, `Yj` the same for the outputs, each a short 0/1 string with one digit per
example. A copy maps output position p to one input column or to constant 0:
rolN reads X((p+N) mod 8), shlN reads X(p+N) (0 past position 7), shrN reads X(p-N)
(0 before position 0). So at the two edge positions some copies are 0 and the rest
are pinned by column matching: a form's amounts are enumerated operand by operand,
and each operand's amount is kept only when its edge column fits the pattern the
output demands there (`?` where either bit works). The few survivors are then checked
at the inner positions 1-6, each rejected at the first position that disagrees.

Forms are tried most probable rule first (prior weight / family size, as the solver
weighs one rule), and inside a form amounts go in canonical order, so the first rule
that fits is the solver's pick whenever the answer is unambiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reasonlab.puzzles.bits.rules import AMOUNTS, Family, Prior, Rule, Transform, expression

__all__ = ["EDGES", "INNER", "SearchResult", "column", "edge_pattern", "search_trace", "source"]

EDGES = (0, 7)  # positions where shr (left edge) or shl (right edge) copies are always 0
INNER = tuple(range(1, 7))
_LETTERS = "ABC"


def _bit_at(value: int, position: int) -> int:
    """Bit at string position 0..7, 0 being the leftmost (most significant) digit."""
    return (value >> (7 - position)) & 1


def column(values: Sequence[int], position: int) -> str:
    """The digits at `position` of every byte, one per example, in example order."""
    return "".join(str(_bit_at(v, position)) for v in values)


def source(transform: Transform, position: int) -> int | None:
    """The input column that `transform` copies into output `position`; None = constant 0."""
    if transform.kind == "rol":
        return (position + transform.amount) % 8
    j = position + transform.amount if transform.kind == "shl" else position - transform.amount
    return j if 0 <= j <= 7 else None


def _name(transform: Transform, position: int) -> str:
    j = source(transform, position)
    return "0" if j is None else f"X{j}"


def _live(kind: str, position: int) -> bool:
    """Whether a copy of this kind can be non-zero at an edge position."""
    return not (kind == "shr" and position == 0 or kind == "shl" and position == 7)


def _key(bits: Sequence[int]) -> int:
    key = 0
    for b in bits:
        key = key * 2 + b
    return key


def edge_pattern(
    table: int,
    operands: Sequence[Transform | None],
    index: int,
    position: int,
    examples: Sequence[tuple[int, int]],
) -> str:
    """What operand `index`'s column must read at `position` so G gives the output there.

    Per example: the digit that works, `?` when both do, `!` when neither does (then no
    amount can fit). Other operands are assigned (live ones) or None (0 at this edge).
    """
    out = []
    for x, y in examples:
        ok = []
        for v in (0, 1):
            bits = [
                v if i == index else (0 if t is None else _bit_at(t.apply(x), position))
                for i, t in enumerate(operands)
            ]
            if (table >> _key(bits)) & 1 == _bit_at(y, position):
                ok.append(v)
        out.append("?" if len(ok) == 2 else str(ok[0]) if ok else "!")
    return "".join(out)


def _fits(pattern: str, col: str) -> bool:
    return all(p in ("?", c) for p, c in zip(pattern, col))


@dataclass(frozen=True)
class SearchResult:
    """The written search and the first rule that fit (None: no known form fits)."""

    lines: tuple[str, ...]
    rule: Rule | None


def _generic_names(family: Family) -> list[str]:
    return [f"{k}{_LETTERS[i]}" for i, k in enumerate(family.kinds)]


def _restrict(table: int, arity: int, live: Sequence[int]) -> int:
    """G's truth table over the `live` operands with every other operand fixed at 0."""
    out = 0
    for k in range(1 << len(live)):
        full = 0
        for slot, j in enumerate(live):
            if (k >> (len(live) - 1 - slot)) & 1:
                full |= 1 << (arity - 1 - j)
        out |= ((table >> full) & 1) << k
    return out


def _family_search(
    family: Family, examples: Sequence[tuple[int, int]]
) -> tuple[list[str], Rule | None]:
    """Edge constraints, then the survivors' inner checks; stops at the first fit."""
    xs = [x for x, _ in examples]
    ys = [y for _, y in examples]
    kinds, table, n = family.kinds, family.table, family.arity
    names = _generic_names(family)
    lines = [f"Form y = {expression(table, n).text(names)}:"]
    for e in EDGES:  # an edge where every copy is 0 fixes the output column outright
        if not any(_live(k, e) for k in kinds):
            want = str(table & 1) * len(examples)
            ok = column(ys, e) == want
            lines.append(f" p{e}: every copy is 0, so Y{e} must be {want}: {'ok' if ok else 'no'}")
            if not ok:
                return lines, None
    for e in EDGES:  # say what G becomes where some copies are 0: the patterns read it
        live = [j for j, k in enumerate(kinds) if _live(k, e)]
        if live and len(live) < n:
            zero = " and ".join(names[j] for j in range(n) if j not in live)
            reduced = _restrict(table, n, live)
            if reduced in (0, (1 << (1 << len(live))) - 1):  # G ignores the live copies here
                text = f"{reduced & 1} whatever {' and '.join(names[j] for j in live)} is"
            else:
                text = expression(reduced, len(live)).text([names[j] for j in live])
            lines.append(f" p{e}: {zero} = 0, so Y{e} = {text}")
    candidates: list[tuple[Transform, ...]] = []
    written: set[tuple] = set()

    def extend(assigned: tuple[Transform, ...]) -> None:
        i = len(assigned)
        if i == n:
            candidates.append(assigned)
            return
        kind = kinds[i]
        low = assigned[-1].amount + 1 if i and kinds[i - 1] == kind else AMOUNTS[0]
        allowed = [Transform(kind, a) for a in AMOUNTS if a >= low]
        for e in EDGES:
            live = [j for j, k in enumerate(kinds) if _live(k, e)]
            if not live or live[-1] != i:
                continue  # decided later, or not at this edge
            operands = [assigned[j] if j in live and j < i else None for j in range(n)]
            pattern = edge_pattern(table, operands, i, e, examples)
            fitting = [t for t in allowed if _fits(pattern, column(xs, source(t, e)))]
            given = tuple(t.name for j, t in enumerate(assigned) if j in live)
            if (e, given, low) not in written:  # the same demand is written once
                written.add((e, given, low))
                head = f" {' '.join(given)}: " if given else " "
                found = " ".join(f"{t.name}({_name(t, e)})" for t in fitting) or "none"
                lines.append(f"{head}p{e} {kind} column must be {pattern} -> {found}")
            allowed = fitting
        for t in allowed:
            extend((*assigned, t))

    extend(())
    for operands in candidates:
        rule = Rule(operands, table)
        formula = expression(table, n)
        checks = []
        for p in INNER:
            got = column([rule.apply(x) for x in xs], p)
            check = f"p{p} {formula.text([_name(t, p) for t in operands])} = {got}"
            if got != column(ys, p):
                checks.append(f"{check} but Y{p}={column(ys, p)}, reject")
                break
            checks.append(f"{check} ok")
        else:
            lines.append(f" try {rule.text}: {'; '.join(checks)}; fits")
            return lines, rule
        lines.append(f" try {rule.text}: {'; '.join(checks)}")
    lines.append(" no amounts fit this form")
    return lines, None


def search_trace(examples: Sequence[tuple[int, int]], prior: Prior) -> SearchResult:
    """Columns, then every known form by rule probability until one fits all examples."""
    xs = [x for x, _ in examples]
    ys = [y for _, y in examples]
    lines = [
        (
            "Columns (one digit per example, position 0 = leftmost bit). A pattern says what a "
            "copy's column must read in each example: ? = either digit works, ! = neither does."
        ),
        *(f"X{p}={column(xs, p)} Y{p}={column(ys, p)}" for p in range(8)),
    ]
    order = sorted(prior.weights, key=lambda f: (-prior.rule_probability(f), f))
    for family in order:
        found, rule = _family_search(family, examples)
        lines += found
        if rule is not None:
            return SearchResult(tuple(lines), rule)
    return SearchResult(tuple(lines), None)
