"""The scorer's prompt rendering and the training example built on it."""

from __future__ import annotations

import pytest

pytest.importorskip("trl")
pytest.importorskip("transformers")

from reasonlab.competition import GENERATION_PROMPT_END, PROMPT_SUFFIX, user_message
from reasonlab.formats.chat import (
    completion_text,
    load_chat_template,
    render_scorer_prompt,
    sft_example,
    tokenize_example,
)
from reasonlab.formats.csvio import DataError
from reasonlab.metric import extract_answer
from reasonlab.training.tiny_model import toy_sft_rows


@pytest.fixture(scope="module")
def tokenizer(real_tokenizer):
    return real_tokenizer


PUZZLE = "In Alice's Wonderland, numbers change:\n3 -> 5\nNow, determine the result for: 7"


def test_scorer_prompt_is_byte_exact(tokenizer):
    expected = (
        "<|im_start|>system\n<|im_end|>\n"
        f"<|im_start|>user\n{PUZZLE}\n{PROMPT_SUFFIX}<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n"
    )
    assert render_scorer_prompt(tokenizer, PUZZLE) == expected
    assert expected.endswith(GENERATION_PROMPT_END)


def test_training_template_renders_the_same_prompt(tokenizer):
    # trl's `{% generation %}` variant must not change the prompt bytes
    messages = [{"role": "user", "content": user_message(PUZZLE)}]
    plain = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=True
    )
    training = tokenizer.apply_chat_template(
        messages,
        chat_template=load_chat_template(training=True),
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=True,
    )
    assert plain == training


def test_training_text_equals_the_templates_full_conversation(tokenizer):
    row = toy_sft_rows(1)[0]
    example = sft_example(tokenizer, row)
    trace = row["messages"][1]["content"]
    full = tokenizer.apply_chat_template(
        [
            row["messages"][0],
            {
                "role": "assistant",
                "content": "<think>\n" + completion_text(trace).removesuffix("<|im_end|>\n"),
            },
        ],
        tokenize=False,
    )
    assert example.prompt + example.completion == full


def test_training_prompt_tokens_equal_the_scorers(tokenizer):
    # the scorer (vLLM) encodes the rendered text prompt; training must see the same ids
    row = toy_sft_rows(3, seed=5)[2]
    example = sft_example(tokenizer, row)
    ids = tokenize_example(tokenizer, example)
    scorer_ids = tokenizer(
        render_scorer_prompt(
            tokenizer, row["messages"][0]["content"].removesuffix("\n" + PROMPT_SUFFIX)
        )
    )["input_ids"]
    n = len(scorer_ids)
    assert ids["input_ids"][:n] == scorer_ids
    assert ids["labels"][:n] == [-100] * n
    assert ids["labels"][n:] == ids["input_ids"][n:] and len(ids["labels"]) > n
    assert tokenizer.decode(ids["input_ids"][n:]) == example.completion


@pytest.mark.parametrize(
    ("trace", "expected"),
    [
        # a solver trace: close the think block, repeat the boxed answer, end the turn
        ("3 + 4 = 7.\n\\boxed{7}", "3 + 4 = 7.\n\\boxed{7}\n</think>\n\\boxed{7}<|im_end|>\n"),
        # an answer containing braces survives the repeat (the metric cuts at the last })
        ("so \\boxed{a}b}", "so \\boxed{a}b}\n</think>\n\\boxed{a}b}<|im_end|>\n"),
        # a teacher generation that already closes its block is kept as written
        ("<think>\nhmm\n</think>\n\\boxed{1}", "hmm\n</think>\n\\boxed{1}<|im_end|>\n"),
    ],
)
def test_completion_text(trace, expected):
    out = completion_text(trace)
    assert out == expected
    assert extract_answer(out) == extract_answer(trace)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "a", "messages": [{"role": "user", "content": "x"}]}, "list of"),
        (
            {
                "id": "b",
                "messages": [
                    {"role": "assistant", "content": "x"},
                    {"role": "user", "content": "y"},
                ],
            },
            "roles",
        ),
        (
            {
                "id": "c",
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": "no box"},
                ],
            },
            "boxed",
        ),
    ],
)
def test_bad_rows_name_the_row(tokenizer, row, message):
    with pytest.raises(DataError, match=f"row {row['id']}.*{message}"):
        sft_example(tokenizer, row)
