"""The training recipe: one pydantic model, validated on load; defaults -> YAML -> CLI flags.

Every field has the meaning of the TRL/PEFT argument it feeds. Validation refuses what
the scorer would refuse later (rank above 32) and what PEFT would reject mid-run
(dropout with routed-expert parameter LoRA), naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reasonlab.competition import MAX_LORA_RANK, MAX_MODEL_LEN
from reasonlab.training.engine.checkpointing import LAYER_KINDS, LayerKind
from reasonlab.training.lora_targets import Preset

__all__ = [
    "BasePrecision",
    "LoraRecipe",
    "RecipeError",
    "TrainRecipe",
    "load_recipe",
    "memory_savers",
    "save_recipe",
]

# How the frozen base weights are stored (training.engine.quantized_base); `precision` is the compute dtype.
BasePrecision = Literal["bf16", "fp8", "nf4"]


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the field."""


class LoraRecipe(BaseModel):
    """Which modules get a LoRA, and its size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(32, ge=1, description="rank; the competition allows at most 32")
    alpha: float = Field(
        32, gt=0, description="scaling numerator: the update is scaled by alpha / r"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    targets: tuple[Preset, ...] = (
        "attention",
        "mamba_in",
        "shared_experts",
        "routed_experts",
        "lm_head",
    )

    @field_validator("r")
    @classmethod
    def _rank_allowed(cls, r: int) -> int:
        if r > MAX_LORA_RANK:
            raise ValueError(f"rank {r} exceeds the competition's limit of {MAX_LORA_RANK}")
        return r

    @model_validator(mode="after")
    def _dropout_with_experts(self) -> LoraRecipe:
        # PEFT's parameter LoRA (routed experts) cannot apply dropout to its input.
        if self.dropout and "routed_experts" in self.targets:
            raise ValueError(
                "dropout must be 0 when targets include routed_experts (PEFT parameter LoRA)"
            )
        if not self.targets:
            raise ValueError("targets must name at least one preset")
        return self


class TrainRecipe(BaseModel):
    """Everything `reasonlab train` needs; saved resolved next to the adapter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="folder of the base model (config, weights, tokenizer)")
    data: str = Field(description="SFT rows, JSONL")
    output_dir: str
    lora: LoraRecipe = LoraRecipe()
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(
        -1, ge=-1, description="-1: run `epochs`; otherwise stop after this many steps"
    )
    batch_size: int = Field(1, ge=1, description="per device")
    grad_accum: int = Field(16, ge=1)
    max_length: int = Field(
        MAX_MODEL_LEN, ge=16, description="tokens; longer examples are dropped, never cut"
    )
    packing: bool = Field(
        False,
        description="pack several examples into each row, kept apart in every layer "
        "(attention per example, Mamba by seq_idx); see training.engine.packing",
    )
    pack_length: int = Field(
        8192,
        ge=16,
        description="tokens per packed row at most; longer examples are dropped, never cut. "
        "A batch of `batch_size` rows is trained as one sequence of up to batch_size x pack_length",
    )
    seed: int = 0
    precision: Literal["bf16", "fp16", "fp32"] = Field(
        "bf16", description="compute dtype: the model is loaded in it, LoRA math runs in it"
    )
    base_precision: BasePrecision = Field(
        "bf16",
        description="storage of the frozen base: bf16 as loaded; fp8 (e4m3 weight-only, GPUs of "
        "compute capability >= 8.9) or nf4 (bitsandbytes 4-bit), routed experts included, each "
        "weight dequantized per use (training.engine.quantized_base). LoRA weights, optimizer state "
        "and the saved adapter are the same",
    )
    gradient_checkpointing: bool = Field(
        True,
        description="recompute each layer's activations in the backward instead of keeping them: "
        "on Nemotron-3-Nano at 8,192-token packs (H200, bench/bench_train_step.py) 77.2 GiB and "
        "10-12k tokens/s with it, 109.5 GiB and 17.4k tokens/s without",
    )
    checkpoint_layers: list[LayerKind] = Field(
        default_factory=lambda: list(LAYER_KINDS.values()),
        min_length=1,
        description="with gradient_checkpointing: the layer kinds recomputed in the backward "
        "(mamba, moe, attention, mlp); blocks of the other kinds keep their activations, between "
        "checkpointing all and none in memory and speed (training.engine.checkpointing). On "
        "Nemotron-3-Nano at 8,192-token packs with 8-bit AdamW and 1,024-token loss chunks: "
        "[mamba, moe] 69.7 GiB and 13.0k tokens/s, [moe] 75.6 GiB and 13.9k, all 68.8 GiB and 11.3k",
    )
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(200, ge=1)
    save_total_limit: int = Field(2, ge=1)
    report_to: Literal["tensorboard", "none"] = "tensorboard"
    # The engine (see `training.engine`): each choice is printed at start and by --dry-run.
    kernels: Literal["auto", "required", "off"] = Field(
        "auto",
        description="auto: fused Mamba kernels when installed; required: refuse to start "
        "without them; off: the PyTorch reference (an A/B baseline, or LoRA on out_proj)",
    )
    expert_lora: Literal["grouped", "peft"] = Field(
        "grouped", description="routed-expert LoRA by grouped matmuls, or PEFT's delta weights"
    )
    lora_linear: Literal["fused", "peft"] = Field(
        "fused",
        description="LoRA Linear layers: base + s (x A^T) B^T as one addmm, or PEFT's forward "
        "(a scale pass and an add pass over each output)",
    )
    loss_chunk_tokens: int = Field(
        4096, ge=0, description="labelled tokens per lm_head + loss chunk; 0: full logits"
    )
    optimizer: Literal["adamw_torch_fused", "adamw_torch", "adamw_bnb_8bit"] = Field(
        "adamw_torch_fused",
        description="the Trainer's optimizer. adamw_bnb_8bit (bitsandbytes) keeps AdamW's two "
        "moments in 8 bits: 2 bytes per LoRA parameter instead of 8, 4.9 GiB less at r=32 on "
        "every preset of Nemotron-3-Nano; with loss_chunk_tokens: 1024 an 8,192-token step of a "
        "bf16 base peaks at 68.8 GiB, within an 80 GB card",
    )
    sharding: Literal["none", "fsdp2"] = Field(
        "none",
        description="under a launcher of N processes: none: each holds the whole model (DDP); "
        "fsdp2: weights, gradients and optimizer state split N ways (training.engine.sharded)",
    )
    init_adapter: str | None = Field(
        None,
        description="a native adapter folder (what `train` writes) to continue from: its LoRA "
        "weights start the run; its rank, alpha and targets must be this recipe's",
    )

    @model_validator(mode="after")
    def _quantized_experts_are_grouped(self) -> TrainRecipe:
        # Only the grouped expert path computes from quantized expert weights (PEFT's wrapper
        # and transformers' experts forward index the 3-D parameter itself).
        if self.base_precision != "bf16" and (
            self.expert_lora != "grouped" or "routed_experts" not in self.lora.targets
        ):
            raise ValueError(
                f"base_precision: {self.base_precision} quantizes the routed experts, which run "
                "through the grouped expert LoRA: it needs expert_lora: grouped and "
                "routed_experts in lora.targets"
            )
        return self

    @model_validator(mode="after")
    def _sharded_expert_lora(self) -> TrainRecipe:
        # PEFT's delta-weight wrapper re-registers the 3-D expert weight as a parametrization
        # inside each forward, under FSDP2's feet; the grouped path reads it as FSDP gathered it.
        if (
            self.sharding == "fsdp2"
            and self.expert_lora == "peft"
            and "routed_experts" in self.lora.targets
        ):
            raise ValueError(
                "sharding: fsdp2 needs expert_lora: grouped with routed_experts targets"
            )
        if self.sharding == "fsdp2" and self.base_precision != "bf16":
            # FSDP2 shards plain tensors; fp8 / nf4 storage is the one-GPU way to save memory
            raise ValueError(
                f"sharding: fsdp2 shards a bf16 base, not base_precision: {self.base_precision}"
            )
        if self.sharding == "fsdp2" and self.optimizer == "adamw_bnb_8bit":
            # bitsandbytes' 8-bit update mixes its plain state tensors with FSDP2's DTensor
            # parameters and fails at the first step; sharding splits the state N ways instead
            raise ValueError("sharding: fsdp2 needs optimizer: adamw_torch_fused or adamw_torch")
        return self


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(root)"


