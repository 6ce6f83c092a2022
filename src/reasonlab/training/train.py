"""LoRA SFT of native `nemotron_h`, top to bottom: data, model, LoRA, train, save.

The loop is transformers' `Trainer` on pre-tokenized rows rather than TRL's `SFTTrainer`:
TRL (1.16) computes the loss through a fused LM head that reads `lm_head.weight` directly
and refuses a LoRA on `lm_head`, which the winning recipe trains. Everything SFTTrainer
would add here (chat rendering, completion-only labels) is done by `formats.chat`.

Examples are tokenized here (see `reasonlab.formats.chat`): the scorer's rendered prompt
(loss masked) followed by the completion, one example per row, or with `packing: true`
several per row, kept apart in every layer (`training.engine.packing`). Examples longer than
`max_length` (or `pack_length`) are dropped and counted, never truncated (a cut trace
would teach the model to stop mid-thought).

Outputs under `output_dir`: `checkpoint-N/` (resumable), `adapter/` (the PEFT adapter in
the native layout, plus `lora_parameters.json` naming which 3-D parameter each nested
expert wrapper holds, `train_recipe.yaml` as resolved, `training_summary.json`).
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reasonlab.formats.chat import IGNORE_INDEX, sft_example, tokenize_example
from reasonlab.formats.csvio import DataError
from reasonlab.formats.files import atomic_write
from reasonlab.formats.jsonl import read_jsonl
from reasonlab.training.checkpoints import write_beside_checkpoints
from reasonlab.training.engine.paths import EnginePaths, apply_fast_path, check, resolve_paths
from reasonlab.training.engine.sharded import describe as describe_sharding
from reasonlab.training.engine.sharded import world_size
from reasonlab.training.lora_targets import adapted_names, resolve_targets
from reasonlab.training.recipe import RecipeError, TrainRecipe, memory_savers, save_recipe

__all__ = [
    "PARAMETER_MAP_FILE",
    "RECIPE_FILE",
    "SUMMARY_FILE",
    "TrainPlan",
    "TrainResult",
    "add_lora",
    "dry_run",
    "is_main_process",
    "parameter_wrappers",
    "train",
]

PARAMETER_MAP_FILE = "lora_parameters.json"
SUMMARY_FILE = "training_summary.json"
RECIPE_FILE = "train_recipe.yaml"
_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    adapted: list[str]  # native names that carry a LoRA
    examples: int
    dropped_too_long: int
    losses: list[float]  # logged training losses, in order
    zero_grad: list[str]  # adapted names whose LoRA got no gradient at the first step


@dataclass(frozen=True)
class TrainPlan:
    """What a run of the recipe would do: paths, and the work per optimizer step."""

    paths: EnginePaths
    examples: int
    dropped_too_long: int
    rows: int  # training rows (several examples each when packing)
    tokens: int  # tokens in all rows
    rows_per_step: int  # batch_size x grad_accum x processes
    sharding: str  # how the model is spread over the processes (training.engine.sharded)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.rows / self.rows_per_step)

    def lines(self) -> list[str]:
        per_step = self.tokens / max(self.steps_per_epoch, 1)
        return [
            *self.paths.lines(),
            f"examples: {self.examples} (dropped {self.dropped_too_long} too long)",
            (
                f"rows: {self.rows}, {self.rows_per_step} per optimizer step, "
                f"{self.steps_per_epoch} steps per epoch"
            ),
            f"tokens: {self.tokens:,} in all, {per_step:,.0f} per step",
            f"sharding: {self.sharding}",
        ]


def _plan(recipe: TrainRecipe, tokenizer, config) -> tuple[TrainPlan, list[dict]]:
    """The plan, and the training rows: one example each, or packed (`training.engine.packing`)."""
    from reasonlab.training.engine.packing import pack_examples

    examples, dropped = _tokenized_rows(tokenizer, recipe)
    rows, placed = examples, len(examples)
    if recipe.packing:
        packing = pack_examples(examples, recipe.pack_length, recipe.seed)
        if not packing.rows:
            raise DataError(
                f"pack_length: every example is longer than {recipe.pack_length} tokens"
            )
        rows, placed = packing.rows, packing.examples
        dropped += packing.dropped_too_long
    plan = TrainPlan(
        paths=resolve_paths(recipe, config),
        examples=placed,
        dropped_too_long=dropped,
        rows=len(rows),
        tokens=sum(len(r["input_ids"]) for r in rows),
        rows_per_step=recipe.batch_size * recipe.grad_accum * world_size(),
        sharding=describe_sharding(recipe),
    )
    check(recipe, plan.paths)
    return plan, rows


def _load_tokenizer(recipe: TrainRecipe):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(recipe.model)
    if not tokenizer.chat_template:
        raise ValueError(
            f"model: {recipe.model} has no chat template; the scorer renders with the base one"
        )
    return tokenizer


def dry_run(recipe: TrainRecipe, echo: Callable[[str], None] = print) -> TrainPlan:
    """Everything `train` decides before its first step, without loading weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from reasonlab.training.engine.kernels import select
    from reasonlab.training.engine.quantized_base import weights_line

    _check_inputs(recipe)
    if not is_main_process():  # under a launcher: one plan printed, not one per process
        echo = _quiet
    select(recipe.kernels)
    with torch.device("meta"):  # shapes and module names only: seconds even for 30B
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(recipe.model))
    resolve_targets(model, recipe.lora.targets)  # a preset that matches nothing fails here
    plan, _ = _plan(recipe, _load_tokenizer(recipe), model.config)
    for line in plan.lines():
        echo(line)
    echo(weights_line(model, recipe.base_precision, 4 if recipe.precision == "fp32" else 2))
    return plan


