"""LoRA Linear layers as one GEMM with its epilogue: `base(x) + s (x A^T) B^T` by `addmm`.

PEFT's `lora.Linear` computes `result + lora_B(lora_A(x)) * scaling`: the full-width
product is scaled in one pass and added in another (and the scaling is paid again on its
gradient), and before that the input is cast to the LoRA weights' dtype (fp32), which
autocast casts straight back. On the real model at 8,192 tokens those passes run over
(tokens, out) tensors of every attention projection, Mamba `in_proj`, shared expert and
`lm_head` chunk, in the forward and again in the recompute.

Here the low-rank product's GEMM adds itself to the base output with the scaling as its
alpha (`torch.addmm(result, x A^T, B^T, alpha=s)`), so neither pass exists. Parameters,
names, merging and the saved adapter are PEFT's (a class swap on its own layer); whatever
this path does not cover (several adapters, merged or disabled ones, LoRA variants such as
DoRA, a LoRA bias, or mixed dtypes outside autocast) takes PEFT's forward.
"""

from __future__ import annotations

import torch
from peft.tuners.lora import Linear as LoraLinear

__all__ = ["FusedLoraLinear", "use_fused_lora_linear"]


class FusedLoraLinear(LoraLinear):
    """PEFT's `lora.Linear` whose forward folds the LoRA branch into one `addmm`."""

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        name = self._fused_adapter(x, args, kwargs)
        if name is None:
            return super().forward(x, *args, **kwargs)
        result = self.base_layer(x)
        low = torch.nn.functional.linear(self.lora_dropout[name](x), self.lora_A[name].weight)
        out = torch.addmm(
            result.reshape(-1, result.shape[-1]),
            low.reshape(-1, low.shape[-1]),
            self.lora_B[name].weight.t(),
            alpha=self.scaling[name],
        )
        return out.view(result.shape)

    def _fused_adapter(self, x: torch.Tensor, args: tuple, kwargs: dict) -> str | None:
        """The one plain adapter this forward can compute, or None for PEFT's path."""
        if self.disable_adapters or self.merged or args or kwargs:
            return None
        adapters = [a for a in self.active_adapters if a in self.lora_A]
        if len(adapters) != 1:
            return None
        name = adapters[0]
        if name in self.lora_variant or self.lora_B[name].bias is not None:
            return None
        # addmm needs one dtype: autocast gives it; otherwise input and LoRA must agree
        autocast = torch.is_autocast_enabled(x.device.type)
        return name if autocast or x.dtype == self.lora_A[name].weight.dtype else None


def use_fused_lora_linear(peft_model) -> int:
    """Swap every PEFT `lora.Linear` of a model to `FusedLoraLinear`; returns how many."""
    swapped = 0
    for module in peft_model.modules():
        if type(module) is LoraLinear:
            module.__class__ = FusedLoraLinear
            swapped += 1
    return swapped
