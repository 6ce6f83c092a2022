"""What the stages exchange, and how it is written: competition CSVs, JSONL, SFT rows in the
scorer's chat format, the base model's real tokenizer (rebuilt offline) and the token
lengths of SFT turns, and atomic writes so no output is ever half-written.

May import: `competition`, `metric`. Never `puzzles` or a stage (it sits below them).
"""
