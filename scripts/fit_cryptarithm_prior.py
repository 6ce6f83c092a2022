"""Fit the cryptarithm prior: settings, operations and their families on dev.

    python scripts/fit_cryptarithm_prior.py /work/shared/data/train_dev.csv
        [--out src/reasonlab/puzzles/data/cryptarithm_prior.json]

Every cryptarithm row is searched (`cryptarithm.find_fits`); the hypotheses that
give the gold answer under a flat prior share the row's unit of weight, and their
setting (per symbol group), each operator's operation and family (per symbol class;
groups and classes as `equations.numeric` defines them), and each add/mul operation's
offset given the row's other operations are counted; a guess row's query operator is
counted apart (`unseen`). Only frequencies are written (add-half smoothing), never rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reasonlab.formats.csvio import read_rows
from reasonlab.formats.files import atomic_write
from reasonlab.puzzles.equations import cryptarithm
from reasonlab.puzzles.equations.numeric import symbol_class
from reasonlab.puzzles.equations.ops import KINDS, OPERATIONS, SETTINGS
from reasonlab.puzzles.registry import classify

DEFAULT_OUT = (
    Path(__file__).resolve().parents[1] / "src/reasonlab/puzzles/data/cryptarithm_prior.json"
)
CLASSES = ("+", "-", "*", "other")
GROUPS = ("standard", "symbolic")


def _normalise(counts: dict, smoothing: float = 0.0) -> dict:
    total = sum(counts.values()) + smoothing * len(counts)
    return {k: round((v + smoothing) / total, 5) for k, v in counts.items()}


def fit_prior(csv_path: Path) -> dict:
    """The prior as a JSON-ready dict (`cryptarithm.Prior` fields plus a `source` line)."""
    rows = [
        r
        for r in read_rows(csv_path, required=("id", "prompt", "answer"))
        if classify(r["prompt"]).family == cryptarithm.NAME
    ]
    settings = {g: dict.fromkeys((s.name for s in SETTINGS), 0.0) for g in GROUPS}
    operations = {s.name: dict.fromkeys((op.name for op in OPERATIONS), 0.0) for s in SETTINGS}
    kinds = {c: dict.fromkeys(KINDS, 0.0) for c in CLASSES}
    unseen = {c: dict.fromkeys(KINDS, 0.0) for c in CLASSES}
    offsets = {c: dict.fromkeys(("-1", "0", "1"), 0.0) for c in cryptarithm.OFFSET_CONTEXTS}
    explained = 0
    flat = cryptarithm.Prior.flat()
    for row in rows:
        puzzle = cryptarithm.parse(row["prompt"])
        group = cryptarithm.row_group(puzzle)
        fits = cryptarithm.find_fits(puzzle).fits
        gold = [h for h in cryptarithm.hypotheses(puzzle, fits, flat) if h.answer == row["answer"]]
        total = sum(h.weight for h in gold)
        if not total:
            continue
        explained += 1
        for h in gold:
            share = h.weight / total
            settings[group][h.fit.setting.name] += share
            pairs = list(h.fit.ops) + (
                [] if puzzle.query_seen else [(puzzle.query.op, h.operation)]
            )
            for i, (symbol, op) in enumerate(pairs):
                operations[h.fit.setting.name][op.name] += share
                shown = i < len(h.fit.ops)
                (kinds if shown else unseen)[symbol_class(symbol, group)][op.kind] += share
                if op.kind in ("add", "mul"):
                    others = [o for j, (_, o) in enumerate(pairs) if j != i]
                    offsets[cryptarithm.offset_context(others)][str(op.offset)] += share
    return {
        "source": f"scripts/fit_cryptarithm_prior.py on {csv_path.name}: {len(rows)} cryptarithm rows, "
        f"{explained} with a hypothesis giving the gold answer",
        "settings": {g: _normalise(v, 0.5) for g, v in settings.items()},
        "operations": {s: _normalise(v, 0.5) for s, v in operations.items()},
        "kinds": {c: _normalise(v, 0.5) for c, v in kinds.items()},
        "unseen": {c: _normalise(v, 0.5) for c, v in unseen.items()},
        "offsets": {c: _normalise(v, 0.5) for c, v in offsets.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    start = time.perf_counter()
    data = fit_prior(args.csv)
    with atomic_write(args.out) as f:
        f.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"{data['source']}; wrote {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
