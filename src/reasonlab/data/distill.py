"""Distillation: a teacher's generations become SFT rows, only where its answer checks out.

The teacher runs through `reasonlab eval --backend openai` (any OpenAI-compatible
server, with the teacher's tokenizer folder as `--base` so its own chat template renders
the scorer's prompt). Here its saved outputs are filtered: a generation is kept when
the metric calls its answer right, it was not cut off, and what the student must generate
for it (the output, `</think>`, the boxed answer, `<|im_end|>`) fits the scorer's budget,
counted with the base model's tokenizer (`formats.token_counts`), not the teacher's.
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

__all__ = ["DistillResult", "distill"]

Keep = Literal["shortest", "all"]


@dataclass
class DistillResult:
    rows: list[dict]
    counts: Counter = field(
        default_factory=Counter
    )  # outputs, correct, truncated, no_box, too_long, kept
    counting: str = ""  # how lengths were counted (TokenCounter.describe)


def distill(
    outputs: Iterable[Mapping],
    gold_rows: Sequence[Mapping[str, str]],
    keep: Keep = "shortest",
    max_new_tokens: int = MAX_NEW_TOKENS,
    counter: TokenCounter | None = None,
) -> DistillResult:
    """Right, complete, in-budget teacher outputs as SFT rows: the shortest per id, or all.

    `counter` counts tokens (default: the real tokenizer when available, else an estimate).
    """
    counter = counter or TokenCounter.load()
    gold = {row["id"]: row for row in gold_rows}
    result = DistillResult([], counting=counter.describe())
    right: list[Mapping] = []
    for line in outputs:
        result.counts["outputs"] += 1
        row = gold.get(line["id"])
        if row is None or not is_correct(row["answer"], extract_answer(line["output"])):
            continue
        result.counts["correct"] += 1
        if line.get("truncated"):
            result.counts["truncated"] += 1
            continue
        try:  # training appends `</think>` and the boxed answer: the output must allow it
            completion_text(line["output"])
        except DataError:
            result.counts["no_box"] += 1
            continue
        right.append(line)
    lengths = counter.lengths(
        [(user_message(gold[line["id"]]["prompt"]), line["output"]) for line in right]
    )
    chosen: dict[str, list[tuple[int, int, Mapping, Lengths]]] = {}
    for line, length in zip(right, lengths):
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
