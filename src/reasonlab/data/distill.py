"""Distillation: a teacher's generations become SFT rows, only where its answer checks out.

The teacher runs through `reasonlab eval --backend openai` (any OpenAI-compatible
server, with the teacher's tokenizer folder as `--base` so its own chat template renders
the scorer's prompt). Here its saved outputs are filtered: a generation is kept when
the metric calls its answer right, it was not cut off, and it fits the token budget.
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

__all__ = ["DistillResult", "distill"]

Keep = Literal["shortest", "all"]


@dataclass
class DistillResult:
    rows: list[dict]
    counts: Counter = field(
        default_factory=Counter
    )  # outputs, correct, truncated, too_long, no_box, kept


def distill(
    outputs: Iterable[Mapping],
    gold_rows: Sequence[Mapping[str, str]],
    keep: Keep = "shortest",
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> DistillResult:
    """Right, complete, in-budget teacher outputs as SFT rows: the shortest per id, or all."""
    gold = {row["id"]: row for row in gold_rows}
    result = DistillResult([])
    chosen: dict[str, list[Mapping]] = {}
    for line in outputs:
        result.counts["outputs"] += 1
        row = gold.get(line["id"])
        if row is None or not is_correct(row["answer"], extract_answer(line["output"])):
            continue
        result.counts["correct"] += 1
        if line.get("truncated"):
            result.counts["truncated"] += 1
            continue
        if line.get("output_tokens", 0) > max_new_tokens:
            result.counts["too_long"] += 1
            continue
        try:  # training appends `</think>` and the boxed answer: the output must allow it
            completion_text(line["output"])
        except DataError:
            result.counts["no_box"] += 1
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
