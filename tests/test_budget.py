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


# ---------------------------------------------------------------- teacher runs and STaR rounds
TEACHER_GOLD = [{"id": f"r{i}", "prompt": f"puzzle {i}", "answer": str(i)} for i in range(4)]


def _teacher_lines() -> list[dict]:
    """Eight paid requests over four rows; rows 0 and 1 get a right, complete answer."""
    lines = []
    for i in range(4):
        for s in range(2):
            answer = i if (i < 2 and s == 1) else 99
            usage = {"prompt_tokens": 1000, "completion_tokens": 3000}
            lines.append({"id": f"r{i}", "sample": s, "output": f"work \\boxed{{{answer}}}",
                          "output_tokens": 3000, "truncated": False, "usage": usage})  # fmt: skip
    return lines


def test_teacher_priced_per_kept_row(tmp_path) -> None:
    from reasonlab.evaluation.spend import Prices
    from reasonlab.formats.csvio import write_rows
    from reasonlab.plans.budget import measure_teacher, plan_teacher

    write_jsonl(tmp_path / "t.jsonl", _teacher_lines())
    write_rows(tmp_path / "g.csv", TEACHER_GOLD, ("id", "prompt", "answer"))
    measure = measure_teacher(tmp_path / "t.jsonl", tmp_path / "g.csv")
    assert (measure.requests, measure.kept_rows, measure.keep_rate) == (8, 2, 0.25)
    # $1 / $10 per 1M tokens: 1,000 in + 3,000 out = $0.031 a request, 4 requests a kept row
    (line,) = plan_teacher([5.0], Prices(1.0, 10.0), measure)
    assert line.usd_per_kept_row == pytest.approx(0.124)
    assert (line.requests, line.kept_rows) == (161, 40)


def test_star_round_in_gpu_hours() -> None:
    from reasonlab.plans.budget import plan_star_round

    # 1,000 rows x 4 tries x 900 tokens = 3.6M tokens at 1,000 tokens/s = 1 h;
    # 7,200 rows x 500 tokens = 3.6M training tokens at 500 tokens/s = 2 h
    one = plan_star_round(1000, 4, 900, 1000, 7200, 500, train_tokens_per_s=500)
    assert (one.generate_hours, one.train_hours, one.gpu_hours) == pytest.approx((1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="must be positive"):
        plan_star_round(1000, 4, 900, 0, 7200, 500)


def test_budget_command_prices_teacher_and_star(cli, tmp_path) -> None:
    from reasonlab.formats.csvio import write_rows

    write_jsonl(tmp_path / "t.jsonl", _teacher_lines())
    write_rows(tmp_path / "g.csv", TEACHER_GOLD, ("id", "prompt", "answer"))
    sft = tmp_path / "sft.jsonl"
    trace = "t" * 30 + "\\boxed{L}"  # a trace ends in its boxed answer
    write_jsonl(sft, [sft_row("a", "numeral", "x" * 300, trace, tokens=900)] * 4)
    out = cli(
        "budget", "--gpu-hour-usd", "3", "--sft", sft, "--usd", "5", "--teacher", tmp_path / "t.jsonl",
        "--gold", tmp_path / "g.csv", "--usd-per-mtok-in", "1", "--usd-per-mtok-out", "10",
        "--star-rows", "1000", "--star-tokens-per-try", "900", "--gen-tokens-per-s", "1000",
    ).output  # fmt: skip
    text = " ".join(out.split())
    assert "What a teacher run buys" in text and "$0.1240" in text and "25.0% rows kept" in text
    assert "What a STaR round costs" in text and "rounds per budget: $5:" in text
    error = cli("budget", "--gpu-hour-usd", "3", "--sft", sft, "--star-rows", "10", expect=1).output
    assert "--gen-tokens-per-s" in error
