"""The bit-manipulation rule space as data, and bit-parallel search over it.

What the dev split shows (scripts/fit_bit_prior.py reproduces it): every output byte is
`y = G(t1(x), ..., tn(x))` applied bitwise, where each copy `ti` is a rotation left
(`rol`), a shift left (`shl`, zeros enter at the right) or a shift right (`shr`, zeros
enter at the left) by 1..7, n is 1..3, and G is an n-input boolean function given by
its truth table. A handful of (copy kinds, G) *families* explain every dev row: shl XOR
shr, rol with shl or shr under AND/OR/XOR, and four 3-input functions of one rol, one
shl and one shr (majority, choice and two others). Each family's frequency is a prior.

Truth tables are ints: bit k is G's output when the operands' bits, first operand as the
most significant bit, spell k (so majority over 3 inputs is 0b11101000, written
"00010111" from key 0 upwards). Evaluation is bit-parallel: a copy is a 256-entry table,
and one numpy comparison checks every candidate against every bit of every example.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

import numpy as np

__all__ = [
    "KINDS",
    "TRANSFORMS",
    "Expr",
    "Family",
    "Prior",
    "Rule",
    "Transform",
    "consistent_rules",
    "expression",
    "load_prior",
    "near_misses",
    "search_any",
]

Kind = Literal["rol", "shl", "shr"]
KINDS: tuple[Kind, ...] = ("rol", "shl", "shr")  # also the canonical operand order
AMOUNTS = range(1, 8)
MAX_ARITY = 3
PRIOR_RESOURCE = "bit_prior.json"


@dataclass(frozen=True, order=True)
class Transform:
    """One shifted or rotated copy of the input byte."""

    kind: Kind
    amount: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"transform kind must be one of {KINDS}, got {self.kind!r}")
        if self.amount not in AMOUNTS:
            raise ValueError(f"transform amount must be 1..7, got {self.amount}")

    @property
    def name(self) -> str:
        return f"{self.kind}{self.amount}"

    def apply(self, x: int) -> int:
        k = self.amount
        if self.kind == "rol":
            return ((x << k) | (x >> (8 - k))) & 0xFF
        if self.kind == "shl":
            return (x << k) & 0xFF
        return x >> k


TRANSFORMS: tuple[Transform, ...] = tuple(Transform(kind, k) for kind in KINDS for k in AMOUNTS)
_INDEX = {t: i for i, t in enumerate(TRANSFORMS)}
# _BITS[t, x, b]: bit b (0 = least significant) of TRANSFORMS[t] applied to byte x.
_VALUES = np.array([[t.apply(x) for x in range(256)] for t in TRANSFORMS], dtype=np.int64)
_BITS = ((_VALUES[:, :, None] >> np.arange(8)) & 1).astype(np.uint8)


def _table_text(table: int, arity: int) -> str:
    return "".join(str((table >> k) & 1) for k in range(1 << arity))


def _depends_on_all(table: int, arity: int) -> bool:
    """False when G ignores an operand: that rule belongs to a smaller family."""
    for i in range(arity):
        bit = 1 << (arity - 1 - i)
        if all(
            (table >> k) & 1 == (table >> (k | bit)) & 1 for k in range(1 << arity) if not k & bit
        ):
            return False
    return True


# Non-degenerate truth tables per arity, as an array for vectorised completion.
_NONDEGENERATE = {
    a: np.array([t for t in range(1 << (1 << a)) if _depends_on_all(t, a)], dtype=np.int64)
    for a in range(1, MAX_ARITY + 1)
}


@dataclass(frozen=True, order=True)
class Family:
    """Copy kinds (canonical order) and the truth table G combining them."""

    kinds: tuple[Kind, ...]
    table: int

    def __post_init__(self) -> None:
        if not 1 <= len(self.kinds) <= MAX_ARITY or list(self.kinds) != sorted(
            self.kinds, key=KINDS.index
        ):
            raise ValueError(
                f"family kinds must be 1..3 of {KINDS} in that order, got {self.kinds}"
            )
        if not 0 <= self.table < 1 << (1 << len(self.kinds)):
            raise ValueError(f"truth table {self.table} out of range for {len(self.kinds)} inputs")

    @property
    def arity(self) -> int:
        return len(self.kinds)

    @property
    def table_text(self) -> str:
        return _table_text(self.table, self.arity)

    @property
    def label(self) -> str:
        return f"{'+'.join(self.kinds)}:{self.table_text}"

    @property
    def size(self) -> int:
        """Members: copies of one kind are distinct and sorted, so C(7, count) per kind."""
        return math.prod(math.comb(len(AMOUNTS), n) for n in Counter(self.kinds).values())

    def members(self) -> np.ndarray:
        """All operand index tuples of this family, shape (size, arity)."""
        return _members(self.kinds)


@cache
def _members(kinds: tuple[Kind, ...]) -> np.ndarray:
    groups = [
        list(itertools.combinations([_INDEX[Transform(kind, k)] for k in AMOUNTS], n))
        for kind, n in Counter(kinds).items()  # Counter keeps first-seen order: canonical
    ]
    rows = [sum(parts, ()) for parts in itertools.product(*groups)]
    return np.array(rows, dtype=np.int64).reshape(len(rows), len(kinds))


@dataclass(frozen=True, order=True)
class Rule:
    """A fully specified rule: the copies of x and the truth table combining them."""

    operands: tuple[Transform, ...]
    table: int

    def __post_init__(self) -> None:
        if list(self.operands) != sorted(
            self.operands, key=lambda t: (KINDS.index(t.kind), t.amount)
        ):
            raise ValueError(
                f"operands must be in canonical order, got {[t.name for t in self.operands]}"
            )
        Family(tuple(t.kind for t in self.operands), self.table)  # validates arity and table

    @property
    def family(self) -> Family:
        return Family(tuple(t.kind for t in self.operands), self.table)

    @property
    def arity(self) -> int:
        return len(self.operands)

    def apply(self, x: int) -> int:
        copies = [t.apply(x) for t in self.operands]
        out = 0
        for b in range(8):
            key = 0
            for c in copies:
                key = key * 2 + ((c >> b) & 1)
            out |= ((self.table >> key) & 1) << b
        return out

    def signature(self) -> bytes:
        """The rule's outputs on all 256 inputs: equal signatures = equivalent rules."""
        keys = np.zeros((256, 8), dtype=np.int64)
        for t in self.operands:
            keys = keys * 2 + _BITS[_INDEX[t]]
        bits = (self.table >> keys) & 1
        return (bits << np.arange(8)).sum(axis=1).astype(np.uint8).tobytes()

    @property
    def text(self) -> str:
        return expression(self.table, self.arity).text([t.name for t in self.operands])


