"""One routed-experts layer of the real shapes: PEFT's delta weights against grouped LoRA.

    python bench/bench_expert_lora.py [--tokens 8192] [--rank 32]

128 experts (2688 -> 1856 -> 2688, relu^2), top-6 routing drawn at random, bf16 on the
GPU, LoRA r on up_proj and down_proj with non-zero B. Prints forward + backward time of
each variant and the operations that took the time (with their call counts), so a slow
path (a per-expert loop, a fallback kernel) shows by name:

  base       the experts without LoRA (transformers' grouped_mm): the floor
  peft       PEFT's ParamWrapper: W + s B A built on every forward
  grouped    `training.engine.expert_lora`: x W^T + s (x A^T) B^T by grouped GEMMs
"""

from __future__ import annotations

import argparse


def _experts(rank: int, variant: str):
    import torch
    from peft import LoraConfig, get_peft_model

    from reasonlab.submission.verify import REAL_ARCHITECTURE, load_architecture
    from reasonlab.training.engine.expert_lora import use_grouped_expert_lora

    config = type(load_architecture()).from_dict(
        {**REAL_ARCHITECTURE, "hybrid_override_pattern": "E", "num_hidden_layers": 1}
    )
    from transformers import AutoModelForCausalLM

    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    if variant == "base":
        model.requires_grad_(False)  # frozen, as under LoRA
        return model.model.layers[0].mixer.experts
    lora = LoraConfig(
        r=rank,
        lora_alpha=rank,
        target_parameters=[
            "model.layers.0.mixer.experts.up_proj",
            "model.layers.0.mixer.experts.down_proj",
        ],
        init_lora_weights=False,
    )
    model = get_peft_model(model, lora)
    if variant == "grouped":
        use_grouped_expert_lora(model)
    return model.base_model.model.model.layers[0].mixer.experts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--variants", default="base,peft,grouped")
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    hidden = torch.randn(args.tokens, 2688, device="cuda", dtype=torch.bfloat16)
    scores = torch.rand(args.tokens, 128, device="cuda")
    weights, index = scores.topk(6, dim=-1)
    for variant in args.variants.split(","):
        experts = _experts(args.rank, variant)

        def step(experts=experts):  # under autocast, as training runs
            x = hidden.clone().requires_grad_()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = experts(x, index, weights)
            out.float().pow(2).mean().backward()

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(5):
            step()
        end.record()
        torch.cuda.synchronize()
        ms = start.elapsed_time(end) / 5
        with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
            step()
            torch.cuda.synchronize()
        events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
        launches = sum(e.count for e in events)
        print(f"\n{variant}: {ms:.1f} ms forward+backward, {launches} kernel launches")
        for e in sorted(events, key=lambda e: -e.self_device_time_total)[:8]:
            print(f"  {e.self_device_time_total / 1e3:8.2f} ms x{e.count:<6} {e.key[:80]}")
        del experts
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
