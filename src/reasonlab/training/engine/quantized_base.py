"""A frozen base stored at low precision (QLoRA-style), the routed experts included.

The recipe's `precision` is the compute dtype; `base_precision` is how the frozen weights are
stored between uses:

  bf16  as loaded (nothing here runs)
  fp8   weight-only float8 e4m3, one fp32 scale per output channel (per expert and output
        channel for the 3-D experts); rebuilt as code x scale in fp32, rounded once (on CUDA
        one compiled kernel, on the CPU the same arithmetic op by op)
  nf4   bitsandbytes' 4-bit NormalFloat (`quantize_4bit` / `dequantize_4bit`), blocks of 64
        weights, the blocks' scales quantized again to 8 bits (QLoRA's double quantization)

What is quantized: the routed experts (3-D parameters (experts, out, in), ~29 of the real
model's 31.6B parameters) and the Linear layers of attention, Mamba `in_proj` and the shared
experts. What stays in the compute dtype: embeddings, `lm_head` (LoRA'd; 0.35B), Mamba
`out_proj` (the fused Mamba kernel reads `out_proj.weight` directly), conv1d, norms, routers.

A quantized weight is rebuilt in the compute dtype where it is used, in the forward and again
in the backward (`dequantized_matmul`, an autograd Function that saves nothing), so a
dequantized copy lives for one matmul: for the experts, one projection of one layer (all its
experts at once: 0.64B parameters, 1.2 GiB in bf16, on the real model).

Quantization runs after PEFT wraps the model (`engine.paths.apply_fast_path`): PEFT sizes, places
and types the LoRA from the real parameters, so the LoRA weights, their optimizer state and
the saved adapter are exactly those of a bf16 base. Each base weight then moves to the
training device, is quantized there, and its full-precision copy is dropped.

Off-the-shelf QLoRA (bitsandbytes' `Linear4bit` through transformers) quantizes `nn.Linear`
layers only; here the Linear layers and the experts share one storage class per format and
one dequantize-per-use path. On the experts, `expert_lora.grouped_mm` takes the rebuilt
(experts, out, in) weight as its operand.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from reasonlab.training.recipe import BasePrecision

__all__ = [
    "BasePath",
    "Fp8Weight",
    "Nf4Weight",
    "QuantizeSummary",
    "QuantizedLinear",
    "QuantizedWeight",
    "base_path",
    "base_targets",
    "dequantized_matmul",
    "planned_base_bytes",
    "quantize_base",
    "round_base",
    "training_device",
    "weights_line",
]

# Native names (PEFT's `base_model.model.` prefix and `.base_layer` nesting removed).
_LINEAR = re.compile(
    r"model\.layers\.\d+\.mixer\.(in_proj|[qkvo]_proj|shared_experts\.(up|down)_proj)"
)
_EXPERTS = re.compile(r"model\.layers\.\d+\.mixer\.experts")
_EXPERT_PARAMETERS = ("up_proj", "down_proj")
_FP8 = torch.float8_e4m3fn
_NF4_BLOCK = 64  # weights per scale: bitsandbytes' and QLoRA's default


class QuantizedWeight(nn.Module):
    """A frozen weight (..., out, in) kept quantized in buffers; `dequantize()` rebuilds it.

    Reports the `shape` and `dtype` (the compute dtype it is rebuilt in) of the weight it
    replaces. Buffers, not parameters: no gradient, no optimizer state, and `.to(device)`
    moves them with the model.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.shape = weight.shape
        self.dtype = weight.dtype

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def dequantize(self) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"shape={tuple(self.shape)}, dtype={self.dtype}, bytes={self.nbytes:,}"


