"""A cryptarithm's digit mapping and operations DERIVED by a search a small model can redo.

The solver (`cryptarithm.solve`) indexes every operand pair by shape, which no model can
replay; this module runs a plain depth-first search whose every step is a small check,
and records it so the trace can show it line by line:

1. Settings in the prior's order for the row's symbol group (most frequent first); a
   result holding the operator symbol (a minus sign) at its end rules out normal and
   reversed, one with it in front rules out mirrored.
2. Examples one at a time: the one showing the most symbols already decoded next (ties:
   fewest new symbols, then prompt order). Operators that only join their operands'
   symbols are read at the symbol level and never searched.
3. An operator met for the first time tries operations in the prior's order for the
   setting; one that cannot write a result of that length (and sign) is skipped with
   that reason, and a concatenation must copy the operand symbols.
4. Operand symbols not yet decoded take digits in the order a units, b units, a tens,
   b tens, each trying 0..9 upward and skipping used digits. For + and * families the
   units digit is checked as soon as both units are known; when all four are known the
   result is computed, written in the setting, and compared symbol by symbol (a result
   symbol not yet decoded takes its digit if that digit is free); when a's units and the
   result's units are decoded, b's units are solved from the units digit in one line.
   A failure tries the next digit; an example no digit fits sends the search back.
   Both tens decoded before the units: the result's length range is checked first.

The first complete assignment is the trace's decoding. The trace shows its path and
every alternative tried at each choice on it (one line: its own check's reason, its few
steps in full, or '-> no fit further on' when it passed its check and everything after
it failed). Every line is a `Step` holding the values it states, so tests recompute
them. `derive` gives up (None) past `max_steps` search steps (time), and the caller
drops traces over its length budget: on dev ~1 in 7 right deduce answers gets one; the
rest meet a wrong operation or setting first whose failure is a long search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from reasonlab.puzzles.base import boxed
from reasonlab.puzzles.equations.cryptarithm_search import SIGN
from reasonlab.puzzles.equations.numeric_trace import LABELS
from reasonlab.puzzles.equations.ops import (
    SETTINGS,
    Operation,
    Setting,
    apply,
    read_operands,
)
from reasonlab.puzzles.equations.prompt import EquationPrompt, Expression

__all__ = [
    "Derivation",
    "Step",
    "derive",
    "possible_lengths",
    "render_derivation",
    "sign_rule",
]

_MAX_STEPS = 2_000  # search steps explored (shown or not): bounds the time a row takes
_SHORT = 3  # a failed alternative with at most this many steps below it is shown in full
_SETTING_WORDS = {
    "normal": "normal: a = left operand, b = right operand, result written as computed",
    "reversed": "reversed: a, b = operands read backwards, result digits written backwards",
    "mirrored": "mirrored: a = right operand backwards, b = left operand backwards, "
    "whole signed result written backwards",
}


@dataclass(frozen=True)
class Step:
    """One line of the search. `kind` says which fields matter:

    setting:  setting tried (`text` holds a reason when it is ruled out)
    example:  `lhs`, `rhs` entered (at `depth`)
    skip:     `op` rejected for `lhs` by `text` (length / symbol copy)
    try:      `op` chosen for `lhs.op`, its examples now searched with it
    units:    `assigned` digits; units digit `value` of the op on the units; `ok`, `text`
    check:    `assigned`; a, b as read (`a`, `b`), `value` computed, `written`; `ok`, `text`
    back:     `lhs` has no fitting digits under the choices above
    """

    kind: str
    depth: int = 0
    setting: Setting | None = None
    lhs: Expression | None = None
    rhs: str = ""
    op: Operation | None = None
    assigned: tuple[tuple[str, str], ...] = ()  # (symbol, digit) taken at this step
    a: str = ""
    b: str = ""
    value: int | str = ""
    written: str = ""  # in digits, the operator symbol as the minus sign
    ok: bool = False
    text: str = ""
    parent: int = -1  # index of the choice this step was taken under (-1: none)


@dataclass(frozen=True)
class Derivation:
    """The search as shown and what it found.

    A failed alternative beside the path is one line: its own check's reason, or (when
    that check passed and the failure came deeper) 'fails further on' - the search did
    explore it (`searched` counts every step), the trace states only the outcome.
    """

    steps: tuple[Step, ...]  # the lines shown: the path found and the alternatives beside it
    failed_later: tuple[bool, ...]  # per shown step: passed its own check, failed deeper
    searched: int  # steps the whole search took (failed branches included)
    setting: Setting
    ops: tuple[tuple[str, Operation], ...]  # operator symbol -> operation, searched ones
    joins: tuple[tuple[str, str], ...]  # operator symbol -> 'left+right' / 'right+left'
    mapping: tuple[tuple[str, str], ...]  # (symbol, digit) sorted by digit


class _Budget(Exception):
    """The search passed `max_steps` lines: too long to show."""


def _label(op: Operation) -> str:
    return LABELS.get(op.name, op.formula)


@cache
def possible_lengths(op: Operation, setting: Setting) -> frozenset[tuple[int, int]]:
    """(result length, sign position or -1) pairs `op` writes for operands 01..99."""
    out = set()
    for a in range(1, 100):
        for b in range(1, 100):
            value = op(f"{a:02d}", f"{b:02d}")
            if isinstance(value, str) or value >= 0:  # a concatenation keeps its 4 digits
                out.add((len(str(value)), -1))
            else:  # the minus is written first, or last when mirrored
                size = len(str(value))
                out.add((size, size - 1 if setting.name == "mirrored" else 0))
    return frozenset(out)


def _copies(op: Operation, lhs: Expression, setting: Setting) -> str:
    """The symbols a concatenation writes for `lhs`, whatever the digits."""
    table = str.maketrans("1234", lhs.left + lhs.right)
    return apply(op, "12", "34", SIGN, setting).translate(table)


def _units_symbol(rhs: str, setting: Setting) -> str:
    """Where a non-negative result's units digit is written."""
    return rhs[-1] if setting.name == "normal" else rhs[0]


