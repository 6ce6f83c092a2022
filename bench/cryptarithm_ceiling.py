"""Why the cryptarithm solver misses deduce rows, and how far a perfect tie-breaker could go.

    PYTHONPATH=src python3 bench/cryptarithm_ceiling.py train_dev.csv [--show c]
    PYTHONPATH=src python3 bench/cryptarithm_ceiling.py --generated 4000

`--generated N` runs the same study on N deduce puzzles of the project's generator
(`cryptarithm.generate`, seeded), where every row is drawn from one known distribution:
what a prior fitted on half of them reaches on the other half is what the prompts allow
when the prior is as good as the data can make it, to compare with the dev figures.

Held out as `bench/held_out_priors.py` does it: two folds by a hash of the row id, each
solved with a prior fitted (`scripts/fit_cryptarithm_prior.py`'s `fit_prior`) on the other.
Every hypothesis of the solver's space that explains all examples is listed for the query
(`cryptarithm.hypotheses` with no sampling stride), and each wrong deduce row gets one class:

  a  the gold answer writes a symbol the prompt never shows: its digit has no symbol, so
     even the right digits are a pick among the spare symbols (odds 1/spare per digit)
  b  ambiguous: hypotheses give several answers, the gold one among them; only a prior
     can pick (how many answers, and the uniform-choice odds, are reported)
  c  coverage gap: no hypothesis gives the gold answer (no fit at all, or fits that all
     answer otherwise); `--show c` prints these rows for study
  d  the gold answer is the only answer the hypotheses give, yet the solver answered
     otherwise (a bug, or the search stopped at its limits)

The ceilings count every deduce row (right or wrong now): a perfect tie-breaker wins each
row whose gold answer some hypothesis gives without an unknown symbol; uniform choice
wins it with 1 / (distinct answers).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from reasonlab.formats.csvio import read_rows
from reasonlab.metric import is_correct
from reasonlab.puzzles.base import Solution, Unsolved
from reasonlab.puzzles.equations import cryptarithm
from reasonlab.puzzles.equations.cryptarithm_search import SearchResult
from reasonlab.puzzles.equations.prompt import EquationPrompt

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
_NO_STRIDE = 10**12  # `hypotheses` budget large enough that every pair is listed


def _script(name: str) -> ModuleType:
    """A module of scripts/ (not a package), loaded by path."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fold(row_id: str) -> int:
    """`bench/held_out_priors.py`'s split, so both scripts hold out the same rows."""
    return hashlib.sha256(row_id.encode()).digest()[0] % 2


@dataclass(frozen=True)
class Verdict:
    row_id: str
    right: bool  # the solver's answer is the gold one
    lucky: bool  # not right, but its partial guess (an Unsolved row's) is the gold answer
    klass: str  # "" when right, else a/b/c/d
    answers: int  # distinct answers the hypotheses give (UNKNOWN symbols as written)
    gold_among: bool  # some hypothesis gives the gold answer (unknown symbols matched loosely)
    odds: float  # chance of writing the gold answer by a uniform pick among the answers
    complete: bool  # the search saw every branch (else its limits stopped it)
    oracle: float  # 1/0.5/0: some prior over settings and operations can win/tie (`_oracle`)


def _matches(answer: str, gold: str, spare: set[str]) -> bool:
    """`answer` (UNKNOWN where a digit has no symbol) can be written as `gold`: unknown
    positions hold spare symbols (the solver cannot tell which)."""
    return len(answer) == len(gold) and all(
        a == g or (a == cryptarithm.UNKNOWN and g in spare) for a, g in zip(answer, gold)
    )