class Fp8Weight(QuantizedWeight):
    """e4m3 codes with one scale per output channel: w ~= codes * amax / 448, row by row.

    Kept as rows (a 3-D expert weight's experts and outputs flattened), so every weight
    with the same row length shares one compiled rebuild.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__(weight)
        rows = weight.detach().reshape(-1, weight.shape[-1])  # (experts x out, in) or (out, in)
        amax = rows.abs().amax(dim=-1).float()
        scale = (amax / torch.finfo(_FP8).max).clamp(min=torch.finfo(torch.float32).tiny)
        codes = (rows.float() / scale[:, None]).to(_FP8)
        # stored as bytes: a model-wide `.to(dtype)` casts floating buffers, and fp8 is one
        self.register_buffer("codes", codes.view(torch.uint8))
        self.register_buffer("scale", scale)

    def dequantize(self) -> torch.Tensor:
        codes, scale = self.codes, self.scale
        if codes.is_cuda:
            # any number of rows, one compiled kernel; the row length a constant, so the
            # kernel's row index is no division by a variable
            torch._dynamo.mark_dynamic(codes, 0)
            torch._dynamo.mark_dynamic(scale, 0)
            torch._dynamo.mark_static(codes, 1)
            return _rebuild_fp8_compiled()(codes, scale, self.dtype).view(self.shape)
        return _rebuild_fp8(codes, scale, self.dtype).view(self.shape)


def _rebuild_fp8(codes: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """codes (rows, columns; e4m3 bits as uint8) times their row's fp32 scale, rounded once."""
    return (codes.view(_FP8).float() * scale[:, None]).to(dtype)


@cache
def _rebuild_fp8_compiled() -> Callable:
    """`_rebuild_fp8` as one fused kernel (torch.compile): a byte read and two bytes written a
    weight. Op by op it is three passes with an fp32 tensor between them, and the experts'
    weights are rebuilt three times a step (forward, recompute, backward). One kernel per row
    length (the real model has four)."""
    return torch.compile(_rebuild_fp8)


class Nf4Weight(QuantizedWeight):
    """bitsandbytes NF4: 4-bit codes (two a byte), a scale per 64 weights, scales in 8 bits."""

    def __init__(self, weight: torch.Tensor) -> None:
        import bitsandbytes.functional as bnb

        super().__init__(weight)
        packed, state = bnb.quantize_4bit(
            weight.detach(), blocksize=_NF4_BLOCK, quant_type="nf4", compress_statistics=True
        )
        self.nested_blocksize = state.state2.blocksize
        self.register_buffer("packed", packed)  # (numel / 2, 1) uint8
        self.register_buffer("absmax", state.absmax)  # uint8 codes of the block scales
        self.register_buffer("code", state.code)  # the 16 NF4 levels
        self.register_buffer("offset", state.offset)  # mean block scale, added back
        self.register_buffer("nested_absmax", state.state2.absmax)
        self.register_buffer("nested_code", state.state2.code)

    def dequantize(self) -> torch.Tensor:
        import bitsandbytes.functional as bnb

        nested = bnb.QuantState(
            absmax=self.nested_absmax,
            code=self.nested_code,
            blocksize=self.nested_blocksize,
            dtype=torch.float32,
        )
        state = bnb.QuantState(
            absmax=self.absmax,
            shape=self.shape,
            code=self.code,
            blocksize=_NF4_BLOCK,
            quant_type="nf4",
            dtype=self.dtype,
            offset=self.offset,
            state2=nested,
        )
        return bnb.dequantize_4bit(self.packed, state)


_FORMATS: dict[str, type[QuantizedWeight]] = {"fp8": Fp8Weight, "nf4": Nf4Weight}


class _DequantizedMatmul(torch.autograd.Function):
    """y = matmul(x, W^T) with W rebuilt from its quantized form in forward and in backward.

    Nothing is saved for backward (W is frozen, so only dL/dx = dL/dy W is needed, and W is
    rebuilt), so no dequantized weight outlives its matmul. `matmul(a, b)` is `a @ b` for a Linear layer, or
    the experts' grouped matmul (`b` of shape (experts, k, n)); both take W^T in forward and
    W in backward.
    """

    @staticmethod
    def forward(ctx, x, weight: QuantizedWeight, matmul):
        ctx.weight, ctx.matmul, ctx.x_dtype = weight, matmul, x.dtype
        return matmul(x.to(weight.dtype), weight.dequantize().transpose(-2, -1))

    @staticmethod
    def backward(ctx, grad):
        weight = ctx.weight
        grad = grad.to(weight.dtype).contiguous()  # grouped GEMM takes a row-major operand
        return ctx.matmul(grad, weight.dequantize()).to(ctx.x_dtype), None, None


