"""The tiny model: native nemotron_h with every layer kind and the real tokenizer."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from reasonlab.formats.files import sha256_file
from reasonlab.formats.jsonl import read_jsonl
from reasonlab.formats.tokenizer import TOKENIZER_SHA256, VOCAB_SIZE
from reasonlab.training.tiny_model import TOY_DATA_FILE


def test_tiny_model_has_every_layer_kind_and_runs(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert model.config.model_type == "nemotron_h"
    assert set(model.config.layers_block_type) == {
        "linear_attention",
        "moe",
        "full_attention",
    }  # Mamba, MoE, attention
    # the real vocabulary at a toy width: embeddings and lm_head are 131,072 x 64 each
    assert model.config.vocab_size == len(tokenizer) == VOCAB_SIZE
    layers = sum(p.numel() for n, p in model.named_parameters() if ".layers." in n)
    assert 100_000 < layers < 1_000_000
    assert sha256_file(tiny_model / "tokenizer.json") == TOKENIZER_SHA256
    assert tokenizer.eos_token == "<|im_end|>" and model.config.eos_token_id == 11
    ids = tokenizer("In Alice's Wonderland 1 -> 2", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
    assert logits.shape[-1] == VOCAB_SIZE and torch.isfinite(logits).all()
    rows = read_jsonl(tiny_model / TOY_DATA_FILE)
    assert len(rows) == 64 and rows[0]["messages"][1]["content"].rstrip().endswith("}")


def test_mamba_in_proj_is_as_aligned_as_the_real_models(tiny_model):
    # causal_conv1d's CUDA kernel reads the conv channels as a view of in_proj's output and
    # needs its row stride to be a multiple of 8 (generation on a GPU); the real model's is
    import torch
    from transformers import AutoModelForCausalLM

    from reasonlab.submission.verify import load_architecture

    def widths(model):
        return {m.in_proj.out_features for m in model.modules() if hasattr(m, "conv1d")}

    with torch.device("meta"):
        real = AutoModelForCausalLM.from_config(load_architecture())
    assert widths(real) == {10_304}
    tiny = widths(AutoModelForCausalLM.from_pretrained(tiny_model))
    assert len(tiny) == 1 and tiny.pop() % 8 == 0


def test_tokenizer_round_trips_text(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    text = "ünïcode and `\\boxed{x}` <think>\n</think> 中文 🙂"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
