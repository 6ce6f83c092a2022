"""Tokens/s and peak GPU memory of LoRA SFT steps, reference and fast engine side by side.

    python bench/bench_train_step.py --layers 52 --runs reference:2048,fast:2048,fast:8192 \
        [--steps 6] [--profile fast:8192] [--json OUT.json]
    python bench/bench_train_step.py --layers 52 \
        --runs fast:2048,fast-fp8:2048,fast-nf4:2048,fast:8192,fast-fp8:8192,fast-nf4:8192:44

Random bf16 weights of the real Nemotron-3-Nano configuration (optionally only its first
`--layers` layers, same shapes), LoRA r=32 on every preset the recipes train (attention,
Mamba in_proj, shared and routed experts, lm_head), gradient checkpointing on (but in
fast-keep). Each run is a fresh process (its own peak memory), built with the project's own
`add_lora`, so it measures what `reasonlab train` runs:

  reference  today's engine before this work: PyTorch Mamba (`kernels: off`), PEFT's
             delta-weight expert LoRA, full logits, unfused AdamW, one sequence per row
  kernels    the same with the fused Mamba kernels (the first lever alone)
  grouped    fused kernels (required), grouped expert LoRA, LoRA Linear layers as one addmm,
             chunked loss, fused AdamW
  fast       grouped, with rows packed from generated traces' lengths (`training.engine.packing`)
  fast-fp8   fast on a frozen base stored in fp8 (`base_precision: fp8`, training.engine.quantized_base)
  fast-nf4   fast on a frozen base stored in nf4 (`base_precision: nf4`, bitsandbytes)
  fast-80gb  fast with what an 80 GB card needs of a bf16 base: 8-bit AdamW moments
             (`optimizer: adamw_bnb_8bit`) and 1,024-token loss chunks
  fast-keep  fast without gradient checkpointing (`gradient_checkpointing: false`): every
             activation kept, no recompute

`--checkpoint-layers moe` (say) recomputes only those layer kinds in every run that
checkpoints (`checkpoint_layers`, training.engine.checkpointing); the others keep theirs.

The quantized engines quantize the random bf16 weights right after `add_lora` (as `train`
does), then the peak-memory counters restart: the peak is that of training, not of loading.
A run written ENGINE:TOKENS:GIB trains under a cap of GIB GiB (`torch.cuda.
set_per_process_memory_fraction`, set once the model is ready): past it, it runs out of memory
as a card of that size would (e.g. `fast-nf4:8192:44` for the 48 GB card target).

A run's tokens are those of its rows (packed rows: the examples' tokens, without the
padding that fills each row to the given length; unpacked: one random sequence of it). The first two steps are warm-up, not timed. A run
that runs out of memory is reported as such. `--profile RUN[,RUN]` adds a torch.profiler summary
of one step of those runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ENGINES = {
    "reference": {
        "kernels": "off",
        "expert_lora": "peft",
        "lora_linear": "peft",
        "loss_chunk_tokens": 0,
        "optimizer": "adamw_torch",
    },
    "kernels": {
        "kernels": "required",
        "expert_lora": "peft",
        "lora_linear": "peft",
        "loss_chunk_tokens": 0,
        "optimizer": "adamw_torch",
    },
    "grouped": {
        "kernels": "required",
        "expert_lora": "grouped",
        "loss_chunk_tokens": 4096,
        "optimizer": "adamw_torch_fused",
    },
}
ENGINES["fast"] = {**ENGINES["grouped"], "packing": True}
ENGINES["fast-fp8"] = {**ENGINES["fast"], "base_precision": "fp8"}
ENGINES["fast-nf4"] = {**ENGINES["fast"], "base_precision": "nf4"}
ENGINES["fast-80gb"] = {**ENGINES["fast"], "optimizer": "adamw_bnb_8bit", "loss_chunk_tokens": 1024}
ENGINES["fast-keep"] = {**ENGINES["fast"], "gradient_checkpointing": False}
PRESETS = ("attention", "mamba_in", "shared_experts", "routed_experts", "lm_head")


def _trace_lengths(per_family: int, seed: int) -> list[tuple[int, int]]:
    """(prompt tokens, completion tokens) of traced puzzles of every family, generated here."""
    from reasonlab.data.generate import generate_mixed
    from reasonlab.data.traces import build_traces

    rows = generate_mixed(per_family, seed=seed)
    prompts = {row["id"]: row["prompt"] for row in rows}
    traced = build_traces(rows).rows
    # chars / 3 for the prompt (the trace's count is the tracer's own)
    return [(len(prompts[r["id"]]) // 3 + 40, r["tokens"]) for r in traced]


def _batches(engine: dict, seq_len: int, vocab: int, steps: int, seed: int):
    """Per step, a (batch dict, token count) on the GPU."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    if not engine.get("packing"):
        for _ in range(steps):
            ids = torch.randint(0, vocab, (1, seq_len), generator=generator)
            yield {"input_ids": ids.cuda(), "labels": ids.cuda()}, seq_len
        return
    from reasonlab.training.engine.packing import batch_to, collate_packed, pack_examples

    examples = []
    for prompt, completion in _trace_lengths(max(20, steps * seq_len // 4000), seed):
        ids = torch.randint(0, vocab, (prompt + completion,), generator=generator).tolist()
        examples.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    rows = pack_examples(examples, seq_len, seed).rows
    rows.sort(key=lambda row: -len(row["input_ids"]))  # the fullest rows: a steady figure
    for step in range(steps):  # filled to seq_len, as `train` does: one shape every step
        row = rows[step % len(rows)]
        batch = collate_packed([row], pad_to=seq_len)
        yield batch_to(batch, "cuda"), len(row["input_ids"])


def run_one(
    name: str,
    seq_len: int,
    layers: int,
    steps: int,
    rank: int,
    profile: bool,
    cap_gib: float,
    checkpointed: list[str],
) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from reasonlab.submission.verify import REAL_ARCHITECTURE, load_architecture
    from reasonlab.training.engine.checkpointing import checkpoint_layers
    from reasonlab.training.engine.kernels import select
    from reasonlab.training.recipe import LoraRecipe, TrainRecipe
    from reasonlab.training.train import add_lora

    engine = ENGINES[name]
    recipe = TrainRecipe(
        model="random",
        data="random",
        output_dir="none",
        lora=LoraRecipe(r=rank, alpha=rank, targets=PRESETS),
        pack_length=seq_len,
        checkpoint_layers=checkpointed,
        **engine,
    )
    select(recipe.kernels)
    pattern = REAL_ARCHITECTURE["hybrid_override_pattern"][:layers]
    config = type(load_architecture()).from_dict(
        {**REAL_ARCHITECTURE, "hybrid_override_pattern": pattern, "num_hidden_layers": len(pattern)}
    )
    config.use_cache = False
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    init_s = time.perf_counter() - start
    from reasonlab.training.engine.paths import check, resolve_paths

    paths = resolve_paths(recipe, model.config)
    check(recipe, paths)
    start = time.perf_counter()
    model, _ = add_lora(model, recipe, echo=lambda _: None)  # quantizes a fp8/nf4 base
    lora_s = time.perf_counter() - start
    torch.cuda.empty_cache()  # the bf16 copies of quantized weights: reserved no longer
    if recipe.packing:
        from reasonlab.training.engine.packing import isolate_packed_sequences

        isolate_packed_sequences(model)
    if recipe.gradient_checkpointing:
        checkpoint_layers(model, recipe.checkpoint_layers)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(recipe.optimizer, trainable)

    if cap_gib:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gib * 2**30 / total))
    times, tokens, losses = [], [], []
    weights_gib = torch.cuda.memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    for batch, count in _batches(engine, seq_len, config.vocab_size, steps, seed=0):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = _step(model, optimizer, batch)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        tokens.append(count)
        losses.append(round(float(loss), 4))
    timed = slice(2, None) if len(times) > 2 else slice(None)
    figures = {
        "run": f"{name}:{seq_len}",
        "layers": len(pattern),
        "rank": rank,
        "paths": paths.lines(),
        "trainable_m": round(sum(p.numel() for p in trainable) / 1e6, 1),
        "init_s": round(init_s, 1),
        "lora_s": round(lora_s, 1),  # wrapping, and quantizing a fp8/nf4 base
        "base": recipe.base_precision,
        "cap_gib": cap_gib or None,
        "weights_gib": round(weights_gib, 2),  # model + LoRA before the first step
        "step_s": [round(t, 3) for t in times],
        "row_tokens": tokens,
        "tokens_per_s": round(sum(tokens[timed]) / sum(times[timed]), 1),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "losses": losses,
        "gpu": torch.cuda.get_device_name(),
    }
    if profile:
        figures["profile"] = _profile(model, optimizer, batch)
    return figures