def _units(op: Operation, x: int, y: int) -> int:
    base = x + y if op.kind == "add" else x * y
    return (base + op.offset) % 10


def sign_rule(puzzle: EquationPrompt, setting: Setting) -> str:
    """Why `setting` cannot write some example's sign, or ''."""
    for lhs, rhs in puzzle.examples:
        if len(rhs) > 1 and rhs[-1] == lhs.op and setting.name != "mirrored":
            return f"{lhs.text} = {rhs} ends with '{lhs.op}' (a minus written last)"
        if len(rhs) > 1 and rhs[0] == lhs.op and setting.name == "mirrored":
            return f"{lhs.text} = {rhs} starts with '{lhs.op}' (a minus written first)"
    return ""


class _Search:
    """One depth-first search over settings, examples, operations and digits."""

    def __init__(
        self,
        puzzle: EquationPrompt,
        examples: list[tuple[Expression, str]],
        op_order: Callable[[Setting], tuple[Operation, ...]],
        max_steps: int,
    ) -> None:
        self.puzzle, self.examples, self.op_order = puzzle, examples, op_order
        self.max_steps = max_steps
        # (kind, depth, parent, fields) per step; a `Step` is built only for shown lines
        self.steps: list[tuple[str, int, int, dict[str, Any]]] = []
        self.mapping: dict[str, str] = {}
        self.chosen: dict[str, Operation] = {}
        self.done: list[int] = []
        self.before: dict[int, frozenset[str]] = {}  # example index -> symbols decoded on entry
        self.orders: dict[tuple[int, str], list[str]] = {}  # `_order` per example, setting
        self.stack: list[int] = []  # the choices (step indices) the search stands on
        self.choices: set[int] = set()  # every step the search went deeper from
        self.path: frozenset[int] = frozenset()  # the choices of the decoding found
        self.setting: Setting = SETTINGS[0]

    def log(self, kind: str, depth: int = 0, **fields: Any) -> int:
        """Record a step under the current choice; its index."""
        if len(self.steps) >= self.max_steps:
            raise _Budget
        parent = self.stack[-1] if self.stack else -1
        self.steps.append((kind, depth, parent, fields))
        return len(self.steps) - 1

    def under(self, index: int, go: Callable[[], bool]) -> bool:
        """Run `go` with step `index` as the current choice."""
        self.stack.append(index)
        self.choices.add(index)
        try:
            return go()
        finally:
            self.stack.pop()

    def run(self, settings: tuple[Setting, ...]) -> bool:
        for setting in settings:
            reason = sign_rule(self.puzzle, setting)
            index = self.log("setting", setting=setting, text=reason)
            if reason:
                continue
            self.setting = setting
            if self.under(index, lambda: self.example(0)):
                return True
        return False

    def _next(self) -> int:
        """Most decoded symbols first, then fewest new ones, then prompt order."""
        known = set(self.mapping)

        def key(i: int) -> tuple[int, int, int]:
            lhs, rhs = self.examples[i]
            symbols = set(lhs.left + lhs.right + rhs) - {lhs.op}
            return (-len(symbols & known), len(symbols - known), i)

        return min((i for i in range(len(self.examples)) if i not in self.done), key=key)

    def example(self, depth: int) -> bool:
        if len(self.done) == len(self.examples):
            self.path = frozenset(self.stack)
            return True
        i = self._next()
        lhs, rhs = self.examples[i]
        self.done.append(i)
        self.before[id(lhs)] = frozenset(self.mapping)
        index = self.log("example", depth, lhs=lhs, rhs=rhs)
        if self.under(index, lambda: self.operations(depth, lhs, rhs)):
            return True
        self.log("back", depth, lhs=lhs)
        self.done.pop()
        return False

    def operations(self, depth: int, lhs: Expression, rhs: str) -> bool:
        """The operator's operation (fixed, or each candidate in order), then digits."""
        fixed = self.chosen.get(lhs.op)
        candidates = (fixed,) if fixed else self.op_order(self.setting)
        for op in candidates:
            if fixed is None:
                reason = self._skip(op, lhs, rhs)
                if reason:
                    self.log("skip", depth, lhs=lhs, op=op, text=reason)
                    continue
                index = self.log("try", depth, lhs=lhs, op=op)
                self.chosen[lhs.op] = op
                if self.under(index, lambda op=op: self.digits(depth, lhs, rhs, op, 0)):
                    return True
                del self.chosen[lhs.op]
            elif self.digits(depth, lhs, rhs, op, 0):
                return True
        return False

    def _skip(self, op: Operation, lhs: Expression, rhs: str) -> str:
        if op.kind == "cat":
            copy = _copies(op, lhs, self.setting)
            return "" if copy == rhs else f"would copy the operand symbols as {copy}"
        sign = rhs.find(lhs.op) if lhs.op in rhs else -1
        if (len(rhs), sign) not in possible_lengths(op, self.setting):
            return f"never writes {len(rhs)} symbols" + (" with that sign" if sign >= 0 else "")
        return ""

    def _order(self, lhs: Expression) -> list[str]:
        key = (id(lhs), self.setting.name)
        if key not in self.orders:  # the hot path: computed once per example and setting
            a, b = read_operands(lhs.left, lhs.right, self.setting)  # symbol strings as read
            self.orders[key] = list(dict.fromkeys([a[1], b[1], a[0], b[0]]))
        return self.orders[key]

    def digits(self, depth: int, lhs: Expression, rhs: str, op: Operation, k: int) -> bool:
        order = self._order(lhs)
        if k == 0 and self.range_fail(depth, lhs, rhs, op):
            return False
        while k < len(order) and order[k] in self.mapping:
            k += 1
        if k == len(order):
            return self.check(depth, lhs, rhs, op)
        symbol = order[k]
        if self._solvable(lhs, rhs, op, symbol):
            index, choices = self.solved_units(depth, lhs, rhs, op, symbol)
            return self.under(index, lambda: self.assign(depth, lhs, rhs, op, k, choices))
        return self.assign(depth, lhs, rhs, op, k, "0123456789")

    def assign(
        self, depth: int, lhs: Expression, rhs: str, op: Operation, k: int, choices: str
    ) -> bool:
        """Each free digit of `choices` for the example's k-th operand symbol, in order."""
        symbol = self._order(lhs)[k]
        for digit in choices:
            if digit in self.mapping.values():
                continue
            self.mapping[symbol] = digit
            units = self.units(depth, lhs, rhs, op, symbol)
            if units is None:
                found = self.digits(depth, lhs, rhs, op, k + 1)
            elif self.steps[units][3]["ok"]:
                found = self.under(units, lambda: self.digits(depth, lhs, rhs, op, k + 1))
            else:
                found = False
            if found:
                return True
            del self.mapping[symbol]
        return False

    def _new(self, lhs: Expression, symbol: str) -> tuple[tuple[str, str], ...]:
        """The digits this example's operand symbols took, up to and including `symbol`."""
        order = self._order(lhs)
        before = self.before[id(lhs)]
        upto = order.index(symbol) + 1
        return tuple((s, self.mapping[s]) for s in order[:upto] if s not in before)

    def range_fail(self, depth: int, lhs: Expression, rhs: str, op: Operation) -> bool:
        """Both tens decoded before the units (+ and * families): can the result have the
        example's length at all? Checked once, on entering the example (logged)."""
        a, b = read_operands(lhs.left, lhs.right, self.setting)
        if op.kind not in ("add", "mul") or a[0] not in self.mapping or b[0] not in self.mapping:
            return False
        if a[1] in self.mapping and b[1] in self.mapping:
            return False  # nothing to assign: the full check decides at once
        # the smallest operand with tens t is t0, or 01 for t = 0 (00 is never written)
        x, y = (f"{self.mapping[t]}0".replace("00", "01") for t in (a[0], b[0]))
        low, high = op(x, y), op(f"{x[0]}9", f"{y[0]}9")
        ok = len(str(low)) <= len(rhs) <= len(str(high))
        if not ok:
            self.log(
                "range",
                depth,
                lhs=lhs,
                rhs=rhs,
                op=op,
                a=f"{x}..{x[0]}9",
                b=f"{y}..{y[0]}9",
                value=f"{low}..{high}",
                text=f"never {len(rhs)} digits",
            )
        return not ok

    def _solvable(self, lhs: Expression, rhs: str, op: Operation, symbol: str) -> bool:
        """Is `symbol` b's units, with a's units and the result's units already decoded?"""
        a, b = read_operands(lhs.left, lhs.right, self.setting)
        at = _units_symbol(rhs, self.setting)
        return (
            op.kind in ("add", "mul")
            and symbol == b[1] != a[1]
            and a[1] in self.mapping
            and at != symbol
            and (at in self.before[id(lhs)] or at == a[1])
        )

    def solved_units(
        self, depth: int, lhs: Expression, rhs: str, op: Operation, symbol: str
    ) -> tuple[int, str]:
        """b's units digits that give the known result units (+ and * families), logged as
        one line: (its index, the digits)."""
        a, _ = read_operands(lhs.left, lhs.right, self.setting)
        at = _units_symbol(rhs, self.setting)
        x, target = int(self.mapping[a[1]]), int(self.mapping[at])
        used = set(self.mapping.values())
        fits = "".join(d for d in "0123456789" if d not in used and _units(op, x, int(d)) == target)
        index = self.log(
            "solve",
            depth,
            lhs=lhs,
            rhs=rhs,
            op=op,
            assigned=self._new(lhs, a[1]),
            a=str(x),
            b=symbol,
            value=target,
            written=fits,
        )
        return index, fits

    def units(
        self, depth: int, lhs: Expression, rhs: str, op: Operation, symbol: str
    ) -> int | None:
        """The units check for + and * families once both units are known: the index of
        its logged step, or None when there is none to make."""
        if op.kind not in ("add", "mul"):
            return None
        a, b = read_operands(lhs.left, lhs.right, self.setting)
        if symbol not in (a[1], b[1]) or a[1] not in self.mapping or b[1] not in self.mapping:
            return None
        if self._solvable(lhs, rhs, op, symbol):
            return None  # `solved_units` already chose b's units to fit
        x, y = int(self.mapping[a[1]]), int(self.mapping[b[1]])
        value = _units(op, x, y)
        at = _units_symbol(rhs, self.setting)
        owner = {d: s for s, d in self.mapping.items()}.get(str(value))
        if at in self.mapping:
            ok = self.mapping[at] == str(value)
            why = "" if ok else f"{at} is {self.mapping[at]}"
        elif at in self._order(lhs):
            ok, why = True, ""  # an operand symbol still open: the full check decides
        else:
            ok = owner is None
            why = "" if ok else f"{at} would be {value}, taken by {owner}"
        return self.log(
            "units",
            depth,
            lhs=lhs,
            rhs=rhs,
            op=op,
            assigned=self._new(lhs, symbol),
            a=str(x),
            b=str(y),
            value=value,
            ok=ok,
            text=why,
        )

    def check(self, depth: int, lhs: Expression, rhs: str, op: Operation) -> bool:
        left = "".join(self.mapping[s] for s in lhs.left)
        right = "".join(self.mapping[s] for s in lhs.right)
        a, b = read_operands(left, right, self.setting)
        order = self._order(lhs)
        assigned = self._new(lhs, order[-1])
        base = {"lhs": lhs, "rhs": rhs, "op": op, "assigned": assigned, "a": a, "b": b}
        if "00" in (left, right):
            self.log("check", depth, text="operand 00 is never written", **base)
            return False
        value = op(a, b)
        written = apply(op, left, right, SIGN, self.setting)
        fresh: list[str] = []
        why = self._match(written, rhs.replace(lhs.op, SIGN), lhs.op, fresh)
        digits_written = written.replace(SIGN, lhs.op)
        base |= {"value": value, "written": digits_written}
        if why:
            for s in fresh:
                del self.mapping[s]
            self.log("check", depth, text=why, **base)
            return False
        news = ", ".join(f"{s}={self.mapping[s]}" for s in fresh)
        index = self.log("check", depth, ok=True, text=f"new {news}" if news else "", **base)
        if self.under(index, lambda: self.example(depth + 1)):
            return True
        for s in fresh:
            del self.mapping[s]
        return False

    def _match(self, written: str, target: str, operator: str, fresh: list[str]) -> str:
        """'' when `written` (digits, SIGN) spells `target` (symbols, SIGN), adding the
        result symbols it decodes to `fresh`/mapping; else why not."""
        if len(written) != len(target):
            return f"{len(written)} digits, not {len(target)}"
        for digit, symbol in zip(written, target):
            if (digit == SIGN) != (symbol == SIGN):
                return "the sign does not match"
            if symbol == SIGN:
                continue
            if symbol in self.mapping:
                if self.mapping[symbol] != digit:
                    return f"{symbol} is {self.mapping[symbol]}, not {digit}"
                continue
            owner = {d: s for s, d in self.mapping.items()}.get(digit)
            if owner is not None:
                return f"{symbol} would be {digit}, taken by {owner}"
            self.mapping[symbol] = digit
            fresh.append(symbol)
        return ""