def dequantized_matmul(
    x: torch.Tensor, weight: QuantizedWeight, matmul: Callable = torch.matmul
) -> torch.Tensor:
    """x @ W^T (or a grouped `matmul`) for a frozen quantized W; differentiable in x only."""
    return _DequantizedMatmul.apply(x, weight, matmul)


class QuantizedLinear(nn.Module):
    """A frozen `nn.Linear` whose weight is a `QuantizedWeight` (attribute `quantized`).

    It has no `weight` on purpose: code that would read `module.weight` directly (as the
    fused Mamba kernel reads `out_proj.weight`) fails loudly instead of reading codes.
    """

    def __init__(self, linear: nn.Linear, fmt: type[QuantizedWeight]) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.quantized = fmt(linear.weight)
        bias = linear.bias
        self.register_buffer("bias", None if bias is None else bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = dequantized_matmul(x, self.quantized)
        return y if self.bias is None else y + self.bias.to(y.dtype)


@dataclass(frozen=True)
class QuantizeSummary:
    precision: str
    linear_layers: int
    expert_weights: int
    bytes_before: int  # of the weights that were quantized, in their load dtype
    bytes_after: int

    def line(self) -> str:
        return (
            f"base weights quantized to {self.precision}: {self.linear_layers} Linear layers and "
            f"{self.expert_weights} routed-expert weights, {_size(self.bytes_before)} -> "
            f"{_size(self.bytes_after)}"
        )


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.2f} MiB"


def _native(name: str) -> str:
    return name.removeprefix("base_model.model.").replace(".base_layer", "")


def training_device() -> torch.device:
    """Where the trainer puts the model: this process's GPU (LOCAL_RANK), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def base_targets(model: nn.Module) -> tuple[list[str], list[tuple[nn.Module, str]]]:
    """What a quantized base stores quantized: names of its Linear layers, and (experts
    module, parameter name) pairs of its 3-D expert weights."""
    linears, experts = [], []
    for name, module in model.named_modules():
        native = _native(name)
        if isinstance(module, nn.Linear) and _LINEAR.fullmatch(native):
            linears.append(name)
        elif _EXPERTS.fullmatch(native):
            for attribute in _EXPERT_PARAMETERS:
                parameter = module._parameters.get(attribute)
                if parameter is not None and parameter.ndim == 3:
                    experts.append((module, attribute))
    return linears, experts


@torch.no_grad()
def quantize_base(
    model: nn.Module, precision: BasePrecision, device: torch.device | None = None
) -> QuantizeSummary:
    """Store `model`'s frozen base weights (see the module docstring) at `precision`, in place.

    Each weight is moved to `device` (default: `training_device()`), quantized there and its
    full-precision copy dropped, one at a time, so the device never holds the bf16 base.
    """
    fmt = _FORMATS[precision]
    device = device or training_device()
    linears, experts = base_targets(model)
    before = after = 0
    for name in linears:
        parent, _, child = name.rpartition(".")
        linear = model.get_submodule(name).to(device)
        quantized = QuantizedLinear(linear, fmt)
        setattr(model.get_submodule(parent), child, quantized)
        before += linear.weight.numel() * linear.weight.element_size()
        after += quantized.quantized.nbytes
    for module, attribute in experts:
        weight = module._parameters[attribute].to(device)
        quantized = fmt(weight)
        delattr(module, attribute)  # the Parameter goes; a submodule of that name takes its place
        setattr(module, attribute, quantized)
        before += weight.numel() * weight.element_size()
        after += quantized.nbytes
    return QuantizeSummary(precision, len(linears), len(experts), before, after)


@torch.no_grad()
def round_base(model: nn.Module, precision: BasePrecision) -> None:
    """Give every weight a `precision` base stores its rebuilt value, kept in its own dtype.

    The reference a quantized base must match to float rounding: same values, full storage.
    """
    fmt = _FORMATS[precision]
    linears, experts = base_targets(model)
    weights = [model.get_submodule(name).weight for name in linears]
    weights += [module._parameters[attribute] for module, attribute in experts]
    for weight in weights:
        weight.copy_(fmt(weight).dequantize())


def _stored_bytes(shape: torch.Size, precision: BasePrecision) -> int:
    """Bytes an `Fp8Weight` / `Nf4Weight` of `shape` holds (a test holds them to it)."""
    numel = shape.numel()
    if precision == "fp8":
        return numel + 4 * (numel // shape[-1])  # a code a weight, an fp32 scale a row
    blocks = -(-numel // _NF4_BLOCK)
    nested = -(-blocks // 256)  # bitsandbytes quantizes the block scales 256 at a time
    # packed codes, a byte per block scale, 16 levels + offset, nested scales + 256 levels
    return -(-numel // 2) + blocks + 4 * (16 + 1) + 4 * (nested + 256)


def planned_base_bytes(model: nn.Module, precision: BasePrecision, element_size: int = 2) -> int:
    """Bytes of all of `model`'s weights once its base is stored at `precision`.

    Works on a model on the meta device (`train --dry-run`): shapes only. Parameters count
    at `element_size` bytes (that of the compute dtype), whatever dtype they have here.
    """
    linears, experts = base_targets(model)
    quantized = [model.get_submodule(name).weight.shape for name in linears]
    quantized += [module._parameters[attribute].shape for module, attribute in experts]
    total = sum(p.numel() for p in model.parameters()) * element_size
    if precision == "bf16":
        return total
    return total + sum(_stored_bytes(s, precision) - s.numel() * element_size for s in quantized)


def weights_line(model: nn.Module, precision: BasePrecision, element_size: int) -> str:
    """What `train --dry-run` prints: the model's weights in memory at each base precision."""
    each = {p: planned_base_bytes(model, p, element_size) for p in ("bf16", "fp8", "nf4")}
    sizes = ", ".join(f"{p} {_size(nbytes)}" for p, nbytes in each.items())
    return f"weights: {_size(each[precision])} with the base in {precision} (base in {sizes})"


