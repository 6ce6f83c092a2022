"""Gradient checkpointing per layer kind: recompute some kinds, keep the others' activations.

transformers checkpoints every block or none. On Nemotron-3-Nano at 8,192-token packs
(H200, `bench/bench_train_step.py`) that is 77.2 GiB at 10-12k tokens/s against 109.5 GiB
at 17-18k: nothing in between for a card of 80 or 96 GB with memory to spare. The blocks'
kinds differ in what they hold and what their recompute costs (a MoE block keeps six routed
copies of each token, an attention block little), so `checkpoint_layers` names the kinds to
recompute and the rest keep their activations.

The kinds are the letters of the config's `hybrid_override_pattern`, one per block, in
order; the switch is transformers' own per-block flag (`GradientCheckpointingLayer`), so
the recompute is transformers' (non-reentrant `torch.utils.checkpoint`).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the recipe reads the kinds without importing torch
    from torch import nn

__all__ = ["LAYER_KINDS", "LayerKind", "checkpoint_layers", "describe"]

LayerKind = Literal["mamba", "moe", "attention", "mlp"]
# hybrid_override_pattern's letters
LAYER_KINDS: dict[str, LayerKind] = {"M": "mamba", "E": "moe", "*": "attention", "-": "mlp"}


_EVERY_BLOCK = "checkpointed per layer: recomputed in the backward, less memory, more launches"


def _counts(pattern: str, kinds: list[LayerKind]) -> Counter[str]:
    """Blocks per `"<kind> checkpointed"` / `"<kind> kept"`, in the pattern's order."""
    return Counter(
        f"{kind} {'checkpointed' if kind in kinds else 'kept'}"
        for kind in (LAYER_KINDS[letter] for letter in pattern)
    )


def describe(pattern: str, kinds: list[LayerKind], enabled: bool) -> str:
    """The `activations:` line of a run: what is recomputed and what is kept."""
    if not enabled:
        return "all kept: no recompute, the memory of every layer's activations"
    if not pattern:  # a config that does not say its blocks' kinds
        if set(kinds) >= set(LAYER_KINDS.values()):
            return _EVERY_BLOCK
        return f"checkpointed: {', '.join(kinds)} blocks, recomputed in the backward; others kept"
    blocks = Counter(LAYER_KINDS[letter] for letter in pattern)
    kept = [f"{n} {kind}" for kind, n in blocks.items() if kind not in kinds]
    if not kept:
        return _EVERY_BLOCK
    done = [f"{n} {kind}" for kind, n in blocks.items() if kind in kinds]
    return (
        f"checkpointed: {', '.join(done) or 'no'} blocks, recomputed in the backward; "
        f"kept: {', '.join(kept)} blocks (checkpoint_layers: {', '.join(kinds)})"
    )


def _blocks(model: nn.Module) -> list[nn.Module]:
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def checkpoint_layers(model: nn.Module, kinds: list[LayerKind]) -> Counter[str]:
    """Checkpoint the blocks of `model` (a transformers `nemotron_h` model, PEFT-wrapped or
    not) whose kind is in `kinds`; the others keep their activations.

    Returns how many blocks of each kind are `checkpointed` and `kept` (keys `moe checkpointed`,
    `attention kept`, ...).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    pattern = base.config.hybrid_override_pattern
    blocks = _blocks(base)
    if len(blocks) != len(pattern):
        raise RuntimeError(
            f"{len(blocks)} checkpointable blocks for the {len(pattern)} letters of "
            f"hybrid_override_pattern {pattern!r}: cannot tell which block is which kind"
        )
    enable = getattr(base, "activation_checkpointing_enable", None)  # transformers >= 5.24
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for block, letter in zip(blocks, pattern):
        block.gradient_checkpointing = LAYER_KINDS[letter] in kinds
    return _counts(pattern, kinds)
