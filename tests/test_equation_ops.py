"""The equation operation table: each operation's arithmetic and how each setting reads and writes."""

from __future__ import annotations

import itertools

import pytest

from reasonlab.puzzles.equations.ops import (
    BY_NAME,
    KINDS,
    MIRRORED,
    NORMAL,
    OPERATIONS,
    REVERSED,
    SETTINGS,
    apply,
    read_operands,
    write_result,
)

OPERANDS = [f"{n:02d}" for n in range(1, 100)]

# (operation, left, right, symbol, setting, written result)
CASES = [
    # --- normal: operands as written, minus written as the operator symbol
    ("add", "12", "34", "+", NORMAL, "46"),
    ("mul", "12", "34", "*", NORMAL, "408"),
    ("sub", "31", "75", "^", NORMAL, "^44"),
    ("sub", "75", "31", "^", NORMAL, "44"),
    ("rsub", "31", "75", "^", NORMAL, "44"),
    ("absdiff", "31", "75", "^", NORMAL, "44"),
    ("negabsdiff", "75", "31", "'", NORMAL, "'44"),
    ("negabsdiff", "64", "64", "'", NORMAL, "0"),  # -0 is 0: no sign
    ("maxmod", "10", "94", "!", NORMAL, "4"),
    ("maxmod", "93", "69", "!", NORMAL, "24"),
    ("cat", "07", "35", "?", NORMAL, "0735"),  # operands' zeros kept
    ("rcat", "07", "35", "?", NORMAL, "3507"),
    ("add+1", "12", "34", "|", NORMAL, "47"),
    ("add-1", "12", "34", "|", NORMAL, "45"),
    ("mul+1", "12", "34", "|", NORMAL, "409"),
    ("mul-1", "12", "34", "|", NORMAL, "407"),
    # --- reversed: each operand reversed, result digits reversed, sign kept in front
    ("add", "12", "34", "+", REVERSED, "46"),  # 21 + 43 = 64
    ("mul", "57", "67", "*", REVERSED, "0075"),  # 75 * 76 = 5700, zeros kept
    ("sub", "17", "27", "\\", REVERSED, "\\1"),  # 71 - 72 = -1
    ("sub", "31", "75", "^", REVERSED, "^44"),  # 13 - 57 = -44
    ("sub", "29", "06", "`", REVERSED, "23"),  # 92 - 60 = 32
    ("negabsdiff", "76", "68", "-", REVERSED, "-91"),  # -|67 - 86| = -19
    ("cat", "07", "35", "?", REVERSED, "3507"),  # "70"+"53" reversed
    ("add", "05", "10", "+", REVERSED, "15"),  # 50 + 01 = 51
    # --- mirrored: the line read right to left, a = right reversed, b = left reversed
    ("sub", "69", "52", "/", MIRRORED, "17/"),  # 25 - 96 = -71 -> "/71" mirrored
    ("sub", "52", "69", "/", MIRRORED, "17"),  # 96 - 25 = 71, written mirrored
    ("negabsdiff", "37", "64", "!", MIRRORED, "72!"),  # -|46 - 73| = -27
    ("cat", "07", "35", "?", MIRRORED, "0735"),  # "53"+"70" mirrored reads as written
    ("add+1", "34", "25", "|", MIRRORED, "69"),  # 52 + 43 + 1 = 96
    ("mul", "87", "64", "\\", MIRRORED, "8853"),  # 46 * 78 = 3588
]


@pytest.mark.parametrize("name,left,right,symbol,setting,expected", CASES)
def test_apply(name, left, right, symbol, setting, expected):
    assert apply(BY_NAME[name], left, right, symbol, setting) == expected


# --- reading and writing on their own


@pytest.mark.parametrize(
    "setting,expected",
    [(NORMAL, ("12", "34")), (REVERSED, ("21", "43")), (MIRRORED, ("43", "21"))],
)
def test_read_operands(setting, expected):
    assert read_operands("12", "34", setting) == expected


@pytest.mark.parametrize(
    "value,setting,expected",
    [
        (-71, NORMAL, "#71"),
        (-71, REVERSED, "#17"),
        (-71, MIRRORED, "17#"),
        (120, REVERSED, "021"),
        (120, MIRRORED, "021"),
        ("0735", REVERSED, "5370"),
        ("0735", NORMAL, "0735"),
        (0, MIRRORED, "0"),
    ],
)
def test_write_result(value, setting, expected):
    assert write_result(value, "#", setting) == expected


# --- the table as data: invariants the solver, generator and renderer rely on


def test_names_unique_and_kinds_known():
    assert len(BY_NAME) == len(OPERATIONS)
    assert {op.kind for op in OPERATIONS} <= set(KINDS)
    assert len(set(SETTINGS)) == len(SETTINGS) == 3


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.name)
def test_every_operation_is_total_and_renders(op):
    """No operand pair 01..99 raises; every instance line names the operands."""
    for a, b in itertools.product(OPERANDS[::7], OPERANDS[::3]):
        value = op(a, b)
        assert isinstance(value, int | str)
        line = op.instance(a, b)
        assert str(int(a)) in line or a in line
        for setting in SETTINGS:
            assert apply(op, a, b, "@", setting)


@pytest.mark.parametrize("op", [op for op in OPERATIONS if op.offset], ids=lambda op: op.name)
def test_offsets_are_added_after_the_base(op):
    base = BY_NAME[op.kind]  # "add" and "mul" are the unshifted members of their families
    for a, b in [("12", "34"), ("99", "99"), ("01", "50")]:
        assert op(a, b) - base(a, b) == op.offset


def test_concatenations_keep_zeros_and_sub_family_signs():
    assert BY_NAME["cat"]("00", "05") == "0005"
    assert BY_NAME["sub"]("10", "20") == -10
    assert BY_NAME["rsub"]("10", "20") == 10
    assert BY_NAME["maxmod"]("20", "00") == 20  # the table stays total on an operand 00


def test_plain_operations_are_the_named_three():
    """The prior's twist model counts a + b, a - b, a * b as plain, everything else as twisted."""
    assert {op.name for op in OPERATIONS if op.plain} == {"add", "sub", "mul"}
