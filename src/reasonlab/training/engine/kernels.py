"""The fused Mamba kernels: make them importable, and say which path transformers bound.

transformers' `nemotron_h` binds its Mamba functions when its modeling module is imported:
`mamba_ssm`'s Triton SSD kernels and `causal_conv1d`'s CUDA conv if `import mamba_ssm`
succeeds, else a PyTorch reference that is ~5x slower and runs out of memory at 8k tokens.
It swallows the import error, so a broken install silently takes the slow path. Two known
causes, handled or reported here:
- a Triton-only `mamba_ssm` build (`MAMBA_SKIP_CUDA_BUILD=TRUE`, the usual way to install it)
  lacks Mamba-1's `selective_scan_cuda` extension, which its package root imports although
  Mamba-2 never calls it: a placeholder module satisfies that import;
- with the `kernels` package installed, transformers looks for hub kernels first (offline:
  a silent fallback); reported in `describe()`.

`prepare()` runs before the model is built; `mamba_path()` reads what was actually bound;
`use_pytorch_mamba()` binds the PyTorch reference on purpose (`kernels: off`: an A/B
reference, or a LoRA on `out_proj`, whose gradient only that path computes).

transformers calls a bound kernel whatever device the tensors are on, so a model on the
CPU in a process that has the kernels (a CPU eval, the tests on a GPU machine, a CPU box
with a Triton-only build) would fail in `causal_conv1d`. `prepare()` therefore binds each
kernel behind a dispatch on the device: CUDA tensors take the kernel, others the reference.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
import types
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "KernelError",
    "MambaPath",
    "bound_kernels",
    "mamba_path",
    "prepare",
    "select",
    "use_pytorch_mamba",
]

_MODELING = "transformers.models.nemotron_h.modeling_nemotron_h"
# The functions a training forward calls (all take `seq_idx`): the fused conv1d + SSD scan +
# gated norm chain, and the conv and scan the mixer calls when that chain is not taken.
_TRAINING_FUNCTIONS = ("mamba2_split_conv1d_scan_combined", "causal_conv1d_fn", "mamba2_chunk_scan")
# Every Mamba function transformers binds to a kernel when one imports (or to its reference).
_KERNEL_FUNCTIONS = (*_TRAINING_FUNCTIONS, "causal_conv1d_update", "mamba2_selective_state_update")


class KernelError(RuntimeError):
    """A recipe asked for the fused kernels (`kernels: required`) and they are not usable."""


@dataclass(frozen=True)
class MambaPath:
    kind: Literal["fused", "pytorch"]
    detail: str  # where the implementation comes from, or why the fused one is not used


def _import_mamba_ssm() -> str | None:
    """Import `mamba_ssm` (placeholder for Mamba-1's CUDA scan if absent); the error, or None."""
    if importlib.util.find_spec("mamba_ssm") is None:
        return "mamba_ssm is not installed (pip install 'reasonlab[gpu]')"
    try:
        importlib.import_module("mamba_ssm")
    except ImportError as err:
        if getattr(err, "name", None) != "selective_scan_cuda":
            return f"import mamba_ssm failed: {err}"
        # Triton-only build: Mamba-2 (this model) never calls Mamba-1's selective scan.
        sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")
        for name in [m for m in sys.modules if m == "mamba_ssm" or m.startswith("mamba_ssm.")]:
            del sys.modules[name]  # half-imported modules from the failed attempt
        try:
            importlib.import_module("mamba_ssm")
        except ImportError as retry:
            return f"import mamba_ssm failed: {retry}"
    if importlib.util.find_spec("causal_conv1d") is None:
        return "causal_conv1d is not installed (the fused scan needs its CUDA conv)"
    return None


def _implementation(function):
    """What a transformers kernel wrapper calls: the package kernel or its own PyTorch body.

    `use_kernel_func_from_hub_with_fallback` (5.17 and 5.24) closes over `implementation`;
    the walk follows `__wrapped__` in case another decorator sits on top. Behind a device
    dispatch (`_by_device`), what it runs on CUDA.
    """
    function = getattr(function, "cuda_kernel", function)
    seen = function
    while seen is not None:
        found = inspect.getclosurevars(seen).nonlocals.get("implementation")
        if callable(found):
            return found
        seen = getattr(seen, "__wrapped__", None)
    return function


def bound_kernels() -> dict[str, str]:
    """Each Mamba function of transformers' nemotron_h -> `module.name` of what it runs."""
    modeling = importlib.import_module(_MODELING)
    found = {}
    for name in _TRAINING_FUNCTIONS:
        implementation = _implementation(getattr(modeling, name))
        found[name] = f"{implementation.__module__}.{implementation.__qualname__}"
    return found


def prepare() -> None:
    """Make the fused kernels importable before transformers binds them (rebinding if it
    already bound the PyTorch path while they were importable), each behind a dispatch on
    the device (`_by_device`)."""
    if _import_mamba_ssm() is not None:
        return
    modeling = sys.modules.get(_MODELING)
    if modeling is not None and any(
        v.startswith("transformers.") for v in bound_kernels().values()
    ):
        importlib.reload(modeling)
    modeling = importlib.import_module(_MODELING)
    for name in _KERNEL_FUNCTIONS:
        function = getattr(modeling, name)
        reference = getattr(function, "__wrapped__", function)
        if reference is not function and not hasattr(function, "cuda_kernel"):
            setattr(modeling, name, _by_device(function, reference))


def _by_device(kernel, reference):
    """`kernel` where the first tensor argument is on CUDA, else `reference` (the PyTorch
    body). Its `__wrapped__` is the reference, as on transformers' own wrapper."""
    import torch

    @functools.wraps(reference)
    def by_device(*args, **kwargs):
        first = next(a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor))
        return (kernel if first.is_cuda else reference)(*args, **kwargs)

    by_device.cuda_kernel = kernel
    return by_device