def add_lora(model, recipe: TrainRecipe, echo: Callable[[str], None] = print):
    """Wrap `model` with the recipe's LoRA and install the engine's fast paths.

    Returns (peft_model, adapted native names). Every preset must wrap something, and PEFT
    must wrap exactly the resolved names (it skips unmatched names silently).
    """
    from peft import LoraConfig, get_peft_model

    targets = resolve_targets(model, recipe.lora.targets)
    lora = LoraConfig(
        r=recipe.lora.r,
        lora_alpha=recipe.lora.alpha,
        lora_dropout=recipe.lora.dropout,
        target_modules=targets.target_modules or None,
        target_parameters=targets.target_parameters or None,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    adapted = adapted_names(model)
    requested = set(targets.target_modules) | set(targets.target_parameters)
    for preset, names in {**targets.modules, **targets.parameters}.items():
        if not set(names) & set(adapted):
            raise RuntimeError(
                f"LoRA preset {preset!r} resolved to {names[:3]} but PEFT wrapped none of them"
            )
    if set(adapted) != requested:
        raise RuntimeError(
            f"PEFT wrapped {sorted(set(adapted) ^ requested)} unlike the resolved targets"
        )
    echo(f"adapted {len(adapted)} modules/parameters: " + ", ".join(adapted))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    echo(f"trainable parameters: {trainable:,}")
    quantized = apply_fast_path(model, recipe)
    if quantized:
        echo(quantized)
    return model, adapted


def _check_inputs(recipe: TrainRecipe) -> None:
    model_dir = Path(recipe.model)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"model: {model_dir} is not a model folder (no config.json)")
    if not Path(recipe.data).is_file():
        raise FileNotFoundError(f"data: {recipe.data}: no such file")


def _tokenized_rows(tokenizer, recipe: TrainRecipe) -> tuple[list[dict], int]:
    rows = read_jsonl(recipe.data)
    if not rows:
        raise DataError(f"{recipe.data}: no rows")
    kept, dropped = [], 0
    for row in rows:
        ids = tokenize_example(tokenizer, sft_example(tokenizer, row))
        if len(ids["input_ids"]) > recipe.max_length:
            dropped += 1
            continue
        kept.append(ids)
    if not kept:
        raise DataError(
            f"{recipe.data}: every row is longer than max_length={recipe.max_length} tokens"
        )
    return kept, dropped


def parameter_wrappers(peft_model) -> dict[str, str]:
    """Saved key prefix of each 3-D parameter wrapper -> the native parameter it adapts.

    PEFT nests the wrappers of two parameters of one module (`experts` and
    `experts.base_layer`) and its saved keys do not say which is which; this map does.
    """
    from peft.tuners.lora import ParamWrapper

    found = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, ParamWrapper):
            native = name.removeprefix("base_model.model.").replace(".base_layer", "")
            found[name] = f"{native}.{module.parameter_name}"
    return found


