"""Stage 2, training: the YAML recipe, LoRA targets, the trainer, the tiny test model;
the fast engine under the trainer in `engine/`.

torch, transformers and peft are imported inside the functions that need them.
May import: `competition`, `formats`, `data`. Never `submission`, `evaluation` or `plans`.
"""
