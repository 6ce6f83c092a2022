"""Held-out accuracy of the fitted priors: fit on one half of a CSV, score the other half.

    python bench/held_out_priors.py train_dev.csv

Two-fold, split by a hash of the row id (stable across runs), for the families whose
tie-breaks use a fitted prior: bit manipulation, numeric equations and cryptarithm. The
shipped priors are fitted on the whole split, so in-sample figures flatter them. The bit
and numeric fit scripts' `--report` add k-fold figures over several deals of the folds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from reasonlab.formats.csvio import read_rows, write_rows
from reasonlab.metric import is_correct
from reasonlab.puzzles.base import Solution
from reasonlab.puzzles.bits import family as bit_manipulation
from reasonlab.puzzles.bits import rules as bit_rules
from reasonlab.puzzles.equations import cryptarithm
from reasonlab.puzzles.equations import numeric as equation_numeric
from reasonlab.puzzles.registry import classify

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _fold(row_id: str) -> int:
    return hashlib.sha256(row_id.encode()).digest()[0] % 2


def _fit(script: str, rows: list[dict[str, str]], work: Path, fold: int) -> Path:
    # One file per fold: the priors' loaders cache by path, so a reused path would hand
    # the second fold the first fold's prior (fitted on the second fold's own rows).
    data, out = work / f"{script}.{fold}.csv", work / f"{script}.{fold}.json"
    write_rows(data, rows, ("id", "prompt", "answer"))
    subprocess.run(
        [sys.executable, str(SCRIPTS / script), str(data), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help="competition CSV with id,prompt,answer")
    args = parser.parse_args()
    rows = read_rows(args.data, required=("id", "prompt", "answer"))
    tally: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for fold in (0, 1):
            train = [r for r in rows if _fold(r["id"]) != fold]
            test = [r for r in rows if _fold(r["id"]) == fold]
            bit_prior = bit_rules.Prior.from_json(
                _fit("fit_bit_prior.py", train, Path(tmp), fold).read_text()
            )
            crypt_prior = cryptarithm.load_prior(
                _fit("fit_cryptarithm_prior.py", train, Path(tmp), fold)
            )
            numeric_prior = equation_numeric.load_prior(
                _fit("fit_equation_prior.py", train, Path(tmp), fold)
            )
            for row in test:
                kind = classify(row["prompt"])
                if kind.family == "bit_manipulation":
                    label, outcome = (
                        kind.family,
                        bit_manipulation.solve(bit_manipulation.parse(row["prompt"]), bit_prior),
                    )
                elif kind.family == "equation_numeric":
                    label = f"{kind.family}/{kind.subtype}"
                    outcome = equation_numeric.solve(
                        equation_numeric.parse(row["prompt"]), numeric_prior
                    )
                elif kind.family == "cryptarithm":
                    label = f"{kind.family}/{kind.subtype}"
                    outcome = cryptarithm.solve(cryptarithm.parse(row["prompt"]), prior=crypt_prior)
                else:
                    continue
                tally[label, "rows"] += 1
                tally[label, "correct"] += isinstance(outcome, Solution) and is_correct(
                    row["answer"], outcome.answer
                )
    summary = {
        label: f"{tally[label, 'correct']}/{tally[label, 'rows']} = {tally[label, 'correct'] / tally[label, 'rows']:.1%}"
        for label in sorted({label for label, _ in tally})
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
