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

Two styles write the same search (`Style`). `compact` transposes the examples into
columns, as above. `explicit` never transposes: an operand's amounts are narrowed one
example at a time (`ex3 01101001 -> 11010010: y[0]=1, so shlB[0] must be 0 -> B=3 5`),
and each survivor is computed in full on each example (its copies, every step of its
formula, the output), as the winning team's traces did; it is longer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from reasonlab.puzzles.bits.rules import AMOUNTS, Expr, Family, Prior, Rule, Transform, expression

__all__ = [
    "EDGES",
    "INNER",
    "STYLES",
    "SearchResult",
    "Style",
    "column",
    "edge_pattern",
    "explicit_rule",
    "explicit_values",
    "labelled_steps",
    "rule_steps",
    "search_trace",
    "source",
]

Style = Literal["compact", "explicit"]
STYLES: tuple[Style, ...] = ("compact", "explicit")

EDGES = (0, 7)  # positions where shr (left edge) or shl (right edge) copies are always 0
INNER = tuple(range(1, 7))
# The explicit search narrows at the inner bits only while more than this many
# assignments are left: checking a few in full costs fewer tokens than listing them
# through more examples (8 gave the shortest dev traces of 2, 4, 8 and never).
INNER_ENOUGH = 8
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


def _bits(value: int) -> str:
    return format(value, "08b")


def rule_steps(rule: Rule, x: int) -> list[str]:
    """`rule` computed on byte `x`, one `name = value` each: every copy, then every step
    of its formula (a negated copy is read off inside the step that uses it); the last
    value is the output."""
    formula = expression(rule.table, rule.arity)
    names = [t.name for t in rule.operands]
    values = [t.apply(x) for t in rule.operands]
    steps = [(n, v) for n, v in zip(names, values)]
    steps += [(step.text(names), step.eval(values)) for step in _steps(formula)]
    return [f"{text} = {_bits(value)}" for text, value in steps]


def _steps(formula: Expr) -> list[Expr]:
    """The formula's steps worth writing, innermost first; the whole formula at least."""
    steps = [s for s in formula.steps() if not (s.op == "NOT" and s.args[0].op == "VAR")]
    return steps or [formula]


def labelled_steps(rule: Rule) -> list[tuple[str, str, Expr]]:
    """(label, definition, step) per step, innermost first: s1, s2, ... and y for the
    whole formula; a definition names the steps before it by their labels."""
    formula = expression(rule.table, rule.arity)
    names = [t.name for t in rule.operands]
    steps = _steps(formula)
    labels: dict[Expr, str] = {}
    out = []
    for k, step in enumerate(steps):
        label = "y" if k == len(steps) - 1 else f"s{k + 1}"
        out.append((label, step.text(names, labels), step))
        labels[step] = label
    return out


def explicit_values(rule: Rule, x: int) -> str:
    """`rule` on byte `x` in one line: each copy, then each labelled step (`labelled_steps`)."""
    values = [t.apply(x) for t in rule.operands]
    parts = [f"{t.name}={_bits(v)}" for t, v in zip(rule.operands, values)]
    parts += [f"{label}={_bits(step.eval(values))}" for label, _, step in labelled_steps(rule)]
    return " ".join(parts)


def explicit_rule(rule: Rule) -> str:
    """The rule with its labelled steps spelled out, e.g. `s1 = rol1 AND shl2, y = s1 OR shr3`."""
    return ", ".join(f"{label} = {text}" for label, text, _ in labelled_steps(rule))


def _reads(kind: str, letter: str, position: int) -> str:
    """Which input bit a copy of `kind` with amount `letter` reads at an output bit."""
    if kind == "rol":
        return f"x[({position}+{letter}) mod 8]"
    if kind == "shl":
        return f"x[{letter}]" if position == 0 else f"x[{position}+{letter}], 0 past bit 7"
    return f"x[7-{letter}]" if position == 7 else f"x[{position}-{letter}], 0 before bit 0"


