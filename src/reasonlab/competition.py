"""Constants of the target: the Kaggle NVIDIA Nemotron Model Reasoning Challenge.

Every figure here is the scorer's (see docs/competition.md in the shared docs); code
that must match the scorer imports it from here instead of repeating it.
"""

from __future__ import annotations

__all__ = [
    "BASE_MODEL_ID",
    "CHAT_TEMPLATE_KWARGS",
    "GENERATION_PROMPT_END",
    "MAX_LORA_RANK",
    "MAX_MODEL_LEN",
    "MAX_NEW_TOKENS",
    "PROMPT_SUFFIX",
    "SCORER_ENGINE",
    "SCORER_SAMPLING",
    "UNAPPLIED_LORA_TARGETS",
    "VLLM_LORA_MODULE_NAMES",
    "VLLM_LORA_RANKS",
    "VLLM_UNAPPLIED_LORA_MODULES",
    "user_message",
]

BASE_MODEL_ID = "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"

# Appended to every puzzle (after one newline) before the chat template is applied.
# Backticks and the single backslashes are part of the text the scorer sends.
PROMPT_SUFFIX = (
    "Please put your final answer inside `\\boxed{}`. For example: `\\boxed{your answer}`"
)

# The switches the scorer passes to tokenizer.apply_chat_template.
CHAT_TEMPLATE_KWARGS = {"add_generation_prompt": True, "enable_thinking": True}

# A rendered scorer prompt ends with this: the model starts inside its thinking block.
GENERATION_PROMPT_END = "<|im_start|>assistant\n<think>\n"

MAX_LORA_RANK = 32  # competition rule: rank r <= 32
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # ranks vLLM's max_lora_rank accepts
MAX_NEW_TOKENS = 7680  # scorer's max_tokens
MAX_MODEL_LEN = 8192  # scorer's context: prompt + generation

SCORER_SAMPLING = {"temperature": 0.0, "top_p": 1.0, "max_tokens": MAX_NEW_TOKENS, "n": 1}
SCORER_ENGINE = {
    "enable_lora": True,
    "max_lora_rank": MAX_LORA_RANK,
    "tensor_parallel_size": 1,
    "enable_prefix_caching": True,
    "enable_chunked_prefill": True,
    "trust_remote_code": True,
    "max_model_len": MAX_MODEL_LEN,
    "max_num_seqs": 64,
    "gpu_memory_utilization": 0.85,
}

# Modules whose LoRA the scorer's vLLM loads but never applies (the Mamba conv1d, the MoE
# router `gate`): training never targets them. (A LoRA on Mamba out_proj is applied, but the
# fused training kernel gives it no gradient: `training.engine.check`.)
UNAPPLIED_LORA_TARGETS = ("conv1d", "gate")

# The last name component vLLM accepts for a LoRA module on this model (any other is an
# error); only the last component is checked. See the shared doc, "What the scorer's
# vLLM does with an adapter".
VLLM_LORA_MODULE_NAMES = (
    "in_proj",
    "out_proj",
    "conv1d",
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate",
    "up_proj",
    "down_proj",
    "experts",
    "embed_tokens",
    "lm_head",
)
VLLM_UNAPPLIED_LORA_MODULES = ("conv1d", "gate")  # loaded, then never used at inference


def user_message(prompt: str) -> str:
    """The user turn exactly as the scorer builds it: puzzle, newline, suffix."""
    return f"{prompt}\n{PROMPT_SUFFIX}"
