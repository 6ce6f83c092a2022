"""Token lengths of SFT turns as the scorer meets them: exact with the real tokenizer, else estimated.

For a user turn and an assistant trace, three lengths matter (see `formats.chat` for the
texts): `prompt`, the scorer's rendered prompt as vLLM encodes it; `generated`, what the
model must write within `max_tokens` (the trace, `</think>`, the boxed answer and the
`<|im_end|>` it stops on); `training`, the ids training feeds the model (prompt +
completion, which ends with the template's newline after `<|im_end|>`). The scorer's
budget: generated <= 7,680 and prompt + generated <= 8,192 (`fits`).

Without the real tokenizer the lengths are estimated from characters, erring long: the
budget check then drops some traces that would fit, never keeps one that would not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reasonlab.competition import MAX_MODEL_LEN, MAX_NEW_TOKENS
from reasonlab.formats.chat import END_OF_TURN, completion_text, render_user_prompt
from reasonlab.formats.csvio import DataError
from reasonlab.formats.tokenizer import VOCAB_SIZE, load_tokenizer

__all__ = [
    "CHARS_PER_TOKEN_ESTIMATE",
    "PROMPT_TEMPLATE_TOKENS",
    "Lengths",
    "TokenCounter",
]

# Characters per token of the estimate. Every digit is its own token in the real
# vocabulary, so digit-heavy traces run 1.2-2.0 characters per token; 1.2 keeps the
# estimate at or above the exact count on every family (tests/test_token_counts.py).
CHARS_PER_TOKEN_ESTIMATE = 1.2
# Tokens the chat template adds around the user's text: the empty system turn, the user
# header, the end of the user turn and `<|im_start|>assistant\n<think>\n` (exact).
PROMPT_TEMPLATE_TOKENS = 16
_BATCH = 2048  # texts per tokenizer call (the Rust side encodes a batch on every core)


@dataclass(frozen=True)
class Lengths:
    prompt: int  # the scorer's rendered prompt
    generated: int  # trace, </think>, boxed answer, <|im_end|>: what counts against max_tokens
    training: int  # prompt + completion ids as training tokenizes them

    def fits(self, max_new_tokens: int = MAX_NEW_TOKENS) -> bool:
        """Within the scorer's limits: the generation cap and the context (prompt + generation)."""
        return self.generated <= max_new_tokens and self.prompt + self.generated <= MAX_MODEL_LEN


def _estimate(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN_ESTIMATE)


class TokenCounter:
    """Counts turns with a tokenizer (exact) or from characters (`tokenizer=None`: estimated)."""

    def __init__(self, tokenizer=None) -> None:
        self.tokenizer = tokenizer
        self.exact = tokenizer is not None

    @classmethod
    def load(cls, path: str | Path | None = None) -> TokenCounter:
        """Exact with the tokenizer folder at `path`, or the real one when available; else estimated."""
        return cls(load_tokenizer(path))

    def describe(self) -> str:
        """How lengths are counted, for table captions and manifests."""
        if self.exact and len(self.tokenizer) != VOCAB_SIZE:  # e.g. an old toy tokenizer
            return f"tokens of a {len(self.tokenizer):,}-token vocabulary, not the base model's"
        if self.exact:
            return "exact tokens"
        return (
            f"estimated tokens ({CHARS_PER_TOKEN_ESTIMATE} characters per token; "
            "install reasonlab[train] for exact counts)"
        )

    def lengths(self, turns: Sequence[tuple[str, str]]) -> list[Lengths]:
        """Lengths of (user content, assistant trace) pairs; the trace must box its answer."""
        completions = []
        for number, (_, trace) in enumerate(turns, start=1):
            try:
                completions.append(completion_text(trace))
            except DataError as err:
                raise DataError(f"row {number}: {err}") from None
        if self.tokenizer is None:
            estimated = []
            for (user, _), completion in zip(turns, completions):
                prompt = PROMPT_TEMPLATE_TOKENS + _estimate(user)
                generated = _estimate(completion.removesuffix("\n"))  # up to <|im_end|>
                estimated.append(Lengths(prompt, generated, prompt + generated + 1))
            return estimated
        tokenizer = self.tokenizer
        end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN.strip())
        result = []
        for start in range(0, len(turns), _BATCH):
            batch = turns[start : start + _BATCH]
            # vLLM encodes the rendered prompt with default special tokens; training
            # appends the completion's ids encoded without any (formats.chat.tokenize_example)
            prompts = tokenizer([render_user_prompt(tokenizer, user) for user, _ in batch])
            tails = tokenizer(completions[start : start + _BATCH], add_special_tokens=False)
            for prompt_ids, ids in zip(prompts["input_ids"], tails["input_ids"]):
                # generation stops at <|im_end|>: the template's newline after it is not generated
                generated = len(ids) - ids[::-1].index(end_id) if end_id in ids else len(ids)
                result.append(Lengths(len(prompt_ids), generated, len(prompt_ids) + len(ids)))
        return result
