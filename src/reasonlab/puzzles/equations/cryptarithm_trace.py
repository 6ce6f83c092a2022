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
   setting, each first checked on ALL its examples at the symbol level: a length (and
   sign place) the operation never writes for operands 10..99, a concatenation that
   would copy other symbols, or 3-digit sums whose leading symbols differ (a sum of two
   operands 10..99 is under 200, so its hundreds digit is 1: a surviving addition pins
   that symbol to 1 at once).
4. Operand symbols not yet decoded take digits in the order a units, b units, a tens,
   b tens (as the setting reads them), each trying digits upward and skipping used ones;
   tens digits start at 1 (operands run 10..99, `cryptarithm_search.written_operands`).
   For the +, * and - families the units digit is checked as soon as both units are
   known (for |a-b| either order), and b's units is solved in one line from a's units
   and the result's units (decoded, or b's units symbol itself); for a - b and b - a the
   result's sign bounds the second tens digit by the first; an operand tens symbol
   already decoded as 0 ends the example at once; when all four are known the result is
   computed, written in
   the setting and compared symbol by symbol (a result symbol not yet decoded takes its
   digit if that digit is free). A failure tries the next digit; an example no digit
   fits sends the search back.

The first complete assignment is the trace's decoding. Which branches lead anywhere is
known without searching them: the solver's fit list is complete (`find_fits`), so a
choice no fit extends fails. Such a choice is explored only while its lines stay few
(`SHORT_LINES`: the caller takes the most its budget affords; then shown in full, every
check visible); otherwise it is cut to its own line, marked '-> no fit further on'. A
wrong setting shows its first example's operations, each with its reason or its mark.
Every line is a `Step` holding the values it states, so tests recompute them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from reasonlab.puzzles.base import boxed
from reasonlab.puzzles.equations.cryptarithm_search import SIGN, Fit, written_operands
from reasonlab.puzzles.equations.numeric_trace import LABELS
from reasonlab.puzzles.equations.ops import (
    Operation,
    Setting,
    apply,
    read_operands,
)
from reasonlab.puzzles.equations.prompt import EquationPrompt, Expression

__all__ = [
    "SHORT_LINES",
    "Derivation",
    "Step",
    "derive",
    "leading_symbol",
    "possible_lengths",
    "render_derivation",
    "sign_rule",
    "units_options",
    "units_symbol",
]

_MAX_LINES = 1_500  # lines a derivation may log (shown ones and cut branches' first lines)
# A choice nothing fits below is shown in full when its lines stay within this many
# (the caller tries the largest that keeps the trace within budget).
SHORT_LINES = (12, 6, 3)
_SETTING_WORDS = {
    "normal": "normal: a = left operand, b = right operand, result written as computed",
    "reversed": "reversed: a, b = operands read backwards, result digits written backwards",
    "mirrored": "mirrored: a = right operand backwards, b = left operand backwards, "
    "whole signed result written backwards",
}
_SUM_BOUND = {-1: 197, 0: 198, 1: 199}  # the largest a + b + offset for operands 10..99


