"""Token lengths and the scorer's budget: exact counts, the estimate, and what `traces` reports."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest
import yaml

from reasonlab.data.generate import generate_mixed, generate_rows
from reasonlab.data.traces import DROP_REASONS, build_traces
from reasonlab.formats.chat import completion_text
from reasonlab.formats.token_counts import CHARS_PER_TOKEN_ESTIMATE, Lengths, TokenCounter
from reasonlab.puzzles.registry import FAMILIES

ESTIMATE = TokenCounter(None)


@pytest.mark.parametrize(
    ("prompt", "generated", "max_new_tokens", "fits"),
    [
        # the generation cap: 7,680 tokens is allowed, one more is not
        (100, 7680, 7680, True),
        (100, 7681, 7680, False),
        # the context: prompt + generation <= 8,192, even when the generation is under its cap
        (512, 7680, 7680, True),
        (513, 7680, 7680, False),
        (592, 7600, 7680, True),
        (593, 7600, 7680, False),
        # a smaller cap asked for by the user
        (10, 50, 50, True),
        (10, 51, 50, False),
    ],
)
def test_scorer_budget(prompt, generated, max_new_tokens, fits) -> None:
    assert Lengths(prompt, generated, prompt + generated + 1).fits(max_new_tokens) is fits


def test_estimate_of_a_known_turn() -> None:
    # completion: trace, "\n</think>\n", the boxed answer, "<|im_end|>" = 44 characters
    (length,) = ESTIMATE.lengths([("abcdefghijkl", "1 2 3 \\boxed{6}")])
    assert CHARS_PER_TOKEN_ESTIMATE == 1.2
    assert length.generated == 37  # ceil(44 / 1.2)
    assert length.prompt == 16 + 10  # the template's 16 tokens + ceil(12 / 1.2)
    assert length.training == length.prompt + length.generated + 1


def test_estimate_errs_long_on_every_family(real_tokenizer) -> None:
    """Without the tokenizer the budget check may drop a trace that fits, never keep one that does not."""
    rows = generate_mixed(6, seed=9)
    traced = build_traces(rows, ESTIMATE, allow_incomplete=True)
    assert not traced.exact_tokens and "estimated" in traced.counting
    assert {row["family"] for row in traced.rows} == set(FAMILIES)
    turns = [(row["messages"][0]["content"], row["messages"][1]["content"]) for row in traced.rows]
    exact = TokenCounter(real_tokenizer).lengths(turns)
    for row, real in zip(traced.rows, exact):
        assert row["tokens"] >= real.generated, row["family"]
        assert row["prompt_tokens"] >= real.prompt, row["family"]


def test_estimate_errs_long_on_dev_rows(dev_rows, real_tokenizer) -> None:
    rows = [row for family in sorted(dev_rows) for row in dev_rows[family][:30]]
    kept = build_traces(rows, ESTIMATE).rows
    turns = [(row["messages"][0]["content"], row["messages"][1]["content"]) for row in kept]
    exact = TokenCounter(real_tokenizer).lengths(turns)
    assert len(kept) > 150
    assert all(row["tokens"] >= real.generated for row, real in zip(kept, exact))


class _LongPrompts(TokenCounter):
    """The real counts, with `extra` tokens added to every prompt (a very long puzzle)."""

    def __init__(self, tokenizer, extra: int) -> None:
        super().__init__(tokenizer)
        self.extra = extra

    def lengths(self, turns):
        return [
            Lengths(length.prompt + self.extra, length.generated, length.training + self.extra)
            for length in super().lengths(turns)
        ]


def test_traces_drop_rows_over_the_context(real_tokenizer) -> None:
    rows = generate_rows("gravity", 5, seed=2)
    exact = build_traces(rows, TokenCounter(real_tokenizer)).rows
    longest = max(row["prompt_tokens"] + row["tokens"] for row in exact)
    extra = 8192 - longest  # the longest row now fills the context exactly
    at_limit = build_traces(rows, _LongPrompts(real_tokenizer, extra))
    assert len(at_limit.rows) == 5
    over = build_traces(rows, _LongPrompts(real_tokenizer, extra + 1))
    assert len(over.rows) == 4 and over.stats["gravity"].counts["over_budget"] == 1


def test_max_new_tokens_must_be_positive(cli, write_csv, tmp_path) -> None:
    data = write_csv("d.csv", generate_rows("numeral", 2, seed=1))
    for bad in ("-5", "0", "7681"):
        out = cli("traces", data, "-o", tmp_path / "o.jsonl", "--max-new-tokens", bad, expect=2)
        assert "--max-new-tokens" in out.output
    assert not (tmp_path / "o.jsonl").exists()
    with pytest.raises(ValueError, match="max_new_tokens"):
        build_traces(generate_rows("numeral", 1, seed=1), ESTIMATE, max_new_tokens=-5)


def test_traces_table_names_every_drop_reason(cli, write_csv, tmp_path) -> None:
    rows = generate_mixed(4, seed=3)
    rows[0] = {**rows[0], "answer": "not-the-answer"}
    out = cli("traces", write_csv("d.csv", rows), "-o", tmp_path / "o.jsonl").output
    for header in ("right", "kept", "no answer", "wrong", "incomplete", "over budget", "p95"):
        assert header in out
    assert "exact tokens" in out and "other" not in out
    all_row = next(line for line in out.splitlines() if line.lstrip("│ ").startswith("all"))
    cells = [int(cell) for cell in all_row.replace("│", " ").split()[1:]]
    rows_in, answered, right, kept, *dropped = cells[: 4 + len(DROP_REASONS)]
    assert rows_in == len(rows) == kept + sum(dropped)  # every row has exactly one fate
    assert rows_in >= answered >= right >= kept
    assert dropped[list(DROP_REASONS).index("wrong")] >= 1


def test_kept_incomplete_traces_are_said(cli, write_csv, tmp_path) -> None:
    data = write_csv("d.csv", generate_rows("cryptarithm", 8, seed=4))
    strict = cli("traces", data, "-o", tmp_path / "a.jsonl").output
    lenient = cli("traces", data, "-o", tmp_path / "b.jsonl", "--allow-incomplete").output
    assert "kept traces are incomplete (--allow-incomplete)" in " ".join(lenient.split())
    assert "--allow-incomplete" not in strict


def test_traces_without_answers_say_there_is_no_gold(cli, write_csv, tmp_path) -> None:
    rows = [{"id": r["id"], "prompt": r["prompt"]} for r in generate_rows("numeral", 2, seed=1)]
    out = cli("traces", write_csv("d.csv", rows), "-o", tmp_path / "o.jsonl").output
    assert "no gold answers" in " ".join(out.split())
    numeral = next(line for line in out.splitlines() if "numeral" in line)
    assert numeral.replace("│", " ").split()[1:5] == ["2", "2", "-", "2"]  # right is unchecked


def test_dataset_manifest_reports_each_family(cli, write_csv, tmp_path) -> None:
    real = generate_rows("cryptarithm", 6, seed=4)
    write_csv("real.csv", real, ["id", "prompt", "answer"])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"real": ["real.csv"], "generated": {"n": 1}}))
    cli("dataset", "build", recipe, "-o", tmp_path / "sft.jsonl")
    manifest = json.loads((tmp_path / "sft.jsonl.manifest.json").read_text())
    assert manifest["tokens_exact"] is True and manifest["token_counting"] == "exact tokens"
    crypt = manifest["traces_by_family"]["cryptarithm"]
    assert crypt["rows"] == 7 and set(crypt["dropped"]) == set(DROP_REASONS)
    assert crypt["rows"] == crypt["kept"] + sum(crypt["dropped"].values())
    assert crypt["kept"] <= crypt["solver_right"] <= crypt["answered"]
    kept = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    tokens = sorted(r["tokens"] for r in kept if r["family"] == "cryptarithm")
    assert crypt["tokens"]["max"] == (tokens[-1] if tokens else 0)


def test_dataset_build_refuses_a_bad_tokenizer_before_work(cli, tmp_path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"generated": {"n": 1}, "tokenizer": "nowhere"}))
    out = cli("dataset", "build", recipe, "-o", tmp_path / "sft.jsonl", expect=1).output
    assert "nowhere: no such tokenizer folder" in out


def test_without_the_ml_extras_counts_are_estimated(write_csv, tmp_path) -> None:
    data = write_csv("d.csv", generate_rows("numeral", 2, seed=1))
    script = textwrap.dedent(f"""
        import sys
        for name in ("torch", "transformers", "tokenizers", "trl"):
            sys.modules[name] = None  # any import of these now raises ImportError
        from reasonlab.cli import app
        try:
            app(["traces", {str(data)!r}, "-o", {str(tmp_path / "o.jsonl")!r}])
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "estimated tokens" in result.stdout and "exact tokens" not in result.stdout
    row = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[0])
    generated = completion_text(row["messages"][1]["content"]).removesuffix("\n")
    assert row["tokens"] == math.ceil(len(generated) / CHARS_PER_TOKEN_ESTIMATE)


def test_another_vocabulary_is_named_in_the_counts(tmp_path) -> None:
    """A tokenizer folder that is not the base model's counts, but never passes as exact."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from reasonlab.formats.chat import load_chat_template

    specials = ["<unk>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    words = Tokenizer(models.WordLevel({t: i for i, t in enumerate(specials)}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    toy = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="<unk>", eos_token="<|im_end|>")
    toy.add_special_tokens({"additional_special_tokens": specials[1:]})
    toy.chat_template = load_chat_template()
    toy.save_pretrained(tmp_path / "toy")
    counter = TokenCounter.load(tmp_path / "toy")
    assert counter.exact and "5-token vocabulary, not the base model's" in counter.describe()