def derive(
    puzzle: EquationPrompt,
    settings: tuple[Setting, ...],
    op_order: Callable[[Setting], tuple[Operation, ...]],
    joins: dict[str, str],
    max_steps: int = _MAX_STEPS,
) -> Derivation | None:
    """The first decoding the search finds, with its log; None past `max_steps` lines or
    when nothing fits. `joins` are the operators that only join symbols (not searched)."""
    examples = [(lhs, rhs) for lhs, rhs in puzzle.examples if lhs.op not in joins]
    search = _Search(puzzle, examples, op_order, max_steps)
    try:
        found = search.run(settings)
    except _Budget:
        return None
    if not found:
        return None
    pairs = tuple(sorted(search.mapping.items(), key=lambda item: item[1]))
    raw = search.steps
    # Shown: the decoding's path and every alternative tried at a choice on it, one line
    # each; a failed alternative whose whole search is short is shown in full.
    size = [1] * len(raw)
    for i in range(len(raw) - 1, -1, -1):
        if raw[i][2] >= 0:
            size[raw[i][2]] += size[i]
    failed = search.choices - search.path
    expanded = {i for i in failed if size[i] - 1 <= _SHORT}
    visible: set[int] = set()
    for i, (_, _, parent, _) in enumerate(raw):  # parents come before children
        if parent < 0 or parent in search.path or (parent in expanded and parent in visible):
            visible.add(i)
    shown = sorted(visible)
    return Derivation(
        tuple(Step(raw[i][0], raw[i][1], parent=raw[i][2], **raw[i][3]) for i in shown),
        tuple(i in failed and i not in expanded for i in shown),
        len(search.steps),
        search.setting,
        tuple(search.chosen.items()),
        tuple(joins.items()),
        pairs,
    )