def _key_at(assignment: dict[int, int], kinds: Sequence[str], edge: int, x: int) -> int:
    """G's truth-table key at an edge bit of `x`: each operand's bit there (0 if unset)."""
    key = 0
    for j, kind in enumerate(kinds):
        bit = 0
        if j in assignment:
            bit = _bit_at(Transform(kind, assignment[j]).apply(x), edge)  # type: ignore[arg-type]
        key = key * 2 + bit
    return key


def _widen(
    assignments: list[dict[int, int]], new: Sequence[int], kinds: Sequence[str]
) -> list[dict[int, int]]:
    """Every assignment extended with every amount for operands `new`; copies of one kind
    take rising amounts (canonical order)."""

    def canonical(a: dict[int, int]) -> bool:
        return all(a[j] < a[j + 1] for j in a if j + 1 in a and kinds[j] == kinds[j + 1])

    out = assignments
    for j in new:
        out = [b for a in out for amount in AMOUNTS if canonical(b := {**a, j: amount})]
    return out


def _listing(assignments: Sequence[dict[int, int]]) -> str:
    """Assignments written compactly: tuples that share all but the last amount are one
    group, `7,1/2/6` for 7,1 7,2 7,6."""
    if not assignments:
        return "none"
    groups: dict[tuple[int, ...], list[int]] = {}
    for a in assignments:
        values = [a[j] for j in sorted(a)]
        groups.setdefault(tuple(values[:-1]), []).append(values[-1])
    return " ".join(
        ",".join([*map(str, head), "/".join(map(str, tails))]) for head, tails in groups.items()
    )


def _depends(table: int, arity: int, operand: int) -> bool:
    """Whether G (over `arity` operands) changes with operand `operand` somewhere."""
    bit = 1 << (arity - 1 - operand)
    return any((table >> k) & 1 != (table >> (k | bit)) & 1 for k in range(1 << arity))


def _narrow(
    assignments: list[dict[int, int]],
    position: int,
    family: Family,
    examples: Sequence[tuple[int, int]],
    lines: list[str],
    read: Sequence[int],
    enough: int = 1,
    widened: bool = False,
) -> list[dict[int, int]]:
    """Keep, example by example, the assignments whose copies' bits at `position` give the
    output bit there through G (`read`: the copies G depends on there); stops once
    `enough` or fewer are left. After `widened` (new copies joined) the first line lists
    the assignments even when the example removes none."""
    kinds = family.kinds
    reads = ", ".join(
        f"{kinds[j]}{_LETTERS[j]}[{position}] = {_reads(kinds[j], _LETTERS[j], position)}"
        for j in read
    )
    lines.append(f" bit {position}: {reads}")
    letters = ",".join(_LETTERS[j] for j in sorted(assignments[0]))
    for i, (x, y) in enumerate(examples):
        if len(assignments) <= enough and not (widened and i == 0):
            break
        want = _bit_at(y, position)
        kept = [
            a for a in assignments if (family.table >> _key_at(a, kinds, position, x)) & 1 == want
        ]
        same = kept == assignments and not (widened and i == 0)
        found = "no change" if same else f"{letters}={_listing(kept)}"
        lines.append(f"  ex{i + 1} x={_bits(x)} y[{position}]={want} -> {found}")
        assignments = kept
    return assignments


