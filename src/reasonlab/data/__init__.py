"""Stage 1, making data: solve, score, audit, generate, traces, dataset build, distill.

Everything here runs without an ML library (token counts load a tokenizer lazily).
May import: `competition`, `metric`, `puzzles`, `formats`. Never a later stage.
"""
