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


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        plan_budget([5.0], gpu_hour_usd=0, tokens_per_example=100)


def test_budget_from_sft_file(cli, tmp_path) -> None:
    path = tmp_path / "sft.jsonl"
    write_jsonl(path, [sft_row("a", "numeral", "x" * 300, "t" * 30, tokens=900)] * 4)
    rows, mean = sft_token_stats(path)
    assert rows == 4 and mean > 900
    out = cli("budget", "--gpu-hour-usd", "3", "--sft", path, "--usd", "5").output
    assert "$5" in out and "epochs" in out
    assert "--tokens-per-example" in cli("budget", "--gpu-hour-usd", "3", expect=1).output
