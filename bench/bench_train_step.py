"""Tokens/s and peak GPU memory of LoRA SFT steps on the real Nemotron-3-Nano shapes.

    python bench/bench_train_step.py --layers 13 --seq-len 2048 --steps 6 [--json OUT.json]

Random bf16 weights with the real config (optionally only the first `--layers` layers of
the real pattern, same shapes), LoRA r=32 on every preset as in `configs/nemotron-1gpu.yaml`,
one sequence per step, AdamW on the LoRA parameters, gradient checkpointing on. The first
two steps are warm-up and not timed. Prints which Mamba path ran (fused kernels need
`mamba_ssm`; without it transformers uses its PyTorch fallback).
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--layers", type=int, default=52, help="first N layers of the real pattern (52 = all)"
    )
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    import importlib.util

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from reasonlab.submission.verify import REAL_ARCHITECTURE, load_architecture
    from reasonlab.training.lora_targets import PRESETS, resolve_targets

    config = load_architecture()
    pattern = REAL_ARCHITECTURE["hybrid_override_pattern"][: args.layers]
    config = type(config).from_dict(
        {**REAL_ARCHITECTURE, "hybrid_override_pattern": pattern, "num_hidden_layers": len(pattern)}
    )
    config.use_cache = False
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    init_s = time.perf_counter() - start
    targets = resolve_targets(model, PRESETS)
    model = get_peft_model(
        model,
        LoraConfig(
            r=args.rank,
            lora_alpha=args.rank,
            target_modules=targets.target_modules,
            target_parameters=targets.target_parameters,
            task_type="CAUSAL_LM",
        ),
    )
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=2e-4)
    ids = torch.randint(0, config.vocab_size, (1, args.seq_len), device="cuda")

    times = []
    torch.cuda.reset_peak_memory_stats()
    for step in range(args.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    timed = times[2:] or times
    figures = {
        "layers": len(pattern),
        "pattern": pattern,
        "seq_len": args.seq_len,
        "rank": args.rank,
        "params_b": sum(p.numel() for p in model.parameters()) / 1e9,
        "trainable_m": sum(p.numel() for p in trainable) / 1e6,
        "init_s": round(init_s, 1),
        "step_s": [round(t, 3) for t in times],
        "tokens_per_s": round(args.seq_len / (sum(timed) / len(timed)), 1),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "mamba_path": "fused mamba_ssm"
        if importlib.util.find_spec("mamba_ssm")
        else "torch fallback",
        "gpu": torch.cuda.get_device_name(),
        "loss": float(loss),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
