"""relu^2 in the compute dtype under autocast, not in fp32 and cast back.

CUDA autocast runs `pow` (torch.square) in fp32, so every MLP activation of the real model,
the shared experts' (tokens, 3712) and the routed experts' (tokens x 6, 1856), is written in
fp32 and cast to bf16 again by the matmul that reads it: two extra passes and twice the
memory, forward and recompute. The square of a bf16 number is exact in fp32, and a bf16
kernel computes it in fp32 and rounds once, so running the activation with autocast off
gives the same bf16 values the fp32 detour ends in.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ReLUSquaredActivation

__all__ = ["ComputeDtypeActivation", "keep_activations_in_compute_dtype"]


class ComputeDtypeActivation(nn.Module):
    """An elementwise activation run with autocast off: its output keeps its input's dtype."""

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.activation(x)


def keep_activations_in_compute_dtype(model: nn.Module) -> int:
    """Wrap every relu^2 `act_fn` of `model` (MLPs, routed experts); returns how many."""
    wrapped = 0
    for module in model.modules():
        if isinstance(getattr(module, "act_fn", None), ReLUSquaredActivation):
            module.act_fn = ComputeDtypeActivation(module.act_fn)
            wrapped += 1
    return wrapped
