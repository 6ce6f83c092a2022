"""The tiny model: native nemotron_h with every layer kind, a tokenizer with the real specials."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from reasonlab.formats.jsonl import read_jsonl
from reasonlab.training.tiny_model import SPECIAL_TOKENS, TOY_DATA_FILE, make_tiny_model


def test_tiny_model_has_every_layer_kind_and_runs(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = make_tiny_model(tmp_path / "tiny")
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.model_type == "nemotron_h"
    assert set(model.config.layers_block_type) == {
        "linear_attention",
        "moe",
        "full_attention",
    }  # Mamba, MoE, attention
    assert 100_000 < sum(p.numel() for p in model.parameters()) < 1_000_000
    for token in SPECIAL_TOKENS:  # each special is one token, never split
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer.eos_token == "<|im_end|>"
    ids = tokenizer("In Alice's Wonderland 1 -> 2", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
    assert logits.shape[-1] == len(tokenizer) and torch.isfinite(logits).all()
    rows = read_jsonl(out / TOY_DATA_FILE)
    assert len(rows) == 64 and rows[0]["messages"][1]["content"].rstrip().endswith("}")


def test_tokenizer_round_trips_text(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(make_tiny_model(tmp_path / "tiny"))
    text = "ünïcode and `\\boxed{x}` <think>\n</think>"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
