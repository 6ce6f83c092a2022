"""Routed-expert LoRA as grouped matmuls: `x W^T + s (x A^T) B^T` per expert, no delta weights.

PEFT adapts the routed experts (3-D parameters `experts.up_proj` / `experts.down_proj`, shape
(experts, out, in)) with `ParamWrapper`, which on every forward (and every recompute under
gradient checkpointing) builds `W + s B A` for all 128 experts of a layer and runs the model's
experts forward on that: on the real model 15% of a step's GPU time and many GB of copies.

Here the wrapper keeps its parameters, names and saved format (so `export`, `pack` and `verify`
see the same adapter), and only its forward changes: tokens are sorted by expert once, and each
projection is the base grouped matmul plus two thin grouped matmuls through the rank-r factors.

PEFT's parameter LoRA layout for E experts and rank r (after its in/out swap for (E, out, in)):
  lora_A.weight: (E * r, in)   expert e's A = rows e*r .. e*r + r - 1
  lora_B.weight: (out, r * E)  expert e's B = columns e, E + e, 2E + e, ...  (rank-major)
so the delta of expert e is `s * B_e @ A_e` with B_e (out, r) and A_e (r, in).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial

import torch
import torch.nn.functional as F
from peft.tuners.lora import ParamWrapper

from reasonlab.training.engine.quantized_base import QuantizedWeight, dequantized_matmul

__all__ = ["GroupedExpertsLoRA", "grouped_mm", "use_grouped_expert_lora"]


def grouped_mm(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Rows of `x` (S, k) grouped by `offsets` (cumulative ends), group g times `w[g]` (k, n).

    `x` is cast to the weight's dtype first: under autocast the experts' activation (relu^2,
    a `pow`) returns fp32 unless `engine.activations` keeps it in the compute dtype, and the
    grouped GEMM takes one dtype. CUDA bf16 with 16-byte-
    aligned sizes uses torch's grouped GEMM; anything else (CPU, odd ranks of a tiny test
    model) a loop over the groups, exact and differentiable.
    """
    x = x.to(w.dtype)
    if (
        x.is_cuda
        and x.dtype == torch.bfloat16
        and hasattr(F, "grouped_mm")
        and x.shape[-1] % 8 == 0
        and w.shape[-1] % 8 == 0
    ):
        return F.grouped_mm(x, w, offs=offsets)
    starts = [0, *offsets[:-1].tolist()]
    parts = [x[a:b] @ w[g] for g, (a, b) in enumerate(zip(starts, offsets.tolist()))]
    return torch.cat(parts) if parts else x.new_zeros(0, w.shape[-1])


@dataclass(frozen=True)
class _Factors:
    """One projection's LoRA as grouped-matmul operands, cast to the compute dtype."""

    # Both column-major (a transposed view of a contiguous tensor), as grouped GEMM kernels
    # take the weight operand and as the base weights (E, out, in) are passed.
    a: torch.Tensor  # (E, in, r): x @ a[e] = x A_e^T
    b: torch.Tensor  # (E, r, out): (x A_e^T) @ b[e] = s x A_e^T B_e^T, the scaling s folded in


def _factors(wrapper: ParamWrapper, dtype: torch.dtype) -> _Factors | None:
    adapters = [a for a in wrapper.active_adapters if a in wrapper.lora_A]
    if not adapters:
        return None
    if len(adapters) > 1:  # PEFT's own path sums several adapters; this one serves training
        raise ValueError(f"grouped expert LoRA supports one active adapter, got {adapters}")
    name, experts = adapters[0], wrapper.num_experts
    weight_a = wrapper.lora_A[name].weight  # (E*r, in)
    weight_b = wrapper.lora_B[name].weight  # (out, r*E)
    rank = weight_a.shape[0] // experts
    a = weight_a.to(dtype).view(experts, rank, -1).transpose(1, 2)
    # scaled on the small factor (and in its own precision), not on the (tokens, out) product
    b = (weight_b * wrapper.scaling[name]).to(dtype).view(-1, rank, experts)
    return _Factors(a, b.permute(2, 0, 1).contiguous().transpose(1, 2))


