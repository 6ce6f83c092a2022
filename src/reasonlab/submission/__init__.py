"""Stage 3, the submission: export to the scorer's layout, pack the zip, verify it.

May import: `competition`, `formats`, earlier stages (`data`, `training`).
Never `evaluation` or `plans`.
"""
