"""Solver speed per family: wall-clock seconds and rows per second.

    python bench/solve_speed.py DATA.csv [--family F ...] [--workers N]
    python bench/solve_speed.py --generate 500            # N generated puzzles per family

Prints one line per family (single process unless --workers) and the total. Figures
depend on the machine; the README quotes the ones measured on the 2-core dev machine.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict

from reasonlab.data.generate import generate_mixed
from reasonlab.data.solve import solve_rows
from reasonlab.formats.csvio import read_rows
from reasonlab.puzzles.registry import FAMILIES, classify


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", nargs="?", help="competition CSV (id,prompt[,answer])")
    parser.add_argument(
        "--family", action="append", choices=FAMILIES, help="only these families (repeatable)"
    )
    parser.add_argument(
        "--generate", type=int, default=0, help="without DATA: puzzles per family to generate"
    )
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if args.data:
        rows = read_rows(args.data, required=("id", "prompt"))
    elif args.generate:
        rows = generate_mixed(args.generate, seed=0, families=args.family or FAMILIES)
    else:
        parser.error("give DATA.csv or --generate N")
    by_family = defaultdict(list)
    for row in rows:
        by_family[classify(row["prompt"]).family].append(row)
    total_rows, total_seconds = 0, 0.0
    print(
        f"{'family':<18} {'rows':>6} {'seconds':>8} {'rows/s':>8}  statuses (workers={args.workers})"
    )
    for family in args.family or sorted(by_family):
        family_rows = by_family.get(family, [])
        if not family_rows:
            continue
        start = time.perf_counter()
        results = solve_rows(family_rows, workers=args.workers)
        seconds = time.perf_counter() - start
        statuses = Counter(r.status for r in results)
        print(
            f"{family:<18} {len(family_rows):>6} {seconds:>8.2f} {len(family_rows) / seconds:>8.1f}  {dict(statuses)}"
        )
        total_rows += len(family_rows)
        total_seconds += seconds
    print(
        f"{'total':<18} {total_rows:>6} {total_seconds:>8.2f} {total_rows / max(total_seconds, 1e-9):>8.1f}"
    )


if __name__ == "__main__":
    main()
