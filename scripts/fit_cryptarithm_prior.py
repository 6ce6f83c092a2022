"""Fit the cryptarithm prior: settings, operations, their families and twists on dev.

    python scripts/fit_cryptarithm_prior.py /work/shared/data/train_dev.csv
        [--out src/reasonlab/puzzles/data/cryptarithm_prior.json]
    python scripts/fit_cryptarithm_prior.py /work/shared/data/train_dev.csv --report [--folds 5]

Every cryptarithm row is searched (`cryptarithm.find_fits`) once. The hypotheses that
give the gold answer share the row's unit of weight, in proportion to their weight
under the prior fitted so far (expectation-maximisation from a flat prior, `ITERATIONS`
rounds); their setting (per symbol group), each operator's operation and family (per
symbol class; groups and classes as `equations.numeric` defines them), each add/mul
operation's offset given the row's other operations, and whether an operation is a
twist given its twist class and how many of the others are plain (`cryptarithm.twist_context`)
are counted; a guess row's query operator is counted apart (`unseen`). Twists count every
operator's state given the others' (the solver applies them to the query's). Only frequencies
are written (add-half smoothing), never rows.

`--report` writes nothing: it scores the shipped prior on the CSV (in-sample) and each
of `--folds` folds with a prior fitted on the others (held out), by subtype.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from reasonlab.formats.csvio import read_rows
from reasonlab.formats.files import atomic_write
from reasonlab.metric import is_correct
from reasonlab.puzzles.base import Solution
from reasonlab.puzzles.equations import cryptarithm
from reasonlab.puzzles.equations.cryptarithm_search import SearchResult
from reasonlab.puzzles.equations.numeric import symbol_class
from reasonlab.puzzles.equations.ops import KINDS, OPERATIONS, SETTINGS
from reasonlab.puzzles.equations.prompt import EquationPrompt
from reasonlab.puzzles.registry import classify

DEFAULT_OUT = (
    Path(__file__).resolve().parents[1] / "src/reasonlab/puzzles/data/cryptarithm_prior.json"
)
CLASSES = ("+", "-", "*", "other")
GROUPS = ("standard", "symbolic")
ITERATIONS = 3  # EM rounds; held-out accuracy on dev is the same from 3 to 10
SMOOTHING = 0.5  # pseudo-count per cell of every fitted table

# A parsed row, its gold answer and its search result.
Row = tuple[EquationPrompt, str, SearchResult]


def _normalise(counts: dict, smoothing: float = 0.0) -> dict:
    total = sum(counts.values()) + smoothing * len(counts)
    return {k: round((v + smoothing) / total, 5) for k, v in counts.items()}


def load(csv_path: Path) -> list[Row]:
    """The CSV's cryptarithm rows, searched."""
    rows = []
    for row in read_rows(csv_path, required=("id", "prompt", "answer")):
        if classify(row["prompt"]).family == cryptarithm.NAME:
            puzzle = cryptarithm.parse(row["prompt"])
            rows.append((puzzle, row["answer"], cryptarithm.find_fits(puzzle)))
    return rows


def _counts(rows: list[Row], prior: cryptarithm.Prior) -> dict[str, Any]:
    """One EM step: the tables' expected counts over the gold hypotheses under `prior`."""
    settings = {g: dict.fromkeys((s.name for s in SETTINGS), 0.0) for g in GROUPS}
    operations = {s.name: dict.fromkeys((op.name for op in OPERATIONS), 0.0) for s in SETTINGS}
    kinds = {c: dict.fromkeys(KINDS, 0.0) for c in CLASSES}
    unseen = {c: dict.fromkeys(KINDS, 0.0) for c in CLASSES}
    offsets = {c: dict.fromkeys(("-1", "0", "1"), 0.0) for c in cryptarithm.OFFSET_CONTEXTS}
    twists: dict[str, Counter] = defaultdict(Counter)
    explained = 0
    for puzzle, answer, result in rows:
        group = cryptarithm.row_group(puzzle)
        gold = [h for h in cryptarithm.hypotheses(puzzle, result.fits, prior) if h.answer == answer]
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
                others = [o for j, (_, o) in enumerate(pairs) if j != i]
                if op.kind in ("add", "mul"):
                    offsets[cryptarithm.offset_context(others)][str(op.offset)] += share
                # every operator's state given the others' (not only the query's): 3x the data
                state = "plain" if op.plain else "twist"
                cls = cryptarithm.twist_class(group, h.fit.setting)
                twists[cryptarithm.twist_context(others, cls)][state] += share
                twists[cls][state] += share
    return {
        "explained": explained,
        "settings": {g: _normalise(v, SMOOTHING) for g, v in settings.items()},
        "operations": {s: _normalise(v, SMOOTHING) for s, v in operations.items()},
        "kinds": {c: _normalise(v, SMOOTHING) for c, v in kinds.items()},
        "unseen": {c: _normalise(v, SMOOTHING) for c, v in unseen.items()},
        "offsets": {c: _normalise(v, SMOOTHING) for c, v in offsets.items()},
        "twists": {
            ctx: round((c["twist"] + SMOOTHING) / (c["twist"] + c["plain"] + 2 * SMOOTHING), 5)
            for ctx, c in sorted(twists.items())
        },
    }


