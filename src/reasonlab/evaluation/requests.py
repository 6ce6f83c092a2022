"""What `evaluate` asks for: which (row, sample) pairs, with which prompt text.

Prompts: by default the scorer's user message (puzzle, newline, suffix) rendered with the
base tokenizer's chat template. A teacher may get its own instructions instead: a
system prompt, and an instruction template whose `{prompt}` is the puzzle and whose
`{answer}` is the gold answer (a rationalization hint). In the HTTP backend's `chat`
mode the server renders the messages; our tokenizer then only counts.

Samples: a plain run asks for samples 0..K-1 of every row that lacks them. With
`only_missing`, a row already holding a generation `distill` would keep is covered and
asks for nothing; every other row asks for its next K unused sample numbers below
`max_samples_per_row`, wave after wave, until it is covered or has them all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from reasonlab.competition import user_message
from reasonlab.evaluation.backends import Request
from reasonlab.formats.csvio import DataError

__all__ = ["PromptRenderer", "fill_instruction", "plan_samples", "sample_seed"]

PROMPT_FIELD, ANSWER_FIELD = "{prompt}", "{answer}"


def fill_instruction(template: str | None, row: Mapping[str, str]) -> str:
    """The user message for a row: the scorer's by default, else the template filled in.

    Filled by plain replacement (not `str.format`): instructions quote `\\boxed{}`.
    """
    if template is None:
        return user_message(row["prompt"])
    if ANSWER_FIELD in template and "answer" not in row:
        raise DataError(
            f"row {row['id']}: the instruction template uses {{answer}} but the data has no answer column"
        )
    return template.replace(PROMPT_FIELD, row["prompt"]).replace(
        ANSWER_FIELD, row.get("answer", "")
    )


def sample_seed(seed: int, row_id: str, sample: int) -> int:
    """A 31-bit seed per (run seed, id, sample), stable across runs and machines."""
    digest = hashlib.sha256(f"{seed}/{row_id}/{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class PromptRenderer:
    """Turns (row, sample) into a `Request`; `max_new_tokens` is capped to the context, as vLLM does."""

    tokenizer: object
    chat: bool  # the server renders (HTTP chat mode): send the user message as it is
    system_prompt: str | None
    instruction_template: str | None
    max_new_tokens: int
    max_model_len: int
    seed: int

    def render(self, row: Mapping[str, str]) -> tuple[str, tuple[int, ...]]:
        """(text to send, its token ids as counted against the context)."""
        from reasonlab.formats.chat import render_user_prompt

        message = fill_instruction(self.instruction_template, row)
        if self.chat:
            counted = f"{self.system_prompt}\n{message}" if self.system_prompt else message
            return message, tuple(self.tokenizer(counted, add_special_tokens=False)["input_ids"])
        text = render_user_prompt(self.tokenizer, message, system=self.system_prompt or None)
        return text, tuple(self.tokenizer(text)["input_ids"])  # as vLLM encodes a text prompt

    def requests(self, row: Mapping[str, str], samples: Sequence[int]) -> list[Request]:
        """One request per sample; `max_new_tokens` 0 means the prompt leaves no room."""
        text, ids = self.render(row)
        room = max(min(self.max_new_tokens, self.max_model_len - len(ids)), 0)
        return [
            Request(row["id"], s, text, ids, room, sample_seed(self.seed, row["id"], s))
            for s in samples
        ]


def plan_samples(
    rows: Sequence[Mapping[str, str]],
    done: Mapping[str, Collection[int]],
    samples: int,
    only_missing: bool = False,
    max_samples_per_row: int | None = None,
    covered: Collection[str] = (),
) -> list[tuple[Mapping[str, str], list[int]]]:
    """(row, sample numbers to generate) for every row that still needs some."""
    plan = []
    for row in rows:
        have = done.get(row["id"], ())
        if not only_missing:
            wanted = [s for s in range(samples) if s not in have]
        elif row["id"] in covered:
            wanted = []
        else:
            limit = max_samples_per_row or samples
            wanted = [s for s in range(limit) if s not in have][:samples]
        if wanted:
            plan.append((row, wanted))
    return plan
