"""The operation space of equation-transformation puzzles, kept as data.

Both equation families (numeric `AB?CD = r` rows and cryptarithms, which write the
same arithmetic with symbols for digits) draw every operator from one table. The
solver, the generator and the trace renderer all read this table, so a new operation
is one new row in `_TABLE` and nothing else.

How a result is produced (found on the dev split, where it explains every numeric row):

1. A row-level `Setting` says how operands are read and results written: `normal`,
   `reversed` (each operand digit-reversed, result digits reversed, sign in front) or
   `mirrored` (the whole line read right to left). One setting holds for a whole row
   (a per-operator setting would explain dev no better: no row needs two).
2. Each operator symbol stands for one `Operation` of the table, a pure function of
   the two operands as read (2-char digit strings) returning an int, or a digit string
   for concatenations.
3. The value is written by the setting; a negative value carries the row's operator
   symbol instead of `-` (`31^75 = ^44`), and leading zeros of reversed results stay
   (`57*67 = 0075`).

Public surface:
    Operation               one row of the table (name, kind, formula, template, compute,
                            offset, plain); call it as op(a, b)
    KINDS                   the arithmetic families ("add", "sub", "mul", "cat")
    OPERATIONS, BY_NAME     the table, in tie-break order (simplest first)
    Setting, SETTINGS       row-level reading/writing conventions (NORMAL, REVERSED, MIRRORED)
    read_operands(left, right, setting) -> (a, b)    digit strings as the operation sees them
    write_result(value, symbol, setting) -> str      an operation's value as the row writes it
    apply(op, left, right, symbol, setting) -> str   the whole pipeline for one expression
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "BY_NAME",
    "KINDS",
    "MIRRORED",
    "NORMAL",
    "OPERATIONS",
    "REVERSED",
    "SETTINGS",
    "Kind",
    "Operation",
    "Setting",
    "apply",
    "read_operands",
    "write_result",
]

# The arithmetic families. Operators of one row never share a family on dev (594 of 600
# rows), and an unseen operator's family is always one the row does not use, which is
# what the guess prior builds on. `max mod min` is grouped with subtraction because dev
# never shows it beside a subtraction in one row (the generator draws it from that family).
Kind = Literal["add", "sub", "mul", "cat"]


@dataclass(frozen=True)
class Operation:
    """One operation: `compute(a, b)` on the operands as read (2-char digit strings).

    `kind` is the arithmetic family (an unseen operator's prior is over families);
    `formula` names the operation in a trace, with `a`/`b` the operands as read;
    `template` writes one instance (fields: a, b as ints, sa, sb as the digit strings,
    hi, lo as the larger and smaller int); `offset` is the constant added after the
    base arithmetic. `compute` returns an int for arithmetic and a str for
    concatenations, whose digits are written as they come (operands' zeros kept).
    `plain` marks the three operations a symbol's name suggests (a + b, a - b, a * b);
    every other one is a "twist". How many operators of a row are plain is constrained
    on dev (a row of three has one or two plain ones), which the prior uses.
    """

    name: str
    kind: Kind
    formula: str
    template: str
    compute: Callable[[str, str], int | str]
    offset: int = 0
    plain: bool = False

    def __call__(self, a: str, b: str) -> int | str:
        return self.compute(a, b)

    def instance(self, a: str, b: str) -> str:
        """The left side of `template = value` for operands a, b (e.g. `52 + 43 + 1`)."""
        x, y = int(a), int(b)
        return self.template.format(a=x, b=y, sa=a, sb=b, hi=max(x, y), lo=min(x, y))


def _maxmod(a: str, b: str) -> int:
    hi, lo = max(int(a), int(b)), min(int(a), int(b))
    # An operand 00 is never seen on dev; returning the larger keeps the operation total.
    return hi % lo if lo else hi


def _op(
    name: str,
    kind: Kind,
    formula: str,
    template: str,
    compute: Callable[[str, str], int | str],
    offset: int = 0,
    plain: bool = False,
) -> Operation:
    return Operation(name, kind, formula, template, compute, offset, plain)


# Tie-break order: simplest and most frequent on dev first (equation_prior.json holds the
# measured frequencies). Offsets beyond +-1, division, plain a % b, -(a+b) and -(a*b) were
# tried on dev and explained no row that these do not, so they are left out.
_TABLE: list[Operation] = [
    _op("add", "add", "a + b", "{a} + {b}", lambda a, b: int(a) + int(b), plain=True),
    _op("mul", "mul", "a * b", "{a} * {b}", lambda a, b: int(a) * int(b), plain=True),
    _op("cat", "cat", "a then b (concatenation)", "{sa} then {sb}", lambda a, b: a + b),
    _op("sub", "sub", "a - b", "{a} - {b}", lambda a, b: int(a) - int(b), plain=True),
    _op("negabsdiff", "sub", "-|a - b|", "-|{a} - {b}|", lambda a, b: -abs(int(a) - int(b))),
    _op("absdiff", "sub", "|a - b|", "|{a} - {b}|", lambda a, b: abs(int(a) - int(b))),
    _op("maxmod", "sub", "max(a, b) mod min(a, b)", "{hi} mod {lo}", _maxmod),
    _op("add+1", "add", "a + b + 1", "{a} + {b} + 1", lambda a, b: int(a) + int(b) + 1, 1),
    _op("add-1", "add", "a + b - 1", "{a} + {b} - 1", lambda a, b: int(a) + int(b) - 1, -1),
    _op("mul+1", "mul", "a * b + 1", "{a} * {b} + 1", lambda a, b: int(a) * int(b) + 1, 1),
    _op("mul-1", "mul", "a * b - 1", "{a} * {b} - 1", lambda a, b: int(a) * int(b) - 1, -1),
    _op("rsub", "sub", "b - a", "{b} - {a}", lambda a, b: int(b) - int(a)),
    _op("rcat", "cat", "b then a (concatenation)", "{sb} then {sa}", lambda a, b: b + a),
]
OPERATIONS: tuple[Operation, ...] = tuple(_TABLE)
KINDS: tuple[str, ...] = ("add", "sub", "mul", "cat")
BY_NAME: dict[str, Operation] = {op.name: op for op in OPERATIONS}
if len(BY_NAME) != len(OPERATIONS):
    raise ValueError("duplicate operation names in ops._TABLE")


@dataclass(frozen=True)
class Setting:
    """A row-level reading/writing convention (one holds for every operator of a row).

    normal    operands as written; result as computed (`31^75 = ^44`: 31-75 = -44)
    reversed  each operand digit-reversed; result digits reversed, sign kept in front
              (`17\\27 = \\1`: 71-72 = -1; `57*67 = 0075`: 75*76 = 5700)
    mirrored  the whole line read right to left: the right operand reversed is `a`,
              the left one reversed is `b`, and the signed result string is mirrored
              (`69/52 = 17/`: a=25, b=96, 25-96 = -71 -> "/71" -> "17/")
    """

    name: Literal["normal", "reversed", "mirrored"]


NORMAL = Setting("normal")
REVERSED = Setting("reversed")
MIRRORED = Setting("mirrored")
# Tie-break order: the most frequent on dev first.
SETTINGS: tuple[Setting, ...] = (REVERSED, NORMAL, MIRRORED)


def read_operands(left: str, right: str, setting: Setting) -> tuple[str, str]:
    """The operands (a, b) as the operation sees them (2-char digit strings, zeros kept)."""
    if setting.name == "reversed":
        return left[::-1], right[::-1]
    if setting.name == "mirrored":
        return right[::-1], left[::-1]
    return left, right


def write_result(value: int | str, symbol: str, setting: Setting) -> str:
    """How a row writes an operation's value; `symbol` (the row's operator) stands for minus."""
    if isinstance(value, str):  # concatenation: a digit string, mirrored when reading is
        return value if setting.name == "normal" else value[::-1]
    digits = str(abs(value))
    sign = symbol if value < 0 else ""
    if setting.name == "reversed":
        return sign + digits[::-1]
    if setting.name == "mirrored":
        return (sign + digits)[::-1]
    return sign + digits


def apply(op: Operation, left: str, right: str, symbol: str, setting: Setting) -> str:
    """The right-hand side a row with `setting` writes for `left symbol right` under `op`."""
    a, b = read_operands(left, right, setting)
    return write_result(op(a, b), symbol, setting)
