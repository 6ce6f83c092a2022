"""LoRA target presets for native `nemotron_h`, resolved to exact names on a given model.

PEFT matches `target_modules` by suffix and silently skips names that match nothing, so
presets are resolved here against the model's own module tree into full names: a preset
that finds nothing is an error before training starts, and the list of what was wrapped
is printed after. Mamba `conv1d` and the MoE router (`gate`) are never targeted; Mamba
`out_proj` (`mamba_out`) only where its gradient is real: the fused Mamba kernel reads
`out_proj.weight` directly, so `engine.paths.check` refuses it on that path.

Native module tree (transformers `modeling_nemotron_h.py`):
  model.layers.N.mixer.in_proj                       Mamba2 input projection (Linear)
  model.layers.N.mixer.out_proj                      Mamba2 output projection (Linear)
  model.layers.N.mixer.{q,k,v,o}_proj                attention (Linear)
  model.layers.N.mixer.shared_experts.{up,down}_proj shared expert (Linear)
  model.layers.N.mixer.experts.{up,down}_proj        routed experts: 3-D Parameters
                                                     (experts, out, in), via `target_parameters`
  lm_head                                            output head (Linear)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, get_args

from reasonlab.competition import UNAPPLIED_LORA_TARGETS

__all__ = ["PRESETS", "Preset", "ResolvedTargets", "adapted_names", "resolve_targets"]

Preset = Literal[
    "attention", "mamba_in", "mamba_out", "shared_experts", "routed_experts", "lm_head"
]
PRESETS: tuple[str, ...] = get_args(Preset)

# Module-name patterns per preset (full native names); routed experts match parameters.
_MODULE_PATTERNS: dict[str, re.Pattern[str]] = {
    "attention": re.compile(r"model\.layers\.\d+\.mixer\.(q|k|v|o)_proj"),
    "mamba_in": re.compile(r"model\.layers\.\d+\.mixer\.in_proj"),
    "mamba_out": re.compile(r"model\.layers\.\d+\.mixer\.out_proj"),
    "shared_experts": re.compile(r"model\.layers\.\d+\.mixer\.shared_experts\.(up|down)_proj"),
    "lm_head": re.compile(r"lm_head"),
}
_PARAMETER_PATTERNS: dict[str, re.Pattern[str]] = {
    "routed_experts": re.compile(r"model\.layers\.\d+\.mixer\.experts\.(up|down)_proj"),
}


@dataclass(frozen=True)
class ResolvedTargets:
    """Full names for PEFT: Linear modules (`target_modules`) and 3-D parameters (`target_parameters`)."""

    modules: dict[str, list[str]] = field(default_factory=dict)  # preset -> module names
    parameters: dict[str, list[str]] = field(default_factory=dict)  # preset -> parameter names

    @property
    def target_modules(self) -> list[str]:
        return sorted(name for names in self.modules.values() for name in names)

    @property
    def target_parameters(self) -> list[str]:
        return sorted(name for names in self.parameters.values() for name in names)


def resolve_targets(model, presets: list[str] | tuple[str, ...]) -> ResolvedTargets:
    """Full names each preset selects on this (unwrapped) model; errors on empty presets."""
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise ValueError(f"unknown LoRA target preset(s) {unknown}; choose from {list(PRESETS)}")
    module_names = [name for name, _ in model.named_modules()]
    param_names = [name for name, _ in model.named_parameters()]
    modules: dict[str, list[str]] = {}
    parameters: dict[str, list[str]] = {}
    for preset in presets:
        if preset in _MODULE_PATTERNS:
            found = [n for n in module_names if _MODULE_PATTERNS[preset].fullmatch(n)]
            modules[preset] = found
        else:
            found = [n for n in param_names if _PARAMETER_PATTERNS[preset].fullmatch(n)]
            parameters[preset] = found
        if not found:
            raise ValueError(f"LoRA target preset {preset!r} matches nothing in this model")
        bad = [n for n in found if n.rsplit(".", 1)[-1] in UNAPPLIED_LORA_TARGETS]
        if bad:  # a guard on the patterns above, which must never reach these
            raise ValueError(f"preset {preset!r} would target forbidden modules {bad[:3]}")
    return ResolvedTargets(modules, parameters)


def adapted_names(peft_model) -> list[str]:
    """Native names of everything that carries a LoRA after wrapping (modules and 3-D parameters).

    A wrapped parameter is reported as `<module>.<parameter>`; nested wrappers (two
    parameters of one module) show up as `...experts.base_layer`, which is folded away.
    """
    from peft.tuners.lora import LoraLayer

    names = set()
    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer) or not module.lora_A:
            continue
        name = name.removeprefix("base_model.model.").replace(".base_layer", "")
        parameter = getattr(module, "parameter_name", None)
        names.add(f"{name}.{parameter}" if parameter else name)
    return sorted(names)
