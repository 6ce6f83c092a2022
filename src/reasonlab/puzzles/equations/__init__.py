"""Equation transformation, both families: numeric operands and cryptarithms.

Shared parts: `ops` (the operation table and the row settings) and `prompt` (parse and
format an equation prompt). Numeric: `numeric` (the family's four verbs and its prior),
`numeric_rule` (what the solver settles on), `numeric_trace` (the searched trace).
Cryptarithm: `cryptarithm` (four verbs and prior), `cryptarithm_search` (digit-mapping
search), `cryptarithm_trace` (the traced digit search). Imports point from the family
modules to their parts, never back.

May import: `metric`, `puzzles.base`. No ML library.
"""
