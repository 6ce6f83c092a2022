"""Distillation: generations become SFT rows, only where the answer checks out.

The generations come from `reasonlab eval` (a teacher over `--backend openai`, or the
student itself in a STaR round). A generation is kept when the metric calls its answer
right, it was not cut off, its text can close the think block, and what the student must
generate for it (the output, `</think>`, the boxed answer, `<|im_end|>`) fits the scorer's
budget, counted with the base model's tokenizer (`formats.token_counts`), not the
teacher's. `keep_reason` is the per-line part of that rule (the server's own token count
stands in for the budget); `eval --only-missing` uses it to know which rows are covered.
The SFT row always carries the scorer's prompt, whatever prompt the generation was made
with (a teacher's instructions, a rationalization hint).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from reasonlab.competition import MAX_NEW_TOKENS, user_message
from reasonlab.data.traces import sft_row
from reasonlab.formats.chat import completion_text
from reasonlab.formats.csvio import DataError
from reasonlab.formats.token_counts import Lengths, TokenCounter
from reasonlab.metric import extract_answer, is_correct

__all__ = ["DistillResult", "Reason", "distill", "keep_reason", "merge_sft"]

Keep = Literal["shortest", "all"]
# Why a generation is (not) kept, in the order the checks run.
Reason = Literal["wrong", "truncated", "too_long", "no_box", "mentions", "kept"]


@dataclass
class DistillResult:
    rows: list[dict]
    # outputs, correct, truncated, too_long, no_box, mentions (a forbidden word), kept
    counts: Counter = field(default_factory=Counter)
    counting: str = ""  # how lengths were counted (TokenCounter.describe)


def keep_reason(
    line: Mapping,
    gold_answer: str,
    max_new_tokens: int | None = MAX_NEW_TOKENS,
    forbidden: Sequence[str] = (),
) -> Reason:
    """Whether one output line of `eval` makes a training row, and if not, the first reason.

    The budget is checked against the server's own token count (`output_tokens`), a stand-in
    for the exact count `distill` makes; `max_new_tokens=None` leaves it to the caller.
    `forbidden`: words (case-insensitive) a kept trace must not contain, e.g. "hint" for
    traces written with the answer as a hint: without the hint they would not make sense.
    """
    if not is_correct(gold_answer, extract_answer(line["output"])):
        return "wrong"
    if line.get("truncated"):
        return "truncated"
    if max_new_tokens is not None and line.get("output_tokens", 0) > max_new_tokens:
        return "too_long"
    try:  # training appends `</think>` and the boxed answer: the output must allow it
        completion_text(line["output"])
    except DataError:
        return "no_box"
    lowered = line["output"].lower()
    if any(word.lower() in lowered for word in forbidden):
        return "mentions"
    return "kept"


def distill(
    outputs: Iterable[Mapping],
    gold_rows: Sequence[Mapping[str, str]],
    keep: Keep = "shortest",
    max_new_tokens: int = MAX_NEW_TOKENS,
    forbidden: Sequence[str] = (),
    counter: TokenCounter | None = None,
) -> DistillResult:
    """Right, complete, in-budget outputs as SFT rows: the shortest per id, or all.

    `counter` counts tokens (default: the real tokenizer when available, else an estimate).
    """
    counter = counter or TokenCounter.load()
    gold = {row["id"]: row for row in gold_rows}
    result = DistillResult([], counting=counter.describe())
    right: list[Mapping] = []
    for line in outputs:
        result.counts["outputs"] += 1
        row = gold.get(line["id"])
        # the budget is checked below, in the base model's tokens (not the server's count)
        reason = "wrong" if row is None else keep_reason(line, row["answer"], None, forbidden)
        if reason == "wrong":
            continue
        result.counts["correct"] += 1
        if reason != "kept":
            result.counts[reason] += 1
            continue
        right.append(line)
    lengths = counter.lengths(
        [(user_message(gold[line["id"]]["prompt"]), line["output"]) for line in right]
    )
    chosen: dict[str, list[tuple[int, int, Mapping, Lengths]]] = {}
    for line, length in zip(right, lengths, strict=True):
        if not length.fits(max_new_tokens):
            result.counts["too_long"] += 1
            continue
        entry = (length.generated, line.get("sample", 0), line, length)
        chosen.setdefault(line["id"], []).append(entry)
    for row_id, entries in chosen.items():
        entries.sort(key=lambda entry: entry[:2])  # fewest generated tokens, then sample
        for _, sample, line, length in entries if keep == "all" else entries[:1]:
            result.rows.append(
                sft_row(
                    row_id,
                    line.get("family", ""),
                    gold[row_id]["prompt"],
                    line["output"],
                    answer=gold[row_id]["answer"],
                    tokens=length.generated,
                    prompt_tokens=length.prompt,
                    sample=sample,
                )
            )
    result.counts["kept"] = len(result.rows)
    return result


def merge_sft(
    previous: Iterable[Mapping], kept: Iterable[Mapping]
) -> tuple[list[dict], Counter, int]:
    """One SFT set from an existing one and newly kept rows, one row per puzzle.

    A puzzle is its user message (the scorer's prompt), so the same puzzle under two ids
    is one puzzle. The existing rows come first and stay; a kept row whose puzzle is
    already there is dropped. Returns (rows, rows gained per family, rows dropped).
    """
    seen: set[str] = set()
    merged: list[dict] = []
    gained: Counter = Counter()
    dropped = 0
    for source, rows in (("previous", previous), ("kept", kept)):
        for row in rows:
            puzzle = row["messages"][0]["content"]
            if puzzle in seen:
                dropped += 1
                continue
            seen.add(puzzle)
            merged.append(dict(row))
            if source == "kept":
                gained[row.get("family") or "unknown"] += 1
    return merged, gained, dropped
