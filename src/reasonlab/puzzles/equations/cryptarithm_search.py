"""Joint search of a cryptarithm's digit<->symbol mapping and its operations.

Every example `LLoRR = rhs` is one table constraint: under a row `Setting` and an
`Operation` for `o`, the 4 operand symbols and the rhs symbols must spell, under one
injective symbol->digit mapping, a pair of operands (00..99 each) and the rhs the
operation writes for them. Each (operation, setting) has only 10,000 operand pairs, so
all their rhs strings are precomputed once and indexed by *shape*: the string's
pattern of repeated characters (`12 ~21` has shape (0,1,2,3,1,0,3)). An example's
candidates are the strings of its own shape; a depth-first search joins examples that
share symbols (hash lookups on the digits already fixed), so each step only sees the
operand pairs that agree with everything decided before.

The search returns every `Fit` (setting, operation per operator, mapping) that explains
all examples, up to a node budget; choosing among fits is the caller's business.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from functools import cache, lru_cache

from reasonlab.puzzles.equations.ops import (
    OPERATIONS,
    SETTINGS,
    Operation,
    Setting,
    apply,
    read_operands,
)

__all__ = [
    "DEFAULT_LIMITS",
    "SIGN",
    "Fit",
    "SearchLimits",
    "SearchResult",
    "encode",
    "reads_two_digits",
    "search",
    "shape",
    "written_operands",
]

SIGN = "~"  # stands for the row's operator symbol inside an rhs (never a digit symbol)
_GAP = " "  # separates operands from rhs in an indexed string (never a digit symbol)


@dataclass(frozen=True)
class SearchLimits:
    """When to stop: `nodes` search steps, `fits` complete fits, or `seconds` of wall time.

    The node and fit caps bind on dev (the slowest row takes under a second, about
    20 us a node), so results do not depend on machine load; `seconds` is only a
    safety net against a pathological row.
    """

    nodes: int = 60_000
    fits: int = 4_000
    seconds: float = 5.0
    distinct_ops: bool = False  # True: different operator symbols must mean different operations
    # (False by default: ~1% of dev rows give two operators the same one, e.g. two concatenations)


DEFAULT_LIMITS = SearchLimits()


@dataclass(frozen=True)
class Fit:
    """One explanation of every example: a setting, an operation per operator, a mapping."""

    setting: Setting
    ops: tuple[tuple[str, Operation], ...]  # (operator symbol, operation), example order
    mapping: tuple[tuple[str, str], ...]  # (symbol, digit), sorted by digit

    def op_for(self, symbol: str) -> Operation | None:
        return dict(self.ops).get(symbol)


@dataclass(frozen=True)
class SearchResult:
    fits: tuple[Fit, ...]
    nodes: int
    complete: bool  # False when a limit stopped the search before every branch was seen


def shape(text: str) -> tuple[int, ...]:
    """Position of each character's first occurrence, then where SIGN is (-1: nowhere).

    The SIGN position makes a sign match only a sign, never a digit that happens to be new.
    """
    return (*map(text.index, text), text.find(SIGN))


@cache
def written_operands(setting: Setting) -> tuple[tuple[str, str], ...]:
    """Every written (left, right) operand pair whose operands as read run 10..99.

    The generator draws the operands the operation sees from 10..99: of the 5,400
    operands of dev's right-solved numeric rows, none reads with a leading 0 (the
    written string may hold one: reversed `05` reads 50).
    """
    every = [f"{n:02d}" for n in range(100)]
    return tuple((x, y) for x in every for y in every if reads_two_digits(x, y, setting))


def reads_two_digits(left: str, right: str, setting: Setting) -> bool:
    """Whether both operands as read (`read_operands`) run 10..99: no leading 0."""
    a, b = read_operands(left, right, setting)
    return a[0] != "0" and b[0] != "0"


@cache
def _index(op: Operation, setting: Setting) -> dict[tuple[int, ...], tuple[str, ...]]:
    """Every `LLRR rhs` digit string that (op, setting) writes, grouped by shape."""
    groups: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for left, right in written_operands(setting):
        text = left + right + _GAP + apply(op, left, right, SIGN, setting)
        groups[shape(text)].append(text)
    return {key: tuple(texts) for key, texts in groups.items()}


@lru_cache(maxsize=200_000)
def _keyed(
    op: Operation, setting: Setting, key: tuple[int, ...], known: tuple[int, ...]
) -> dict[str, tuple[str, ...]]:
    """The strings of one shape keyed by their characters at the `known` positions."""
    groups: dict[str, list[str]] = defaultdict(list)
    for text in _index(op, setting).get(key, ()):
        groups["".join(text[i] for i in known)].append(text)
    return {k: tuple(v) for k, v in groups.items()}


def _bucket_size(op: Operation, setting: Setting, key: tuple[int, ...]) -> int:
    return len(_index(op, setting).get(key, ()))


@dataclass(frozen=True)
class _Step:
    """One example prepared for the search: its symbols, shape and already-fixed positions."""

    operator: str
    text: str  # operand symbols + GAP + rhs with the operator symbol replaced by SIGN
    key: tuple[int, ...]
    known: tuple[int, ...]  # positions whose symbol an earlier step has fixed


def _example_text(operands: str, operator: str, rhs: str) -> str:
    return operands + _GAP + rhs.replace(operator, SIGN)


def _order(
    examples: list[tuple[str, str]], setting: Setting, ops: tuple[Operation, ...]
) -> list[_Step]:
    """Most constraining first: share the most fixed symbols, then fewest candidates."""
    pending = [(op_sym, text, shape(text)) for op_sym, text in examples]
    sizes = {text: sum(_bucket_size(op, setting, key) for op in ops) for _, text, key in pending}
    steps, fixed = [], set()
    while pending:
        best = max(pending, key=lambda item: (len(set(item[1]) & fixed), -sizes[item[1]]))
        pending.remove(best)
        op_sym, text, key = best
        known = tuple(i for i, ch in enumerate(text) if ch not in (SIGN, _GAP) and ch in fixed)
        steps.append(_Step(op_sym, text, key, known))
        fixed |= {ch for ch in text if ch not in (SIGN, _GAP)}
    return steps


class _Walk:
    """One depth-first search over the steps of one setting; fits go into a shared list."""

    def __init__(
        self,
        setting: Setting,
        steps: list[_Step],
        operations: tuple[Operation, ...],
        limits: SearchLimits,
        fits: list[Fit],
        deadline: float,
    ) -> None:
        self.setting, self.steps, self.operations = setting, steps, operations
        self.limits, self.fits, self.deadline = limits, fits, deadline
        self.mapping: dict[str, str] = {}  # symbol -> digit fixed so far
        self.chosen: dict[str, Operation] = {}  # operator symbol -> operation fixed so far
        self.nodes = 0
        self.stopped = False

    def run(self, depth: int = 0) -> None:
        self.nodes += 1
        limits = self.limits
        if (
            self.nodes >= limits.nodes
            or len(self.fits) >= limits.fits
            or (self.nodes % 512 == 0 and time.monotonic() > self.deadline)
        ):
            self.stopped = True
        if self.stopped:
            return
        if depth == len(self.steps):
            ops = tuple((s.operator, self.chosen[s.operator]) for s in self.steps)
            pairs = tuple(sorted(self.mapping.items(), key=lambda item: item[1]))
            self.fits.append(Fit(self.setting, tuple(dict(ops).items()), pairs))
            return
        step = self.steps[depth]
        probe = "".join(self.mapping[step.text[i]] for i in step.known)
        fixed_op = self.chosen.get(step.operator)
        taken = set(self.chosen.values()) if limits.distinct_ops else set()
        for op in (fixed_op,) if fixed_op else self.operations:
            if fixed_op is None and op in taken:
                continue
            for digits in _keyed(op, self.setting, step.key, step.known).get(probe, ()):
                fresh = _extend(self.mapping, step.text, digits)
                if fresh is None:
                    continue
                self.chosen[step.operator] = op
                self.run(depth + 1)
                if fixed_op is None:
                    del self.chosen[step.operator]
                for ch in fresh:
                    del self.mapping[ch]
                if self.stopped:
                    return


def search(
    examples: list[tuple[str, str, str]],
    limits: SearchLimits = DEFAULT_LIMITS,
    operations: tuple[Operation, ...] = OPERATIONS,
    settings: tuple[Setting, ...] = SETTINGS,
) -> SearchResult:
    """All fits of `examples` (operand symbols `LLRR`, operator symbol, rhs symbols)."""
    prepared = [
        (op_sym, _example_text(operands, op_sym, rhs)) for operands, op_sym, rhs in examples
    ]
    fits: list[Fit] = []
    nodes = 0
    deadline = time.monotonic() + limits.seconds
    for setting in settings:
        walk = _Walk(
            setting, _order(prepared, setting, operations), operations, limits, fits, deadline
        )
        walk.run()
        nodes += walk.nodes
        if walk.stopped:
            return SearchResult(tuple(fits), nodes, complete=False)
    return SearchResult(tuple(fits), nodes, complete=True)


def _extend(mapping: dict[str, str], text: str, digits: str) -> list[str] | None:
    """Add the symbols `text` newly fixes to `mapping` (in place); None if a digit is taken.

    The shape match already makes new symbols distinct from each other and agree with the
    known positions, so only collisions with digits of symbols outside `text` remain.
    """
    used = set(mapping.values())
    fresh: list[str] = []
    for ch, digit in zip(text, digits):
        if ch in (SIGN, _GAP) or ch in mapping:
            continue
        if digit in used:
            for done in fresh:
                del mapping[done]
            return None
        mapping[ch] = digit
        used.add(digit)
        fresh.append(ch)
    return fresh


def encode(rhs_digits: str, digit_to_symbol: dict[str, str], operator: str, unknown: str) -> str:
    """Write an rhs digit string in symbols; `unknown` stands for a digit with no symbol."""
    return "".join(
        operator if ch == SIGN else digit_to_symbol.get(ch, unknown) for ch in rhs_digits
    )
