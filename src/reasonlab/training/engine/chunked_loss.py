"""Causal-LM loss without the full logits: only labelled positions, a chunk at a time.

transformers computes `lm_head(hidden).float()` for every position before the loss: at 8,192
tokens and a 131,072-token vocabulary that is 4 GiB of fp32 logits, and as much again for
their gradient, most of it for prompt tokens whose labels are masked. Here the causal LM's
forward (of this one model instance) gathers the positions that carry a label, and runs the
LoRA'd `lm_head` and the cross-entropy on `chunk_tokens` of them at a time under activation
checkpointing, so at most one chunk's logits exist at once. The loss is the same number:
the sum over labelled tokens, divided by `num_items_in_batch` when the trainer gives it
(gradient accumulation across micro-batches) and by the labelled-token count otherwise.

Without labels (evaluation, generation) the model's own forward runs unchanged.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from reasonlab.formats.chat import IGNORE_INDEX

__all__ = ["use_chunked_loss"]


def _chunk_loss_sum(lm_head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor):
    logits = lm_head(hidden).float()  # (chunk, vocab)
    return F.cross_entropy(logits, labels, reduction="sum")


def _forward(self, input_ids=None, labels=None, num_items_in_batch=None, **kwargs):
    if labels is None:
        return type(self).forward(self, input_ids=input_ids, **kwargs)
    from transformers.modeling_outputs import CausalLMOutputWithPast

    kwargs.pop("logits_to_keep", None)
    hidden = self.model(input_ids=input_ids, **kwargs).last_hidden_state  # (batch, seq, hidden)
    targets = labels[:, 1:].reshape(-1)  # position t predicts token t + 1
    keep = targets != IGNORE_INDEX
    hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])[keep]
    targets = targets[keep]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), self._loss_chunk_tokens):
        stop = start + self._loss_chunk_tokens
        total = total + checkpoint(
            _chunk_loss_sum,
            self.lm_head,
            hidden[start:stop],
            targets[start:stop],
            use_reentrant=False,
        )
    divisor = num_items_in_batch if num_items_in_batch is not None else keep.sum().clamp(min=1)
    if isinstance(divisor, torch.Tensor):
        divisor = divisor.to(total.device)
    return CausalLMOutputWithPast(loss=total / divisor)


def use_chunked_loss(causal_lm: torch.nn.Module, chunk_tokens: int) -> None:
    """Give this causal LM (the PEFT-wrapped model's base) the chunked-loss forward."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be positive, got {chunk_tokens}")
    causal_lm._loss_chunk_tokens = chunk_tokens
    causal_lm.forward = types.MethodType(_forward, causal_lm)