@dataclass(frozen=True)
class Step:
    """One line of the search. `kind` says which fields matter:

    setting:  setting tried (`text` holds a reason when it is ruled out)
    example:  `lhs`, `rhs` entered (at `depth`)
    skip:     `op` rejected for `lhs.op` by `text`, found on example `other` ('' when it
              is the one entered, `lhs`, `rhs`)
    try:      `op` chosen for `lhs.op`, its examples now searched with it
    pin:      `assigned` fixed by the rule in `text` (a 3-digit sum's hundreds digit is 1)
    zero:     `lhs` reads an operand tens digit 0 (`assigned`: that symbol), never written
    units:    `assigned` digits; units digits `a`, `b`; `value` the possible result units
              ("7" or "3 or 7"), `negative` whether the result carries a sign; `ok`, `text`
    solve:    b's units symbol `b` for units `a` and result units `value`: `written` digits
    order:    a - b or b - a: the tens symbol `b` is `text` ('<=' / '>=') the other operand's
              tens digit `a`, as the result's sign (`negative`) orders them: `written` digits
    range:    `a`, `b` operand ranges from decoded tens; `value` the results; never len(rhs)
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
    negative: bool = False
    other: str = ""  # skip: the example `text` is about, when not the one entered
    ok: bool = False
    text: str = ""
    parent: int = -1  # index of the choice this step was taken under (-1: none)


@dataclass(frozen=True)
class Derivation:
    """The search as shown and what it found.

    A choice beside the path that nothing fits below is either shown in full (few lines)
    or cut to its own line (`failed_later`): the trace states only that it fails further
    on, which the solver's complete fit list guarantees.
    """

    steps: tuple[Step, ...]  # the lines shown: the path found and the alternatives beside it
    failed_later: tuple[bool, ...]  # per shown step: passed its own check, failed deeper
    setting: Setting
    ops: tuple[tuple[str, Operation], ...]  # operator symbol -> operation, searched ones
    joins: tuple[tuple[str, str], ...]  # operator symbol -> 'left+right' / 'right+left'
    mapping: tuple[tuple[str, str], ...]  # (symbol, digit) sorted by digit
    fit: Fit  # the solver's fit this decoding is


class _Cut(Exception):
    """A branch nothing fits below passed its line allowance: it is shown as one line."""


class _Budget(Exception):
    """The derivation passed `_MAX_LINES` lines: too long to show."""


def _label(op: Operation) -> str:
    return LABELS.get(op.name, op.formula)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


@cache
def possible_lengths(op: Operation, setting: Setting) -> frozenset[tuple[int, int]]:
    """(result length, sign position or -1) pairs `op` writes for operands 10..99."""
    out = set()
    for left, right in written_operands(setting):
        written = apply(op, left, right, SIGN, setting)
        out.add((len(written), written.find(SIGN)))
    return frozenset(out)


def _copies(op: Operation, lhs: Expression, setting: Setting) -> str:
    """The symbols a concatenation writes for `lhs`, whatever the digits."""
    table = str.maketrans("1234", lhs.left + lhs.right)
    return apply(op, "12", "34", SIGN, setting).translate(table)


def units_symbol(rhs: str, setting: Setting, negative: bool) -> str:
    """Where a result's units digit is written (after the sign when reversed)."""
    if setting.name == "normal":
        return rhs[-1]
    return rhs[1] if negative and setting.name == "reversed" else rhs[0]


def leading_symbol(rhs: str, setting: Setting) -> str:
    """Where a non-negative result's most significant digit is written."""
    return rhs[0] if setting.name == "normal" else rhs[-1]


def units_options(op: Operation, x: int, y: int, negative: bool) -> tuple[int, ...] | None:
    """The units digits the result's magnitude can end in when a ends in x and b in y and
    the result is `negative` or not (None: the family has no units rule). |a-b| may
    subtract either way; -|a-b| without a sign is 0, so a and b end alike."""
    if op.kind in ("add", "mul"):
        base = x + y if op.kind == "add" else x * y
        return () if negative else ((base + op.offset) % 10,)
    if op.name in ("sub", "rsub"):
        first, second = (x, y) if (op.name == "sub") != negative else (y, x)
        return ((first - second) % 10,)
    if op.name == "negabsdiff" and not negative:
        return (0,) if x == y else ()
    if op.name in ("absdiff", "negabsdiff"):
        both = tuple(dict.fromkeys(((x - y) % 10, (y - x) % 10)))
        return () if negative and op.name == "absdiff" else both
    return None


def _units_text(op: Operation, x: int, y: int, negative: bool) -> str:
    """The units arithmetic as a line writes it: `7+5`, `7*5-1`, a borrow as `13-7`."""
    if op.kind in ("add", "mul"):
        offset = f"{op.offset:+d}" if op.offset else ""
        return f"{x}{'+' if op.kind == 'add' else '*'}{y}{offset}"

    def minus(p: int, q: int) -> str:
        return f"{p + 10 if p < q else p}-{q}"

    if op.name in ("sub", "rsub"):
        first, second = (x, y) if (op.name == "sub") != negative else (y, x)
        return minus(first, second)
    one, other = minus(x, y), minus(y, x)
    return one if one == other or not negative and op.name == "negabsdiff" else f"{one} or {other}"