# ---- expressions: a readable formula for a truth table ----

_BINARY = {"AND": lambda a, b: a & b, "OR": lambda a, b: a | b, "XOR": lambda a, b: a ^ b}


@dataclass(frozen=True)
class Expr:
    """A formula tree: op is VAR, NOT, AND, OR, XOR, MAJ or CHOICE (a ? b : c)."""

    op: str
    args: tuple[Expr, ...] = ()
    var: int = 0

    def eval(self, values: Sequence[int]) -> int:
        """Bitwise value over bytes (`values[i]` is operand i), masked to 8 bits."""
        if self.op == "VAR":
            return values[self.var]
        vals = [a.eval(values) for a in self.args]
        if self.op == "NOT":
            return ~vals[0] & 0xFF
        if self.op in _BINARY:
            return _BINARY[self.op](vals[0], vals[1])
        a, b, c = vals
        if self.op == "MAJ":
            return (a & b) | (a & c) | (b & c)
        return (a & b) | (~a & 0xFF & c)  # CHOICE

    def text(self, names: Sequence[str], labels: Mapping[Expr, str] | None = None) -> str:
        """The formula over operand `names`; sub-formulas in `labels` are written as their
        label (a trace that computes them step by step names each step once)."""
        if self.op == "VAR":
            return names[self.var]
        labels = labels or {}
        atoms = [a in labels or a.op in ("VAR", "NOT", "MAJ", "CHOICE") for a in self.args]
        parts = [labels.get(a) or a.text(names, labels) for a in self.args]
        if self.op == "NOT":
            bare = self.args[0].op == "VAR" or self.args[0] in labels
            return f"NOT {parts[0]}" if bare else f"NOT({parts[0]})"
        if self.op in _BINARY:
            wrapped = [p if atom else f"({p})" for atom, p in zip(atoms, parts)]
            return f" {self.op} ".join(wrapped)
        return f"{self.op}({', '.join(parts)})"

    def steps(self) -> list[Expr]:
        """Sub-formulas that are not plain operands, innermost first (for rendering)."""
        out: list[Expr] = []
        for a in self.args:
            out += [s for s in a.steps() if s not in out]
        if self.op != "VAR" and self not in out:
            out.append(self)
        return out


