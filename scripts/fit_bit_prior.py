"""Fit the bit-manipulation prior: how often each rule family generates a puzzle.

    python scripts/fit_bit_prior.py /work/shared/data/train_dev.csv
        [--out src/reasonlab/puzzles/data/bit_prior.json] [--iterations 50] [--min-weight 1.0]

Every rule of up to three copies and any truth table that fits a row is found
(`bit_rules.search_any`); family weights are then fitted by expectation-maximisation
over the generative model the solver assumes (pick a family, then its copies
uniformly), so a row that several families explain is shared between them in proportion
to their probability. Families whose expected row count stays below --min-weight are
dropped. Only the family counts are written, never rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from reasonlab.formats.csvio import read_rows
from reasonlab.puzzles.bits import family as bit_manipulation
from reasonlab.puzzles.bits.rules import Family, Prior, search_any
from reasonlab.puzzles.registry import classify

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src/reasonlab/puzzles/data/bit_prior.json"


def family_candidates(csv_path: Path) -> list[Counter[Family]]:
    """Per bit row: how many fitting rules each family has."""
    rows = [
        r
        for r in read_rows(csv_path, required=("id", "prompt"))
        if classify(r["prompt"]).family == "bit_manipulation"
    ]
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
    args = parser.parse_args(argv)
    start = time.perf_counter()
    per_row = family_candidates(args.csv)
    unexplained = sum(1 for counts in per_row if not counts)
    weights = fit([c for c in per_row if c], args.iterations)
    kept = {f: w for f, w in weights.items() if w >= args.min_weight}
    args.out.write_text(Prior(kept).to_json(source=args.csv.name, rows=len(per_row)))
    print(
        f"{len(per_row)} bit rows, {unexplained} unexplained, {len(weights)} families seen, {len(kept)} kept"
    )
    for f, w in sorted(kept.items(), key=lambda kv: -kv[1]):
        print(f"  {w:8.1f}  {f.label}")
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
