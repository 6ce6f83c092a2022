"""Packed rows on CUDA with the fused Mamba kernels: same loss and gradients as one at a time.

    PYTHONPATH=src python bench/check_packing_gpu.py [--attn sdpa] [--json OUT.json]
    PYTHONPATH=src python bench/check_packing_gpu.py --device cpu --lengths 300,200,150  # smoke test

On the H200 image, with the prebuilt kernel wheels (../shared/wheels/README.md):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:src python3 bench/check_packing_gpu.py --json $OUT/packing_gpu.json

A small `nemotron_h` (the real layer kinds and Mamba shapes per head, random bf16 weights,
gradient checkpointing on, train mode) scores eight examples of uneven lengths (crossing
the 128-token scan chunks) one at a time, then packed into one row through
`training.engine.packing`. Checked, and printed as JSON (exit status 1 if any check fails):

- which path ran: transformers' Mamba functions bound to mamba_ssm / causal_conv1d, the
  mixer patch on its fused branch, and the kernels seen by torch.profiler in the packed step
  (the conv, the scan and the flash varlen attention of `training.engine.packed_attention`);
- the packed loss equals the token-weighted mean of the examples' losses, each run alone
  through transformers' own attention (`--attn`) (<= 1e-2 relative,
  bf16), in train mode (mamba_split_conv1d_scan_combined) and eval mode (causal_conv1d_fn +
  mamba_chunk_scan_combined), and every parameter's gradient agrees (cosine >= 0.99; the
  MoE routers, which no LoRA adapts, only in fp32);
- isolation has teeth: replacing the first example's tokens moves the next example's logits
  far less with seq_idx than without it (the same row with seq_idx left out leaks Mamba state).

Two traps of the wheels are handled here: `import mamba_ssm` imports Mamba-1's CUDA scan
(`selective_scan_cuda`), absent from the Triton-only build, so an empty stand-in module is
registered when that import fails (Mamba-2 never calls it); and `USE_HUB_KERNELS=0` keeps
the `kernels` package, if installed, from fetching hub kernels instead of the local ones.
On `--device cpu` (a smoke test of this script) the PyTorch path is expected instead and
the kernel checks are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# lengths of the examples (tokens): uneven, some below and many across 128-token chunks
LENGTHS = "700,1300,257,2000,96,900,1500,333"
PROMPT_SHARE = 0.3  # first 30% of each example has no loss, as a prompt
LOSS_RTOL = 1e-2
GRAD_COSINE = 0.99
ISOLATION_RATIO = 0.25  # isolated movement / leaking movement must stay below this


def small_config(vocab_size: int = 4096):
    from transformers import NemotronHConfig

    pattern = "MEM*EMEM*EME"
    return NemotronHConfig(
        vocab_size=vocab_size,
        hidden_size=512,
        hybrid_override_pattern=pattern,
        num_hidden_layers=len(pattern),
        # Mamba2 with the real per-head shapes: head_dim 64, state 128, 8 groups, chunk 128
        mamba_num_heads=16,
        mamba_head_dim=64,
        n_groups=8,
        ssm_state_size=128,
        conv_kernel=4,
        chunk_size=128,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,
        n_routed_experts=16,
        num_experts_per_tok=4,
        moe_intermediate_size=256,
        moe_shared_expert_intermediate_size=512,
        intermediate_size=512,
        n_group=1,
        topk_group=1,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
        use_cache=False,
    )


def examples(lengths: list[int], vocab_size: int, seed: int = 0) -> list[dict[str, list[int]]]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    found = []
    for length in lengths:
        ids = torch.randint(3, vocab_size, (length,), generator=generator).tolist()
        prompt = int(length * PROMPT_SHARE)
        found.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return found


def one_at_a_time(model, rows, backward: bool, attention: str):
    """Token-weighted mean of the examples' own losses (each alone); grads accumulate if asked.

    Each example runs through transformers' `attention` (not the packed attention the
    model was given), so the reference is independent of the code it checks.
    """
    import torch

    packed_attention = model.config._attn_implementation
    model.config._attn_implementation = attention
    counts = [sum(label != -100 for label in row["labels"][1:]) for row in rows]
    total, mean = sum(counts), 0.0
    for row, count in zip(rows, counts, strict=True):
        ids = torch.tensor([row["input_ids"]], device=model.device)
        labels = torch.tensor([row["labels"]], device=model.device)
        loss = model(input_ids=ids, labels=labels).loss * (count / total)
        if backward:
            loss.backward()
        mean += float(loss)
    model.config._attn_implementation = packed_attention
    return mean


def kernel_names(step, cuda: bool) -> set[str]:
    """Names of everything the profiler saw while `step()` ran (CUDA kernels included)."""
    from torch.profiler import ProfilerActivity, profile

    # CUDA kernels alone on the GPU: CPU events of a checkpointed step take minutes to parse
    activities = [ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        step()
    return {event.key for event in prof.key_averages()}


def next_example_movement(model, batch, first, following) -> float:
    """Mean |logit change| on the next example's tokens when the first example's tokens change."""
    import torch

    changed = dict(batch)
    ids = batch["input_ids"].clone()
    noise = torch.Generator(device=ids.device).manual_seed(1)
    ids[0, first] = torch.randint(3, 4096, (int(first.sum()),), device=ids.device, generator=noise)
    changed["input_ids"] = ids
    with torch.no_grad():
        before = model(**batch).logits[0, following].float()
        after = model(**changed).logits[0, following].float()
    return float((after - before).abs().mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--attn",
        default="sdpa",
        help="transformers attention for the one-at-a-time reference (sdpa, eager, ...)",
    )
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--lengths", default=LENGTHS, help="example lengths, comma-separated")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    cuda = args.device == "cuda"
    os.environ.setdefault("USE_HUB_KERNELS", "0")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from reasonlab.training.engine.kernels import bound_kernels, prepare
    from reasonlab.training.engine.packing import (
        batch_to,
        collate_packed,
        isolate_packed_sequences,
        pack_examples,
    )

    prepare()  # the fused kernels importable (Triton-only mamba_ssm) before the model binds them

    config = small_config()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    torch.manual_seed(0)
    with torch.device(args.device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=args.attn)
    with torch.no_grad():  # a random router, as in the tiny model: tokens pick distinct experts
        for name, param in model.named_parameters():
            if name.endswith("mixer.gate.weight"):
                param.normal_(0.0, 0.5)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    rows = examples([int(n) for n in args.lengths.split(",")], config.vocab_size)
    failures = []

    # 1. which path: bound kernels, the patch's branch, what the profiler sees
    bound = bound_kernels()
    path = isolate_packed_sequences(model)
    if path != ("fused" if cuda else "pytorch"):
        failures.append(f"Mamba path is {path}: {bound}")
    packed = collate_packed(pack_examples(rows, sum(len(r["input_ids"]) for r in rows)).rows)
    batch = batch_to(packed, args.device)
    if batch["input_ids"].shape[0] != 1 or int(batch["seq_idx"].max()) != len(rows) - 1:
        failures.append("the rows did not pack into one row")

    # 2. train mode: loss and gradients, one at a time vs packed
    reference = one_at_a_time(model, rows, backward=True, attention=args.attn)
    expected_grads = {
        n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None
    }
    model.zero_grad(set_to_none=True)
    packed_loss = {}

    def packed_step():
        loss = model(**batch).loss
        loss.backward()
        packed_loss["train"] = float(loss)

    packed_step()  # the figures; then once more, warm (no autotuning), under the profiler
    grads = {n: p.grad for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    seen = kernel_names(lambda: model(**batch).loss.backward(), cuda)
    for name, param in model.named_parameters():
        param.grad = grads[name]
    cosines = {}
    for name, param in model.named_parameters():
        if name in expected_grads and param.grad is not None:
            want, got = expected_grads[name].flatten(), param.grad.float().flatten()
            if want.norm() > 0 and got.norm() > 0:
                cosines[name] = float(torch.nn.functional.cosine_similarity(want, got, dim=0))
    model.zero_grad(set_to_none=True)
    kernels_seen = {
        "mamba_ssm chunk scan": any("_chunk_scan_fwd" in name for name in seen),
        "causal_conv1d": any("causal_conv1d" in name for name in seen),
        "flash varlen attention": any("flash" in name.lower() for name in seen),
    }
    for kernel, found in kernels_seen.items():
        if cuda and not found:
            failures.append(f"the profiler saw no {kernel} kernel in the packed step")

    # 3. eval mode: the other fused branch (causal_conv1d_fn + mamba_chunk_scan_combined)
    model.eval()
    with torch.no_grad():
        reference_eval = one_at_a_time(model, rows, backward=False, attention=args.attn)
        packed_loss["eval"] = float(model(**batch).loss)
    model.train()
    relative = {
        "train": abs(packed_loss["train"] - reference) / reference,
        "eval": abs(packed_loss["eval"] - reference_eval) / reference_eval,
    }
    for mode, rel in relative.items():
        if not rel <= LOSS_RTOL:
            failures.append(f"{mode}: packed loss differs by {rel:.2e} relative (> {LOSS_RTOL})")
    # The routers (`mixer.gate.weight`) get no LoRA and a small gradient through the top-k
    # weights that bf16 rounding of the two shapes (8 short rows vs one long) scatters: they
    # are reported apart, and checked only in fp32.
    routers = {name: c for name, c in cosines.items() if name.endswith("mixer.gate.weight")}
    checked = {
        name: c for name, c in cosines.items() if args.dtype == "fp32" or name not in routers
    }
    worst = sorted(checked.items(), key=lambda item: item[1])[:5]
    if not checked or worst[0][1] < GRAD_COSINE:
        failures.append(f"gradient cosine below {GRAD_COSINE}: {worst}")

    # 4. teeth: with seq_idx the next example barely moves; without it, Mamba state leaks in
    first = batch["seq_idx"][0] == 0
    following = batch["seq_idx"][0] == 1
    leaking = {key: value for key, value in batch.items() if key != "seq_idx"}
    with torch.no_grad():  # train mode, as `reference`
        leak_loss = float(model(**leaking).loss)
    movement = {
        "with seq_idx": next_example_movement(model, batch, first, following),
        "without seq_idx": next_example_movement(model, leaking, first, following),
    }
    if not movement["with seq_idx"] <= ISOLATION_RATIO * movement["without seq_idx"]:
        failures.append(f"isolation has no teeth: {movement}")

    figures = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "dtype": args.dtype,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "attention_one_at_a_time": args.attn,
        "attention_packed": model.config._attn_implementation,
        "mamba_kernels": bound,
        "mamba_path": path,
        "kernels_seen_in_packed_step": kernels_seen,
        "examples": len(rows),
        "tokens": int(batch["input_ids"].shape[1]),
        "loss_one_at_a_time": {"train": reference, "eval": reference_eval},
        "loss_packed": packed_loss,
        "relative_difference": relative,
        "loss_packed_without_seq_idx": leak_loss,
        "relative_difference_without_seq_idx": abs(leak_loss - reference) / reference,
        "grad_cosine_min": worst[0][1] if checked else None,
        "grad_cosine_lowest": worst,
        "grad_parameters_checked": len(checked),
        "router_grad_cosine_min": min(routers.values()) if routers else None,
        "next_example_mean_abs_logit_change": movement,
        "failures": failures,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
