"""LoRA training sharded over the GPUs of one host: FSDP2, weights sent from rank 0, adapter gathered.

With `sharding: fsdp2` under a launcher of N processes (`accelerate launch --num_processes N`),
each process keeps 1/N of every weight, LoRA gradient and AdamW state, and gathers one layer's
full weights at a time while it computes that layer. One process (no launcher) trains as before.

Layout (`shard_model`), the same in `reasonlab train` and `bench/bench_multi_gpu.py`:
- one FSDP2 unit per `NemotronHBlock`, one for the embedding; the root (the PEFT model) holds
  the rest: final norm and the LoRA'd lm_head. Activation checkpointing stays transformers'
  (per block, as on one GPU): FSDP2 composes with it, gathering a block's weights once for
  its backward and the recompute inside it. (torch's `checkpoint_wrapper`, accelerate's
  choice, would rename every parameter below a block, and PEFT's saving finds LoRA tensors
  by module name: the saved adapter would lose all but lm_head's.)
- lm_head stays in the root on purpose. The chunked loss calls it once per chunk of labelled
  tokens, a number that differs between ranks; as its own unit (accelerate's
  `fsdp2_prepare_model` makes it one) every call ends in a gradient reduce-scatter, and unequal
  counts mismatch the collectives (gloo: "Received data size doesn't match expected size").
  In the root, its gradient is reduced once, after the whole backward.
- precision: weights gathered and used in the recipe's dtype, LoRA master weights, their
  gradients and AdamW state fp32 and sharded, gradients reduced in fp32.
- the engine's per-instance patches survive: `fully_shard` swaps the classes of the modules it
  shards (blocks, embedding, root) only, and the grouped expert wrapper, the Mamba mixers'
  packed-row forward and the causal LM's chunked-loss forward live on modules below a unit
  or inside the root, reading their weights inside the owning unit's forward, when FSDP has
  gathered them.

Loading (`load_base`, `shard_model`): rank 0 reads the checkpoint (host memory for one
copy, not N), the others build the same modules on the meta device. After LoRA and the fast
path, every rank shards on the meta device, allocates its own shards on its GPU, and
`set_model_state_dict(broadcast_from_rank0=True)` sends each tensor from rank 0, each rank
keeping its slice. LoRA starts equal on every rank (rank 0's, as one process would draw it).

Trainer: `trainer_arguments` turns on transformers' FSDP handling (an optimizer over the
sharded parameters, checkpoints with sharded optimizer state, resume); accelerate finds the
root already sharded and keeps this layout. `adapter_trainer()`'s checkpoints gather only the
LoRA tensors (Trainer would gather the whole base model to rank 0 for each checkpoint), and
`gather_adapter` does the same for the final adapter, which has the one-GPU adapter's keys
and shapes.
"""

from __future__ import annotations

import os

__all__ = [
    "ShardingError",
    "adapter_trainer",
    "describe",
    "gather_adapter",
    "load_base",
    "require_fsdp",
    "shard_model",
    "sharding_active",
    "squared_sums",
    "trainer_arguments",
    "world_size",
]

BLOCK_CLASS = "NemotronHBlock"


class ShardingError(RuntimeError):
    """The recipe asks for sharding and the launch cannot give it."""


def world_size() -> int:
    """Processes under accelerate launch / torchrun (they set WORLD_SIZE); 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def sharding_active(recipe) -> bool:
    """FSDP2 runs when the recipe asks for it and a launcher started several processes."""
    return recipe.sharding == "fsdp2" and world_size() > 1


def describe(recipe) -> str:
    """One line for the plan: how the model is spread over this launch's processes."""
    processes = world_size()
    if sharding_active(recipe):
        return (
            f"FSDP2 over {processes} processes: one unit per {BLOCK_CLASS} + embedding + root "
            f"(norm, lm_head); weights, LoRA grads and AdamW state 1/{processes} each"
        )
    if processes > 1:
        return f"none: {processes} processes, each with the whole model (DDP)"
    if recipe.sharding == "fsdp2":
        return "none: one process (fsdp2 shards under a launcher of several)"
    return "none: one process"


