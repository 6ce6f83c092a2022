"""Continue from a trained adapter: its LoRA weights loaded into the freshly wrapped model.

The model is wrapped from the recipe as usual (same presets, so the same module names and
the same nesting of the routed-expert wrappers), then every tensor of the adapter's
`adapter_model.safetensors` is loaded by name. Any name that does not land, or any LoRA
tensor left unloaded, is an error naming the folder: a silent partial load would train
from a mix of new and old weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from reasonlab.training.recipe import LoraRecipe, RecipeError

__all__ = ["load_adapter_weights"]


def load_adapter_weights(peft_model, adapter_dir: str | Path, lora: LoraRecipe) -> int:
    """Load a native adapter's LoRA tensors into `peft_model`; returns how many."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    config_file, weights = (
        adapter_dir / "adapter_config.json",
        adapter_dir / "adapter_model.safetensors",
    )
    if not (config_file.is_file() and weights.is_file()):
        raise RecipeError(
            f"init_adapter: {adapter_dir} has no adapter_config.json + adapter_model.safetensors"
        )
    saved = json.loads(config_file.read_text(encoding="utf-8"))
    if (saved.get("r"), float(saved.get("lora_alpha", 0))) != (lora.r, float(lora.alpha)):
        raise RecipeError(
            f"init_adapter: {adapter_dir} has r={saved.get('r')}, alpha={saved.get('lora_alpha')}; "
            f"the recipe's lora has r={lora.r}, alpha={lora.alpha}"
        )
    state = load_file(str(weights))
    result = set_peft_model_state_dict(peft_model, state)
    missing = [key for key in result.missing_keys if ".lora_" in key]
    if result.unexpected_keys or missing:
        shown = (list(result.unexpected_keys) + missing)[:3]
        raise RecipeError(
            f"init_adapter: {adapter_dir} does not fit the recipe's LoRA targets "
            f"({len(result.unexpected_keys)} unknown, {len(missing)} missing tensors, e.g. {shown}); "
            "continue from a native adapter (train's adapter/ folder, not an export) made with "
            "the same lora.targets"
        )
    return len(state)