def _units_pattern(op: Operation, x: str, symbol: str, negative: bool) -> str:
    """The units arithmetic with b's units still a symbol: `7+#`, `#-7`, `7-# or #-7`."""
    if op.kind in ("add", "mul"):
        offset = f"{op.offset:+d}" if op.offset else ""
        return f"{x}{'+' if op.kind == 'add' else '*'}{symbol}{offset}"
    if op.name in ("sub", "rsub"):
        first, second = (x, symbol) if (op.name == "sub") != negative else (symbol, x)
        return f"{first}-{second}"
    return f"{x}-{symbol} or {symbol}-{x}"


def _options_text(options: Sequence[int]) -> str:
    return " or ".join(map(str, options))


def sign_rule(puzzle: EquationPrompt, setting: Setting) -> str:
    """Why `setting` cannot write some example's sign, or ''."""
    for lhs, rhs in puzzle.examples:
        if len(rhs) > 1 and rhs[-1] == lhs.op and setting.name != "mirrored":
            return f"{lhs.text} = {rhs} ends with '{lhs.op}' (a minus written last)"
        if len(rhs) > 1 and rhs[0] == lhs.op and setting.name == "mirrored":
            return f"{lhs.text} = {rhs} starts with '{lhs.op}' (a minus written first)"
    return ""


class _Oracle:
    """Whether some fit of the solver's complete list extends a partial decoding."""

    def __init__(self, fits: Sequence[Fit]) -> None:
        # per setting, in fit order: (fit, its (symbol, operation) and (symbol, digit) pairs)
        self.fits: dict[Setting, list[tuple[Fit, frozenset, frozenset]]] = {}
        for fit in fits:
            pairs = (fit, frozenset(fit.ops), frozenset(fit.mapping))
            self.fits.setdefault(fit.setting, []).append(pairs)

    def find(
        self, setting: Setting, chosen: dict[str, Operation], mapping: dict[str, str]
    ) -> Fit | None:
        ops, digits = chosen.items(), mapping.items()  # set-like views: `<=` is inclusion
        for fit, fit_ops, fit_digits in self.fits.get(setting, ()):
            if ops <= fit_ops and digits <= fit_digits:
                return fit
        return None