def _oracle(hyps: list[cryptarithm.Hypothesis], gold: str, spare: int) -> float:
    """Whether some prior over (setting, operations) makes gold the likeliest answer:
    1 if it can win outright, 1/2 if at best it ties, else 0.

    The mapping is random, so each (setting, operations) key's answer distribution is
    what the examples leave it; a prior only mixes the keys. Gold can lead iff a mixture
    gives it a positive margin over every other answer's expected score (as the solver
    counts it: 1/spare per digit with no symbol): a small linear program (maximise t
    subject to sum_k w_k (P_k(gold) - P_k(a) / spare^unknown(a)) >= t, w on the simplex).
    """
    from scipy.optimize import linprog  # bench-only dependency

    by_key: dict[tuple, Counter] = defaultdict(Counter)
    discount = {}
    for h in hyps:
        by_key[h.fit.setting, h.fit.ops, h.operation][h.answer] += h.weight
        unknown = {d for ch, d in zip(h.answer, h.digits) if ch == cryptarithm.UNKNOWN}
        discount[h.answer] = max(1, spare) ** -len(unknown)
    keys = [answers for answers in by_key.values() if gold in answers]
    if not keys:
        return 0.0
    shares = [{a: w / sum(answers.values()) for a, w in answers.items()} for answers in keys]
    rivals = sorted({a for share in shares for a in share} - {gold})
    if not rivals:
        return 1.0
    # variables: w_1..w_K, t; minimise -t
    rows = [
        [share.get(a, 0.0) * discount[a] - share[gold] for share in shares] + [1.0] for a in rivals
    ]
    found = linprog(
        c=[0.0] * len(keys) + [-1.0],
        A_ub=rows,
        b_ub=[0.0] * len(rivals),
        A_eq=[[1.0] * len(keys) + [0.0]],
        b_eq=[1.0],
        bounds=[(0, None)] * len(keys) + [(None, None)],
    )
    margin = -found.fun
    return 1.0 if margin > 1e-9 else 0.5 if margin > -1e-9 else 0.0


def judge(
    row_id: str, puzzle: EquationPrompt, gold: str, result: SearchResult, prior: cryptarithm.Prior
) -> Verdict:
    """The row's class (see the module docstring) under `prior`."""
    outcome = cryptarithm.solve_found(puzzle, result, prior, trace=False)
    right = isinstance(outcome, Solution) and is_correct(gold, outcome.answer)
    lucky = isinstance(outcome, Unsolved) and is_correct(gold, outcome.partial or "")
    hyps = list(cryptarithm.hypotheses(puzzle, result.fits, prior, budget=_NO_STRIDE))
    answers = {h.answer for h in hyps}
    shown = set(puzzle.query.text) | {ch for lhs, rhs in puzzle.examples for ch in lhs.text + rhs}
    spare = set(cryptarithm.ALPHABET) - shown
    unseen = [ch for ch in dict.fromkeys(gold) if ch not in shown]
    among = [a for a in answers if _matches(a, gold, spare)]
    odds = 0.0
    if among:
        odds = len(spare) ** -len(unseen) / len(answers)
    if right:
        klass = ""
    elif unseen:
        klass = "a"
    elif not among:
        klass = "c"
    elif len(answers) > 1:
        klass = "b"
    else:
        klass = "d"
    return Verdict(
        row_id,
        right,
        lucky,
        klass,
        len(answers),
        bool(among),
        odds,
        result.complete,
        _oracle(hyps, gold, len(spare)),
    )


Rows = dict[str, tuple[EquationPrompt, str, SearchResult]]  # id -> puzzle, gold, search


def csv_rows(csv_path: str) -> Rows:
    """The CSV's cryptarithm rows, searched."""
    fit = _script("fit_cryptarithm_prior")
    rows = {}
    for row in read_rows(csv_path, required=("id", "prompt", "answer")):
        if fit.classify(row["prompt"]).family == cryptarithm.NAME:
            puzzle = cryptarithm.parse(row["prompt"])
            rows[row["id"]] = (puzzle, row["answer"], cryptarithm.find_fits(puzzle))
    return rows


def generated_rows(count: int, seed: int) -> Rows:
    """`count` generated deduce puzzles, searched (ids `gen-<i>`)."""
    rng = random.Random(seed)
    rows = {}
    for i in range(count):
        made = cryptarithm.generate(rng, "deduce")
        puzzle = cryptarithm.parse(made.prompt)
        rows[f"gen-{i}"] = (puzzle, made.answer, cryptarithm.find_fits(puzzle))
    return rows