def _optimizer(name: str, parameters: list):
    """The optimizer `train` would build: transformers' own choice for the recipe's name."""
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir="none", optim=name, learning_rate=2e-4, report_to=[])
    optimizer_class, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    return optimizer_class(parameters, **kwargs)


def _step(model, optimizer, batch):
    """One optimizer step as `train` takes it (bf16 autocast); returns the loss."""
    import torch

    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def _profile(model, optimizer, batch) -> list[str]:
    """Top kernels of one step by GPU time, the launch count, and the largest copies' shapes."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with profile(activities=activities, record_shapes=True) as prof:
        _step(model, optimizer, batch)
        torch.cuda.synchronize()
    # Kernels only: the table also lists each aten op with its kernels' time, which would
    # count the same work twice.
    events = [
        e
        for e in prof.key_averages()
        if e.self_device_time_total > 0 and e.device_type.name in ("CUDA", "PrivateUse1")
    ]
    total = sum(e.self_device_time_total for e in events)
    launches = sum(e.count for e in events)
    rows = sorted(events, key=lambda e: -e.self_device_time_total)[:15]
    lines = [f"kernel time {total / 1e3:.0f} ms, {launches} kernel launches"]
    for e in rows:
        share = e.self_device_time_total / total
        lines.append(f"{share:6.1%} {e.self_device_time_total / 1e3:8.1f} ms  {e.key[:90]}")
    # which tensors the copy and cast kernels move: the shapes say whose they are
    copies = [e for e in prof.key_averages(group_by_input_shape=True) if e.key == "aten::copy_"]
    for e in sorted(copies, key=lambda e: -e.device_time_total)[:8]:
        shapes = str(e.input_shapes)[:80]
        lines.append(f"copy_ {e.device_time_total / 1e3:8.1f} ms  x{e.count:<4} {shapes}")
    return lines


def main() -> None:
    from reasonlab.training.engine.checkpointing import LAYER_KINDS

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=52, help="first N layers of the real pattern")
    parser.add_argument(
        "--runs",
        default="reference:2048,fast:2048,reference:8192,fast:8192",
        help="ENGINE:TOKENS[:CAP_GIB],...",
    )
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--profile", default="", help="ENGINE:TOKENS,... of the runs to profile")
    parser.add_argument("--json", default=None, help="also write every run's figures here")
    parser.add_argument(
        "--checkpoint-layers",
        default=",".join(LAYER_KINDS.values()),
        help="the layer kinds a checkpointing run recomputes (the others keep their activations)",
    )
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child process's run
    args = parser.parse_args()

    if args.one:
        name, seq_len, cap = (args.one.split(":") + ["0"])[:3]
        figures = run_one(
            name,
            int(seq_len),
            args.layers,
            args.steps,
            args.rank,
            args.one in args.profile.split(","),
            float(cap),
            args.checkpoint_layers.split(","),
        )
        figures["run"] = args.one
        print("RESULT " + json.dumps(figures))
        return

    results = []
    for run in args.runs.split(","):
        command = [sys.executable, __file__, "--one", run, "--layers", str(args.layers)]
        command += ["--steps", str(args.steps), "--rank", str(args.rank), "--profile", args.profile]
        command += ["--checkpoint-layers", args.checkpoint_layers]
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ, check=False)
        found = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if found:
            results.append(json.loads(found[-1][len("RESULT ") :]))
        else:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            # torch's message says how much was held and asked for: the size of the miss
            oom = [line for line in done.stderr.splitlines() if "out of memory" in line.lower()]
            error = f"out of memory: {oom[-1][-300:]}" if oom else " | ".join(tail)
            results.append({"run": run, "error": error})
        print(json.dumps(results[-1]), flush=True)
        if args.json:  # after every run: a run cut short by a time limit keeps the others
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    header = f"\n{'run':<16}{'base':>6}{'tokens/s':>10}{'peak GiB':>10}{'reserved':>10}  notes"
    print(header)
    for r in results:
        note = r.get("error", "")[:60] or r["paths"][1].split(":")[1].strip()[:40]
        figures = [r.get(k, "-") for k in ("base", "tokens_per_s", "peak_gib", "peak_reserved_gib")]
        print(
            f"{r['run']:<16}{figures[0]:>6}{figures[1]:>10}{figures[2]:>10}{figures[3]:>10}  {note}"
        )
    _targets(results)


def _targets(results: list[dict]) -> None:
    """The issues' targets: the fast engine >= 10,000 tokens/s at 8,192 and <= 90 GiB at
    16,384; a bf16 base within 70 GiB at 8,192 (fast-80gb); fp8 within 15% of the bf16 speed;
    nf4 at most 44 GiB at its peak."""
    done = {r["run"]: r for r in results if "tokens_per_s" in r}

    def report(target: str, figure: str, met: bool) -> None:
        print(f"target {target}: {figure} ({'met' if met else 'MISSED'})")

    for run, r in done.items():
        engine, tokens = run.split(":")[:2]
        bf16 = done.get(f"fast:{tokens}")
        if run == "fast:8192":
            speed = r["tokens_per_s"]
            report("fast >= 10,000 tokens/s at 8192", f"{speed:,.0f}", speed >= 10_000)
        if run == "fast:16384":
            report("fast peak <= 90 GiB at 16384", f"{r['peak_gib']} GiB", r["peak_gib"] <= 90)
        if run == "fast-80gb:8192":
            report("bf16 base peak <= 70 GiB at 8192", f"{r['peak_gib']} GiB", r["peak_gib"] <= 70)
        if engine == "fast-fp8" and bf16:
            share = r["tokens_per_s"] / bf16["tokens_per_s"]
            report(f"fp8 >= 85% of bf16 tokens/s at {tokens}", f"{share:.1%}", share >= 0.85)
        if engine == "fast-nf4":
            report(f"nf4 peak <= 44 GiB at {tokens}", f"{r['peak_gib']} GiB", r["peak_gib"] <= 44)


if __name__ == "__main__":
    main()
