"""Bit manipulation: the rule grammar and its prior (`rules`), the family's four verbs
(`family`: parse, solve, render, generate) and the searched trace (`trace`).

May import: `puzzles.base`, `puzzles.prompt_lines`. No ML library.
"""
