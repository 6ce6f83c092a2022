"""`reasonlab classify` and `reasonlab score` end to end on hand-built files."""

from __future__ import annotations

import json

import pytest

from reasonlab.puzzles.equations.prompt import format_equation_prompt
from reasonlab.puzzles.registry import classify

W = "In Alice's Wonderland, "
PROMPTS = {
    "bit_manipulation": W
    + "a secret bit manipulation rule transforms 8-bit binary numbers. The transformation "
    "involves operations like bit shifts.\n\nHere are some examples of input -> output:\n00000001 -> 00000010\n\n"
    "Now, determine the output for: 00000011",
    "gravity": W
    + "the gravitational constant has been secretly changed. Here are some example observations:\n"
    "For t = 1.0s, distance = 4.9 m\nNow, determine the falling distance for t = 2.0s given d = 0.5*g*t^2.",
    "unit_conversion": W
    + "a secret unit conversion is applied to measurements. For example:\n10.0 m becomes 5.00\n"
    "Now, convert the following measurement: 4.0 m",
    "cipher": W + "secret encryption rules are used on text. Here are some examples:\nbcd -> cat\n"
    "Now, decrypt the following text: bcd",
    "numeral": W
    + "numbers are secretly converted into a different numeral system. Some examples are given below:\n"
    "11 -> XI\nNow, write the number 38 in the Wonderland numeral system.",
}

# (examples, query, family, subtype)
EQUATIONS = [
    ([("34/44", "1"), ("41+32", "73")], "69/52", "equation_numeric", "deduce"),
    ([("34/44", "1"), ("41+32", "73")], "69*52", "equation_numeric", "guess"),
    ([("}`]?(", "())"), ("}#<)\\", "#?")], "))]\\)", "cryptarithm", "deduce"),
    ([("}`]?(", "())"), ("}#<)\\", "#?")], "))!\\)", "cryptarithm", "guess"),
]


@pytest.mark.parametrize(("family", "prompt"), PROMPTS.items())
def test_classify_families(family: str, prompt: str) -> None:
    assert classify(prompt).family == family


@pytest.mark.parametrize(("examples", "query", "family", "subtype"), EQUATIONS)
def test_classify_equations(examples, query, family, subtype) -> None:
    kind = classify(format_equation_prompt(examples, query))
    assert (kind.family, kind.subtype) == (family, subtype)


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "What is 2+2?",
        W + "a secret set of transformation rules is applied to equations. garbled",
    ],
)
def test_unknown_never_crashes(prompt: str) -> None:
    assert classify(prompt).family == "unknown"


def test_classify_command(cli, write_csv, tmp_path) -> None:
    rows = [{"id": f, "prompt": p} for f, p in PROMPTS.items()] + [{"id": "odd", "prompt": "hello"}]
    out = tmp_path / "families.csv"
    result = cli("classify", write_csv("data.csv", rows), "-o", out)
    assert "unknown" in result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "id,family,subtype"
    assert "odd,unknown," in lines and "gravity,gravity," in lines


# ---------------------------------------------------------------- score
GOLD = [
    {"id": "bits", "prompt": PROMPTS["bit_manipulation"], "answer": "00011011"},
    {"id": "grav", "prompt": PROMPTS["gravity"], "answer": "19.60"},
    {"id": "roman", "prompt": PROMPTS["numeral"], "answer": "XXXVIII"},
    {"id": "sym", "prompt": format_equation_prompt([("}`]?(", "())")], "}`]?("), "answer": "a}b"},
    {"id": "none", "prompt": PROMPTS["cipher"], "answer": "cat"},
]


def test_score_raw_outputs(cli, write_csv, tmp_path) -> None:
    outputs = [
        {"id": "bits", "output": "thinking... \\boxed{11011}"},  # leading zeros lost: wrong
        {"id": "grav", "output": "\\boxed{19.6}"},  # numeric tolerance: right
        {"id": "roman", "output": "The final answer is: xxxviii"},  # phrase fallback, case: right
        {"id": "sym", "output": "\\boxed{a}b}"},  # '}' inside the answer: right
    ]
    per_row, summary = tmp_path / "rows.csv", tmp_path / "s.json"
    result = cli(
        "score",
        write_csv("pred.csv", outputs),
        "--gold",
        write_csv("gold.csv", GOLD),
        "--per-row",
        per_row,
        "--json",
        summary,
    )
    assert "had no prediction" in result.output and "none" in result.output
    stats = json.loads(summary.read_text())
    assert stats["accuracy"] == pytest.approx(3 / 5)
    assert stats["groups"]["bit_manipulation"] == {"correct": 0, "total": 1, "accuracy": 0.0}
    assert stats["missing"] == ["none"]
    assert "sym,cryptarithm,deduce,a}b,a}b,1" in per_row.read_text()


def test_score_extracted_answers(cli, write_csv, tmp_path) -> None:
    answers = [{"id": "bits", "answer": "00011011"}, {"id": "grav", "answer": "19.5"}]
    summary = tmp_path / "s.json"
    cli(
        "score",
        write_csv("pred.csv", answers),
        "--gold",
        write_csv("gold.csv", GOLD),
        "--json",
        summary,
    )
    assert json.loads(summary.read_text())["accuracy"] == pytest.approx(2 / 5)


def test_score_rejects_ids_not_in_gold(cli, write_csv) -> None:
    result = cli(
        "score",
        write_csv("pred.csv", [{"id": "stray", "answer": "1"}]),
        "--gold",
        write_csv("gold.csv", GOLD),
        expect=1,
    )
    assert "stray" in result.output and "not in the gold file" in result.output


def test_score_needs_answer_or_output(cli, write_csv) -> None:
    result = cli(
        "score",
        write_csv("pred.csv", [{"id": "bits", "guess": "1"}]),
        "--gold",
        write_csv("gold.csv", GOLD),
        expect=1,
    )
    assert "'answer' column" in result.output
