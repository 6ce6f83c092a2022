"""What a dollar budget buys: GPU hours, training tokens, examples and epochs.

Plain arithmetic on three inputs the user can check: the price of a GPU hour (theirs),
training throughput in tokens per second (by default the figure measured by
`bench/bench_train_step.py`), and tokens per example (from an SFT file when given,
counted as training tokenizes it: exact with the real tokenizer, else estimated).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reasonlab.formats.csvio import DataError
from reasonlab.formats.jsonl import read_jsonl
from reasonlab.formats.token_counts import TokenCounter

__all__ = [
    "MEASURED_SOURCE",
    "MEASURED_TOKENS_PER_S",
    "BudgetLine",
    "plan_budget",
    "sft_token_stats",
]

# One H200, all 52 layers of the real config with random bf16 weights, LoRA r=32 on every
# preset, 2048-token rows, gradient checkpointing, transformers' PyTorch Mamba fallback
# (mamba_ssm not installed): `python bench/bench_train_step.py --layers 52 --seq-len 2048`.
MEASURED_TOKENS_PER_S = 634.0
MEASURED_SOURCE = "H200, real shapes, torch Mamba fallback (bench/bench_train_step.py)"


@dataclass(frozen=True)
class BudgetLine:
    usd: float
    gpu_hours: float
    wall_hours: float  # gpu_hours spread over the GPUs, assuming linear scaling (an upper bound)
    tokens: float  # training tokens processed (prompt + completion, all epochs)
    examples: int  # examples of the given mean length
    epochs: float | None  # passes over the given SFT file, when one was given


def sft_token_stats(path: Path, counter: TokenCounter | None = None) -> tuple[int, float]:
    """(rows, mean tokens per row) of an SFT JSONL: prompt + completion as training feeds them.

    `counter` counts tokens (default: the real tokenizer when available, else an estimate).
    """
    rows = read_jsonl(path)
    if not rows:
        raise ValueError(f"{path}: no rows")
    counter = counter or TokenCounter.load()
    turns = []
    for line, row in enumerate(rows, start=1):
        try:
            user, assistant = (message["content"] for message in row["messages"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: line {line}: 'messages' must be [user, assistant]") from None
        turns.append((user, assistant))
    try:
        lengths = counter.lengths(turns)
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
    return len(rows), sum(length.training for length in lengths) / len(rows)


def plan_budget(
    budgets_usd: Sequence[float],
    gpu_hour_usd: float,
    tokens_per_example: float,
    tokens_per_s: float = MEASURED_TOKENS_PER_S,
    gpus: int = 1,
    dataset_rows: int | None = None,
) -> list[BudgetLine]:
    """One line per budget at `tokens_per_s` per GPU."""
    if gpu_hour_usd <= 0 or tokens_per_example <= 0 or tokens_per_s <= 0 or gpus < 1:
        raise ValueError("price, tokens per example, tokens/s and GPUs must all be positive")
    lines = []
    for usd in budgets_usd:
        gpu_hours = usd / gpu_hour_usd
        tokens = gpu_hours * 3600 * tokens_per_s
        examples = math.floor(tokens / tokens_per_example)
        epochs = examples / dataset_rows if dataset_rows else None
        lines.append(BudgetLine(usd, gpu_hours, gpu_hours / gpus, tokens, examples, epochs))
    return lines
