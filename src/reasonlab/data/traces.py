"""Turn solved puzzles into SFT rows whose chain of thought is correct by construction.

A row is kept only when the solver answered, the answer is right by the metric (when
the data has gold answers), the rendered trace yields that answer through the metric's
own extraction, the trace shows the whole derivation, and what the model must generate
fits the scorer's budget (`formats.token_counts`: exact with the real tokenizer). Every
dropped row is counted, per family, under the one reason that dropped it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from reasonlab.competition import MAX_NEW_TOKENS, user_message
from reasonlab.data.solve import SOLUTION_STATUSES, solve_rows
from reasonlab.formats.token_counts import TokenCounter
from reasonlab.metric import extract_answer, is_correct

__all__ = ["DROP_REASONS", "TraceResult", "TraceStats", "build_traces", "sft_row"]

# Why a row yields no SFT example, in the order the checks run; each row has one reason.
DROP_REASONS = {
    "no_answer": "the solver gave no answer (unsolved, no solver, or an error)",
    "wrong": "the solver's answer is not the gold answer",
    "trace_error": "the trace's boxed answer is not the solver's (a renderer bug)",
    "incomplete": "the trace shows the answer but not the whole search that found it",
    "over_budget": "generation over max_new_tokens, or prompt + generation over 8,192",
}


@dataclass
class TraceStats:
    """One family's tally: rows, answers, kept rows, drops by reason, kept token lengths."""

    counts: Counter = field(default_factory=Counter)
    tokens: list[int] = field(default_factory=list)  # generated tokens of each kept row

    def percentile(self, q: float) -> int:
        if not self.tokens:
            return 0
        ordered = sorted(self.tokens)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict:
        """What the `traces` table and the dataset manifest show for the family."""
        c = self.counts
        return {
            "rows": c["rows"],
            "answered": c["answered"],
            "solver_right": c["right"],
            "kept": c["kept"],
            "kept_incomplete": c["kept_incomplete"],
            "dropped": {reason: c[reason] for reason in DROP_REASONS},
            "tokens": {
                "p50": self.percentile(0.5),
                "p95": self.percentile(0.95),
                "max": max(self.tokens, default=0),
            },
        }


@dataclass(frozen=True)
class TraceResult:
    rows: list[dict]
    stats: dict[str, TraceStats]
    exact_tokens: bool
    has_gold: bool  # False: no answer column, so nothing was checked against a gold answer
    counting: str  # how lengths were counted (TokenCounter.describe)


def sft_row(row_id: str, family: str, prompt: str, trace: str, **extra: object) -> dict:
    """One SFT example in the project's JSONL shape (the chat template is applied at training)."""
    messages = [
        {"role": "user", "content": user_message(prompt)},
        {"role": "assistant", "content": trace},
    ]
    return {"id": row_id, "family": family, "messages": messages, **extra}


def build_traces(
    rows: Sequence[dict[str, str]],
    counter: TokenCounter | None = None,
    max_new_tokens: int = MAX_NEW_TOKENS,
    workers: int = 1,
    allow_incomplete: bool = False,
    on_progress: Callable[[int], None] | None = None,
    styles: Mapping[str, str] | None = None,
) -> TraceResult:
    """Solve and render every row; keep the traces that are right and fit the budget.

    `styles` maps a family to one of its trace styles (`data.solve.offered_styles`).

    `counter` counts tokens (default: the real tokenizer when available, else an estimate).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
    counter = counter or TokenCounter.load()
    has_gold = bool(rows) and all("answer" in row for row in rows)
    solved = solve_rows(rows, workers=workers, render=True, on_progress=on_progress, styles=styles)
    stats: dict[str, TraceStats] = {}
    candidates = []
    for row, result in zip(rows, solved):
        tally = stats.setdefault(result.family, TraceStats())
        tally.counts["rows"] += 1
        if result.status not in SOLUTION_STATUSES or result.trace is None:
            tally.counts["no_answer"] += 1
            continue
        tally.counts["answered"] += 1
        if has_gold:
            if not is_correct(row["answer"], result.answer):
                tally.counts["wrong"] += 1
                continue
            tally.counts["right"] += 1
        reference = row["answer"] if has_gold else result.answer
        if not is_correct(reference, extract_answer(result.trace)):
            tally.counts["trace_error"] += 1
            continue
        if not result.trace_complete and not allow_incomplete:
            tally.counts["incomplete"] += 1
            continue
        candidates.append((row, result))
    lengths = counter.lengths([(user_message(row["prompt"]), r.trace) for row, r in candidates])
    kept: list[dict] = []
    for (row, result), length in zip(candidates, lengths):
        tally = stats[result.family]
        if not length.fits(max_new_tokens):
            tally.counts["over_budget"] += 1
            continue
        tally.counts["kept"] += 1
        tally.counts["kept_incomplete"] += not result.trace_complete
        tally.tokens.append(length.generated)
        kept.append(
            sft_row(
                row["id"],
                result.family,
                row["prompt"],
                result.trace,
                answer=result.answer,
                tokens=length.generated,
                prompt_tokens=length.prompt,
            )
        )
    return TraceResult(kept, stats, counter.exact, has_gold, counter.describe())
