"""Generate -> solve -> score round trip per family: how often the solver recovers the answer.

    python bench/round_trip.py [--n 2000] [--seed 1] [--workers 2]

Prints, per family and subtype, accuracy by the metric over all generated puzzles, the
share of puzzles that are genuinely ambiguous (several rules fit every example and
disagree on the query), and accuracy over the unambiguous ones.
"""

from __future__ import annotations

import argparse
from collections import Counter

from reasonlab.data.generate import generate_mixed
from reasonlab.data.score import group_labels
from reasonlab.data.solve import SOLUTION_STATUSES, solve_rows
from reasonlab.metric import is_correct


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="puzzles per family")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = generate_mixed(args.n, args.seed)
    results = solve_rows(rows, workers=args.workers)
    tally: dict[str, Counter] = {}
    for row, result in zip(rows, results):
        found = result.status in SOLUTION_STATUSES  # a rule fits (unique or tie-broken)
        correct = found and is_correct(row["answer"], result.answer)
        for label in group_labels(result.family, result.subtype):
            c = tally.setdefault(label, Counter())
            c["rows"] += 1
            c["correct"] += correct
            c["ambiguous"] += result.ambiguous
            c["unsolved"] += not found
            if result.status == "solved":
                c["unambiguous"] += 1
                c["unambiguous_correct"] += correct
    print(
        f"{'family':<25} {'rows':>6} {'accuracy':>9} {'ambiguous':>10} {'unsolved':>9} {'acc. unambiguous':>17}"
    )
    for label in sorted(tally):
        c = tally[label]
        unamb = f"{c['unambiguous_correct'] / c['unambiguous']:.1%}" if c["unambiguous"] else "-"
        print(
            f"{label:<25} {c['rows']:>6} {c['correct'] / c['rows']:>9.1%} {c['ambiguous'] / c['rows']:>10.1%} "
            f"{c['unsolved'] / c['rows']:>9.1%} {unamb:>17}"
        )


if __name__ == "__main__":
    main()
