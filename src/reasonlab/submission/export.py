"""Turn a natively trained PEFT adapter into the layout the scorer's vLLM loads.

Native (transformers `nemotron_h`)          ->  scorer (hub remote code, vLLM)
base_model.model.model.layers.N.<m>         ->  base_model.model.backbone.layers.N.<m>
  ...mixer.experts (3-D parameter LoRA:     ->  ...mixer.experts.{i}.up_proj / down_proj,
  A (E*r, in), B (out, E*r))                    one (A (r, in), B (out, r)) pair per expert
base_model.model.lm_head                    ->  unchanged

PEFT's parameter LoRA stores expert i's A as rows [i*r, (i+1)*r) of A and its B as the
strided columns i, i+E, i+2E, ... of B (`B.reshape(out, r, E)[:, :, i]`); the expert's
update is scaling * B_i @ A_i, exactly what a per-expert Linear LoRA computes, so the
split changes no number. Which 3-D parameter a nested wrapper holds comes from
`lora_parameters.json`, written by `reasonlab train`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from reasonlab.competition import BASE_MODEL_ID
from reasonlab.formats.csvio import DataError
from reasonlab.formats.files import atomic_path, atomic_write

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "PARAMETER_MAP_FILE",
    "ExportResult",
    "export_adapter",
    "hub_module_name",
    "merge_exported",
]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PARAMETER_MAP_FILE = "lora_parameters.json"  # written by `reasonlab train` (final and checkpoints)
_LORA_KEY = re.compile(r"(?P<prefix>.+)\.lora_(?P<ab>[AB])\.weight")
_PEFT_ROOT = "base_model.model."


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    tensors: int
    target_modules: list[str]
    experts_split: int  # 3-D parameter LoRAs split into per-expert pairs
    dropped: list[str]  # non-LoRA tensors left out (e.g. a full lm_head copy)


def hub_module_name(native: str) -> str:
    """`model.layers.3.mixer.q_proj` -> `backbone.layers.3.mixer.q_proj`; `lm_head` unchanged."""
    return "backbone." + native.removeprefix("model.") if native.startswith("model.") else native


def _read_adapter(adapter_dir: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    config_path, weights_path = adapter_dir / ADAPTER_CONFIG, adapter_dir / ADAPTER_WEIGHTS
    if not config_path.is_file():
        raise DataError(f"{adapter_dir}: no {ADAPTER_CONFIG} (not a PEFT adapter folder)")
    if not weights_path.is_file():
        raise DataError(f"{adapter_dir}: no {ADAPTER_WEIGHTS}")
    return json.loads(config_path.read_text(encoding="utf-8")), load_file(str(weights_path))


def export_adapter(adapter_dir: str | Path, out_dir: str | Path) -> ExportResult:
    """Write `out_dir/adapter_config.json` + `adapter_model.safetensors` in the scorer's layout."""
    from safetensors.torch import save_file

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    config, tensors = _read_adapter(adapter_dir)
    map_path = adapter_dir / PARAMETER_MAP_FILE
    wrappers = json.loads(map_path.read_text(encoding="utf-8")) if map_path.is_file() else {}
    r, alpha = int(config["r"]), config["lora_alpha"]
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise DataError(f"{adapter_dir}: rank_pattern/alpha_pattern are not supported by export")

    out: dict = {}
    dropped: list[str] = []
    split = 0
    for key in sorted(tensors):
        match = _LORA_KEY.fullmatch(key)
        if not match:
            dropped.append(key)  # e.g. `lm_head.base_layer.weight`, a full copy of a frozen weight
            continue
        prefix, ab, tensor = match["prefix"], match["ab"], tensors[key]
        if prefix in wrappers:  # fused 3-D expert LoRA: split per expert
            native = wrappers[prefix]  # model.layers.N.mixer.experts.up_proj
            module, proj = native.rsplit(".", 1)
            rows = tensor.shape[0] if ab == "A" else tensor.shape[1]
            if rows % r:
                raise DataError(f"{key}: {tuple(tensor.shape)} is not a multiple of rank {r}")
            experts = rows // r
            for i in range(experts):
                part = (
                    tensor[i * r : (i + 1) * r]
                    if ab == "A"
                    else tensor.reshape(tensor.shape[0], r, experts)[:, :, i]
                )
                name = f"{_PEFT_ROOT}{hub_module_name(module)}.{i}.{proj}.lora_{ab}.weight"
                out[name] = part.contiguous().clone()
            split += ab == "A"
        elif ".base_layer" in prefix or not prefix.startswith(_PEFT_ROOT):
            raise DataError(
                f"{key}: a nested or unknown LoRA wrapper; {PARAMETER_MAP_FILE} from `reasonlab train` "
                "must name the 3-D parameter it adapts"
            )
        else:
            native = prefix.removeprefix(_PEFT_ROOT)
            out[f"{_PEFT_ROOT}{hub_module_name(native)}.lora_{ab}.weight"] = tensor.contiguous()
    if not out:
        raise DataError(f"{adapter_dir}: no LoRA tensors")

    leaf_names = sorted({_LORA_KEY.fullmatch(k)["prefix"].rsplit(".", 1)[-1] for k in out})
    exported = {
        **{
            k: v
            for k, v in config.items()
            if k not in ("target_parameters", "rank_pattern", "alpha_pattern")
        },
        "base_model_name_or_path": BASE_MODEL_ID,
        "target_modules": leaf_names,  # names what the keys hold (the scorer's module leaves)
        "target_parameters": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "modules_to_save": None,
        "r": r,
        "lora_alpha": alpha,
        "inference_mode": True,
    }
    with atomic_path(out_dir / ADAPTER_WEIGHTS) as tmp:  # never half an adapter in out_dir
        save_file(out, str(tmp), metadata={"format": "pt"})
    with atomic_write(out_dir / ADAPTER_CONFIG) as f:
        json.dump(exported, f, indent=2, sort_keys=True)
        f.write("\n")
    return ExportResult(out_dir, len(out), leaf_names, split, dropped)


_EXPERT = re.compile(r"(?P<module>.+\.mixer\.experts)\.(?P<i>\d+)\.(?P<proj>up_proj|down_proj)")


def merge_exported(model, export_dir: str | Path):
    """Add an exported (scorer-layout) adapter's updates into a native model's weights, in place.

    The inverse of the renaming above, applied to weights: used to prove an export keeps
    the trained function (same logits as the PEFT model it came from).
    """
    import torch

    config, tensors = _read_adapter(Path(export_dir))
    scaling = config["lora_alpha"] / config["r"]
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key in tensors:
            match = _LORA_KEY.fullmatch(key)
            if match is None or match["ab"] != "A":
                continue
            prefix = match["prefix"]
            a, b = tensors[key], tensors[f"{prefix}.lora_B.weight"]
            delta = (b.float() @ a.float()) * scaling  # (out, in), as the Linear weight
            hub = prefix.removeprefix(_PEFT_ROOT)
            native = (
                "model." + hub.removeprefix("backbone.") if hub.startswith("backbone.") else hub
            )
            expert = _EXPERT.fullmatch(native)
            if expert:  # 3-D parameter (experts, out, in)
                target = params[f"{expert['module']}.{expert['proj']}"][int(expert["i"])]
            else:
                target = params[f"{native}.weight"]
            target += delta.to(target.device, target.dtype)
    return model