def select(mode: Literal["auto", "required", "off"]) -> None:
    """Bind the Mamba path a recipe's `kernels` field asks for (before the first forward).

    A process may switch back and forth (an A/B check runs `off`, then `required`): what
    `use_pytorch_mamba` unbound is bound again before the kernels are prepared.
    """
    if mode == "off":
        use_pytorch_mamba()
        return
    modeling = sys.modules.get(_MODELING)
    while _UNBOUND:
        name, function = _UNBOUND.popitem()
        setattr(modeling, name, function)
    prepare()


# The wrappers `use_pytorch_mamba` replaced (name -> transformers' kernel-or-fallback wrapper).
_UNBOUND: dict[str, object] = {}


def use_pytorch_mamba() -> None:
    """Bind transformers' PyTorch reference for every Mamba function, for this process."""
    modeling = importlib.import_module(_MODELING)
    for name in _KERNEL_FUNCTIONS:
        function = getattr(modeling, name)
        reference = getattr(function, "__wrapped__", function)
        if reference is not function:
            _UNBOUND.setdefault(name, function)
        setattr(modeling, name, reference)


def mamba_path() -> MambaPath:
    """Which Mamba implementation the training forward of `nemotron_h` will call: `fused`
    when every training function runs a package kernel on a CUDA device."""
    import torch

    problem = _import_mamba_ssm()
    bound = bound_kernels()
    on_torch = [name for name, where in bound.items() if where.startswith("transformers.")]
    if not on_torch:
        if not torch.cuda.is_available():
            return MambaPath("pytorch", "mamba_ssm is installed but there is no CUDA device")
        return MambaPath("fused", "mamba_ssm Triton SSD + causal_conv1d: " + ", ".join(bound))
    if problem is None:
        reason = f"{', '.join(on_torch)} bound to PyTorch (kernels: off, or imported first)"
    else:
        reason = problem
    if importlib.util.find_spec("kernels") is not None:
        reason += "; the `kernels` package is installed: transformers prefers hub kernels"
    return MambaPath("pytorch", reason)
