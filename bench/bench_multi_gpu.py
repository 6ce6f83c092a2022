"""Tokens/s and peak memory per GPU of sharded LoRA SFT (FSDP2) on the GPUs of one host.

    accelerate launch --num_processes 2 --multi_gpu bench/bench_multi_gpu.py \
        [--seq-len 8192] [--steps 8] [--layers 52] [--baseline-json ONE.json] [--json OUT.json]

One process per GPU (the launcher's), random bf16 weights of the real Nemotron-3-Nano
configuration (optionally its first `--layers` layers), LoRA r=32 on every preset, the fast
engine of `bench_train_step.py`'s `fast` run (fused Mamba kernels required, grouped expert
LoRA, chunked loss, fused AdamW, packed rows from generated traces' lengths), gradient
checkpointing on, sharded as `reasonlab train` shards a `sharding: fsdp2` recipe
(`training.engine.sharded.shard_model`: one FSDP2 unit per block, bf16 compute, fp32 LoRA master
weights and reduction). The model is built on the meta device and each GPU allocates its
own shards only: no process ever holds the whole model, on the GPU or in host memory.
Launched with one process, nothing is sharded (the one-GPU engine), which gives the
baseline on the same machine; with `--shard-alone` one process runs the sharded path over a
mesh of one (FSDP2's hooks, DTensors and mixed precision on one GPU: its overhead, and the
fused kernels under it, where a host has a single GPU).

Each rank trains its own packed row per step, as training does; the first two steps are
warm-up. Printed, and written as JSON by rank 0:
- tokens/s per GPU: all ranks' tokens over the slowest rank's time, divided by the GPUs;
- peak GiB per GPU: torch's peak allocated (and reserved) memory, the largest over ranks;
- scaling efficiency: tokens/s per GPU over the one-GPU figure (`--baseline-json` from a
  one-process run of this script, else `--baseline`, by default the fast:8192 figure that
  `bench_train_step.py` measured on one H200);
- the issue's targets at 2 GPUs: efficiency >= 85%, peak <= 70 GiB (fits 80 GB cards).

`--smoke` runs the same script on CPU processes (gloo) with the tiny model's shapes, to
check it end to end before GPU time is spent; its figures mean nothing:

    python -m torch.distributed.run --standalone --nproc_per_node 2 bench/bench_multi_gpu.py \
        --smoke --seq-len 2048 --steps 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

# bench_train_step.py fast:8192, 52 layers, one H200 (bench/results/h200-2026-12-02c)
ONE_GPU_TOKENS_PER_S = 11824.5
TARGET_EFFICIENCY, TARGET_PEAK_GIB = 0.85, 70.0  # issue 17, at 2 GPUs


def _random_init(model, seed: int) -> None:
    """Fill every parameter and buffer (each rank its own shards) like a fresh model's init."""
    import torch
    from torch.distributed.tensor import DTensor

    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for name, tensor in (*model.named_parameters(), *model.named_buffers()):
            local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "A_log":  # Mamba decay: A = -exp(A_log) in [-16, -1]
                local.uniform_(0.0, math.log(16), generator=generator)
            elif leaf == "dt_bias":  # softplus^-1 of time steps in [0.001, 0.1]
                local.uniform_(-6.9, -2.25, generator=generator)
            elif leaf == "D" or (leaf == "weight" and "norm" in name):
                local.fill_(1.0)
            elif leaf in ("bias", "e_score_correction_bias") or ".lora_B." in name:
                local.zero_()  # PEFT starts B at zero
            else:
                local.normal_(0.0, 0.02, generator=generator)


