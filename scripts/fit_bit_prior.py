"""Fit the bit-manipulation prior: how often each rule family generates a puzzle.

    python scripts/fit_bit_prior.py /work/shared/data/train_dev.csv
        [--out src/reasonlab/puzzles/data/bit_prior.json] [--iterations 50] [--min-weight 1.0]
    python scripts/fit_bit_prior.py /work/shared/data/train_dev.csv --report [--folds 5 --seeds 3]

Every rule of up to three copies and any truth table that fits a row is found
(`bit_rules.search_any`); family weights are then fitted by expectation-maximisation
over the generative model the solver assumes (pick a family, then its copies
uniformly), so a row that several families explain is shared between them in proportion
to their probability. Families whose expected row count stays below --min-weight are
dropped. Only the family counts are written, never rows. `--report` writes nothing: it
cross-validates the fit, each fold's rows solved with a prior fitted on the other folds,
for several deals of the folds.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from reasonlab.formats.csvio import read_rows
from reasonlab.formats.files import atomic_write
from reasonlab.metric import is_correct
from reasonlab.puzzles.base import Solution
from reasonlab.puzzles.bits import family as bit_manipulation
from reasonlab.puzzles.bits.rules import Family, Prior, search_any
from reasonlab.puzzles.registry import classify

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src/reasonlab/puzzles/data/bit_prior.json"


def bit_rows(csv_path: Path) -> list[dict[str, str]]:
    return [
        r
        for r in read_rows(csv_path, required=("id", "prompt"))
        if classify(r["prompt"]).family == "bit_manipulation"
    ]


def family_candidates(rows: list[dict[str, str]]) -> list[Counter[Family]]:
    """Per bit row: how many fitting rules each family has."""
    per_row = []
    for row in rows:
        puzzle = bit_manipulation.parse(row["prompt"])
        per_row.append(Counter(rule.family for rule in search_any(puzzle.examples)))
    return per_row


def fit(per_row: list[Counter[Family]], iterations: int) -> dict[Family, float]:
    """EM over family weights; each row's posterior is w(F) * fits(F) / |F|, normalised."""
    families = {f for counts in per_row for f in counts}
    weights = dict.fromkeys(families, 1.0)
    for _ in range(iterations):
        expected: dict[Family, float] = defaultdict(float)
        for counts in per_row:
            scores = {f: weights[f] * n / f.size for f, n in counts.items()}
            total = sum(scores.values())
            for f, s in scores.items():
                expected[f] += s / total if total else 0.0
        # never exactly zero: EM cannot revive a family it has dropped
        weights = {f: expected[f] + 1e-6 for f in families}
    return weights


def fitted_prior(per_row: list[Counter[Family]], iterations: int, min_weight: float) -> Prior:
    weights = fit([c for c in per_row if c], iterations)
    return Prior({f: w for f, w in weights.items() if w >= min_weight})


def cross_validate(
    rows: list[dict[str, str]],
    per_row: list[Counter[Family]],
    folds: int,
    seed: int,
    iterations: int,
    min_weight: float,
) -> int:
    """Rows right when each fold is solved with a prior fitted on the other folds."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    right = 0
    for k in range(folds):
        held = set(order[k::folds])
        prior = fitted_prior([per_row[i] for i in order if i not in held], iterations, min_weight)
        for i in held:
            outcome = bit_manipulation.solve(bit_manipulation.parse(rows[i]["prompt"]), prior)
            right += isinstance(outcome, Solution) and is_correct(rows[i]["answer"], outcome.answer)
    return right


def report(rows: list[dict[str, str]], per_row, args: argparse.Namespace) -> None:
    if not all(r.get("answer") for r in rows):
        raise SystemExit("--report needs an answer column")
    prior = fitted_prior(per_row, args.iterations, args.min_weight)
    in_sample = sum(
        is_correct(r["answer"], s.answer)
        for r in rows
        if isinstance(
            s := bit_manipulation.solve(bit_manipulation.parse(r["prompt"]), prior), Solution
        )
    )
    total = len(rows)
    print(f"fitted on every row (in-sample): {in_sample}/{total} = {in_sample / total:.2%}")
    rights = []
    for seed in range(args.seeds):
        right = cross_validate(rows, per_row, args.folds, seed, args.iterations, args.min_weight)
        rights.append(right)
        print(
            f"{args.folds}-fold cross-validation (seed {seed}): {right}/{total} = {right / total:.2%}"
        )
    mean = sum(rights) / len(rights)
    print(
        f"{args.folds}-fold, {args.seeds} seeds: mean {mean:.1f}/{total} = {mean / total:.2%}, "
        f"range {min(rights)}-{max(rights)} ({min(rights) / total:.2%}-{max(rights) / total:.2%})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "csv", type=Path, help="a competition CSV with id,prompt (train or dev split)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument(
        "--min-weight", type=float, default=1.0, help="drop families with fewer expected rows"
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="write nothing; cross-validate the fit (needs an answer column)",
    )
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    parser.add_argument("--seeds", type=int, default=3, help="deals of the folds: seeds 0..N-1")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = bit_rows(args.csv)
    per_row = family_candidates(rows)
    if args.report:
        report(rows, per_row, args)
        return 0
    unexplained = sum(1 for counts in per_row if not counts)
    weights = fit([c for c in per_row if c], args.iterations)
    kept = {f: w for f, w in weights.items() if w >= args.min_weight}
    with atomic_write(args.out) as f:  # the shipped prior is never left half-written
        f.write(Prior(kept).to_json(source=args.csv.name, rows=len(per_row)))
    print(
        f"{len(per_row)} bit rows, {unexplained} unexplained, {len(weights)} families seen, {len(kept)} kept"
    )
    for f, w in sorted(kept.items(), key=lambda kv: -kv[1]):
        print(f"  {w:8.1f}  {f.label}")
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
