"""Which implementation each part of a training step uses, chosen once and said out loud.

A GPU run that silently falls back to a slow path wastes the money it was meant to save,
so `train` (and `train --dry-run`, before any weights load) prints one line per component:

  mamba      fused (mamba_ssm Triton SSD + causal_conv1d) / pytorch (and why)
  experts    grouped LoRA (this project) / PEFT delta-weight wrapper / base implementation
  linear     LoRA Linear layers as one addmm (this project) / PEFT's forward
  attention  packed: flash varlen per example (`training.engine.packed_attention`);
             otherwise transformers' attention implementation (sdpa, eager, ...)
  norms      RMSNorm compiled to one kernel each way on CUDA / as shipped
  packing    on (rows of <= N tokens) / off
  loss       chunked over labelled tokens / full logits
  activations  checkpointed per layer (recomputed in the backward) / all kept
  optimizer  the TrainingArguments optimizer
  base       how the frozen base weights are stored: bf16, fp8 or nf4 (`training.engine.quantized_base`)

`check` refuses what would run wrongly on the chosen path: `kernels: required` without the
fused Mamba kernels, a LoRA on Mamba `out_proj` under them (the fused kernel reads
`out_proj.weight` directly, so the LoRA gets no gradient), and a `base_precision` whose
kernels are missing here (nf4 without a working bitsandbytes, fp8 without a GPU of compute
capability >= 8.9).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from reasonlab.training.engine.checkpointing import describe as describe_activations
from reasonlab.training.engine.compiled_norm import describe as describe_norms
from reasonlab.training.engine.kernels import KernelError, MambaPath, mamba_path
from reasonlab.training.engine.packed_attention import describe as describe_packed_attention
from reasonlab.training.engine.quantized_base import BasePath, base_path
from reasonlab.training.recipe import RecipeError, TrainRecipe

__all__ = ["EnginePaths", "apply_fast_path", "check", "resolve_paths"]


@dataclass(frozen=True)
class EnginePaths:
    mamba: MambaPath
    experts: str
    linear: str
    attention: str
    norms: str
    packing: str
    loss: str
    activations: str
    optimizer: str
    base: BasePath

    def lines(self) -> list[str]:
        return [
            f"mamba: {self.mamba.kind} ({self.mamba.detail})",
            f"experts: {self.experts}",
            f"linear: {self.linear}",
            f"attention: {self.attention}",
            f"norms: {self.norms}",
            f"packing: {self.packing}",
            f"loss: {self.loss}",
            f"activations: {self.activations}",
            f"optimizer: {self.optimizer}",
            f"base: {self.base.precision} ({self.base.problem or self.base.detail})",
        ]


def resolve_paths(recipe: TrainRecipe, config) -> EnginePaths:
    """The paths a run of `recipe` on a model of `config` takes (no weights needed)."""
    base_experts = getattr(config, "_experts_implementation", None) or "eager"
    if "routed_experts" not in recipe.lora.targets:
        experts = f"no expert LoRA; base experts: {base_experts}"
    elif recipe.expert_lora == "grouped":
        experts = "grouped LoRA: x W^T + s (x A^T) B^T per expert, no delta weights"
    else:
        experts = f"PEFT delta-weight wrapper (W + s B A per step); base experts: {base_experts}"
    linear = (
        "LoRA as one addmm: base + s (x A^T) B^T, no scale or add pass"
        if recipe.lora_linear == "fused"
        else "PEFT's LoRA forward (scale and add passes)"
    )
    mamba = mamba_path()
    apart = (
        "seq_idx in the fused kernels" if mamba.kind == "fused" else "one mixer call per example"
    )
    packing = (
        f"on (rows of <= {recipe.pack_length} tokens; examples kept apart: attention by "
        f"example boundaries, Mamba by {apart})"
        if recipe.packing
        else "off"
    )
    chunk = recipe.loss_chunk_tokens
    loss = (
        f"chunked: labelled tokens only, {chunk} at a time"
        if chunk
        else "full logits (transformers)"
    )
    attention = (
        describe_packed_attention(recipe.precision)
        if recipe.packing
        else getattr(config, "_attn_implementation", None) or "default"
    )
    activations = describe_activations(
        getattr(config, "hybrid_override_pattern", ""),
        recipe.checkpoint_layers,
        recipe.gradient_checkpointing,
    )
    base = base_path(recipe.base_precision)
    return EnginePaths(
        mamba,
        experts,
        linear,
        attention,
        describe_norms(),
        packing,
        loss,
        activations,
        recipe.optimizer,
        base,
    )


def check(recipe: TrainRecipe, paths: EnginePaths) -> None:
    """Refuse a recipe that would run wrongly (or slowly, when it said not to) on these paths."""
    if recipe.kernels == "required" and paths.mamba.kind != "fused":
        raise KernelError(f"kernels: required, but the Mamba path is pytorch: {paths.mamba.detail}")
    if "mamba_out" in recipe.lora.targets and paths.mamba.kind == "fused":
        raise RecipeError(
            "lora.targets: mamba_out (Mamba out_proj) gets no gradient under the fused Mamba "
            "kernel, which reads out_proj.weight directly; remove it from lora.targets"
        )
    if paths.base.problem:
        raise KernelError(f"base_precision: {paths.base.precision} {paths.base.problem}")
    if recipe.optimizer == "adamw_bnb_8bit" and importlib.util.find_spec("bitsandbytes") is None:
        raise RecipeError(
            "optimizer: adamw_bnb_8bit needs bitsandbytes: pip install 'reasonlab[qlora]'"
        )


def apply_fast_path(peft_model, recipe: TrainRecipe) -> str | None:
    """Install the recipe's choices on a freshly wrapped PEFT model (before training).

    Quantizes the frozen base last (`base_precision`), after PEFT has sized and placed the
    LoRA from the real weights; returns a line saying what it quantized, or None for bf16.
    """
    from reasonlab.training.engine.activations import keep_activations_in_compute_dtype
    from reasonlab.training.engine.chunked_loss import use_chunked_loss
    from reasonlab.training.engine.compiled_norm import compile_norms
    from reasonlab.training.engine.expert_lora import use_grouped_expert_lora
    from reasonlab.training.engine.lora_linear import use_fused_lora_linear

    grouped = recipe.expert_lora == "grouped" and "routed_experts" in recipe.lora.targets
    if grouped and use_grouped_expert_lora(peft_model) == 0:
        raise RuntimeError("expert_lora: grouped found no routed-expert LoRA wrapper to install")
    keep_activations_in_compute_dtype(peft_model)  # the same values, without an fp32 detour
    compile_norms(peft_model)  # on CUDA: one kernel each way instead of seven passes
    if recipe.lora_linear == "fused":
        use_fused_lora_linear(peft_model)
    if recipe.loss_chunk_tokens:
        use_chunked_loss(peft_model.get_base_model(), recipe.loss_chunk_tokens)
    if recipe.base_precision == "bf16":
        return None
    from reasonlab.training.engine.quantized_base import quantize_base

    return quantize_base(peft_model, recipe.base_precision).line()
