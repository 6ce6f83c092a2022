"""Fresh puzzles with exact answers, from each family's own generator.

Output is a competition-shaped CSV (`id,prompt,answer`). The random stream of each
(family, subtype, seed) is independent of the others and of how many rows are asked
for before it, so the same command and seed always give the same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from reasonlab.puzzles.registry import FAMILIES, family_module

__all__ = [
    "GENERATED_COLUMNS",
    "GUESS_SHARE",
    "SUBTYPED_FAMILIES",
    "generate_mixed",
    "generate_rows",
]

GENERATED_COLUMNS = ("id", "prompt", "answer", "family", "subtype")
# Share of `guess` rows (query operator never shown) when no subtype is asked for, as
# `reasonlab classify` counts them on the train split: 103/600 numeric, 129/645 cryptarithm.
GUESS_SHARE = {"equation_numeric": 0.17, "cryptarithm": 0.20}
SUBTYPED_FAMILIES = tuple(GUESS_SHARE)  # these take subtype="deduce"|"guess"


def generate_rows(
    family: str,
    n: int,
    seed: int,
    subtype: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[dict[str, str]]:
    """`n` puzzles of one family; `subtype` ("deduce"/"guess") only for the equation families,
    which otherwise mix both in the train split's proportions."""
    if subtype and family not in SUBTYPED_FAMILIES:
        raise ValueError(
            f"family {family!r} has no subtypes; only {', '.join(SUBTYPED_FAMILIES)} do"
        )
    if subtype not in (None, "", "deduce", "guess"):
        raise ValueError(f"subtype must be 'deduce' or 'guess', not {subtype!r}")
    module = family_module(family)
    rng = random.Random(f"reasonlab/{family}/{subtype or 'any'}/{seed}")
    rows = []
    for index in range(n):
        if family in GUESS_SHARE:
            kind = subtype or ("guess" if rng.random() < GUESS_SHARE[family] else "deduce")
            puzzle = module.generate(rng, subtype=kind)
        else:
            puzzle = module.generate(rng)
        rows.append(
            {
                "id": f"{family}-{subtype + '-' if subtype else ''}{seed}-{index:06d}",
                "prompt": puzzle.prompt,
                "answer": puzzle.answer,
                "family": family,
                "subtype": puzzle.subtype,
            }
        )
        if on_progress:
            on_progress(1)
    return rows


def generate_mixed(
    n_per_family: int,
    seed: int,
    families: Sequence[str] = FAMILIES,
    on_progress: Callable[[int], None] | None = None,
) -> list[dict[str, str]]:
    """`n_per_family` puzzles of each family, families in registry order."""
    rows: list[dict[str, str]] = []
    for family in families:
        rows.extend(generate_rows(family, n_per_family, seed, on_progress=on_progress))
    return rows