class _Search:
    """One depth-first search over settings, examples, operations and digits."""

    def __init__(
        self,
        puzzle: EquationPrompt,
        examples: list[tuple[Expression, str]],
        op_order: Callable[[Setting], tuple[Operation, ...]],
        oracle: _Oracle,
        max_lines: int,
        short: int,
    ) -> None:
        self.puzzle, self.examples, self.op_order = puzzle, examples, op_order
        self.oracle, self.max_lines, self.short = oracle, max_lines, short
        # (kind, depth, parent, fields) per step; a `Step` is built at the end
        self.steps: list[tuple[str, int, int, dict[str, Any]]] = []
        self.mapping: dict[str, str] = {}
        self.chosen: dict[str, Operation] = {}
        self.done: list[int] = []
        self.before: dict[int, frozenset[str]] = {}  # example index -> symbols decoded on entry
        self.orders: dict[tuple[int, str], list[str]] = {}  # `_order` per example, setting
        self.stack: list[int] = []  # the choices (step indices) the search stands on
        self.cut: set[int] = set()  # choices shown as one line: nothing fits below them
        self.limit: int | None = None  # while exploring a dead choice: the lines it may log
        self.setting: Setting = Setting("normal")

    def log(self, kind: str, depth: int = 0, **fields: Any) -> int:
        """Record a step under the current choice; its index."""
        if self.limit is not None and len(self.steps) >= self.limit:
            raise _Cut
        if len(self.steps) >= self.max_lines:
            raise _Budget
        parent = self.stack[-1] if self.stack else -1
        self.steps.append((kind, depth, parent, fields))
        return len(self.steps) - 1

    def under(self, index: int, go: Callable[[], bool], shallow: bool = False) -> bool:
        """Run `go` with step `index` as the current choice. A choice no fit extends is
        explored only within `self.short` lines (`shallow`: settings and examples, whose
        operations are listed one by one instead)."""
        self.stack.append(index)
        try:
            if shallow or self.limit is not None:
                return go()
            if self.oracle.find(self.setting, self.chosen, self.mapping) is not None:
                return go()
            return self._dead(index, go)
        finally:
            self.stack.pop()

    def _dead(self, index: int, go: Callable[[], bool]) -> bool:
        saved = (len(self.steps), dict(self.mapping), dict(self.chosen), list(self.done))
        self.limit = len(self.steps) + self.short
        try:
            if go():
                raise RuntimeError("the traced search found a decoding the solver's did not")
        except _Cut:
            del self.steps[saved[0] :]
            self.mapping, self.chosen, self.done = saved[1], saved[2], saved[3]
            self.cut.add(index)
        finally:
            self.limit = None
        return False

    def run(self, settings: tuple[Setting, ...]) -> bool:
        for setting in settings:
            reason = sign_rule(self.puzzle, setting)
            index = self.log("setting", setting=setting, text=reason)
            if reason:
                continue
            self.setting = setting
            if self.under(index, lambda: self.example(0), shallow=True):
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
            return True
        i = self._next()
        lhs, rhs = self.examples[i]
        self.done.append(i)
        self.before[id(lhs)] = frozenset(self.mapping)
        index = self.log("example", depth, lhs=lhs, rhs=rhs)
        if self.under(index, lambda: self.operations(depth, lhs, rhs), shallow=True):
            return True
        self.log("back", depth, lhs=lhs)
        self.done.pop()
        return False

    def operations(self, depth: int, lhs: Expression, rhs: str) -> bool:
        """The operator's operation (fixed, or each candidate in order), then digits."""
        fixed = self.chosen.get(lhs.op)
        if fixed is not None:
            return self.digits(depth, lhs, rhs, fixed, 0)
        for op in self.op_order(self.setting):
            reason, where = self._skip(op, lhs, rhs)
            if reason:
                other = "" if where[0] is lhs else f"{where[0].text} = {where[1]}"
                self.log("skip", depth, lhs=lhs, rhs=rhs, op=op, text=reason, other=other)
                continue
            index = self.log("try", depth, lhs=lhs, op=op)
            self.chosen[lhs.op] = op
            if self.under(index, lambda op=op: self.pinned(depth, lhs, rhs, op)):
                return True
            del self.chosen[lhs.op]
        return False

    def _shown(self, symbol: str) -> list[tuple[Expression, str]]:
        return [(lhs, rhs) for lhs, rhs in self.examples if lhs.op == symbol]

    def _skip(self, op: Operation, lhs: Expression, rhs: str) -> tuple[str, tuple[Expression, str]]:
        """Why `op` cannot be `lhs.op` on some example of that operator, and which one."""
        ordered = [(lhs, rhs)] + [e for e in self._shown(lhs.op) if e[0] is not lhs]
        for other, result in ordered:
            if op.kind == "cat":
                copy = _copies(op, other, self.setting)
                if copy != result:
                    return f"would copy the operand symbols as {copy}", (other, result)
                continue
            sign = result.find(lhs.op)
            if (len(result), sign) not in possible_lengths(op, self.setting):
                with_sign = " with that sign" if sign >= 0 else ""
                return f"never writes {_count(len(result), 'symbol')}{with_sign}", (other, result)
        if op.kind == "add":
            leads = self._hundreds(lhs.op)
            if len(set(leads)) > 1:
                return "sums are under 200, but the 3-digit results start differently", (
                    lhs,
                    rhs,
                )
            if leads and self.mapping.get(leads[0], "1") != "1":
                return f"a 3-digit sum starts with 1, but {leads[0]} is {self.mapping[leads[0]]}", (
                    lhs,
                    rhs,
                )
            owner = {d: s for s, d in self.mapping.items()}.get("1")
            if leads and owner not in (None, leads[0]):
                return f"a 3-digit sum starts with 1, but {owner} is 1", (lhs, rhs)
        return "", (lhs, rhs)

    def _hundreds(self, symbol: str) -> list[str]:
        """The leading symbols of an operator's 3-digit (non-negative) results."""
        return [
            leading_symbol(rhs, self.setting)
            for _, rhs in self._shown(symbol)
            if len(rhs) == 3 and symbol not in rhs
        ]

    def pinned(self, depth: int, lhs: Expression, rhs: str, op: Operation) -> bool:
        """An addition with a 3-digit result fixes its hundreds symbol at 1, then digits."""
        leads = self._hundreds(lhs.op) if op.kind == "add" else []
        if not leads or leads[0] in self.mapping:
            return self.digits(depth, lhs, rhs, op, 0)
        symbol = leads[0]
        self.mapping[symbol] = "1"
        index = self.log(
            "pin",
            depth,
            lhs=lhs,
            op=op,
            assigned=((symbol, "1"),),
            value=_SUM_BOUND[op.offset],
            text=f"{_label(op)} is at most {_SUM_BOUND[op.offset]}",
        )
        if self.under(index, lambda: self.digits(depth, lhs, rhs, op, 0)):
            return True
        del self.mapping[symbol]
        return False

    def _order(self, lhs: Expression) -> list[str]:
        key = (id(lhs), self.setting.name)
        if key not in self.orders:  # the hot path: computed once per example and setting
            a, b = read_operands(lhs.left, lhs.right, self.setting)  # symbol strings as read
            self.orders[key] = list(dict.fromkeys([a[1], b[1], a[0], b[0]]))
        return self.orders[key]

    def _tens(self, lhs: Expression) -> set[str]:
        a, b = read_operands(lhs.left, lhs.right, self.setting)
        return {a[0], b[0]}

    def digits(self, depth: int, lhs: Expression, rhs: str, op: Operation, k: int) -> bool:
        order = self._order(lhs)
        if k == 0 and (self.zero_fail(depth, lhs) or self.range_fail(depth, lhs, rhs, op)):
            return False
        while k < len(order) and order[k] in self.mapping:
            k += 1
        if k == len(order):
            return self.check(depth, lhs, rhs, op)
        symbol = order[k]
        first = "1" if symbol in self._tens(lhs) else "0"  # operands run 10..99
        choices = "0123456789"[int(first) :]
        if self._solvable(lhs, rhs, op, symbol):
            index, choices = self.solved_units(depth, lhs, rhs, op, symbol, choices)
            return self.under(index, lambda: self.assign(depth, lhs, rhs, op, k, choices))
        bound = self._ordered(lhs, rhs, op, symbol)
        if bound is not None:
            index, choices = self.ordered(depth, lhs, rhs, op, k, choices, bound)
            return self.under(index, lambda: self.assign(depth, lhs, rhs, op, k, choices))
        return self.assign(depth, lhs, rhs, op, k, choices)

    def _ordered(self, lhs: Expression, rhs: str, op: Operation, symbol: str) -> str | None:
        """For a - b and b - a, whose sign says which operand is larger: when `symbol` is
        one operand's tens and the other's is decoded, '<=' or '>=' that tens digit."""
        if op.name not in ("sub", "rsub"):
            return None
        a, b = read_operands(lhs.left, lhs.right, self.setting)
        other = {a[0]: b[0], b[0]: a[0]}.get(symbol) if a[0] != b[0] else None
        if other is None or other not in self.mapping:
            return None
        # the larger operand: a - b >= 0 and b - a < 0 mean a >= b
        a_larger = (op.name == "sub") != (lhs.op in rhs)
        return ">=" if (symbol == a[0]) == a_larger else "<="

    def ordered(
        self,
        depth: int,
        lhs: Expression,
        rhs: str,
        op: Operation,
        k: int,
        choices: str,
        bound: str,
    ) -> tuple[int, str]:
        """The tens digits the result's sign allows, logged as one line: (index, digits)."""
        order = self._order(lhs)
        symbol = order[k]
        a, b = read_operands(lhs.left, lhs.right, self.setting)
        other = int(self.mapping[b[0] if symbol == a[0] else a[0]])
        used = set(self.mapping.values())
        fits = "".join(
            d
            for d in choices
            if d not in used and (int(d) >= other if bound == ">=" else int(d) <= other)
        )
        before = self.before[id(lhs)]
        index = self.log(
            "order",
            depth,
            lhs=lhs,
            rhs=rhs,
            op=op,
            assigned=tuple((s, self.mapping[s]) for s in order[:k] if s not in before),
            a=str(other),
            b=symbol,
            written=fits,
            negative=lhs.op in rhs,
            text=bound,
        )
        return index, fits

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

    def zero_fail(self, depth: int, lhs: Expression) -> bool:
        """An operand's tens symbol already decoded as 0: operands run 10..99 (logged)."""
        zero = [s for s in self._order(lhs) if s in self._tens(lhs) and self.mapping.get(s) == "0"]
        if zero:
            self.log("zero", depth, lhs=lhs, assigned=((zero[0], "0"),))
        return bool(zero)

    def range_fail(self, depth: int, lhs: Expression, rhs: str, op: Operation) -> bool:
        """Both tens decoded before the units (+ and * families): can the result have the
        example's length at all? Checked once, on entering the example (logged)."""
        a, b = read_operands(lhs.left, lhs.right, self.setting)
        if op.kind not in ("add", "mul") or a[0] not in self.mapping or b[0] not in self.mapping:
            return False
        if a[1] in self.mapping and b[1] in self.mapping:
            return False  # nothing to assign: the full check decides at once
        x, y = (f"{self.mapping[t]}0" for t in (a[0], b[0]))
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
                text=f"never {_count(len(rhs), 'digit')}",
            )
        return not ok

    def _solvable(self, lhs: Expression, rhs: str, op: Operation, symbol: str) -> bool:
        """Is `symbol` b's units, with a's units and the result's units already decoded?"""
        a, b = read_operands(lhs.left, lhs.right, self.setting)
        negative = lhs.op in rhs
        at = units_symbol(rhs, self.setting, negative)
        return (
            units_options(op, 0, 0, negative) is not None
            and symbol == b[1] != a[1]
            and a[1] in self.mapping
            and (at in self.mapping or at == symbol)  # never a tens symbol still open
        )

    def solved_units(
        self, depth: int, lhs: Expression, rhs: str, op: Operation, symbol: str, choices: str
    ) -> tuple[int, str]:
        """b's units digits that give the known result units, logged as one line: (its
        index, the digits)."""
        a, _ = read_operands(lhs.left, lhs.right, self.setting)
        negative = lhs.op in rhs
        at = units_symbol(rhs, self.setting, negative)
        x = int(self.mapping[a[1]])
        target = symbol if at == symbol else self.mapping[at]  # b's units may be the result's
        used = set(self.mapping.values())
        fits = "".join(
            d
            for d in choices
            if d not in used
            and int(d if at == symbol else target) in (units_options(op, x, int(d), negative) or ())
        )
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
            negative=negative,
        )
        return index, fits

    def units(
        self, depth: int, lhs: Expression, rhs: str, op: Operation, symbol: str
    ) -> int | None:
        """The units check once both units are known: the index of its logged step, or
        None when there is none to make."""
        a, b = read_operands(lhs.left, lhs.right, self.setting)
        negative = lhs.op in rhs
        if units_options(op, 0, 0, negative) is None:
            return None
        if symbol not in (a[1], b[1]) or a[1] not in self.mapping or b[1] not in self.mapping:
            return None
        if self._solvable(lhs, rhs, op, symbol):
            return None  # `solved_units` already chose b's units to fit
        x, y = int(self.mapping[a[1]]), int(self.mapping[b[1]])
        options = units_options(op, x, y, negative) or ()
        at = units_symbol(rhs, self.setting, negative)
        owners = {d: s for s, d in self.mapping.items()}
        if not options:  # only an unsigned -|a-b| (0) has none: a and b end alike
            ok, why = False, f"{_label(op)} without a sign is 0, so a and b end alike"
        elif at in self.mapping:
            ok = int(self.mapping[at]) in options
            why = "" if ok else f"{at} is {self.mapping[at]}"
        elif at in self._order(lhs):
            ok, why = True, ""  # an operand symbol still open: the full check decides
        else:
            taken = [f"{v} is {owners[str(v)]}" for v in options if str(v) in owners]
            ok = len(taken) < len(options)
            why = "" if ok else f"{at} would be {_options_text(options)}, but " + ", ".join(taken)
        return self.log(
            "units",
            depth,
            lhs=lhs,
            rhs=rhs,
            op=op,
            assigned=self._new(lhs, symbol),
            a=str(x),
            b=str(y),
            value=_options_text(options),
            negative=negative,
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
            return f"{_count(len(written), 'digit')}, not {len(target)}"
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
    fits: Sequence[Fit],
    short: int = SHORT_LINES[-1],
    max_lines: int = _MAX_LINES,
) -> Derivation | None:
    """The first decoding the search finds, with its log; None past `max_lines` lines or
    when nothing fits. `fits` is the solver's complete fit list (`find_fits`), which tells
    dead branches apart; a dead choice is shown in full within `short` lines; `joins`
    are the operators that only join symbols (not searched)."""
    examples = [(lhs, rhs) for lhs, rhs in puzzle.examples if lhs.op not in joins]
    oracle = _Oracle(fits)
    search = _Search(puzzle, examples, op_order, oracle, max_lines, short)
    try:
        found = search.run(settings)
    except _Budget:
        return None
    if not found:
        return None
    fit = oracle.find(search.setting, search.chosen, search.mapping)
    if fit is None:
        raise RuntimeError("the traced decoding is not among the solver's fits")
    raw = search.steps
    return Derivation(
        tuple(Step(kind, depth, parent=parent, **fields) for kind, depth, parent, fields in raw),
        tuple(i in search.cut for i in range(len(raw))),
        search.setting,
        tuple(search.chosen.items()),
        tuple(joins.items()),
        tuple(sorted(search.mapping.items(), key=lambda item: item[1])),
        fit,
    )


