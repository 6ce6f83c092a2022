"""The model's RMSNorm as one kernel each way on CUDA: `torch.compile` of its own forward.

`nemotron_h` normalizes in fp32 for bf16 activations: cast up, square, mean, rsqrt, scale,
weight, cast down, each a pass over (tokens, 2,688) in the forward, again in the
recompute, and their gradients in the backward, for 53 norms a step (one per block and the
last). In an H200 profile of an 8,192-token step the casts alone were 369 copies of
(1, 8,192, 2,688) tensors, 17.6 ms, besides the elementwise passes; with the compiled norm
they are gone from the profile (`bench/results/h200-2026-12-02b/side_by_side.json`, then
`h200-2026-12-02c/side_by_side.json`, `bench/bench_train_step.py --profile`). Compiled, the
same forward (transformers' code, not a copy) is one Triton kernel and its backward one
more; the arithmetic is the same fp32 arithmetic, up to the order of the mean's additions.

Every norm instance shares one compiled function (the weights are its inputs), so it
compiles once. Only CUDA tensors take it: on the CPU the norm runs as shipped, so the tests
need no compiler.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["NORM_CLASS", "compile_norms", "describe"]

NORM_CLASS = "NemotronHRMSNorm"


def describe() -> str:
    """The `norms:` line of a run on this machine."""
    if torch.cuda.is_available():
        return "compiled: one kernel forward, one backward (torch.compile of the model's norm)"
    return "as shipped (no CUDA here: only CUDA tensors take the compiled norm)"


@functools.cache
def _compiled(forward):
    return torch.compile(forward)


def _forward(module: torch.nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    forward = type(module).forward
    if hidden_states.is_cuda:
        return _compiled(forward)(module, hidden_states)
    return forward(module, hidden_states)


def compile_norms(model: torch.nn.Module) -> int:
    """Give every RMSNorm of `model` the compiled forward on CUDA; returns how many. Idempotent."""
    norms = [m for m in model.modules() if type(m).__name__ == NORM_CLASS]
    for norm in norms:
        norm.forward = functools.partial(_forward, norm)
    return len(norms)
