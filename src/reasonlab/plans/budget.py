"""What a dollar budget buys: GPU hours, training tokens, examples and epochs; teacher rows; STaR rounds.

Plain arithmetic on inputs the user can check: the price of a GPU hour (theirs),
training throughput in tokens per second (by default the figure measured by
`bench/bench_train_step.py`), and tokens per example (from an SFT file when given,
counted as training tokenizes it: exact with the real tokenizer, else estimated).
A teacher run is priced per kept row from a pilot's outputs (tokens billed per request,
rows kept per request) at the user's token prices; a STaR round in GPU hours from its
sampling (rows x K tries x tokens per try at a measured generation throughput,
`bench/bench_generate.py`) and its training (an epoch over the SFT set).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reasonlab.competition import MAX_NEW_TOKENS
from reasonlab.evaluation.spend import Prices
from reasonlab.formats.csvio import DataError
from reasonlab.formats.jsonl import read_jsonl
from reasonlab.formats.token_counts import TokenCounter

__all__ = [
    "MEASURED_SOURCE",
    "MEASURED_TOKENS_PER_S",
    "BudgetLine",
    "StarRound",
    "TeacherLine",
    "TeacherMeasure",
    "measure_teacher",
    "plan_budget",
    "plan_star_round",
    "plan_teacher",
    "sft_token_stats",
]

# One H200, all 52 layers of the real config with random bf16 weights, LoRA r=32 on every
# preset, the fast engine (fused Mamba kernels, grouped expert LoRA, attention per packed
# example, compiled norms, chunked loss, fused AdamW) on 8,192-token rows packed from
# generated traces' lengths and padded to the pack length, every activation kept (no
# gradient checkpointing, as configs/nemotron-1gpu.yaml; 109.5 GiB peak):
# `python bench/bench_train_step.py --layers 52 --steps 8 --runs fast-keep:8192` (mean of
# steps 3-8; bench/results/h200-2026-12-02d/keep.json). With checkpointing (80 GB cards),
# 10,160-12,348 in six runs of this engine and the two before it. The reference engine ran
# 644 tokens/s at 2,048 tokens.
MEASURED_TOKENS_PER_S = 17410.9
MEASURED_SOURCE = (
    "H200, real shapes, fast engine, 8,192-token packs, no checkpointing "
    "(bench/bench_train_step.py)"
)


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


# ---------------------------------------------------------------- a teacher's data factory
@dataclass(frozen=True)
class TeacherMeasure:
    """What a teacher pilot measured: tokens billed per request and how many rows it kept."""

    requests: int
    kept_rows: int  # rows with a generation distill keeps
    prompt_tokens: float  # mean per request, from the server's usage when it reported one
    completion_tokens: float

    @property
    def keep_rate(self) -> float:
        """Kept rows per paid request (with --only-missing a row stops costing once kept)."""
        return self.kept_rows / self.requests


@dataclass(frozen=True)
class TeacherLine:
    usd: float
    requests: int
    kept_rows: int
    usd_per_kept_row: float


def measure_teacher(
    outputs: Path, gold: Path, max_new_tokens: int = MAX_NEW_TOKENS
) -> TeacherMeasure:
    """Tokens per request and the keep rate of an `eval --backend openai` outputs file."""
    from reasonlab.data.distill import distill
    from reasonlab.formats.csvio import read_rows

    lines = read_jsonl(outputs)
    if not lines:
        raise ValueError(f"{outputs}: no outputs")
    prompt = completion = 0
    for line in lines:
        usage = line.get("usage") or {}  # our own counts where the server reported none
        prompt += usage.get("prompt_tokens", line.get("prompt_tokens", 0))
        completion += usage.get("completion_tokens", line.get("output_tokens", 0))
    kept = distill(
        lines, read_rows(gold, required=("id", "prompt", "answer")), max_new_tokens=max_new_tokens
    )
    return TeacherMeasure(len(lines), len(kept.rows), prompt / len(lines), completion / len(lines))


def plan_teacher(
    budgets_usd: Sequence[float], prices: Prices, measure: TeacherMeasure
) -> list[TeacherLine]:
    """Requests and kept rows each budget buys at `prices` and the measured keep rate."""
    per_request = prices.cost(measure.prompt_tokens, measure.completion_tokens)
    if per_request <= 0 or measure.kept_rows == 0:
        raise ValueError("the pilot kept no row or the prices are 0: nothing to price per kept row")
    per_kept = per_request / measure.keep_rate
    return [
        TeacherLine(usd, math.floor(usd / per_request), math.floor(usd / per_kept), per_kept)
        for usd in budgets_usd
    ]


# ---------------------------------------------------------------- a STaR round
@dataclass(frozen=True)
class StarRound:
    """GPU time of one `reasonlab star` round on one GPU, by part."""

    generate_tokens: float  # output tokens of rows x K tries (+ the held-out eval)
    train_tokens: float  # one epoch over the merged SFT set
    generate_hours: float
    train_hours: float

    @property
    def gpu_hours(self) -> float:
        return self.generate_hours + self.train_hours


def plan_star_round(
    rows: int,
    samples: int,
    tokens_per_try: float,
    generate_tokens_per_s: float,
    sft_rows: int,
    tokens_per_example: float,
    train_tokens_per_s: float = MEASURED_TOKENS_PER_S,
    heldout_rows: int = 0,
    epochs: float = 1.0,
) -> StarRound:
    """Sampling K tries per row (and the held-out eval) plus an epoch over the SFT set."""
    if min(rows, samples, tokens_per_try, generate_tokens_per_s, train_tokens_per_s) <= 0:
        raise ValueError("rows, samples, tokens per try and both throughputs must be positive")
    generated = (rows * samples + heldout_rows) * tokens_per_try
    trained = sft_rows * tokens_per_example * epochs
    return StarRound(
        generated,
        trained,
        generated / generate_tokens_per_s / 3600,
        trained / train_tokens_per_s / 3600,
    )