# ---------------------------------------------------------------------------- render


def _taken(assigned: tuple[tuple[str, str], ...]) -> str:
    return " ".join(f"{s}={d}" for s, d in assigned) or "all known"


def _line(step: Step) -> str:
    pad = "  " * step.depth
    if step.kind == "setting":
        words = _SETTING_WORDS[step.setting.name]
        return f"Setting {words}." + (f" Ruled out: {step.text}." if step.text else "")
    if step.kind == "example":
        return f"{pad}Example: {step.lhs.text} = {step.rhs}"
    if step.kind == "try":
        return f"{pad} '{step.lhs.op}' as {_label(step.op)}: try"
    if step.kind == "pin":
        ((symbol, digit),) = step.assigned
        return f"{pad} {step.text}, so a 3-digit result starts with 1: {symbol}={digit}"
    if step.kind == "zero":
        ((symbol, _),) = step.assigned
        return f"{pad} no, tens {symbol} is 0 (operands run 10..99): go back"
    if step.kind == "back":
        return f"{pad} no digits fit {step.lhs.text}: go back"
    if step.kind == "units":
        if not step.value:
            return f"{pad} {_taken(step.assigned)}: no, {step.text}"
        verdict = "ok" if step.ok else f"no, {step.text}"
        work = _units_text(step.op, int(step.a), int(step.b), step.negative)
        return f"{pad} {_taken(step.assigned)}: units {work} ends in {step.value}, {verdict}"
    if step.kind == "range":
        return f"{pad} a={step.a}, b={step.b}: {_label(step.op)} from {step.value}; no, {step.text}"
    if step.kind == "order":
        fits = ", ".join(step.written) if step.written else "none free"
        sign = "< 0 (signed)" if step.negative else ">= 0 (no sign)"
        larger = "b" if (step.op.name == "sub") == step.negative else "a"
        return (
            f"{pad} {_taken(step.assigned)}: {_label(step.op)} {sign}, so {larger} is the "
            f"larger: tens {step.b} {step.text} {step.a}: {step.b} = {fits}"
        )
    if step.kind == "solve":
        fits = ", ".join(step.written) if step.written else "none free"
        work = _units_pattern(step.op, step.a, step.b, step.negative)
        return f"{pad} {_taken(step.assigned)}: units {work} must end in {step.value}: {step.b} = {fits}"
    # check
    work = f"{step.op.instance(step.a, step.b)} = {step.value}"
    verdict = ("ok" + (f", {step.text}" if step.text else "")) if step.ok else f"no, {step.text}"
    return f"{pad} {_taken(step.assigned)}: {work}, written {step.written}; {verdict}"