def memory_savers(recipe: TrainRecipe) -> list[str]:
    """Settings that lower a step's peak GPU memory which `recipe` does not use yet, the
    cheapest in speed first. On Nemotron-3-Nano at 8,192-token packs (H200, README "Training
    on one H200"): 1,024-token loss chunks and 8-bit AdamW moments together add 58 ms to a
    585 ms step's kernel time (the moments 38 ms of it); an fp8 base costs 5% of tokens/s;
    checkpointing every block about a third, all but the 6 attention blocks 16% less."""
    one_process = recipe.sharding == "none"  # FSDP2 shards a bf16 base and torch's AdamW only
    savers = []
    if recipe.loss_chunk_tokens == 0 or recipe.loss_chunk_tokens > 1024:
        savers.append("loss_chunk_tokens: 1024")
    if recipe.base_precision == "bf16" and one_process:
        savers.append("base_precision: fp8 (or nf4)")
    if recipe.optimizer != "adamw_bnb_8bit" and one_process:
        savers.append("optimizer: adamw_bnb_8bit")
    if not recipe.gradient_checkpointing:  # attention kept: 0.9 GiB more, 16% faster (H200)
        savers.append("gradient_checkpointing: true (checkpoint_layers: [mamba, moe])")
    elif set(recipe.checkpoint_layers) != set(LAYER_KINDS.values()):
        savers.append(f"checkpoint_layers: [{', '.join(LAYER_KINDS.values())}]")
    if recipe.batch_size > 1:
        savers.append(f"batch_size: 1 (grad_accum: {recipe.grad_accum * recipe.batch_size})")
    if recipe.packing:
        savers.append(f"pack_length: {recipe.pack_length // 2}")
    return savers


def load_recipe(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainRecipe:
    """Read a YAML recipe, apply non-None `overrides` (CLI flags), validate."""
    import yaml

    data: dict[str, Any] = {}
    source = str(path) if path else "(flags)"
    if path is not None:
        from reasonlab.formats.csvio import DataError, read_text

        path = Path(path)
        try:
            data = yaml.safe_load(read_text(path, "recipe YAML file")) or {}
        except DataError as err:  # missing, a folder, not UTF-8
            raise RecipeError(str(err)) from None
        except yaml.YAMLError as err:
            raise RecipeError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(data, dict):
            raise RecipeError(f"{path}: a recipe is a mapping of fields, got {type(data).__name__}")
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return TrainRecipe.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{_field_path(e['loc'])}: {e['msg']}" for e in err.errors())
        raise RecipeError(f"{source}: {problems}") from None


def save_recipe(recipe: TrainRecipe, path: str | Path) -> None:
    """Write the resolved recipe as YAML (what actually ran, flags included)."""
    import yaml

    from reasonlab.formats.files import atomic_write

    with atomic_write(path) as f:
        yaml.safe_dump(recipe.model_dump(mode="json"), f, sort_keys=False)