def verdicts(rows: Rows) -> list[Verdict]:
    """Every deduce row's verdict, held out."""
    fit = _script("fit_cryptarithm_prior")
    out = []
    for fold in (0, 1):
        train = [r for i, r in rows.items() if _fold(i) != fold]
        prior = cryptarithm.Prior.from_json(fit.fit_prior(train))
        for row_id, (puzzle, gold, result) in rows.items():
            if _fold(row_id) == fold and puzzle.query_seen:
                out.append(judge(row_id, puzzle, gold, result, prior))
    return out


def _class_line(klass: str, rows: list[Verdict]) -> str:
    """One class's count and what the rows in it could still give."""
    labels = {
        "a": "needs a symbol the prompt never shows",
        "b": "ambiguous, gold among the answers",
        "c": "coverage gap, no hypothesis gives gold",
        "d": "unique answer is gold, solver differs",
    }
    line = f"  ({klass}) {labels[klass]}: {len(rows)}"
    odds = sum(v.odds for v in rows)
    if klass == "a":
        among = sum(v.gold_among for v in rows)
        lucky = sum(v.lucky for v in rows)
        line += (
            f"; gold digits among the answers in {among}, expected right by a lucky symbol "
            f"{odds:.2f}; the solver's partial guess is gold in {lucky}"
        )
    if klass == "b":
        sizes = Counter(min(v.answers, 5) for v in rows)
        spread = ", ".join(f"{k}{'+' if k == 5 else ''}: {c}" for k, c in sorted(sizes.items()))
        line += f"; answers per row {spread}; expected right by uniform choice {odds:.1f}"
    stopped = sum(not v.complete for v in rows)
    return line + (f"; search stopped at its limits in {stopped}" if stopped else "")


def report(found: list[Verdict]) -> None:
    n = len(found)
    right = sum(v.right for v in found)
    print(f"held-out deduce: {right}/{n} = {right / n:.1%} right; {n - right} wrong")
    for klass in "abcd":
        print(_class_line(klass, [v for v in found if v.klass == klass]))
    perfect = sum(v.gold_among and v.klass != "a" for v in found)
    lucky = sum(v.gold_among and v.klass == "a" for v in found)
    uniform = sum(v.odds for v in found)
    oracle = sum(v.oracle for v in found)
    wins = Counter(v.oracle for v in found if not v.right)
    print(f"ceiling, perfect tie-breaker (every b and d right): {perfect}/{n} = {perfect / n:.1%}")
    print(f"  plus a lucky symbol for every a: {perfect + lucky}/{n} = {(perfect + lucky) / n:.1%}")
    print(f"expected under uniform choice among the answers: {uniform:.1f}/{n} = {uniform / n:.1%}")
    print(
        f"ceiling, per-row perfect prior over settings/operations (digits as the examples "
        f"leave them; a tie counts 1/2): {oracle:.1f}/{n} = {oracle / n:.1%}"
    )
    print(
        f"  rows wrong now it could win: {wins[1.0]}, tie: {wins[0.5]}, never: {wins[0.0]}; "
        f"rows right now it could only tie: {sum(v.oracle < 1 for v in found if v.right)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", nargs="?", help="competition CSV with id,prompt,answer")
    parser.add_argument("--show", default="", help="print the rows of these classes (e.g. 'cd')")
    parser.add_argument(
        "--generated", type=int, default=0, metavar="N", help="study N generated puzzles instead"
    )
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed")
    args = parser.parse_args()
    if bool(args.data) == bool(args.generated):
        parser.error("give a CSV or --generated N (one of them)")
    rows = generated_rows(args.generated, args.seed) if args.generated else csv_rows(args.data)
    found = verdicts(rows)
    report(found)
    for v in found:
        if v.klass and v.klass in args.show:
            puzzle, gold, _ = rows[v.row_id]
            examples = "\n".join(f"  {lhs.text} = {rhs}" for lhs, rhs in puzzle.examples)
            print(
                f"\n[{v.klass}] {v.row_id} answers={v.answers}\n{examples}\n  {puzzle.query.text} -> {gold}"
            )


if __name__ == "__main__":
    main()
