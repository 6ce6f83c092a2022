"""Outputs that say what they count: solve's statuses, audit's categories, build's progress."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reasonlab.data.audit import _finding
from reasonlab.data.solve import ANSWERED, STATUSES, SolvedRow
from reasonlab.formats.csvio import read_rows
from reasonlab.puzzles import cipher, numeral

REPO = Path(__file__).resolve().parents[1]


def _bits(examples: str, query: str) -> str:
    from reasonlab.data.generate import generate_rows

    head = generate_rows("bit_manipulation", 1, 0)[0]["prompt"].split("output:\n")[0]
    return f"{head}output:\n{examples}\nNow, determine the output for: {query}"


# (id, prompt, gold, status solve must give)
ROWS = [
    (
        "solved",
        f"{numeral.HEADER}\n11 -> XI\nNow, write the number 38 in the Wonderland numeral system.",
        "XXXVIII",
        "solved",
    ),
    (
        "ambiguous",
        _bits("00000010 -> 00000001\n00000100 -> 00000010", "11111111"),
        "01111111",
        "ambiguous",
    ),
    (
        "guessed",
        f"{cipher.HEADER}\nabc -> cat\nNow, decrypt the following text: abc zzzzzzzzzzzz",
        "cat dog",
        "guessed",
    ),
    (
        "unsolved",
        f"{numeral.HEADER}\n4 -> IIII\nNow, write the number 38 in the Wonderland numeral system.",
        "XXXVIII",
        "unsolved",
    ),
    ("no_solver", "What is two plus two?", "4", "no_solver"),
]


def test_solve_statuses_exclude_each_other_and_the_table_says_what_it_counts(
    cli, write_csv, tmp_path
):
    data = write_csv("d.csv", [{"id": i, "prompt": p, "answer": a} for i, p, a, _ in ROWS])
    out = tmp_path / "pred.csv"
    table = cli("solve", data, "-o", out).output
    predictions = {row["id"]: row for row in read_rows(out)}
    for row_id, _, _, status in ROWS:
        row = predictions[row_id]
        assert row["status"] == status, row
        assert bool(row["answer"]) == (status in ANSWERED), row  # an answer exactly then
    flat = " ".join(table.split())
    for status, meaning in STATUSES.items():
        assert f"{status}: {meaning}" in flat  # the caption defines every column
    assert "correct: right answers among solved + ambiguous + guessed" in flat
    # one status per row: each family's status columns add up to its rows
    for line in table.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if len(cells) == 2 + len(STATUSES) + 2 and cells[1].isdigit():
            assert sum(map(int, cells[2 : 2 + len(STATUSES)])) == int(cells[1]), line


def _row(status: str, answer: str, **kw) -> SolvedRow:
    return SolvedRow("1", "cryptarithm", "deduce", answer, status, kw.pop("detail", "why"), **kw)


# (solver's row, gold, expected kind or None = not flagged, words the reason must hold)
AUDIT = [
    (_row("guessed", "42"), "42", None, ""),  # a right guess is not flagged
    (_row("solved", "42"), "42", None, ""),
    (
        _row("ambiguous", "42", candidates=6, agreeing=2, alternatives=("7",)),
        "7",
        "tie_break",
        "2 of the 6 rules",
    ),
    (
        _row("ambiguous", "42", candidates=6, agreeing=2, alternatives=("7",)),
        "9",
        "answer_unexplained",
        "no fitting rule found gives the gold; 2 of the 6 rules",
    ),
    (
        _row("solved", "42"),
        "9",
        "answer_unexplained",
        "the one rule that fits every example gives the solver's answer",
    ),
    (_row("guessed", "42", detail="no setting fits"), "9", "unexplained", "no setting fits"),
    (_row("unsolved", ""), "9", "unexplained", "why"),
    (_row("error", "", detail="KeyError"), "9", "error", "KeyError"),
]


@pytest.mark.parametrize(("row", "gold", "kind", "words"), AUDIT)
def test_audit_categories_agree_with_the_answer(row, gold, kind, words):
    found = _finding(row, gold)
    if kind is None:
        assert found is None
        return
    assert found[0] == kind and words in found[1], found
    assert "consistent rules give this answer" not in found[1]  # the old, misread phrase


def test_dataset_build_shows_a_total_and_logs_when_redirected(
    cli, write_csv, tmp_path, monkeypatch
):
    from reasonlab.cli import common
    from reasonlab.data.generate import generate_rows

    monkeypatch.setattr(common, "LOG_EVERY_S", 0.0)  # every advance prints off a terminal
    write_csv("real.csv", generate_rows("numeral", 3, seed=1))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("real: [real.csv]\ngenerated: {n: 2, weights: {numeral: 1, gravity: 1}}\n")
    result = cli("dataset", "build", recipe, "-o", tmp_path / "o.jsonl")
    stderr = result.stderr
    total = 2 * 7  # n=2 for each of the 7 families (weight 1 unless given)
    assert f"generating puzzles: {total:,}/{total:,} (100%)" in stderr, stderr
    assert "solving and tracing: " in stderr and "/17 " in stderr  # 3 real + 14 generated


def test_readme_dataset_build_line_says_what_it_needs(cli, write_csv, tmp_path):
    """The README line names the CSV it reads; without it the recipe's path fails in one line."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    line = next(row for row in readme.splitlines() if row.startswith("reasonlab dataset build"))
    assert "--real train.csv" in line
    copy = tmp_path / "configs" / "dataset-mix.yaml"
    copy.parent.mkdir()
    copy.write_text((REPO / "configs" / "dataset-mix.yaml").read_text())
    result = cli("dataset", "build", copy, "-o", tmp_path / "o.jsonl", expect=1)
    message = " ".join(result.output.split())
    assert "real[0] (relative to the recipe)" in message and "--real" in message