@dataclass(frozen=True)
class BasePath:
    precision: str
    detail: str  # what the base is stored as, and how it is used
    problem: str | None = None  # why it cannot run here (`engine.paths.check` refuses), or None


def base_path(precision: BasePrecision) -> BasePath:
    """How a base of `precision` is stored and used on this machine, or why it cannot be."""
    if precision == "bf16":
        return BasePath(precision, "as loaded, in the compute dtype (`precision`)")
    stored = (
        "routed experts, attention, Mamba in_proj and shared experts quantized, dequantized "
        "per use; embeddings, lm_head and Mamba out_proj kept"
    )
    if precision == "fp8":
        detail = f"fp8 e4m3 weight-only, a scale per output channel; {stored}"
        if not torch.cuda.is_available():
            return BasePath(precision, detail, _FP8_GPU + "; this machine has no CUDA device")
        major, minor = torch.cuda.get_device_capability()
        if (major, minor) < (8, 9):
            gpu = torch.cuda.get_device_name()
            return BasePath(precision, detail, f"{_FP8_GPU}; {gpu} is {major}.{minor}")
        return BasePath(precision, detail)
    return _nf4_path(stored)


_FP8_GPU = "needs a GPU with native fp8 (compute capability >= 8.9: L4, L40S, H100, H200)"


def _nf4_path(stored: str) -> BasePath:
    """NF4 runs where bitsandbytes quantizes and dequantizes on the training device."""
    device = training_device()
    try:
        import bitsandbytes
    except ImportError as err:
        problem = f"needs bitsandbytes (pip install 'reasonlab[qlora]'): {err}"
        return BasePath("nf4", f"bitsandbytes NF4; {stored}", problem)
    detail = f"bitsandbytes {bitsandbytes.__version__} NF4 on {device.type}, blocks of 64; {stored}"
    try:  # its CUDA library must match this torch's CUDA: a round trip proves it
        probe = torch.linspace(-1, 1, 2 * _NF4_BLOCK, device=device, dtype=torch.bfloat16)
        Nf4Weight(probe.view(2, _NF4_BLOCK)).dequantize()
    except Exception as err:  # noqa: BLE001 - any failure means the path cannot run
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return BasePath("nf4", detail, f"bitsandbytes cannot run on {device}: {reason}")
    return BasePath("nf4", detail)
