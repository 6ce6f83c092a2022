"""Distillation: generations become SFT rows, only where the answer checks out.

The generations come from `reasonlab eval` (a teacher over `--backend openai`, or the
student itself in a STaR round). A generation is kept when the metric calls its answer
right, it was not cut off, it fits the token budget, and its text can close the think
block. `keep_reason` is that rule for one line; `eval --only-missing` uses it to know
which rows are already covered. The SFT row always carries the scorer's prompt, whatever
prompt the generation was made with (a teacher's instructions, a rationalization hint).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from reasonlab.competition import MAX_NEW_TOKENS
from reasonlab.data.traces import sft_row
from reasonlab.formats.chat import completion_text
from reasonlab.formats.csvio import DataError
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


def keep_reason(
    line: Mapping,
    gold_answer: str,
    max_new_tokens: int = MAX_NEW_TOKENS,
    forbidden: Sequence[str] = (),
) -> Reason:
    """Whether one output line of `eval` makes a training row, and if not, the first reason.

    `forbidden`: words (case-insensitive) a kept trace must not contain, e.g. "hint" for
    traces written with the answer as a hint: without the hint they would not make sense.
    """
    if not is_correct(gold_answer, extract_answer(line["output"])):
        return "wrong"
    if line.get("truncated"):
        return "truncated"
    if line.get("output_tokens", 0) > max_new_tokens:
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
) -> DistillResult:
    """Right, complete, in-budget outputs as SFT rows: the shortest per id, or all."""
    gold = {row["id"]: row for row in gold_rows}
    result = DistillResult([])
    chosen: dict[str, list[Mapping]] = {}
    for line in outputs:
        result.counts["outputs"] += 1
        row = gold.get(line["id"])
        reason = (
            "wrong" if row is None else keep_reason(line, row["answer"], max_new_tokens, forbidden)
        )
        if reason == "wrong":
            continue
        result.counts["correct"] += 1
        if reason != "kept":
            result.counts[reason] += 1
            continue
        chosen.setdefault(line["id"], []).append(line)
    for row_id, lines in chosen.items():
        lines = sorted(
            lines, key=lambda line: (line.get("output_tokens", 0), line.get("sample", 0))
        )
        for line in lines if keep == "all" else lines[:1]:
            result.rows.append(
                sft_row(
                    row_id,
                    line.get("family", ""),
                    gold[row_id]["prompt"],
                    line["output"],
                    answer=gold[row_id]["answer"],
                    tokens=line.get("output_tokens"),
                    sample=line.get("sample", 0),
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
