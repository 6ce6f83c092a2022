"""Data in and out: CSV/JSONL, chat formatting of SFT rows, token budgets."""