def load_base(recipe, dtype):
    """The base model for sharding: read on rank 0, empty (meta device) on the other ranks."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if os.environ.get("RANK", "0") == "0":
        return AutoModelForCausalLM.from_pretrained(recipe.model, dtype=dtype)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(
            AutoConfig.from_pretrained(recipe.model), dtype=dtype
        )


def _mixed_precision(recipe):
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if recipe.precision == "fp32":
        return MixedPrecisionPolicy()
    compute = torch.bfloat16 if recipe.precision == "bf16" else torch.float16
    return MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32)


def shard_model(peft_model, recipe, load: bool = True):
    """Shard a PEFT-wrapped model in place (the layout above); returns the device it trains on.

    Every rank ends with its shards allocated on its device, never the whole model. `load`:
    filled with rank 0's weights (base and LoRA); without it, left uninitialised for the
    caller to fill (a benchmark's random weights).
    """
    import torch.distributed as dist
    from accelerate import PartialState
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device = PartialState().device  # joins the process group, binds this rank's GPU
    state = peft_model.state_dict()
    unsent = [name for name, _ in peft_model.named_buffers() if name not in state]
    if unsent:  # left uninitialised by to_empty below, and the broadcast would not send them
        raise ShardingError(f"sharding: buffers outside the state dict: {unsent[:3]}")
    full = state if load and dist.get_rank() == 0 else {}
    peft_model.to("meta")  # rank 0's weights live on in `full` only
    blocks = [n for n, m in peft_model.named_modules() if type(m).__name__ == BLOCK_CLASS]
    if not blocks:
        raise ShardingError(f"sharding: the model has no {BLOCK_CLASS} to shard")
    options = {
        "mesh": init_device_mesh(device.type, (dist.get_world_size(),)),
        "mp_policy": _mixed_precision(recipe),
    }
    for name in blocks:
        fully_shard(peft_model.get_submodule(name), **options)
    fully_shard(peft_model.get_input_embeddings(), **options)
    fully_shard(peft_model, **options)  # the root: final norm and lm_head, LoRA included
    peft_model.to_empty(device=device)  # this rank's shards only
    if load:  # tensor by tensor from rank 0, each rank keeping its slice
        set_model_state_dict(
            peft_model,
            full,
            options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True),
        )
    return device


def trainer_arguments(recipe) -> dict:
    """TrainingArguments for a sharded run: transformers' FSDP handling, layout already done."""
    if not sharding_active(recipe):
        return {}
    return {
        "fsdp": True,
        "fsdp_config": {
            "version": 2,
            "auto_wrap_policy": "NO_WRAP",  # the units are shard_model's, made before
            # transformers' per-block checkpointing (`gradient_checkpointing`), as on one GPU
            "activation_checkpointing": False,
            "cpu_ram_efficient_loading": False,  # shard_model sends rank 0's weights itself
            # checkpoints: LoRA and optimizer state gathered to rank 0, resumable at any N
            "state_dict_type": "FULL_STATE_DICT",
        },
    }


def require_fsdp(trainer, recipe) -> None:
    """Refuse a sharded recipe the Trainer did not shard (accelerate runs CPU launches as DDP)."""
    if sharding_active(recipe) and not trainer.is_fsdp_enabled:
        raise ShardingError(
            f"sharding: fsdp2 needs GPUs; accelerate set this launch up as "
            f"{trainer.accelerator.distributed_type.value}, which cannot train a sharded model"
        )


def gather_adapter(peft_model) -> dict:
    """The full trainable (LoRA) tensors on rank 0's CPU, {} on other ranks. Every rank must call."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    return get_model_state_dict(peft_model, options=options)


def squared_sums(tensors) -> list[float]:
    """Sum of squares of each tensor over all its shards (one all-reduce if any is sharded)."""
    import torch
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    sharded = any(isinstance(t, DTensor) for t in tensors)
    local = [
        (t.to_local() if isinstance(t, DTensor) else t).float().square().sum() for t in tensors
    ]
    sums = torch.stack(local) if local else torch.zeros(0)
    if sharded:
        dist.all_reduce(sums)
    return sums.tolist()


def adapter_trainer():
    """The Trainer class for a sharded run: checkpoints hold the adapter, gathered from the shards."""
    from transformers import Trainer

    class AdapterTrainer(Trainer):
        def save_model(self, output_dir=None, _internal_call=False):
            if not self.is_fsdp_enabled:
                return super().save_model(output_dir, _internal_call)
            state = gather_adapter(self.model)  # every rank: a collective
            self._save(output_dir or self.args.output_dir, state_dict=state)

    return AdapterTrainer