@cache
def _shortest_expressions(arity: int) -> dict[int, Expr]:
    """Shortest formula per truth table: cost counts operators; literals (x, NOT x) cost 0.

    MAJ and CHOICE take plain operands only (the generators' named three-input
    functions); binary operators combine any two formulas found so far.
    """
    best: dict[int, Expr] = {}
    by_cost: list[list[tuple[int, Expr]]] = [[]]
    for i in range(arity):
        table = sum(1 << k for k in range(1 << arity) if (k >> (arity - 1 - i)) & 1)
        best[table] = Expr("VAR", var=i)
        by_cost[0].append((table, best[table]))
    variables = list(by_cost[0])
    mask = (1 << (1 << arity)) - 1
    for table, var in variables:  # a negated operand is a literal, free like the operand
        best[~table & mask] = Expr("NOT", (var,))
        by_cost[0].append((~table & mask, best[~table & mask]))
    for cost in range(1, 6):
        found: list[tuple[int, Expr]] = []

        def add(table: int, expr: Expr, found: list[tuple[int, Expr]] = found) -> None:
            if table not in best:
                best[table] = expr
                found.append((table, expr))

        for left_cost in range(cost):
            for (ta, ea), (tb, eb) in itertools.product(
                by_cost[left_cost], by_cost[cost - 1 - left_cost]
            ):
                for name, fn in _BINARY.items():
                    add(fn(ta, tb) & mask, Expr(name, (ea, eb)))
        for t, e in by_cost[cost - 1]:
            add(~t & mask, Expr("NOT", (e,)))
        if cost == 1 and arity == 3:
            for (ta, ea), (tb, eb), (tc, ec) in itertools.permutations(variables, 3):
                add((ta & tb) | (ta & tc) | (tb & tc), Expr("MAJ", (ea, eb, ec)))
                add((ta & tb) | (~ta & mask & tc), Expr("CHOICE", (ea, eb, ec)))
        by_cost.append(found)
        if len(best) == 1 << (1 << arity):
            break
    return best


def expression(table: int, arity: int) -> Expr:
    """A shortest formula for `table` over operands 0..arity-1."""
    found = _shortest_expressions(arity).get(table)
    if found is None:  # every 1..3-input function has a formula within 5 operators
        raise ValueError(f"no formula found for truth table {_table_text(table, arity)}")
    return found


# ---- the prior over families ----


@dataclass(frozen=True)
class Prior:
    """Family -> weight (expected dev-row counts from the fit); a rule gets w(F)/|F|."""

    weights: dict[Family, float]

    def family_probability(self, family: Family) -> float:
        total = sum(self.weights.values())
        return self.weights.get(family, 0.0) / total if total else 0.0

    def rule_probability(self, family: Family) -> float:
        """Generative probability of one member: pick the family, then copies uniformly."""
        return self.family_probability(family) / family.size

    def to_json(self, source: str, rows: int) -> str:
        """One family per line, heaviest first, so a refit diffs readably."""
        families = [
            json.dumps({"kinds": list(f.kinds), "table": f.table_text, "weight": round(w, 3)})
            for f, w in sorted(self.weights.items(), key=lambda kv: -kv[1])
        ]
        head = json.dumps({"source": source, "rows": rows, "fitted_by": "scripts/fit_bit_prior.py"})
        return head[:-1] + ', "families": [\n  ' + ",\n  ".join(families) + "\n]}\n"

    @classmethod
    def from_json(cls, text: str) -> Prior:
        data = json.loads(text)
        weights = {}
        for number, item in enumerate(data["families"]):
            kinds, table = tuple(item["kinds"]), item["table"]
            if len(table) != 1 << len(kinds) or set(table) - {"0", "1"}:
                raise ValueError(
                    f"bit prior family {number}: table {table!r} does not fit kinds {kinds}"
                )
            weights[Family(kinds, int(table[::-1], 2))] = float(item["weight"])
        return cls(weights)


@cache
def load_prior() -> Prior:
    """The prior shipped with the package (fitted by scripts/fit_bit_prior.py)."""
    text = resources.files("reasonlab.puzzles").joinpath("data", PRIOR_RESOURCE).read_text()
    return Prior.from_json(text)