def fit_prior(rows: list[Row], iterations: int = ITERATIONS) -> dict[str, Any]:
    """The prior's fields (`cryptarithm.Prior`) plus `explained` (rows whose gold answer
    some hypothesis gives), by `iterations` EM rounds from a flat prior."""
    prior, fields = cryptarithm.Prior.flat(), {}
    for _ in range(iterations):
        fields = _counts(rows, prior)
        prior = cryptarithm.Prior.from_json(fields)
    return fields


def evaluate(rows: list[Row], prior: cryptarithm.Prior) -> dict[str, tuple[int, int]]:
    """Right/total by subtype when every row is solved with `prior` (no traces)."""
    scores: Counter = Counter()
    for puzzle, answer, result in rows:
        subtype = "deduce" if puzzle.query_seen else "guess"
        outcome = cryptarithm.solve_found(puzzle, result, prior, trace=False)
        scores[subtype, "total"] += 1
        scores[subtype, "right"] += isinstance(outcome, Solution) and is_correct(
            answer, outcome.answer
        )
    return {t: (scores[t, "right"], scores[t, "total"]) for t in ("deduce", "guess")}


def cross_validate(rows: list[Row], folds: int, seed: int = 0) -> dict[str, tuple[int, int]]:
    """Right/total by subtype when each fold is solved with a prior fitted on the others."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    totals: Counter = Counter()
    for k in range(folds):
        held = set(order[k::folds])
        prior = cryptarithm.Prior.from_json(fit_prior([rows[i] for i in order if i not in held]))
        for subtype, (right, total) in evaluate([rows[i] for i in sorted(held)], prior).items():
            totals[subtype, "right"] += right
            totals[subtype, "total"] += total
    return {t: (totals[t, "right"], totals[t, "total"]) for t in ("deduce", "guess")}


def _print_scores(label: str, scores: dict[str, tuple[int, int]]) -> None:
    for subtype, (right, total) in scores.items():
        print(f"{label} {subtype}: {right}/{total} = {right / max(total, 1):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("csv", type=Path, help="a CSV with id,prompt,answer (e.g. train_dev.csv)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    parser.add_argument(
        "--report",
        action="store_true",
        help="write nothing; score the shipped prior in-sample and cross-validate",
    )
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds for --report")
    parser.add_argument("--seed", type=int, default=0, help="how rows are dealt into folds")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = load(args.csv)
    if args.report:
        _print_scores("shipped prior (in-sample)", evaluate(rows, cryptarithm.load_prior()))
        _print_scores(
            f"{args.folds}-fold cross-validation (seed {args.seed})",
            cross_validate(rows, args.folds, args.seed),
        )
        print(f"{time.perf_counter() - start:.1f} s")
        return
    fields = fit_prior(rows)
    explained = fields.pop("explained")
    data = {
        "source": f"scripts/fit_cryptarithm_prior.py on {args.csv.name}: {len(rows)} cryptarithm "
        f"rows, {explained} with a hypothesis giving the gold answer",
        **fields,
    }
    with atomic_write(args.out) as f:
        f.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"{data['source']}; wrote {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
