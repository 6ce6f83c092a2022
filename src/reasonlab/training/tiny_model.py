"""A random-weight `nemotron_h` small enough for CI, with the base model's real tokenizer.

The model is transformers' native class with every kind of layer the real one has (Mamba2,
MoE with routed + shared experts, attention), so training, export and verification run
end to end on a CPU in seconds. Its tokenizer is the real one (`formats.tokenizer`: the
131,072-token vocabulary rebuilt offline, with the base model's chat template), so every
test and the demo tokenize exactly as the scorer does; only the hidden size is a toy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reasonlab.formats.jsonl import write_jsonl
from reasonlab.formats.tokenizer import SPECIAL_TOKENS, VOCAB_SIZE, write_tokenizer

__all__ = [
    "TOY_DATA_FILE",
    "TinyModelOptions",
    "make_tiny_model",
    "tiny_config",
    "toy_sft_rows",
]

TOY_DATA_FILE = "toy_sft.jsonl"


@dataclass(frozen=True)
class TinyModelOptions:
    """Shapes of the tiny model: every layer kind, the real vocabulary, a toy hidden size.

    The embedding and lm_head (131,072 x 64 each) hold almost all of its 17M parameters;
    the layers themselves have about 0.2M.
    """

    pattern: str = "MEM*E"  # Mamba, MoE, Mamba, attention, MoE (the real one is 52 of these)
    hidden_size: int = 64
    n_routed_experts: int = 8
    num_experts_per_tok: int = 2
    moe_intermediate_size: int = 32
    shared_intermediate_size: int = 64
    seed: int = 0
    toy_rows: int = 64  # toy SFT rows written beside the model (`toy_sft.jsonl`); 0 for none


def tiny_config(vocab_size: int, eos_token_id: int, options: TinyModelOptions = TinyModelOptions()):
    """A `NemotronHConfig` with the real model's structure at toy sizes."""
    from transformers import NemotronHConfig

    return NemotronHConfig(
        vocab_size=vocab_size,
        hidden_size=options.hidden_size,
        hybrid_override_pattern=options.pattern,
        num_hidden_layers=len(options.pattern),
        # Mamba2: 8 heads x 16 = 128 channels, 2 groups of 16-dim state. in_proj's width,
        # 2 x 128 + 2 x 2 x 16 + 8 = 328, is a multiple of 8 as the real model's (10,304):
        # causal_conv1d's CUDA kernel takes no other stride (generation on a GPU)
        mamba_num_heads=8,
        mamba_head_dim=16,
        n_groups=2,
        ssm_state_size=16,
        conv_kernel=4,
        chunk_size=32,
        # attention: GQA 4 q-heads / 2 kv-heads like the real 32/2
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        # MoE: relu^2 experts, top-k routing with a shared expert, as in the real model
        n_routed_experts=options.n_routed_experts,
        num_experts_per_tok=options.num_experts_per_tok,
        moe_intermediate_size=options.moe_intermediate_size,
        moe_shared_expert_intermediate_size=options.shared_intermediate_size,
        intermediate_size=options.shared_intermediate_size,
        n_group=1,
        topk_group=1,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=eos_token_id,
        use_cache=False,
    )


def make_tiny_model(out_dir: str | Path, options: TinyModelOptions = TinyModelOptions()) -> Path:
    """Write a random tiny model, its tokenizer and toy SFT rows to `out_dir` (a loadable HF folder)."""
    import torch
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    write_tokenizer(out_dir)  # the real tokenizer's files, byte for byte, beside the model
    # generation ends the turn with <|im_end|>, the tokenizer's eos (tokenizer_config)
    config = tiny_config(VOCAB_SIZE, SPECIAL_TOKENS.index("<|im_end|>"), options)
    torch.manual_seed(options.seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        # The router starts at zeros in transformers (every expert ties); random logits make
        # each token pick distinct experts, as a trained router does.
        for name, param in model.named_parameters():
            if name.endswith("mixer.gate.weight"):
                param.normal_(0.0, 0.5)
    model.save_pretrained(out_dir)
    if options.toy_rows:
        write_jsonl(out_dir / TOY_DATA_FILE, toy_sft_rows(options.toy_rows, options.seed))
    return out_dir


def toy_sft_rows(n: int, seed: int = 0) -> list[dict]:
    """`n` SFT rows of a one-rule toy puzzle (add a secret k), for demos and tests.

    Real rows come from `reasonlab traces`; these only need the same shape and a
    learnable pattern so a few steps visibly lower the loss.
    """
    import random

    from reasonlab.competition import user_message

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = rng.randint(1, 9)
        xs = [rng.randint(1, 50) for _ in range(4)]
        examples = "\n".join(f"{x} -> {x + k}" for x in xs[:3])
        prompt = f"In Alice's Wonderland, a secret rule transforms numbers:\n{examples}\nNow, determine the result for: {xs[3]}"
        trace = f"Each output is the input plus {k}. So {xs[3]} + {k} = {xs[3] + k}.\n\\boxed{{{xs[3] + k}}}"
        rows.append(
            {
                "id": f"toy{i:04d}",
                "family": "toy_add",
                "messages": [
                    {"role": "user", "content": user_message(prompt)},
                    {"role": "assistant", "content": trace},
                ],
            }
        )
    return rows