# ---- search ----


def _example_bits(examples: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Copies' bits per example, shape (21, E*8), and the outputs' bits, shape (E*8,)."""
    xs = np.array([x for x, _ in examples], dtype=np.int64)
    ys = np.array([y for _, y in examples], dtype=np.int64)
    copies = _BITS[:, xs, :].reshape(len(TRANSFORMS), -1)
    outputs = ((ys[:, None] >> np.arange(8)) & 1).reshape(-1).astype(np.uint8)
    return copies, outputs


def _keys(copies: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Truth-table index per member and observed bit, shape (members, E*8)."""
    keys = np.zeros((members.shape[0], copies.shape[1]), dtype=np.uint8)
    for column in range(members.shape[1]):
        keys = keys * 2 + copies[members[:, column]]
    return keys


def _rules(members: np.ndarray, tables: np.ndarray) -> list[Rule]:
    return [Rule(tuple(TRANSFORMS[i] for i in row), int(t)) for row, t in zip(members, tables)]


def _family_matches(
    examples: Sequence[tuple[int, int]], families: Sequence[Family]
) -> Iterator[tuple[Family, np.ndarray, np.ndarray]]:
    """Per family: its members and `matches[m, e]`, whether member m reproduces example e."""
    copies, outputs = _example_bits(examples)
    keys_by_kinds: dict[tuple[Kind, ...], np.ndarray] = {}  # families sharing copy kinds share keys
    for family in families:
        members = family.members()
        if family.kinds not in keys_by_kinds:
            keys_by_kinds[family.kinds] = _keys(copies, members)
        predicted = (family.table >> keys_by_kinds[family.kinds]) & 1
        hits = (predicted == outputs).reshape(len(members), len(examples), 8)
        yield family, members, hits.all(axis=2)


def consistent_rules(examples: Sequence[tuple[int, int]], families: Sequence[Family]) -> list[Rule]:
    """Every member of `families` that reproduces all examples (one vectorised test each)."""
    found: list[Rule] = []
    for family, members, matches in _family_matches(examples, families):
        fits = np.flatnonzero(matches.all(axis=1))
        found += _rules(members[fits], np.full(len(fits), family.table))
    return found


def near_misses(
    examples: Sequence[tuple[int, int]], families: Sequence[Family]
) -> tuple[list[Rule], int]:
    """Rules that reproduce the longest run of leading examples but not all, and that run.

    A trace shows one as the guess that a check rejects; ([], 0) when no rule gets
    past the first example.
    """
    best, found = 0, []
    for family, members, matches in _family_matches(examples, families):
        run = np.cumprod(matches, axis=1).sum(axis=1)
        run[run == len(examples)] = 0  # a rule that fits everything is no miss
        top = int(run.max(initial=0))
        if top > best:
            best, found = top, []
        if top == best and top > 0:
            hit = run == top
            found += _rules(members[hit], np.full(int(hit.sum()), family.table))
    return found, best


def search_any(examples: Sequence[tuple[int, int]], max_arity: int = MAX_ARITY) -> list[Rule]:
    """Every rule of up to `max_arity` copies and ANY truth table that fits (no prior).

    A truth-table entry no example reaches is free, so one set of copies can give
    several rules; only tables that use every operand are kept. Used to fit the prior
    and as the solver's fallback when no known family fits.
    """
    copies, outputs = _example_bits(examples)
    found: list[Rule] = []
    for arity in range(1, max_arity + 1):
        members = np.array(
            list(itertools.combinations(range(len(TRANSFORMS)), arity)), dtype=np.int64
        )
        keys = _keys(copies, members)
        seen_one = np.zeros(len(members), dtype=np.int64)  # bit k: key k seen with output 1
        seen_zero = np.zeros(len(members), dtype=np.int64)
        for k in range(1 << arity):
            hit = keys == k
            seen_one |= (hit & (outputs == 1)).any(axis=1).astype(np.int64) << k
            seen_zero |= (hit & (outputs == 0)).any(axis=1).astype(np.int64) << k
        tables = _NONDEGENERATE[arity]
        for m in np.flatnonzero((seen_one & seen_zero) == 0):
            fits = tables[((tables & seen_one[m]) == seen_one[m]) & ((tables & seen_zero[m]) == 0)]
            found += _rules(np.repeat(members[m : m + 1], len(fits), axis=0), fits)
    return found