def _rows(seq_len: int, vocab: int, count: int, seed: int):
    """`count` packed rows of random tokens shaped like traced puzzles, fullest first."""
    import torch

    from reasonlab.training.engine.packing import pack_examples

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_train_step import _trace_lengths  # the one-GPU bench's rows

    generator = torch.Generator().manual_seed(seed)
    examples = []
    for prompt, completion in _trace_lengths(max(20, count * seq_len // 4000), seed):
        ids = torch.randint(0, vocab, (prompt + completion,), generator=generator).tolist()
        examples.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    rows = pack_examples(examples, seq_len, seed).rows
    rows.sort(key=lambda row: -len(row["input_ids"]))
    return rows


def run(args) -> dict:
    import torch
    import torch.distributed as dist
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM

    from reasonlab.submission.verify import REAL_ARCHITECTURE, load_architecture
    from reasonlab.training.engine.checkpointing import checkpoint_layers
    from reasonlab.training.engine.kernels import select
    from reasonlab.training.engine.packing import (
        batch_to,
        collate_packed,
        isolate_packed_sequences,
    )
    from reasonlab.training.engine.paths import check, resolve_paths
    from reasonlab.training.engine.sharded import describe, shard_model, sharding_active
    from reasonlab.training.recipe import LoraRecipe, TrainRecipe
    from reasonlab.training.train import add_lora

    state = PartialState(cpu=args.smoke)  # the launcher's process group; this rank's GPU
    cuda = state.device.type == "cuda"
    rank, world = state.process_index, state.num_processes
    recipe = TrainRecipe(
        model="random",
        data="random",
        output_dir="none",
        lora=LoraRecipe(r=args.rank, alpha=args.rank),
        packing=True,
        pack_length=args.seq_len,
        kernels="auto" if args.smoke else "required",
        expert_lora="grouped",
        loss_chunk_tokens=4096,
        optimizer="adamw_torch_fused",
        sharding="fsdp2",
    )
    select(recipe.kernels)
    if args.smoke:
        from reasonlab.training.tiny_model import tiny_config

        config = tiny_config(vocab_size=512, eos_token_id=4)
    else:
        pattern = REAL_ARCHITECTURE["hybrid_override_pattern"][: args.layers]
        config = type(load_architecture()).from_dict(
            {
                **REAL_ARCHITECTURE,
                "hybrid_override_pattern": pattern,
                "num_hidden_layers": len(pattern),
            }
        )
    config.use_cache = False
    paths = resolve_paths(recipe, config)
    check(recipe, paths)

    start = time.perf_counter()
    with torch.device("meta"):  # shapes only; each GPU allocates its own part below
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    paths = resolve_paths(recipe, model.config)  # the attention transformers chose, too
    model, _ = add_lora(model, recipe, echo=lambda _: None)
    if sharding_active(recipe) or args.shard_alone:
        if not dist.is_initialized():  # one process: a group of one, for a mesh of one
            dist.init_process_group("gloo" if args.smoke else "nccl")
        shard_model(model, recipe, load=False)
    else:
        model.to_empty(device=state.device)
    _random_init(model, seed=rank)
    isolate_packed_sequences(model)
    checkpoint_layers(model, recipe.checkpoint_layers)  # every kind, as the recipe's default
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=2e-4, fused=True)
    init_s = time.perf_counter() - start

    rows = _rows(args.seq_len, config.vocab_size, args.steps * world, seed=0)
    synchronize = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, tokens, losses = [], [], []
    for step in range(args.steps):
        batch = collate_packed([rows[(step * world + rank) % len(rows)]])
        batch = batch_to(batch, state.device)
        synchronize()
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        with torch.autocast(state.device.type, dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize()
        times.append(time.perf_counter() - t0)
        tokens.append(batch["input_ids"].shape[1])
        losses.append(round(float(loss), 4))

    # per step: the slowest rank's time, every rank's tokens; per rank: peak memory
    memory = (
        [torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()] if cuda else [0, 0]
    )
    mine = torch.tensor([*times, *tokens, *memory], dtype=torch.float64, device=state.device)
    every = [torch.zeros_like(mine) for _ in range(world)]
    if world > 1:
        dist.all_gather(every, mine)
    else:
        every = [mine]
    every = [t.tolist() for t in every]
    steps = args.steps
    step_s = [max(r[i] for r in every) for i in range(steps)]
    step_tokens = [sum(r[steps + i] for r in every) for i in range(steps)]
    timed = slice(2, None) if steps > 2 else slice(None)
    per_gpu = sum(step_tokens[timed]) / sum(step_s[timed]) / world
    peak = [r[2 * steps] / 2**30 for r in every]
    reserved = [r[2 * steps + 1] / 2**30 for r in every]
    return {
        "gpus": world,
        "gpu": torch.cuda.get_device_name() if cuda else "cpu (--smoke)",
        "layers": config.num_hidden_layers,
        "seq_len": args.seq_len,
        "rank": args.rank,
        "sharding": (
            "FSDP2 over a mesh of one process (--shard-alone)"
            if args.shard_alone and world == 1
            else describe(recipe)
        ),
        "paths": paths.lines(),
        "trainable_m": round(sum(p.numel() for p in trainable) / 1e6, 1),
        "init_s": round(init_s, 1),
        "step_s": [round(t, 3) for t in step_s],
        "tokens_per_step": [int(t) for t in step_tokens],
        "tokens_per_s_per_gpu": round(per_gpu, 1),
        "peak_gib_per_gpu": round(max(peak), 2),
        "peak_gib_each": [round(g, 2) for g in peak],
        "reserved_gib_per_gpu": round(max(reserved), 2),
        "losses_rank0": losses,
    }


def _report(figures: dict, baseline: float, source: str) -> None:
    efficiency = figures["tokens_per_s_per_gpu"] / baseline
    figures.update({"baseline_tokens_per_s": baseline, "baseline_from": source})
    figures["efficiency"] = round(efficiency, 3)
    print(json.dumps(figures), flush=True)
    gpus = figures["gpus"]
    print(
        f"\n{gpus} GPU(s), {figures['seq_len']}-token packs, {figures['layers']} layers: "
        f"{figures['tokens_per_s_per_gpu']:,.0f} tokens/s per GPU, "
        f"peak {figures['peak_gib_per_gpu']} GiB per GPU "
        f"({figures['reserved_gib_per_gpu']} GiB reserved); "
        f"{efficiency:.1%} of one GPU's {baseline:,.0f} tokens/s ({source})"
    )
    if gpus == 2:
        checks = {
            f"efficiency >= {TARGET_EFFICIENCY:.0%}": efficiency >= TARGET_EFFICIENCY,
            f"peak <= {TARGET_PEAK_GIB:.0f} GiB": figures["peak_gib_per_gpu"] <= TARGET_PEAK_GIB,
        }
        for name, met in checks.items():
            print(f"  target {name}: {'met' if met else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seq-len", type=int, default=8192, help="tokens per packed row")
    parser.add_argument("--steps", type=int, default=8, help="steps per rank (2 are warm-up)")
    parser.add_argument("--layers", type=int, default=52, help="first N layers of the real pattern")
    parser.add_argument("--rank", type=int, default=32, help="LoRA rank")
    parser.add_argument("--baseline", type=float, default=ONE_GPU_TOKENS_PER_S)
    parser.add_argument("--baseline-json", default=None, help="a one-process run's --json")
    parser.add_argument("--json", default=None, help="write the figures here (rank 0)")
    parser.add_argument("--smoke", action="store_true", help="CPU and the tiny model's shapes")
    parser.add_argument(
        "--shard-alone",
        action="store_true",
        help="shard over a mesh of one process (the sharded code path on one GPU)",
    )
    args = parser.parse_args()

    figures = run(args)
    if os.environ.get("RANK", "0") != "0":
        return
    baseline, source = args.baseline, "--baseline"
    if args.baseline_json:
        with open(args.baseline_json) as f:
            baseline, source = json.load(f)["tokens_per_s_per_gpu"], args.baseline_json
    elif args.baseline == ONE_GPU_TOKENS_PER_S:
        source = "bench_train_step.py fast:8192 on one H200"
    _report(figures, baseline, source)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
