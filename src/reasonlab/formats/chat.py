"""Chat formatting: the prompt exactly as the scorer renders it, and SFT examples built on it.

The scorer renders `[{"role": "user", "content": user_message(prompt)}]` with the base
tokenizer's chat template and `CHAT_TEMPLATE_KWARGS`; the text ends in
`<|im_start|>assistant\\n<think>\\n`, so the model starts inside its thinking block.
A training example is that same rendered prompt followed by the completion, tokenized
apart so the prompt's tokens are exactly the scorer's (no merge across the boundary).

Completion format (decided here, used by the trainer): the trace, then `\\n</think>\\n`,
then the final `\\boxed{answer}` again, then the template's end of turn `<|im_end|>\\n`.
Closing the think block and answering after it is what the base model was trained to do;
the metric reads the last box of the whole text, so repeating the answer changes nothing
for scoring and costs about ten tokens. `<|im_end|>` is the token vLLM stops on. A
full conversation rendered by the template gives the same text (see `training_text`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from reasonlab.competition import CHAT_TEMPLATE_KWARGS, GENERATION_PROMPT_END, user_message
from reasonlab.formats.csvio import DataError
from reasonlab.metric import extract_answer

__all__ = [
    "END_OF_TURN",
    "IGNORE_INDEX",
    "TEMPLATE_NAME",
    "SFTExample",
    "completion_text",
    "load_chat_template",
    "render_scorer_prompt",
    "render_user_prompt",
    "sft_example",
    "tokenize_example",
]

IGNORE_INDEX = -100  # the label of a position without loss (transformers' cross-entropy default)
TEMPLATE_NAME = "nemotron_3_nano"  # trl/chat_templates/<name>.jinja: the base model's template
END_OF_TURN = "<|im_end|>\n"  # what the template writes after an assistant message
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_BOX_OPEN = "\\boxed{"


@cache
def load_chat_template(training: bool = False) -> str:
    """The base model's chat template text (the `{% generation %}` variant when `training`)."""
    from importlib.resources import files

    name = f"{TEMPLATE_NAME}_training.jinja" if training else f"{TEMPLATE_NAME}.jinja"
    try:
        return files("trl").joinpath("chat_templates", name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise RuntimeError(
            f"the base model's chat template {name} ships with trl; install reasonlab[train] ({err})"
        ) from None


def render_user_prompt(tokenizer, user_content: str) -> str:
    """Render one user turn with the scorer's switches (`user_content` already has the suffix)."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_content}], tokenize=False, **CHAT_TEMPLATE_KWARGS
    )
    if not text.endswith(GENERATION_PROMPT_END):
        raise ValueError(
            f"the tokenizer's chat template does not end the prompt in {GENERATION_PROMPT_END!r}; "
            "it is not the base model's template"
        )
    return text


def render_scorer_prompt(tokenizer, puzzle_prompt: str) -> str:
    """The exact text the scorer feeds the model for a puzzle."""
    return render_user_prompt(tokenizer, user_message(puzzle_prompt))


def completion_text(trace: str) -> str:
    """What follows the scorer's prompt in training: trace, `</think>`, boxed answer, end of turn.

    A trace that already closes its think block (e.g. a teacher's generation) is kept as
    written; otherwise it must contain a `\\boxed{...}` answer to repeat after `</think>`.
    """
    body = trace.strip()
    if body.startswith(_THINK_OPEN):  # the scorer's prompt already opened the block
        body = body[len(_THINK_OPEN) :].lstrip("\n")
    if _THINK_CLOSE in body:
        return body + END_OF_TURN
    if _BOX_OPEN not in body:
        raise DataError("the assistant trace has no \\boxed{...} answer and no </think>")
    return f"{body}\n{_THINK_CLOSE}\n{_BOX_OPEN}{extract_answer(body)}}}{END_OF_TURN}"


@dataclass(frozen=True)
class SFTExample:
    """One training example as text: the scorer's prompt and the completion that follows it."""

    id: str
    prompt: str
    completion: str


def sft_example(tokenizer, row: Mapping) -> SFTExample:
    """Turn an SFT row `{"id", "messages": [user, assistant]}` into prompt and completion text."""
    row_id = str(row.get("id", "?"))
    messages = row.get("messages")
    if not isinstance(messages, list) or len(messages) != 2:
        raise DataError(f"row {row_id}: 'messages' must be a list of [user, assistant]")
    roles = [m.get("role") if isinstance(m, Mapping) else None for m in messages]
    if roles != ["user", "assistant"]:
        raise DataError(
            f"row {row_id}: 'messages' roles are {roles}, expected ['user', 'assistant']"
        )
    user, assistant = (m.get("content") for m in messages)
    if not isinstance(user, str) or not isinstance(assistant, str) or not assistant.strip():
        raise DataError(f"row {row_id}: message contents must be non-empty strings")
    try:
        completion = completion_text(assistant)
    except DataError as err:
        raise DataError(f"row {row_id}: {err}") from None
    return SFTExample(row_id, render_user_prompt(tokenizer, user), completion)


def tokenize_example(tokenizer, example: SFTExample) -> dict[str, list[int]]:
    """`input_ids` and `labels` (-100 on the prompt: loss only on the completion).

    The prompt is encoded as vLLM encodes a text prompt (default special tokens), the
    completion with none, and the two id lists are concatenated.
    """
    prompt_ids = tokenizer(example.prompt)["input_ids"]
    completion_ids = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
    return {
        "input_ids": prompt_ids + completion_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids,
    }