# ---------------------------------------------------------------------------- render


def _taken(assigned: tuple[tuple[str, str], ...]) -> str:
    return " ".join(f"{s}={d}" for s, d in assigned) or "all known"


def _units_sum(step: Step) -> str:
    """The units-digit expression of a units step: `a+b`, `a*b`, with the offset if any."""
    sign = "+" if step.op.kind == "add" else "*"
    offset = f"{step.op.offset:+d}" if step.op.offset else ""
    return f"{step.a}{sign}{step.b}{offset}"


def _line(step: Step) -> str:
    pad = "  " * step.depth
    if step.kind == "setting":
        words = _SETTING_WORDS[step.setting.name]
        return f"Setting {words}." + (f" Ruled out: {step.text}." if step.text else "")
    if step.kind == "example":
        return f"{pad}Example {step.lhs.text} = {step.rhs}:"
    if step.kind == "skip":
        return f"{pad} '{step.lhs.op}' as {_label(step.op)}: no, {step.text}"
    if step.kind == "try":
        return f"{pad} '{step.lhs.op}' as {_label(step.op)}: try"
    if step.kind == "back":
        return f"{pad} no digits fit {step.lhs.text}: go back"
    if step.kind == "units":
        verdict = "ok" if step.ok else f"no, {step.text}"
        return f"{pad} {_taken(step.assigned)}: units {_units_sum(step)} ends in {step.value}, {verdict}"
    if step.kind == "range":
        return f"{pad} a={step.a}, b={step.b}: {_label(step.op)} from {step.value}; no, {step.text}"
    if step.kind == "solve":
        fits = ", ".join(step.written) if step.written else "none free"
        return f"{pad} {_taken(step.assigned)}: units {_units_sum(step)} must end in {step.value}: {step.b} = {fits}"
    # check
    if not step.written:
        return f"{pad} {_taken(step.assigned)}: no, {step.text}"
    work = f"{step.op.instance(step.a, step.b)} = {step.value}"
    verdict = ("ok" + (f", {step.text}" if step.text else "")) if step.ok else f"no, {step.text}"
    return f"{pad} {_taken(step.assigned)}: {work}, written {step.written}; {verdict}"