def _lines(derivation: Derivation) -> list[str]:
    """One line per step; consecutive skips of one operator share a line."""
    lines: list[str] = []
    pending: list[Step] = []

    def flush() -> None:
        if pending:
            first = pending[0]
            why = "; ".join(
                f"{_label(s.op)}: {s.text}" + (f" (in {s.other})" if s.other else "")
                for s in pending
            )
            lines.append(f"{'  ' * first.depth} '{first.lhs.op}' is not {why}")
            pending.clear()

    for step, later in zip(derivation.steps, derivation.failed_later):
        if step.kind == "skip":
            pending.append(step)
            continue
        flush()
        lines.append(_line(step) + (" -> no fit further on" if later else ""))
    flush()
    return lines


def render_derivation(
    derivation: Derivation,
    puzzle: EquationPrompt,
    answer: str,
    query_op: Operation,
    assumed: Sequence[tuple[str, str]] = (),
    guesses: Sequence[str] = (),
) -> str:
    """The search as found, the decoding, the query computed and encoded, boxed.
    `assumed` are digits for query symbols no example shows; `guesses` the lines saying
    what the examples leave to the prior."""
    lines = [
        (
            "Each symbol is one digit, each operator one operation; operands run 10..99. "
            "Search: settings by frequency; examples with the most decoded symbols first; "
            "a new operator tries operations by frequency, each checked on all its examples; "
            "operand symbols take digits upward (tens from 1) in the order a units, b units, "
            "a tens, b tens; the first assignment that fits every example wins. "
            "'-> no fit further on' marks a choice whose every continuation fails."
        ),
    ]
    for symbol, order in derivation.joins:
        first, second = order.split("+")
        lines.append(
            f"'{symbol}' only writes the {first} operand's symbols then the {second}'s: "
            "a concatenation, no digits needed."
        )
    lines.extend(_lines(derivation))
    lines.append(
        "Every example fits. Digits: "
        + ", ".join(f"{d}={s}" for s, d in derivation.mapping)
        + "; operations: "
        + ", ".join(f"'{s}' = {_label(op)}" for s, op in derivation.ops)
        + "."
    )
    lines.extend(guesses)
    q = puzzle.query
    digits = dict(derivation.mapping) | dict(assumed)
    left = "".join(digits[s] for s in q.left)
    right = "".join(digits[s] for s in q.right)
    a, b = read_operands(left, right, derivation.setting)
    value = query_op(a, b)
    written = apply(query_op, left, right, q.op, derivation.setting)
    inverse = {d: s for s, d in digits.items()} | {q.op: q.op}
    encoded = " ".join(f"{'minus' if ch == q.op else ch}->{inverse[ch]}" for ch in written)
    lines.append(
        f"The query {q.text} reads {left}{q.op}{right}: a={a}, b={b}, "
        f"{query_op.instance(a, b)} = {value}, written {written}."
    )
    lines.append(f"Encode: {encoded}. The answer is {answer}")
    return "\n".join(lines) + "\n" + boxed(answer)
