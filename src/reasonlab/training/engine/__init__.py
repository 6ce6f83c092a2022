"""The training engine under `train`: what makes a LoRA step fast and what says so.

`paths` resolves, checks and installs a recipe's choices and prints which path each part
takes; the parts: `kernels` (fused Mamba kernels), `packing` (packed rows, examples kept
apart) with `packed_attention` (attention per example, no mask), `expert_lora` (grouped
routed-expert LoRA), `lora_linear` (LoRA Linear layers as one addmm), `activations` (relu^2
without autocast's fp32 detour), `compiled_norm` (RMSNorm as one kernel), `checkpointing`
(recompute per layer kind), `chunked_loss`, `quantized_base` (fp8 / nf4 frozen base) and
`sharded` (FSDP2 over the GPUs of one host).
May import what `training` may; never `training.train` (the trainer calls the engine).
"""
