"""The real Nemotron-3 tokenizer: rebuilt offline byte for byte, its known ids, its folder.

The facts pinned here come from the published file (docs/competition.md, "The tokenizer").
"""

from __future__ import annotations

import hashlib
import json

import pytest

pytest.importorskip("transformers")

from reasonlab.data.generate import generate_mixed
from reasonlab.formats.chat import (
    render_scorer_prompt,
    render_user_prompt,
    sft_example,
    tokenize_example,
)
from reasonlab.formats.files import sha256_file
from reasonlab.formats.tokenizer import (
    SPECIAL_TOKENS,
    TOKENIZER_BYTES,
    TOKENIZER_SHA256,
    VOCAB_SIZE,
    TokenizerError,
    cached_tokenizer_dir,
    load_tokenizer,
    rebuild_tokenizer_json,
    verify_tokenizer_json,
)
from reasonlab.puzzles.registry import FAMILIES

PUZZLE = "In Alice's Wonderland, numbers change:\n3 -> 5\nNow, determine the result for: 7"


def test_rebuild_is_the_published_file() -> None:
    data = rebuild_tokenizer_json()
    assert len(data) == TOKENIZER_BYTES == 17_077_485
    assert hashlib.sha256(data).hexdigest() == TOKENIZER_SHA256
    # without the trailing newline it is the Nemotron-3 family file, a different hash
    assert (
        hashlib.sha256(data[:-1]).hexdigest()
        == "623c34567aebb18582765289fbe23d901c62704d6518d71866e0e58db892b5b7"
    )
    model = json.loads(data)["model"]
    assert len(model["vocab"]) == VOCAB_SIZE and len(model["merges"]) == 269_443
    assert model["ignore_merges"] is True and model["byte_fallback"] is False


@pytest.mark.parametrize(
    "change",
    [
        lambda data: data[:-1],  # the family file: one byte short
        lambda data: data.replace(
            b'"ignore_merges": true', b'"ignore_merges": fals', 1
        ),  # same size
    ],
    ids=["size", "sha256"],
)
def test_a_near_copy_is_refused(change) -> None:
    with pytest.raises(TokenizerError, match="refusing a near-copy") as err:
        verify_tokenizer_json(change(rebuild_tokenizer_json()))
    assert TOKENIZER_SHA256 in str(err.value) and "\n" not in str(err.value)


def test_known_ids(real_tokenizer) -> None:
    tok = real_tokenizer
    assert len(tok) == VOCAB_SIZE
    assert tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>", "<think>", "</think>"]) == [
        10,
        11,
        12,
        13,
    ]
    assert tok.convert_ids_to_tokens([0, 1, 2, 999]) == ["<unk>", "<s>", "</s>", "<SPECIAL_999>"]
    assert SPECIAL_TOKENS[14:18] == (
        "<tool_call>",
        "</tool_call>",
        "<tool_response>",
        "</tool_response>",
    )
    # <think> .. </tool_response> are added tokens that decoding keeps; the rest are special
    added = {
        t.content: t.special for t in tok.backend_tokenizer.get_added_tokens_decoder().values()
    }
    assert [name for name, special in added.items() if not special] == list(SPECIAL_TOKENS[12:18])
    # every digit is its own token and so is the space before one
    assert len(tok("01101001 -> 11010010", add_special_tokens=False)["input_ids"]) == 18


def test_scorer_prompt_ids(real_tokenizer) -> None:
    ids = real_tokenizer(render_scorer_prompt(real_tokenizer, PUZZLE))["input_ids"]
    assert ids[:3] == [10, 25708, 1010]  # <|im_start|>system\n, no BOS before it
    assert ids[-6:] == [10, 1503, 19464, 1010, 12, 1010]  # <|im_start|>assistant\n<think>\n


def test_training_ids_are_the_scorer_prompt_then_the_completion(real_tokenizer) -> None:
    """No merge across the boundary: prompt ids + completion ids == the ids of the whole text."""
    from reasonlab.data.traces import build_traces

    rows = generate_mixed(4, seed=5)
    traced = build_traces(rows, allow_incomplete=True).rows
    assert {row["family"] for row in traced} == set(FAMILIES)
    for row in traced:
        example = sft_example(real_tokenizer, row)
        ids = tokenize_example(real_tokenizer, example)["input_ids"]
        prompt = real_tokenizer(render_user_prompt(real_tokenizer, row["messages"][0]["content"]))
        prompt = prompt["input_ids"]  # as the scorer's vLLM encodes the rendered prompt
        assert ids[: len(prompt)] == prompt, row["id"]
        whole = real_tokenizer(example.prompt + example.completion)["input_ids"]
        assert ids == whole, row["id"]


def test_tokenizer_command_writes_a_loadable_folder(cli, tmp_path) -> None:
    from transformers import AutoTokenizer

    out = tmp_path / "tok"
    assert TOKENIZER_SHA256 in cli("tokenizer", "-o", out).output
    assert sha256_file(out / "tokenizer.json") == TOKENIZER_SHA256
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.bos_token == "<s>"
    assert render_scorer_prompt(tokenizer, PUZZLE).endswith("<|im_start|>assistant\n<think>\n")


def test_a_stale_cache_is_rebuilt(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = cached_tokenizer_dir()
    assert (
        folder.is_relative_to(tmp_path)
        and sha256_file(folder / "tokenizer.json") == TOKENIZER_SHA256
    )
    (folder / "tokenizer.json").write_bytes(b"{}")  # a truncated or tampered cache
    (folder / "tokenizer_config.json").write_text("{}")
    assert cached_tokenizer_dir() == folder
    assert sha256_file(folder / "tokenizer.json") == TOKENIZER_SHA256
    assert "chat_template" in json.loads((folder / "tokenizer_config.json").read_text())


def _bad_template_folder(tmp_path):
    folder = tmp_path / "other-template"
    folder.mkdir()
    source = cached_tokenizer_dir()
    (folder / "tokenizer.json").write_bytes((source / "tokenizer.json").read_bytes())
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda tmp: tmp / "missing", "no such tokenizer folder"),
        (
            lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt",
            "not a tokenizer folder",
        ),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "not a tokenizer folder"),
        (_bad_template_folder, "not the base model's template"),
    ],
    ids=["missing", "a file", "empty folder", "another chat template"],
)
def test_bad_tokenizer_paths_are_one_line_errors(cli, write_csv, tmp_path, make, words) -> None:
    path = make(tmp_path)
    with pytest.raises(TokenizerError, match=words):
        load_tokenizer(path)
    data = write_csv("d.csv", generate_mixed(1, seed=1))
    out = cli("traces", data, "-o", tmp_path / "o.jsonl", "--tokenizer", path, expect=1).output
    out = " ".join(out.split())  # rich wraps long lines
    assert str(path) in out and words in out and "repo" not in out.lower()
    assert "Traceback" not in out and not (tmp_path / "o.jsonl").exists()