def render_derivation(
    derivation: Derivation, puzzle: EquationPrompt, answer: str, query_op: Operation
) -> str:
    """The search as found, the decoding, the query computed and encoded, boxed."""
    lines = [
        (
            "Each symbol is one digit, each operator one operation. Search: settings by "
            "frequency; examples with the most decoded symbols first; a new operator tries "
            "operations by frequency; operand symbols take digits 0-9 upward in the order "
            "a units, b units, a tens, b tens; the first assignment that fits every example "
            "wins. '-> no fit further on' marks a choice whose every continuation failed."
        ),
    ]
    for symbol, order in derivation.joins:
        first, second = order.split("+")
        lines.append(
            f"'{symbol}' only writes the {first} operand's symbols then the {second}'s: "
            "a concatenation, no digits needed."
        )
    lines.extend(
        _line(step) + (" -> no fit further on" if later else "")
        for step, later in zip(derivation.steps, derivation.failed_later)
    )
    lines.append(
        "Every example fits. Digits: "
        + ", ".join(f"{d}={s}" for s, d in derivation.mapping)
        + "; operations: "
        + ", ".join(f"'{s}' = {_label(op)}" for s, op in derivation.ops)
        + "."
    )
    q = puzzle.query
    digits = dict(derivation.mapping)
    left = "".join(digits[s] for s in q.left)
    right = "".join(digits[s] for s in q.right)
    a, b = read_operands(left, right, derivation.setting)
    value = query_op(a, b)
    written = apply(query_op, left, right, q.op, derivation.setting)
    inverse = {d: s for s, d in digits.items()}
    encoded = " ".join(f"{ch}->{inverse.get(ch, ch)}" for ch in written)
    lines.append(
        f"Query {q.text} reads {left}{q.op}{right}: a={a}, b={b}, "
        f"{query_op.instance(a, b)} = {value}, written {written}."
    )
    lines.append(f"Encode: {encoded}. The answer is {answer}")
    return "\n".join(lines) + "\n" + boxed(answer)
