"""Scoring saved outputs: majority vote, pass@1, pass@K and margins against hand-computed values."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from reasonlab.cli import app
from reasonlab.evaluation.vote import Vote, majority_vote, score_outputs, vote_files
from reasonlab.formats.csvio import DataError, write_rows
from reasonlab.metric import NOT_FOUND

W = "In Alice's Wonderland, "
GRAVITY = (
    W + "the gravitational constant has been secretly changed. Here are some observations: ..."
)
UNITS = W + "a secret unit conversion is applied to measurements. For example: ..."
BITS = (
    W
    + "a secret bit manipulation rule transforms 8-bit binary numbers. Here are some examples: ..."
)
NUMERAL = W + "numbers are secretly converted into a different numeral system. Some examples: ..."

# ---------------------------------------------------------------- majority_vote alone
VOTE_CASES = [
    # (extracted answers in sample order, winner, votes, margin)
    (["12.5"], "12.5", 1, 1.0),
    # numbers equal under the metric vote together; the first spelling represents them
    (["12.5", "12.50", "13"], "12.5", 2, 1 / 3),
    (["13", "12.50", "12.5", "12.500"], "12.50", 3, 2 / 4),
    # within 1% relative: one answer
    (["250", "251", "7"], "250", 2, 1 / 3),
    # "100" is a bit string to the metric, so "100.5" is another answer
    (["100", "100.5", "100.5"], "100.5", 2, 1 / 3),
    # bit strings compare exactly: leading zeros matter
    (["0011", "11", "11"], "11", 2, 1 / 3),
    # words compare case-insensitively
    (["XIV", "xiv", "XV"], "XIV", 2, 1 / 3),
    # a tie goes to the answer seen first (the lowest sample index)
    (["a", "b"], "a", 1, 0.0),
    (["b", "a", "a", "b"], "b", 2, 0.0),
    # no answer abstains, but still counts in K for the margin
    ([NOT_FOUND, "5", NOT_FOUND], "5", 1, 1 / 3),
    (["", "5"], "5", 1, 1 / 2),
    ([NOT_FOUND, NOT_FOUND], NOT_FOUND, 0, 0.0),
]


@pytest.mark.parametrize(("answers", "winner", "votes", "margin"), VOTE_CASES)
def test_majority_vote(answers, winner, votes, margin):
    vote = majority_vote(answers)
    assert vote == Vote(winner, votes, pytest.approx(margin))


# ---------------------------------------------------------------- whole runs, by hand
GOLD = [
    {"id": "g1", "prompt": GRAVITY, "answer": "12.5"},
    {"id": "g2", "prompt": GRAVITY, "answer": "3.14"},
    {"id": "u1", "prompt": UNITS, "answer": "19.00"},
    {"id": "b1", "prompt": BITS, "answer": "00011011"},
    {"id": "n1", "prompt": NUMERAL, "answer": "XIV"},  # never evaluated: missing
]


def box(answer: str) -> str:
    return f"<think>\nworking...\n</think>\nThe answer is \\boxed{{{answer}}}"


# K = 3 per row. Per row: correct flags, pass@1, vote, pass@K, margin
#   g1: 12.50 ok, 12.5 ok, 13 no        -> p1 2/3, vote 12.50 (2) ok,  pass@3 1, margin 1/3
#   g2: 3.1 no, 3.15 ok, 3.1 no          -> p1 1/3, vote 3.1 (2) wrong, pass@3 1, margin 1/3
#   u1: 19 ok, no box "19.0" ok, 20 no  -> p1 2/3, vote 19 (2) ok,    pass@3 1, margin 1/3
#   b1: 11011 no, 11011 no, 11011 no    -> p1 0,   vote 11011 wrong,  pass@3 0, margin 1
# "3.15" is within 1% of 3.14; "3.1" is 1.3% off. "11011" is not "00011011" (exact bits).
SAMPLES = {
    "g1": [box("12.50"), box("12.5"), box("13")],
    "g2": [box("3.1"), box("3.15"), box("3.1")],
    "u1": [box("19"), "so the result is 19.0", box("20")],
    "b1": [box("11011")] * 3,
}


def lines(samples=SAMPLES):
    # Written out of order on purpose: grouping must sort by sample index.
    out = []
    for sample in (2, 0, 1):
        for row_id, texts in samples.items():
            out.append(
                {
                    "id": row_id,
                    "sample": sample,
                    "output": texts[sample],
                    "output_tokens": 10 * sample,
                }
            )
    return out


def test_hand_computed_run():
    report = score_outputs(lines(), GOLD)
    assert report.missing == ("n1",)
    rows = {r.id: r for r in report.rows}
    assert rows["g1"].answers == ("12.50", "12.5", "13")
    assert [rows[i].pass_at_1 for i in ("g1", "g2", "u1", "b1")] == pytest.approx(
        [2 / 3, 1 / 3, 2 / 3, 0]
    )
    assert [rows[i].vote_correct for i in ("g1", "g2", "u1", "b1")] == [True, False, True, False]
    assert [rows[i].pass_at_k for i in ("g1", "g2", "u1", "b1")] == [True, True, True, False]
    assert rows["u1"].boxed == (True, False, True)
    assert rows["g1"].output_tokens == (0, 10, 20)

    groups = {g.label: g for g in report.groups()}
    total = groups["all"]
    assert (total.rows, total.samples) == (4, 3)
    assert total.accuracy == pytest.approx(2 / 4)  # sample 0: g1 ok, g2 no, u1 ok, b1 no
    assert total.pass_at_1 == pytest.approx((2 / 3 + 1 / 3 + 2 / 3 + 0) / 4)
    assert total.majority == pytest.approx(2 / 4)
    assert total.pass_at_k == pytest.approx(3 / 4)
    assert total.margin == pytest.approx((1 / 3 + 1 / 3 + 1 / 3 + 1) / 4)

    gravity = groups["gravity"]
    assert (gravity.rows, gravity.accuracy, gravity.majority, gravity.pass_at_k) == (
        2,
        0.5,
        0.5,
        1.0,
    )
    assert gravity.pass_at_1 == pytest.approx(0.5)
    assert groups["bit_manipulation"].pass_at_k == 0.0


def test_k1_is_plain_accuracy():
    one = [line for line in lines() if line["sample"] == 0]
    total = score_outputs(one, GOLD).overall
    assert total.samples == 1
    assert (
        total.accuracy == total.pass_at_1 == total.majority == total.pass_at_k == pytest.approx(0.5)
    )


# ---------------------------------------------------------------- bad input
def test_duplicate_sample_is_an_error():
    dup = lines() + [{"id": "g1", "sample": 0, "output": "x"}]
    with pytest.raises(DataError, match="'g1' sample 0 appears twice"):
        score_outputs(dup, GOLD)


def test_unknown_id_is_an_error():
    with pytest.raises(DataError, match="not in the gold file: zz"):
        score_outputs([{"id": "zz", "sample": 0, "output": "1"}], GOLD)


def test_line_without_output_is_an_error():
    with pytest.raises(DataError, match="line 1 has no 'output'"):
        score_outputs([{"id": "g1", "sample": 0}], GOLD)


# ---------------------------------------------------------------- files and CLI
@pytest.fixture
def files(tmp_path):
    gold = tmp_path / "gold.csv"
    write_rows(gold, GOLD, ("id", "prompt", "answer"))
    outputs = tmp_path / "out.jsonl"
    outputs.write_text("".join(json.dumps(line) + "\n" for line in lines()), encoding="utf-8")
    return outputs, gold


def test_vote_files(files):
    report = vote_files(*files)
    assert report.overall.majority == pytest.approx(0.5)


def test_vote_command(files, tmp_path):
    outputs, gold = files
    per_row = tmp_path / "rows.csv"
    result = CliRunner().invoke(
        app, ["vote", str(outputs), "--gold", str(gold), "--rows", str(per_row)]
    )
    assert result.exit_code == 0, result.output
    assert "gravity" in result.output and "pass@3" in result.output
    text = per_row.read_text()
    assert text.splitlines()[0].startswith("id,family")
    assert "g2,gravity" in text


def test_vote_command_bad_gold(files, tmp_path):
    outputs, _ = files
    result = CliRunner().invoke(app, ["vote", str(outputs), "--gold", str(tmp_path / "nope.csv")])
    assert result.exit_code == 1
