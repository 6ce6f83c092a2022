"""Turn solved puzzles into SFT rows whose chain of thought is correct by construction.

A row is kept only when the solver answered, the answer is right by the metric (when
the data has gold answers), the rendered trace yields that answer through the metric's
own extraction, the trace shows the whole derivation, and the trace fits the scorer's
token budget. Everything dropped is counted, per family, with the reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reasonlab.competition import MAX_MODEL_LEN, MAX_NEW_TOKENS, user_message
from reasonlab.data.solve import solve_rows
from reasonlab.metric import extract_answer, is_correct

__all__ = [
    "CHARS_PER_TOKEN_ESTIMATE",
    "TokenCounter",
    "TraceResult",
    "TraceStats",
    "build_traces",
    "sft_row",
]

# Without the real tokenizer, tokens are estimated from characters. 3 characters a token
# errs long for English prose and is about right for digit- and symbol-heavy traces.
CHARS_PER_TOKEN_ESTIMATE = 3.0


class TokenCounter:
    """Counts the tokens of a prompt and of the assistant turn as the chat template renders them."""

    def __init__(self, tokenizer_dir: str | Path | None = None) -> None:
        self.exact = tokenizer_dir is not None
        self._tokenizer = None
        if tokenizer_dir is not None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))

    def count(self, prompt: str, trace: str) -> tuple[int, int]:
        """(prompt tokens, completion tokens) for one puzzle prompt and its trace."""
        if self._tokenizer is None:
            prompt_estimate = len(user_message(prompt)) / CHARS_PER_TOKEN_ESTIMATE
            return round(prompt_estimate), round(len(trace) / CHARS_PER_TOKEN_ESTIMATE)
        from reasonlab.formats.chat import sft_example, tokenize_example

        # Tokenized exactly as training tokenizes it: the scorer's prompt, then the
        # completion (trace, </think>, the boxed answer, end of turn).
        example = sft_example(self._tokenizer, sft_row("", "", prompt, trace))
        labels = tokenize_example(self._tokenizer, example)["labels"]
        completion = sum(1 for label in labels if label != -100)
        return len(labels) - completion, completion


@dataclass
class TraceStats:
    """Per-family counts of what happened to each row, and the kept rows' token lengths."""

    counts: Counter = field(default_factory=Counter)
    tokens: list[int] = field(default_factory=list)

    def percentile(self, q: float) -> int:
        if not self.tokens:
            return 0
        ordered = sorted(self.tokens)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class TraceResult:
    rows: list[dict]
    stats: dict[str, TraceStats]
    exact_tokens: bool


def sft_row(row_id: str, family: str, prompt: str, trace: str, **extra: object) -> dict:
    """One SFT example in the project's JSONL shape (the chat template is applied at training)."""
    messages = [
        {"role": "user", "content": user_message(prompt)},
        {"role": "assistant", "content": trace},
    ]
    return {"id": row_id, "family": family, "messages": messages, **extra}


def build_traces(
    rows: Sequence[dict[str, str]],
    tokenizer_dir: str | Path | None = None,
    max_new_tokens: int = MAX_NEW_TOKENS,
    workers: int = 1,
    allow_incomplete: bool = False,
    on_progress: Callable[[int], None] | None = None,
    styles: Mapping[str, str] | None = None,
) -> TraceResult:
    """Solve and render every row (`styles`: family -> trace style, `data.solve`); keep
    the traces that are right and fit the budget."""
    counter = TokenCounter(tokenizer_dir)
    solved = solve_rows(rows, workers=workers, render=True, on_progress=on_progress, styles=styles)
    stats: dict[str, TraceStats] = {}
    kept: list[dict] = []
    for row, result in zip(rows, solved):
        tally = stats.setdefault(result.family, TraceStats())
        tally.counts["in"] += 1
        if result.status != "solved" or result.trace is None:
            continue
        tally.counts["solved"] += 1
        gold = row.get("answer")
        if gold is not None and not is_correct(gold, result.answer):
            continue
        tally.counts["correct"] += 1
        if not is_correct(
            gold if gold is not None else result.answer, extract_answer(result.trace)
        ):
            tally.counts["dropped_trace_answer"] += (
                1  # a renderer bug: the trace must box the answer
            )
            continue
        if not result.trace_complete and not allow_incomplete:
            tally.counts["dropped_incomplete"] += 1
            continue
        prompt_tokens, trace_tokens = counter.count(row["prompt"], result.trace)
        if trace_tokens > max_new_tokens or prompt_tokens + trace_tokens > MAX_MODEL_LEN:
            tally.counts["dropped_length"] += 1
            continue
        tally.counts["kept"] += 1
        tally.tokens.append(trace_tokens)
        kept.append(
            sft_row(
                row["id"],
                result.family,
                row["prompt"],
                result.trace,
                answer=result.answer,
                tokens=trace_tokens,
            )
        )
    return TraceResult(kept, stats, counter.exact)
