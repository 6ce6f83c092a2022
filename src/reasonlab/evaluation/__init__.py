"""Stage 4, evaluation as the scorer does it: eval backends (hf, vllm, openai), vote, report.

May import: every layer below and the earlier stages (`submission` for exported adapters,
`training.engine.kernels` for the Mamba kernels).
Never `plans`.
"""