def _gradient_probe(peft_model, names: list[str]) -> tuple[Callable, dict[str, float]]:
    """A callback that records, at the first optimizer step, each adapted module's LoRA grad norm.

    Parameters are looked up by name at that step: sharding replaces them, and their
    gradients are then shards.
    """
    from transformers import TrainerCallback

    from reasonlab.training.engine.sharded import squared_sums

    norms: dict[str, float] = {}
    lora_modules: dict[str, str] = {}  # LoRA parameter name -> its module's name
    for key, param in peft_model.named_parameters():
        if param.requires_grad and ".lora_" in key:
            lora_modules[key] = key.split(".lora_")[0]
    wrappers = parameter_wrappers(peft_model)

    def native(module: str) -> str:
        return wrappers.get(module) or module.removeprefix("base_model.model.")

    class Probe(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            if norms:
                return
            found = [
                (lora_modules[key], param.grad)
                for key, param in model.named_parameters()
                if key in lora_modules and param.grad is not None
            ]
            totals: dict[str, float] = {}
            for (module, _), square in zip(found, squared_sums([g for _, g in found])):
                totals[module] = totals.get(module, 0.0) + square
            norms.update(
                {native(m): math.sqrt(totals.get(m, 0.0)) for m in set(lora_modules.values())}
            )

    missing = sorted(set(names) - {native(m) for m in lora_modules.values()})
    if missing:
        raise RuntimeError(f"adapted modules without trainable LoRA parameters: {missing}")
    return Probe(), norms


def _out_of_memory(recipe: TrainRecipe, steps_done: int, err: Exception) -> RecipeError:
    """The recipe does not fit this GPU: which settings would, and what is kept."""
    torch_said = str(err).splitlines()[0] if str(err) else "out of memory"
    kept = "; the checkpoints saved so far resume with --resume" if steps_done else ""
    return RecipeError(
        f"out of GPU memory at step {steps_done + 1} ({torch_said}). Settings that lower the "
        f"peak, the cheapest in speed first: {'; '.join(memory_savers(recipe))}{kept}"
    )


def train(
    recipe: TrainRecipe, resume: bool = False, echo: Callable[[str], None] = print
) -> TrainResult:
    """Run LoRA SFT as the recipe says; returns where the adapter went and what was seen.

    Under a multi-process launcher (accelerate/torchrun) every process trains, but only
    the first prints and writes the adapter, so files are written once.
    """
    _check_inputs(recipe)
    if not is_main_process():
        echo = _quiet
    import torch
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    from reasonlab.training.engine import sharded
    from reasonlab.training.engine.checkpointing import checkpoint_layers
    from reasonlab.training.engine.kernels import select

    out = Path(recipe.output_dir)
    adapter_dir = out / "adapter"
    shard = sharded.sharding_active(recipe)

    # 0. the Trainer's arguments: under a launcher, this joins the process group
    args = TrainingArguments(
        output_dir=str(out),
        learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler,
        warmup_steps=recipe.warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=recipe.weight_decay,
        num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps,
        per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.grad_accum,
        seed=recipe.seed,
        bf16=recipe.precision == "bf16",
        fp16=recipe.precision == "fp16",
        gradient_checkpointing=False,  # per layer kind, below (training.engine.checkpointing)
        logging_steps=recipe.logging_steps,
        save_steps=recipe.save_steps,
        save_total_limit=recipe.save_total_limit,
        report_to=[] if recipe.report_to == "none" else [recipe.report_to],
        remove_unused_columns=False,
        optim=recipe.optimizer,
        **sharded.trainer_arguments(recipe),
    )

    # 1. model: the recipe's Mamba path bound before transformers binds its own; when
    # sharded, only rank 0 reads the weights (the others build empty modules)
    select(recipe.kernels)
    torch.manual_seed(recipe.seed)
    dtype = getattr(torch, _DTYPES[recipe.precision])
    if shard:
        model = sharded.load_base(recipe, dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(recipe.model, dtype=dtype)

    # 2. data: the scorer's prompt + completion, tokenized apart, loss on the completion;
    # the plan (paths, rows, tokens per step) is checked before anything trains
    tokenizer = _load_tokenizer(recipe)
    plan, rows = _plan(recipe, tokenizer, model.config)
    for line in plan.lines():
        echo(line)

    # 3. LoRA on exactly the names the presets resolve to, then the engine's fast paths
    model, adapted = add_lora(model, recipe, echo)
    if recipe.init_adapter:  # continue from a trained adapter (a STaR round)
        from reasonlab.training.warm_start import load_adapter_weights

        loaded = load_adapter_weights(model, recipe.init_adapter, recipe.lora)
        echo(f"continuing from {recipe.init_adapter}: {loaded} LoRA tensors loaded")
    if recipe.gradient_checkpointing:
        checkpoint_layers(model, recipe.checkpoint_layers)
    # live wrapper names equal the saved key prefixes (`<prefix>.lora_A.weight`)
    wrapper_map = dict(sorted(parameter_wrappers(model).items()))
    probe, grad_norms = _gradient_probe(model, adapted)
    if shard:  # FSDP2 units, then rank 0's base and LoRA weights sent to every shard
        sharded.shard_model(model, recipe)

    # 4. train
    # Right padding: Mamba reads left to right, so pads after the text cannot touch it.
    tokenizer.padding_side = "right"
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    # several examples a row, kept apart in every layer (training.engine.packing)
    if recipe.packing:
        from reasonlab.training.engine.packing import collate_packed, isolate_packed_sequences

        isolate_packed_sequences(model)
        collator = functools.partial(collate_packed, pad_to=recipe.pack_length)
    # every checkpoint-N/ gets the wrapper map too, so `reasonlab export` takes any of them
    exportable = write_beside_checkpoints({PARAMETER_MAP_FILE: wrapper_map})
    trainer = (sharded.adapter_trainer() if shard else Trainer)(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=collator,
        callbacks=[probe, exportable],
    )
    sharded.require_fsdp(trainer, recipe)
    last = _last_checkpoint(out) if resume else None
    if resume:
        echo(f"resuming from {last}" if last else f"no checkpoint in {out}; starting fresh")
    try:
        trainer.train(resume_from_checkpoint=str(last) if last else None)
    except torch.OutOfMemoryError as err:
        raise _out_of_memory(recipe, trainer.state.global_step, err) from err

    # 5. save: adapter (no full lm_head copy), the wrapper map, the resolved recipe, a summary
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    zero_grad = sorted(name for name, norm in grad_norms.items() if not norm > 0.0)
    # sharded: the LoRA tensors gathered from every rank (a collective), the keys unchanged
    adapter_state = sharded.gather_adapter(model) if shard else None
    if not trainer.is_world_process_zero():
        return TrainResult(
            adapter_dir, adapted, plan.examples, plan.dropped_too_long, losses, zero_grad
        )
    model.save_pretrained(adapter_dir, state_dict=adapter_state, save_embedding_layers=False)
    _write_json(adapter_dir / PARAMETER_MAP_FILE, wrapper_map)
    save_recipe(recipe, adapter_dir / RECIPE_FILE)
    _write_json(
        adapter_dir / SUMMARY_FILE,
        {
            "adapted": adapted,
            "examples": plan.examples,
            "dropped_too_long": plan.dropped_too_long,
            "losses": losses,
            "first_step_grad_norm": grad_norms,
            "zero_grad": zero_grad,
            "device": str(next(model.parameters()).device),
        },
    )
    if zero_grad and not resume:
        echo(f"WARNING: no gradient at the first step for {zero_grad}")
    return TrainResult(
        adapter_dir, adapted, plan.examples, plan.dropped_too_long, losses, zero_grad
    )


def is_main_process() -> bool:
    """False in every process but the first under accelerate launch / torchrun (they set RANK)."""
    return os.environ.get("RANK", "0") == "0"


def _quiet(message: str) -> None:
    """The `echo` of processes other than the first: one log, not one per GPU."""


def _last_checkpoint(out: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    return Path(found) if out.is_dir() and (found := get_last_checkpoint(str(out))) else None


def _write_json(path: Path, data) -> None:
    with atomic_write(path) as f:
        json.dump(data, f, indent=2)
        f.write("\n")
