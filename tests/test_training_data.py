"""traces, dataset build and audit on generated puzzles (no competition data needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reasonlab.data.dataset_recipe import load_recipe
from reasonlab.data.generate import generate_mixed, generate_rows
from reasonlab.data.traces import build_traces
from reasonlab.formats.csvio import read_rows
from reasonlab.formats.jsonl import read_jsonl
from reasonlab.metric import extract_answer, is_correct
from reasonlab.puzzles.registry import FAMILIES

REPO = Path(__file__).resolve().parents[1]
SUFFIX = "Please put your final answer inside `\\boxed{}`. For example: `\\boxed{your answer}`"


@pytest.fixture(scope="module")
def puzzles() -> list[dict[str, str]]:
    return generate_mixed(25, seed=3)


def test_every_kept_trace_boxes_the_gold_answer(puzzles) -> None:
    result = build_traces(puzzles, allow_incomplete=True)
    gold = {row["id"]: row["answer"] for row in puzzles}
    assert {row["family"] for row in result.rows} == set(FAMILIES)
    for row in result.rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and user["content"].endswith("\n" + SUFFIX)
        assert assistant["role"] == "assistant"
        assert is_correct(gold[row["id"]], extract_answer(assistant["content"])), row["id"]


def test_incomplete_traces_are_dropped_by_default() -> None:
    """Cryptarithm traces that skip the digit search are counted, not kept, unless asked for."""
    rows = generate_rows("cryptarithm", 60, seed=3)  # most are traced completely, not all
    strict, lenient = build_traces(rows), build_traces(rows, allow_incomplete=True)
    dropped = strict.stats["cryptarithm"].counts["incomplete"]
    assert dropped > 0
    assert len(lenient.rows) - len(strict.rows) == dropped


def test_wrong_gold_answers_are_not_kept(puzzles) -> None:
    wrong = {row["id"] for row in puzzles[1::2]}
    corrupted = [
        {**row, "answer": "not-the-answer"} if row["id"] in wrong else row for row in puzzles
    ]
    kept = {row["id"] for row in build_traces(corrupted).rows}
    assert kept and not kept & wrong


def test_length_budget_drops_and_counts() -> None:
    rows = generate_rows("gravity", 10, seed=1)
    result = build_traces(rows, max_new_tokens=5)
    assert result.rows == []
    assert result.stats["gravity"].counts["over_budget"] == 10


def test_traces_command_is_deterministic(cli, write_csv, tmp_path) -> None:
    data = write_csv("p.csv", generate_mixed(6, seed=0))
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    out = cli("traces", data, "-o", first).output
    cli("traces", data, "-o", second, "--workers", "2")
    assert first.read_bytes() == second.read_bytes()
    assert "p50" in out and "kept" in out and "exact tokens" in " ".join(out.split())


def test_generate_is_byte_identical(cli, tmp_path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    cli("generate", "--family", "all", "--n", "5", "--seed", "7", "-o", a)
    cli("generate", "--family", "all", "--n", "5", "--seed", "7", "-o", b)
    assert a.read_bytes() == b.read_bytes()
    assert len(read_rows(a)) == 5 * len(FAMILIES)


def test_dataset_build_mixes_dedupes_and_writes_manifest(cli, write_csv, tmp_path) -> None:
    real = generate_rows("numeral", 8, seed=11)
    real_csv = write_csv("real.csv", real + [{**real[0], "id": "dup"}], ["id", "prompt", "answer"])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {"seed": 1, "real": ["real.csv"], "generated": {"n": 3, "weights": {"numeral": 2}}}
        )
    )
    out = tmp_path / "sft.jsonl"
    cli("dataset", "build", recipe, "-o", out)
    rows = read_jsonl(out)
    manifest = json.loads((tmp_path / "sft.jsonl.manifest.json").read_text())
    assert manifest["duplicates_dropped"] >= 1
    assert manifest["rows_by_source"][str(real_csv)] == 8
    assert manifest["kept"] == len(rows)
    assert manifest["kept_by_family"]["numeral"] >= 8
    assert len({r["id"] for r in rows}) == len(rows)
    out2 = tmp_path / "sft2.jsonl"
    cli("dataset", "build", recipe, "-o", out2)
    assert out.read_bytes() == out2.read_bytes()


@pytest.mark.parametrize(
    ("recipe", "words"),
    [
        ({"generated": {"n": 1, "weights": {"numerals": 1}}}, ["numerals", "unknown family"]),
        ({"generated": {"n": -1}}, ["generated.n"]),
        ({"max_new_tokens": 9000}, ["max_new_tokens"]),
        ({"shuffle": True}, ["shuffle"]),
        ({"trace_styles": {"bits": "explicit"}}, ["trace_styles", "unknown family"]),
        ({"trace_styles": {"gravity": "explicit"}}, ["trace_styles", "gravity offers", "compact"]),
    ],
)
def test_bad_recipes_name_the_field(tmp_path, recipe, words) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(ValueError) as err:
        load_recipe(path)
    for word in words:
        assert word in str(err.value)


def test_shipped_dataset_recipe_loads() -> None:
    recipe = load_recipe(REPO / "configs" / "dataset-mix.yaml")
    assert recipe.generated.counts()["bit_manipulation"] == 4000


def test_audit_flags_wrong_and_unexplained_rows(cli, write_csv, tmp_path) -> None:
    rows = generate_rows("gravity", 4, seed=2) + generate_rows("numeral", 2, seed=2)
    rows[0] = {**rows[0], "answer": "123456.78"}  # a gold no rule gives
    rows[1] = {**rows[1], "prompt": rows[1]["prompt"].replace("For t", "For time", 1)}  # malformed
    out = tmp_path / "audit.csv"
    cli("audit", write_csv("d.csv", rows, ["id", "prompt", "answer"]), "-o", out)
    flagged = {r["id"]: r for r in read_rows(out)}
    assert flagged[rows[0]["id"]]["kind"] == "answer_unexplained"
    assert flagged[rows[1]["id"]]["kind"] == "unexplained"
    assert len(flagged) == 2


def test_exact_token_counts_are_what_training_feeds(real_tokenizer) -> None:
    """Kept rows carry the tokens the model generates (completion up to <|im_end|>) and the prompt's."""
    from reasonlab.formats.chat import sft_example, tokenize_example

    rows = generate_rows("gravity", 6, seed=4)
    result = build_traces(rows)
    assert result.exact_tokens and len(result.rows) == 6
    for row in result.rows:
        ids = tokenize_example(real_tokenizer, sft_example(real_tokenizer, row))
        completion = [i for i in ids["labels"] if i != -100]
        assert completion[-2:] == [11, 1010]  # <|im_end|>, then the template's newline
        assert row["tokens"] == len(completion) - 1  # the newline after <|im_end|> is not generated
        assert row["prompt_tokens"] == len(ids["labels"]) - len(completion)
    budget = sorted(row["tokens"] for row in result.rows)[2]
    tight = build_traces(rows, max_new_tokens=budget)
    assert all(row["tokens"] <= budget for row in tight.rows)
    kept = sum(row["tokens"] <= budget for row in result.rows)  # 3, or more on a tie
    assert len(tight.rows) == kept and tight.stats["gravity"].counts["over_budget"] == 6 - kept
