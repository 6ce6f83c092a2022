"""`reasonlab budget`: the arithmetic, and reading an SFT file."""

from __future__ import annotations

import pytest

from reasonlab.data.traces import sft_row
from reasonlab.formats.jsonl import write_jsonl
from reasonlab.plans.budget import plan_budget, sft_token_stats


def test_plan_arithmetic() -> None:
    # $10 at $2/h = 5 GPU hours = 18,000 s; at 100 tokens/s: 1.8M tokens; 1,000 tokens each: 1,800 examples
    (line,) = plan_budget(
        [10.0],
        gpu_hour_usd=2.0,
        tokens_per_example=1000,
        tokens_per_s=100,
        gpus=2,
        dataset_rows=600,
    )
    assert line.gpu_hours == pytest.approx(5.0)
    assert line.wall_hours == pytest.approx(2.5)
    assert line.tokens == pytest.approx(1.8e6)
    assert line.examples == 1800
    assert line.epochs == pytest.approx(3.0)


def test_examples_round_down() -> None:
    # $10 at $3/h = 3.33 GPU hours = 12,000 s; at 100 tokens/s: 1.2M tokens; at 1,100 tokens
    # each that is 1,090.9 examples: a budget buys 1,090 whole examples, never 1,091
    (line,) = plan_budget([10.0], gpu_hour_usd=3.0, tokens_per_example=1100, tokens_per_s=100)
    assert line.tokens == pytest.approx(1.2e6)
    assert line.examples == 1090


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        plan_budget([5.0], gpu_hour_usd=0, tokens_per_example=100)


def test_budget_from_sft_file(cli, tmp_path, real_tokenizer) -> None:
    """Tokens per example are the ids training feeds the model (prompt + completion), exactly."""
    from reasonlab.formats.chat import sft_example, tokenize_example

    path = tmp_path / "sft.jsonl"
    rows = [sft_row(str(i), "numeral", "7 " * (50 * i), "1 2 3 \\boxed{6}") for i in range(4)]
    write_jsonl(path, rows)
    expected = [
        len(tokenize_example(real_tokenizer, sft_example(real_tokenizer, r))["input_ids"])
        for r in rows
    ]
    count, mean = sft_token_stats(path)
    assert count == 4 and mean == sum(expected) / 4
    out = " ".join(cli("budget", "--gpu-hour-usd", "3", "--sft", path, "--usd", "5").output.split())
    assert "$5" in out and "epochs" in out and "exact tokens" in out
    assert f"{mean:,.0f} tokens per example" in out
    assert "--tokens-per-example" in cli("budget", "--gpu-hour-usd", "3", expect=1).output
