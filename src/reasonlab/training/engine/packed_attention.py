"""Attention over packed rows that computes each example's own causal block and nothing else.

With packing, transformers' sdpa path reads the restarting `position_ids` as packed
sequences and builds a (tokens x tokens) block-diagonal mask, and the fused attention kernel
then computes every query against every key of the row and masks most of it away: at 8,192
tokens of ~700-token examples, about twelve times the work the examples need (an H200
profile gave sdpa 89 ms of a 774 ms step). Here the collator hands over where each example
starts (`cu_seq_lens_q` and `max_length_q`, the names transformers' flash-attention path
reads), and attention runs per example:

- CUDA in bf16 / fp16 on a GPU of compute capability >= 8.0: torch's flash-attention varlen
  kernel (`torch.nn.attention.varlen`), one launch for all examples, causal within each;
- elsewhere (CPU, fp32, an older GPU, a torch without it): one causal sdpa call per
  example, exactly what the example gets alone, so CPU tests prove the isolation with the
  same function.

The model's config selects it by name (`ATTENTION`); transformers builds no mask for an
attention function it has no mask for, which is what this one wants.
"""

from __future__ import annotations

import functools
import inspect
import itertools

import torch
import torch.nn.functional as F

__all__ = [
    "ATTENTION",
    "describe",
    "flash_varlen_available",
    "packed_attention",
    "use_packed_attention",
]

ATTENTION = "reasonlab_packed"


@functools.cache
def flash_varlen_available() -> bool:
    """Whether this torch has the varlen kernel with causal windows (torch >= 2.11)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return False
    return "window_size" in inspect.signature(varlen_attn).parameters


@functools.cache
def _flash_capable(device: torch.device) -> bool:
    """Whether torch's flash varlen kernel runs on `device` (CUDA, Ampere or newer)."""
    if device.type != "cuda" or not flash_varlen_available():
        return False
    return torch.cuda.get_device_capability(device) >= (8, 0)


def describe(precision: str) -> str:
    """The `attention:` line of a packed run in compute dtype `precision` on this machine."""
    if not torch.cuda.is_available():
        kernel = "one causal sdpa call per example (no CUDA here)"
    elif not flash_varlen_available():
        kernel = f"one causal sdpa call per example (torch {torch.__version__} has no varlen_attn)"
    elif not _flash_capable(torch.device("cuda", torch.cuda.current_device())):
        kernel = "one causal sdpa call per example (flash varlen needs compute capability >= 8.0)"
    elif precision == "fp32":
        kernel = "one causal sdpa call per example (flash varlen takes bf16/fp16, not fp32)"
    else:
        kernel = "torch flash varlen, causal within each example"
    return f"packed, each example alone: {kernel}"


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: torch.Tensor | None = None,
    max_length_q: int | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention of one packed row, in transformers' attention-function signature.

    (1, heads, tokens, dim) in, (1, tokens, heads, dim) out, as transformers' own functions.
    `cu_seq_lens_q` are the example boundaries ([0, ..., tokens], int32), absent for a row
    that is one example. A padding mask is refused: packed rows have none, and this
    function cannot honour one.
    """
    if attention_mask is not None:
        raise ValueError(
            f"{ATTENTION} attention runs packed rows, which carry no attention_mask; got one of "
            f"shape {tuple(attention_mask.shape)}"
        )
    if query.shape[0] != 1:
        raise ValueError(
            f"{ATTENTION} attention takes one packed row, got a batch of {query.shape[0]}"
        )
    if dropout:
        raise ValueError(f"{ATTENTION} attention has no dropout, got {dropout}")
    tokens = query.shape[2]
    if cu_seq_lens_q is None:
        cu_seq_lens_q = torch.tensor([0, tokens], dtype=torch.int32, device=query.device)
        max_length_q = tokens
    # (1, heads, tokens, dim) -> (tokens, heads, dim): a view of the projections' layout
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
    groups = q.shape[1] // k.shape[1]  # grouped-query attention: each KV head serves `groups`
    if groups > 1:  # as transformers' repeat_kv orders them: head h reads KV head h // groups
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    if q.dtype in (torch.bfloat16, torch.float16) and _flash_capable(q.device):
        from torch.nn.attention.varlen import varlen_attn

        cu = cu_seq_lens_q.to(device=q.device, dtype=torch.int32)
        out = varlen_attn(
            q,
            k,
            v,
            cu,
            cu,
            int(max_length_q),
            int(max_length_q),
            scale=scaling,
            window_size=(-1, 0),
        )
    else:
        out = _per_example(q, k, v, cu_seq_lens_q.tolist(), scaling)
    return out.unsqueeze(0), None


def _per_example(q, k, v, bounds: list[int], scaling: float | None) -> torch.Tensor:
    """Causal sdpa on each example's tokens alone: (tokens, heads, dim) in and out."""
    pieces = []
    for start, end in itertools.pairwise(bounds):
        q_, k_, v_ = (t[start:end].transpose(0, 1) for t in (q, k, v))  # (heads, length, dim)
        out = F.scaled_dot_product_attention(q_, k_, v_, is_causal=True, scale=scaling)
        pieces.append(out.transpose(0, 1))
    return torch.cat(pieces, dim=0)


def use_packed_attention(model: torch.nn.Module) -> None:
    """Register `packed_attention` with transformers and select it for `model`'s attention layers."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, packed_attention)
    model.config._attn_implementation = ATTENTION
