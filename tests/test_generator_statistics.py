"""Generated puzzles look like the dev split, family by family.

Skipped when the dev CSV (never committed) is not beside the repository. The cheap
checks compare the prompt shape; the slow one solves both sides and compares how often
the solver finds the puzzle ambiguous, a proxy for matching rule frequencies.
"""

from __future__ import annotations

import statistics
from collections import Counter

import pytest

from reasonlab.data.generate import generate_rows
from reasonlab.data.solve import solve_rows
from reasonlab.puzzles.registry import FAMILIES, classify


def _shares(values: list) -> dict:
    counts = Counter(values)
    return {key: count / len(values) for key, count in counts.items()}


def _shape(rows: list[dict[str, str]], shape: str) -> list:
    if shape == "lines":
        return [r["prompt"].count("\n") for r in rows]
    return [classify(r["prompt"]).subtype for r in rows]


def _total_variation(p: dict, q: dict) -> float:
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_shape_matches_dev(family: str, dev_rows) -> None:
    dev, generated = dev_rows[family], generate_rows(family, 1000, seed=0)
    for shape in ("lines", "subtype"):  # examples per prompt; deduce / guess share
        dev_shares, generated_shares = (
            _shares(_shape(dev, shape)),
            _shares(_shape(generated, shape)),
        )
        assert _total_variation(dev_shares, generated_shares) < 0.08, shape
    for length in ("prompt", "answer"):
        dev_mean = statistics.mean(len(r[length]) for r in dev)
        generated_mean = statistics.mean(len(r[length]) for r in generated)
        assert generated_mean == pytest.approx(dev_mean, rel=0.05), length


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_ambiguity_rate_matches_dev(family: str, dev_rows) -> None:
    dev, generated = dev_rows[family][:400], generate_rows(family, 400, seed=0)
    dev_rate = statistics.mean(r.ambiguous for r in solve_rows(dev))
    assert statistics.mean(r.ambiguous for r in solve_rows(generated)) == pytest.approx(
        dev_rate, abs=0.08
    )