def _explicit_amounts(
    family: Family, examples: Sequence[tuple[int, int]], lines: list[str]
) -> list[tuple[Transform, ...]]:
    """The explicit style's search. An edge bit where G ignores the live copies only
    checks the output bit; at the others, the one depending on fewest copies first, the
    amounts of those copies are narrowed example by example (`_narrow`; a copy already
    pinned keeps its amount) until one assignment is left; while more than INNER_ENOUGH
    are left, the inner bits 1-6 (every copy live) narrow them further. The survivors,
    in canonical order."""
    kinds, table, n = family.kinds, family.table, family.arity
    edges = []
    for e in EDGES:
        live = [j for j, k in enumerate(kinds) if _live(k, e)]
        reduced = _restrict(table, n, live)
        relevant = [j for i, j in enumerate(live) if _depends(reduced, len(live), i)]
        if relevant:
            edges.append((len(relevant), e, relevant))
            continue
        seen = [_bit_at(y, e) for _, y in examples]  # the output bit is fixed here
        ok = all(b == reduced & 1 for b in seen)
        lines.append(
            f" bit {e}: y[{e}] must be {reduced & 1} in every example; the examples' "
            f"y[{e}]: {' '.join(map(str, seen))}: {'ok' if ok else 'no'}"
        )
        if not ok:
            return []
    assignments: list[dict[int, int]] = [{}]
    for _, e, relevant in sorted(edges):
        # Only the copies read here are narrowed (the others would only repeat each
        # surviving amount): those already pinned keep their surviving amounts, new ones
        # take every amount; the result joins what the earlier edge kept.
        known = [j for j in relevant if j in assignments[0]]
        block = [
            dict(t) for t in dict.fromkeys(tuple((j, a[j]) for j in known) for a in assignments)
        ]
        new = [j for j in relevant if j not in known]
        block = _narrow(
            _widen(block, new, kinds), e, family, examples, lines, relevant, widened=bool(new)
        )
        joined = [
            {**a, **b} for a in assignments for b in block if all(a[j] == b[j] for j in known)
        ]
        if len(assignments[0]) > len(known) and joined:  # earlier copies not read here
            letters = ",".join(_LETTERS[j] for j in sorted(joined[0]))
            lines.append(
                f"  with bit {EDGES[0] if e == EDGES[1] else EDGES[1]}'s amounts -> {letters}={_listing(joined)}"
            )
        assignments = joined
        if not assignments:
            return []
    missing = [j for j in range(n) if j not in assignments[0]]
    if missing:  # a copy G ignores at both edges: every amount stays in play
        assignments = _widen(assignments, missing, kinds)
        letters = ",".join(_LETTERS[:n])
        lines.append(
            f" {' and '.join(kinds[j] + _LETTERS[j] for j in missing)} not read at bits 0 and 7, "
            f"any amount -> {letters}={_listing(assignments)}"
        )
    for p in INNER:
        if len(assignments) <= INNER_ENOUGH:
            break
        assignments = _narrow(assignments, p, family, examples, lines, range(n), INNER_ENOUGH)
    return sorted(
        tuple(Transform(kinds[j], a[j]) for j in range(n))  # type: ignore[arg-type]
        for a in assignments
    )


def _pin_lines(
    edge: int,
    kind: str,
    given: Sequence[Transform],
    pattern: str,
    allowed: Sequence[Transform],
    examples: Sequence[tuple[int, int]],
) -> tuple[str, list[Transform]]:
    """The compact line narrowing one operand's amounts at an edge, and the amounts kept;
    `given` are the operands already fixed that are live there, `pattern` what the
    operand's column must read."""
    xs = [x for x, _ in examples]
    head = f" {' '.join(t.name for t in given)}: " if given else " "
    fitting = [t for t in allowed if _fits(pattern, column(xs, source(t, edge)))]
    found = " ".join(f"{t.name}({_name(t, edge)})" for t in fitting) or "none"
    return f"{head}p{edge} {kind} column must be {pattern} -> {found}", fitting


def _compact_amounts(
    family: Family, examples: Sequence[tuple[int, int]], lines: list[str]
) -> list[tuple[Transform, ...]]:
    """The compact style's search: operand by operand, each amount kept when its edge
    column fits the pattern the output demands there; the survivors, in canonical order."""
    kinds, table, n = family.kinds, family.table, family.arity
    candidates: list[tuple[Transform, ...]] = []
    kept: dict[tuple, list[Transform]] = {}  # amounts an edge demand keeps, by demand

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
            given = tuple(t for j, t in enumerate(assigned) if j in live)
            key = (e, given, low)
            if key not in kept:  # the same demand is written once
                line, kept[key] = _pin_lines(e, kind, given, pattern, allowed, examples)
                lines.append(line)
            allowed = [t for t in allowed if t in kept[key]]
        for t in allowed:
            extend((*assigned, t))

    extend(())
    return candidates


