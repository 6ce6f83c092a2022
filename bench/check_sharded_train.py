"""`sharding: fsdp2` against one process, through `reasonlab train`: the same adapter.

    python3 bench/check_sharded_train.py --device cuda [--processes 2] [--json OUT.json]
    python bench/check_sharded_train.py --device cpu [--json OUT.json]  # gloo; tests/test_sharded.py

The tiny model (`reasonlab tiny-model`) and its toy rows, fp32, packed rows, chunked loss
(16-token chunks: several per row, a different number on each rank), grouped expert LoRA,
gradient checkpointing, fused AdamW, lr 5e-3 constant (large steps, so a wrong gradient
shows):

1. one process trains 6 steps, batch 4, checkpointing every 2 steps;
2. N processes train 4 steps sharded, batch 4/N each (the same global batch and data
   order), then `--resume` continues from their checkpoint-4 to step 6. The launcher is
   `accelerate launch --multi_gpu` on GPUs; on CPU, torchrun with bench/fsdp_on_cpu.py
   (accelerate runs CPU launches as DDP);
3. compared tensor by tensor, LoRA weights after 4 steps (one process: its checkpoint-4)
   and the final adapters after 6 (same keys, shapes and dtypes; the largest absolute
   difference against `--tolerance`), and the logged losses;
4. under the launcher, `--dry-run` plans 4 rows per step and FSDP2 over N processes, and the
   sharded adapter exports, packs and verifies (`reasonlab verify` exits 0) as a one-process
   adapter does.

Prints one JSON object; exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TOLERANCE = {"cpu": 1e-4, "cuda": 1e-3}  # largest |difference| of a LoRA weight (weights ~0.2)


def _recipe(path: Path, batch_size: int, kernels: str) -> Path:
    import yaml

    recipe = {
        "kernels": kernels,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "learning_rate": 5.0e-3,
        "lr_scheduler": "constant",
        "warmup_ratio": 0.0,
        "batch_size": batch_size,
        "grad_accum": 1,
        "max_length": 512,
        "packing": True,
        "pack_length": 256,
        "loss_chunk_tokens": 16,
        "precision": "fp32",
        "gradient_checkpointing": True,
        "logging_steps": 1,
        "save_steps": 2,
        "save_total_limit": 3,
        "report_to": "none",
        "sharding": "fsdp2",
    }
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _launcher(device: str, processes: int) -> list[str]:
    if device == "cpu":
        return [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
            f"--nproc_per_node={processes}",
            str(BENCH / "fsdp_on_cpu.py"),
        ]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [
        *(sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"),
        f"--num_processes={processes}",
        f"--main_process_port={port}",
        *("-m", "reasonlab"),
    ]


def _run(command: list, env: dict) -> str:
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise SystemExit(f"failed ({done.returncode}): {' '.join(map(str, command))}\n{tail}")
    return done.stdout


def _lora(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {
        k: v for k, v in load_file(folder / "adapter_model.safetensors").items() if ".lora_" in k
    }


def _compare(one: Path, sharded: Path, tolerance: float) -> dict:
    a, b = _lora(one), _lora(sharded)
    same = set(a) == set(b) and all(
        a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a
    )
    worst = max(float((a[k] - b[k]).abs().max()) for k in a) if same else float("inf")
    return {
        "tensors": len(a),
        "same_keys_shapes_dtypes": same,
        "max_abs_difference": worst,
        "max_abs_weight": max(float(v.abs().max()) for v in a.values()),
        "within_tolerance": worst <= tolerance,
    }


def _losses(folder: Path) -> list[float]:
    return json.loads((folder / "adapter" / "training_summary.json").read_text())["losses"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--processes", type=int, choices=(2, 4), default=2)
    parser.add_argument(
        "--kernels", choices=("auto", "off"), default="auto", help="the recipes' Mamba path"
    )
    parser.add_argument(
        "--tolerance", type=float, default=None, help="default: cpu 1e-4, cuda 1e-3"
    )
    parser.add_argument("--workdir", default=None, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    tolerance = args.tolerance or TOLERANCE[args.device]
    root = Path(args.workdir or tempfile.mkdtemp(prefix="sharded-"))
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.device == "cpu":  # every process on the CPU, one thread each (as torchrun sets)
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    reasonlab = [sys.executable, "-m", "reasonlab"]
    launch = _launcher(args.device, args.processes)

    tiny = root / "tiny"
    _run([*reasonlab, "tiny-model", "-o", tiny], env)
    data = ("--model", tiny, "--data", tiny / "toy_sft.jsonl")
    one, sharded = root / "one", root / "sharded"
    one_recipe = _recipe(root / "one.yaml", 4, args.kernels)
    sharded_recipe = _recipe(root / "sharded.yaml", 4 // args.processes, args.kernels)

    _run([*reasonlab, "train", one_recipe, *data, "--output-dir", one, "--max-steps", 6], env)
    plan = _run(
        [*launch, "train", sharded_recipe, *data, "--output-dir", sharded, "--dry-run"], env
    )
    train = [*launch, "train", sharded_recipe, *data, "--output-dir", sharded]
    _run([*train, "--max-steps", 4], env)
    after_4 = _compare(one / "checkpoint-4", sharded / "adapter", tolerance)
    resumed = _run([*train, "--max-steps", 6, "--resume"], env)
    after_6 = _compare(one / "adapter", sharded / "adapter", tolerance)
    _run([*reasonlab, "export", sharded / "adapter", "-o", root / "export"], env)
    _run([*reasonlab, "pack", root / "export", "-o", root / "adapter.zip"], env)
    # exit status 1 (a SystemExit here) if any check fails
    _run([*reasonlab, "verify", root / "adapter.zip", "--config", tiny / "config.json"], env)

    plan_lines = [line for line in plan.splitlines() if line.startswith(("rows:", "sharding:"))]
    one_losses, sharded_losses = _losses(one), _losses(sharded)
    result = {
        "device": args.device,
        "processes": args.processes,
        "tolerance": tolerance,
        "plan": plan_lines,
        "plan_ok": any(", 4 per optimizer step" in line for line in plan_lines)
        and any(f"FSDP2 over {args.processes} processes" in line for line in plan_lines),
        "after_4_steps": after_4,
        "after_6_steps_resumed": after_6,
        "resumed_from_checkpoint_4": "resuming from" in resumed and "checkpoint-4" in resumed,
        "losses_one_process": one_losses,
        "losses_sharded": sharded_losses,  # 4 restored from checkpoint-4, then 2 resumed
        "max_loss_difference": max(abs(a - b) for a, b in zip(one_losses, sharded_losses)),
        "verified": True,
        "workdir": str(root),
    }
    result["passed"] = bool(
        result["plan_ok"]
        and after_4["within_tolerance"]
        and after_6["within_tolerance"]
        and result["resumed_from_checkpoint_4"]
    )
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