def _project(
    x: torch.Tensor,
    weight: torch.Tensor | QuantizedWeight,
    lora: _Factors | None,
    offsets: torch.Tensor,
) -> torch.Tensor:
    """x (S, in) sorted by expert -> (S, out): base weight (E, out, in) plus the LoRA path.

    A quantized base weight (`base_precision` fp8/nf4) is rebuilt for the grouped matmul and
    again for its backward (`quantized_base.dequantized_matmul`).
    """
    if isinstance(weight, QuantizedWeight):
        out = dequantized_matmul(x, weight, partial(grouped_mm, offsets=offsets))
    else:
        out = grouped_mm(x, weight.transpose(1, 2), offsets)
    if lora is not None:
        out = out + grouped_mm(grouped_mm(x, lora.a, offsets), lora.b, offsets)
    return out


def _combine(
    y: torch.Tensor, order: torch.Tensor, top_k_weights: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Expert outputs `y` (tokens * k, hidden), sorted by expert, to each token's weighted sum.

    Back to (token, k) order while still in the compute dtype (half the bytes of fp32), then
    the routing weights in their own dtype (fp32): the sum over k accumulates in fp32, as
    upstream; the same values as weighting before the reorder.
    """
    tokens, top_k = top_k_weights.shape
    y = torch.empty_like(y).index_copy_(0, order, y).view(tokens, top_k, -1)
    return (y * top_k_weights[..., None]).sum(dim=1).to(dtype)


@cache
def _combine_compiled() -> Callable:
    """`_combine` compiled, for CUDA: eager, the fp32 product (tokens, k, hidden) is written
    and read back, and its backward is as many passes again. In H200 profiles of an
    8,192-token step, kernel time 622 -> 585 ms (`bench/results/h200-2026-12-02d/`)."""
    return torch.compile(_combine)


class GroupedExpertsLoRA(ParamWrapper):
    """The outermost `ParamWrapper` of a routed-experts module, computing its forward by groups.

    Installed by class swap on PEFT's own wrapper (`use_grouped_expert_lora`), so parameters,
    state-dict keys, merging and saving are PEFT's; merged or disabled adapters take PEFT's path.
    """

    def forward(self, hidden_states, top_k_index, top_k_weights, *args, **kwargs):
        wrappers, experts = {}, self
        while isinstance(experts, ParamWrapper):
            wrappers[experts.parameter_name] = experts
            experts = experts.base_layer
        if self.disable_adapters or self.merged or args or kwargs:
            if isinstance(experts.up_proj, QuantizedWeight):  # PEFT's path reads the parameter
                raise RuntimeError(
                    "a quantized base (base_precision) runs routed experts with one active, "
                    "unmerged adapter only"
                )
            return super().forward(hidden_states, top_k_index, top_k_weights, *args, **kwargs)
        dtype = experts.up_proj.dtype
        lora = {name: _factors(w, dtype) for name, w in wrappers.items()}

        top_k = top_k_index.shape[1]
        flat_experts = top_k_index.reshape(-1)
        order = torch.argsort(flat_experts, stable=True)
        # histc, not bincount: no device-to-host sync (CUDA takes ints, the CPU floats)
        counted = flat_experts.int() if flat_experts.is_cuda else flat_experts.float()
        counts = torch.histc(counted, bins=experts.num_experts, min=0, max=experts.num_experts - 1)
        offsets = torch.cumsum(counts, 0, dtype=torch.int32)
        x = hidden_states[order // top_k].to(dtype)  # (tokens * top_k, hidden), by expert

        h = experts.act_fn(_project(x, experts.up_proj, lora.get("up_proj"), offsets))
        y = _project(h, experts.down_proj, lora.get("down_proj"), offsets)
        combine = _combine_compiled() if y.is_cuda else _combine
        return combine(y, order, top_k_weights, hidden_states.dtype)


def use_grouped_expert_lora(peft_model) -> int:
    """Swap the outermost routed-expert wrappers of a PEFT model to grouped LoRA; returns how many."""
    wrappers = [m for m in peft_model.modules() if isinstance(m, ParamWrapper)]
    inner = {id(w.base_layer) for w in wrappers}
    swapped = 0
    for wrapper in wrappers:
        if id(wrapper) not in inner and wrapper.num_experts > 1:
            wrapper.__class__ = GroupedExpertsLoRA
            swapped += 1
    return swapped