def _check_lines(
    style: Style, rule: Rule, examples: Sequence[tuple[int, int]]
) -> tuple[list[str], bool]:
    """A survivor checked, compact on the inner columns, explicit on every example, and
    whether it fits."""
    xs = [x for x, _ in examples]
    ys = [y for _, y in examples]
    if style == "compact":
        formula = expression(rule.table, rule.arity)
        checks = []
        for p in INNER:
            got = column([rule.apply(x) for x in xs], p)
            check = f"p{p} {formula.text([_name(t, p) for t in rule.operands])} = {got}"
            if got != column(ys, p):
                checks.append(f"{check} but Y{p}={column(ys, p)}, reject")
                return [f" try {rule.text}: {'; '.join(checks)}"], False
            checks.append(f"{check} ok")
        return [f" try {rule.text}: {'; '.join(checks)}; fits"], True
    lines = [f" try {explicit_rule(rule)}:"]
    for i, (x, y) in enumerate(examples):
        got = rule.apply(x)
        verdict = "ok" if got == y else f"but the example says {_bits(y)}: reject"
        lines.append(f"  ex{i + 1} x={_bits(x)} {explicit_values(rule, x)} {verdict}")
        if got != y:
            return lines, False
    lines.append("  fits every example")
    return lines, True


def _family_search(
    family: Family, examples: Sequence[tuple[int, int]], style: Style = "compact"
) -> tuple[list[str], Rule | None]:
    """Edge constraints, then the survivors' checks; stops at the first fit."""
    ys = [y for _, y in examples]
    kinds, table, n = family.kinds, family.table, family.arity
    names = _generic_names(family)
    lines = [f"Form y = {expression(table, n).text(names)}:"]
    at, out = ("p{}", "Y{}") if style == "compact" else ("bit {}", "y[{}]")
    for e in EDGES:  # compact: an edge where every copy is 0 fixes the output column
        if style == "compact" and not any(_live(k, e) for k in kinds):
            want = str(table & 1) * len(examples)
            ok = column(ys, e) == want
            lines.append(f" p{e}: every copy is 0, so Y{e} must be {want}: {'ok' if ok else 'no'}")
            if not ok:
                return lines, None
    for e in EDGES:  # say what G becomes where some copies are 0: the search reads it
        live = [j for j, k in enumerate(kinds) if _live(k, e)]
        if len(live) < n and (live or style == "explicit"):
            zero = " and ".join(names[j] for j in range(n) if j not in live)
            reduced = _restrict(table, n, live)
            if not live:
                text = str(reduced & 1)
            elif reduced in (0, (1 << (1 << len(live))) - 1):  # G ignores the live copies
                text = f"{reduced & 1} whatever {' and '.join(names[j] for j in live)} is"
            else:
                text = expression(reduced, len(live)).text([names[j] for j in live])
            lines.append(f" {at.format(e)}: {zero} = 0, so {out.format(e)} = {text}")
    search = _compact_amounts if style == "compact" else _explicit_amounts
    candidates = search(family, examples, lines)
    for operands in candidates:
        rule = Rule(operands, table)
        checked, fits = _check_lines(style, rule, examples)
        lines.extend(checked)
        if fits:
            return lines, rule
    lines.append(" no amounts fit this form")
    return lines, None


def search_trace(
    examples: Sequence[tuple[int, int]], prior: Prior, style: Style = "compact"
) -> SearchResult:
    """(Compact: the columns, then) every known form by rule probability until one fits."""
    xs = [x for x, _ in examples]
    ys = [y for _, y in examples]
    lines = []
    if style == "compact":
        lines = [
            (
                "Columns (one digit per example, position 0 = leftmost bit). A pattern says what "
                "a copy's column must read in each example: ? = either digit works, ! = neither "
                "does."
            ),
            *(f"X{p}={column(xs, p)} Y{p}={column(ys, p)}" for p in range(8)),
        ]
    order = sorted(prior.weights, key=lambda f: (-prior.rule_probability(f), f))
    for family in order:
        found, rule = _family_search(family, examples, style)
        lines += found
        if rule is not None:
            return SearchResult(tuple(lines), rule)
    return SearchResult(tuple(lines), None)
