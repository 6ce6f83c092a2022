"""Is the fitted cryptarithm prior the best a prior can be? Compare it with the generator's own.

    PYTHONPATH=src python3 bench/cryptarithm_exact_prior.py [--rows 4000] [--samples 100000]

On generated deduce puzzles (`bench/cryptarithm_ceiling.py --generated`'s rows and folds)
the distribution the rows come from is known: `equations.numeric`'s generator draws the
setting, then the three operators' operations; the mapping and the operands are uniform.
Weighing each fit by that generator's own probability of its setting and of its shown
operators' operations (estimated by drawing `--samples` assignments per group and setting)
is the Bayes-optimal decision (up to the sampling's noise; symbols of one class are alike
to the generator), which no prior can beat on these rows. The script prints its accuracy
beside the fitted prior's (held out, each fold's prior fitted on the other).
When the two are equal, the fitted prior leaves nothing on the table, and the distance to
`cryptarithm_ceiling`'s per-row oracle is what the prompts themselves leave open.

The solver has no hook for another prior shape, so the exact weights are patched into
`cryptarithm`'s fit weight (and its twist factor set to 1) for the second solve only.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import random
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reasonlab.metric import is_correct
from reasonlab.puzzles.base import Solution
from reasonlab.puzzles.equations import cryptarithm
from reasonlab.puzzles.equations import numeric as equation_numeric
from reasonlab.puzzles.equations.cryptarithm_search import Fit, SearchResult
from reasonlab.puzzles.equations.numeric import symbol_class
from reasonlab.puzzles.equations.ops import SETTINGS
from reasonlab.puzzles.equations.prompt import EquationPrompt

BENCH = Path(__file__).resolve().parent
_UNSEEN = 0.01  # pseudo-count for a configuration the sampling never drew

Config = tuple[tuple[str, str], ...]  # sorted (symbol class, operation name) of some operators


def _ceiling_module():
    """bench/cryptarithm_ceiling.py (rows, folds and the prior fit), loaded by path."""
    spec = importlib.util.spec_from_file_location(
        "cryptarithm_ceiling", BENCH / "cryptarithm_ceiling.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def sample_configs(samples: int, seed: int = 5) -> dict[tuple[str, str], Counter]:
    """(group, setting) -> how often each configuration of 1, 2 or 3 of a row's operators
    comes out of the generator's assignment draw (`samples` draws per group and setting)."""
    prior = equation_numeric.load_prior()
    rng = random.Random(seed)
    out = {}
    for group in ("standard", "symbolic"):
        for setting in SETTINGS:
            counts: Counter = Counter()
            for _ in range(samples):
                drawn = equation_numeric._draw_assignment(rng, group, setting, prior)
                pairs = [(symbol_class(s, group), op.name) for s, op in drawn]
                for size in range(1, len(pairs) + 1):
                    counts.update(tuple(sorted(c)) for c in itertools.combinations(pairs, size))
            out[group, setting.name] = counts
    return out


@contextmanager
def exact_weights(configs: dict[tuple[str, str], Counter], samples: int) -> Iterator[None]:
    """Within the block, a fit weighs P(setting | group) * P(its operators' operations),
    both as the generator draws them (the examples show which operators; which ones is
    independent of their operations, so the subset's frequency is the likelihood)."""
    group_settings = equation_numeric.load_prior().group_settings

    def weight(fit: Fit, group: str, prior: cryptarithm.Prior) -> float:
        config: Config = tuple(sorted((symbol_class(s, group), op.name) for s, op in fit.ops))
        seen = configs[group, fit.setting.name][config] + _UNSEEN
        return group_settings[group].get(fit.setting.name, 0.0) * seen / samples

    saved = cryptarithm._fit_weight, cryptarithm.twist_factor
    cryptarithm._fit_weight, cryptarithm.twist_factor = weight, lambda *args: 1.0
    try:
        yield
    finally:
        cryptarithm._fit_weight, cryptarithm.twist_factor = saved


def _right(
    puzzle: EquationPrompt, gold: str, result: SearchResult, prior: cryptarithm.Prior
) -> bool:
    outcome = cryptarithm.solve_found(puzzle, result, prior, trace=False)
    return isinstance(outcome, Solution) and is_correct(gold, outcome.answer)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=4000, help="generated deduce puzzles")
    parser.add_argument(
        "--seed", type=int, default=0, help="the generator's seed (as the ceiling's)"
    )
    parser.add_argument(
        "--samples", type=int, default=100_000, help="assignment draws per group and setting"
    )
    args = parser.parse_args()
    ceiling = _ceiling_module()
    fit_script = ceiling._script("fit_cryptarithm_prior")
    configs = sample_configs(args.samples)
    rows = ceiling.generated_rows(args.rows, args.seed)
    right = Counter()
    for fold in (0, 1):
        train = [r for i, r in rows.items() if ceiling._fold(i) != fold]
        fitted = cryptarithm.Prior.from_json(fit_script.fit_prior(train))
        for row_id, (puzzle, gold, result) in rows.items():
            if ceiling._fold(row_id) != fold:
                continue
            right["fitted"] += _right(puzzle, gold, result, fitted)
            with exact_weights(configs, args.samples):
                right["exact"] += _right(puzzle, gold, result, fitted)
    n = len(rows)
    print(f"{n} generated deduce rows, held out:")
    print(
        f"  the fitted prior (each fold's fitted on the other): {right['fitted']}/{n} = {right['fitted'] / n:.1%}"
    )
    print(
        f"  the generator's exact prior (Bayes-optimal):        {right['exact']}/{n} = {right['exact'] / n:.1%}"
    )


if __name__ == "__main__":
    main()
