"""Fit src/reasonlab/puzzles/data/equation_prior.json from a competition CSV.

    python scripts/fit_equation_prior.py /work/shared/data/train_dev.csv
    python scripts/fit_equation_prior.py /work/shared/data/train_dev.csv --report

Which operation an operator stands for is often ambiguous (all its examples may fit
both `a - b` and `|a - b|`), so frequencies are fitted by expectation-maximisation
over every row's consistent hypotheses (equation_numeric.fits) rather than counted
from the rows where only one fits (those are biased towards operations that are easy
to tell apart). A row's answer, when the CSV has one, counts as one more example of
the query's operator (it often settles which of several operations the operator is).
Rows showing three operators give `family_sets` (every dev row has three, and a
subtraction is always among them); guess rows' answers give `unseen`, one factor on
concatenation. Smoothing (half a count per cell) keeps every operation, setting and
family set possible. `--report` scores the shipped prior in-sample and then k-fold
(each fold solved with a prior fitted on the others) for several deals of the folds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from reasonlab.formats.csvio import read_rows
from reasonlab.formats.files import atomic_write
from reasonlab.metric import is_correct
from reasonlab.puzzles.base import PuzzleFormatError, Unsolved
from reasonlab.puzzles.equations.numeric import (
    PRIOR_PATH,
    Fit,
    Prior,
    fit_weight,
    fits,
    hypotheses,
    load_prior,
    parse,
    puzzle_symbols,
    render,
    solve,
    symbol_class,
    symbol_group,
    twist_class,
    twist_contexts,
)
from reasonlab.puzzles.equations.ops import BY_NAME, KINDS, OPERATIONS, SETTINGS
from reasonlab.puzzles.equations.prompt import EquationPrompt
from reasonlab.puzzles.registry import classify

ITERATIONS = 60  # EM moves by < 1e-6 per step well before this on dev
SMOOTHING = 0.5  # pseudo-count per cell of every fitted table
UNSEEN_PSEUDO = 0.5  # pseudo-count pulling the `unseen` factor towards 1
UNSEEN_ITERATIONS = 10  # the factor settles to 1e-4 within about five
GROUPS = ("standard", "symbolic")
CLASSES = ("+", "-", "*", "other")


def _normalise(counts: dict[str, float]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: round(v / total, 6) for k, v in counts.items()}


def _smoothed(counts: Counter, keys: list[str]) -> dict[str, float]:
    return _normalise({k: counts[k] + SMOOTHING for k in keys})


def _prior(fields: dict[str, Any]) -> Prior:
    """A Prior from the fields fitted so far (the rest empty)."""
    empty = {
        "settings": {},
        "group_share": {},
        "group_settings": {},
        "group_symbols": {},
        "operations": {},
        "kinds": {},
        "family_sets": {},
        "unseen": {},
        "examples": {},
        "twists": {},
    }
    return Prior.from_json(empty | fields)


def _posteriors(found: tuple[Fit, ...], group: str, prior: Prior) -> list[tuple[Fit, float]]:
    weights = [fit_weight(f, prior, group) for f in found]
    total = sum(weights)
    return [(f, w / total) for f, w in zip(found, weights)]


def _fits_with_answer(puzzle: EquationPrompt, answer: str | None) -> tuple[Fit, ...]:
    """Fits that also explain the query's answer (it counts as one more example), or the
    examples' fits when the answer is unknown or no operation explains it."""
    if answer is not None:
        found = fits(replace(puzzle, examples=puzzle.examples + ((puzzle.query, answer),)))
        if found:
            return found
    return fits(puzzle)


def _em(rows: list[tuple[EquationPrompt, str, tuple[Fit, ...]]]) -> dict[str, Any]:
    """P(setting | group) and P(operation | setting) by expectation-maximisation."""
    names = [op.name for op in OPERATIONS]
    settings = [s.name for s in SETTINGS]
    fields: dict[str, Any] = {
        "group_settings": {g: dict.fromkeys(settings, 1 / len(settings)) for g in GROUPS},
        "operations": {s: dict.fromkeys(names, 1 / len(names)) for s in settings},
    }
    for _ in range(ITERATIONS):
        prior = _prior(fields)
        s_counts: dict[str, Counter] = defaultdict(Counter)
        o_counts: dict[str, Counter] = defaultdict(Counter)
        for _, group, found in rows:
            for fit, post in _posteriors(found, group, prior):
                s_counts[group][fit.setting.name] += post
                for _, cands in fit.candidates:
                    z = sum(prior.op(fit.setting, n) for n in cands)
                    for n in cands:
                        o_counts[fit.setting.name][n] += post * prior.op(fit.setting, n) / z
        fields = {
            "group_settings": {g: _smoothed(s_counts[g], settings) for g in GROUPS},
            "operations": {s: _smoothed(o_counts[s], names) for s in settings},
        }
    totals = Counter()
    for g in GROUPS:
        for s in settings:
            totals[s] += fields["group_settings"][g][s] * sum(1 for _, grp, _ in rows if grp == g)
    fields["settings"] = _normalise(dict(totals))
    return fields


def _twists(rows: list, prior: Prior) -> dict[str, float]:
    """P(twist) per context, over rows where every operator has one consistent operation
    (the answer counted as an example, so a guess row's query operator is among them):
    a row with an ambiguous operator would blur its neighbours' contexts."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for _, group, found in rows:
        for fit, post in _posteriors(found, group, prior):
            if any(len(cands) != 1 for _, cands in fit.candidates):
                continue
            for symbol, cands in fit.candidates:
                state = "plain" if BY_NAME[cands[0]].plain else "twist"
                (context,) = twist_contexts(fit, symbol, prior, group, len(fit.candidates))
                counts[context][state] += post
                counts[twist_class(group, fit.setting)][state] += post
    return {
        ctx: round((c["twist"] + SMOOTHING) / (c["twist"] + c["plain"] + 2 * SMOOTHING), 6)
        for ctx, c in sorted(counts.items())
    }


def _kinds(rows: list, prior: Prior) -> dict[str, dict[str, float]]:
    """P(family | symbol class) of shown operators (what the generator draws them from)."""
    kinds: dict[str, Counter] = defaultdict(Counter)
    for _, group, found in rows:
        for fit, post in _posteriors(found, group, prior):
            for symbol, cands in fit.candidates:
                z = sum(prior.op(fit.setting, n) for n in cands)
                for n in cands:
                    cls = symbol_class(symbol, group)
                    kinds[cls][BY_NAME[n].kind] += post * prior.op(fit.setting, n) / z
    return {c: _smoothed(kinds[c], list(KINDS)) for c in CLASSES}


def _family_sets(rows: list, prior: Prior) -> dict[str, float]:
    """P(the families of a row's three operators), over rows that show three (the answer
    counted as an example, so a guess row's query operator is among them); every
    multiset of three families is smoothed, so a set dev never shows stays possible."""
    counts: Counter = Counter()
    for _, group, found in rows:
        for fit, post in _posteriors(found, group, prior):
            if len(fit.candidates) != 3:
                continue
            combos = list(itertools.product(*(names for _, names in fit.candidates)))
            weights = [math.prod(prior.op(fit.setting, n) for n in combo) for combo in combos]
            total = sum(weights)
            for combo, weight in zip(combos, weights):
                key = "+".join(sorted(BY_NAME[n].kind for n in combo))
                counts[key] += post * weight / total
    keys = ["+".join(c) for c in itertools.combinations_with_replacement(sorted(KINDS), 3)]
    return _normalise({k: counts[k] + SMOOTHING for k in keys})


def _unseen(guess_rows: list[tuple[EquationPrompt, str]], prior: Prior) -> dict[str, float]:
    """The factor on concatenation for an unseen operator: raised or lowered until the
    hypotheses expect as many concatenations over the guess rows as their answers show
    (each row counts the families of the hypotheses that give its answer), plus
    UNSEEN_PSEUDO on both sides. One factor only: fitting all four families lowered
    the five-fold guess accuracy on dev (58.4 rows against 60.8, five seeds)."""
    factor = 1.0
    for _ in range(UNSEEN_ITERATIONS):
        current = replace(prior, unseen={"cat": factor})
        chosen = expected = 0.0
        for puzzle, answer in guess_rows:
            hyps = hypotheses(puzzle, current)
            good = [h for h in hyps if h.answer == answer]
            total = sum(h.weight for h in good)
            if not good or total <= 0:
                continue
            chosen += sum(h.weight for h in good if BY_NAME[h.operation].kind == "cat") / total
            expected += sum(h.weight for h in hyps if BY_NAME[h.operation].kind == "cat")
        factor *= (chosen + UNSEEN_PSEUDO) / (expected + UNSEEN_PSEUDO)
    return {"cat": round(factor, 6)}


def fit_prior(puzzles: list[EquationPrompt], answers: list[str | None]) -> dict[str, Any]:
    """The prior's fields (see equation_numeric.Prior) from parsed numeric puzzles and
    their answers (None where unknown)."""
    rows = [
        (p, symbol_group(puzzle_symbols(p)), _fits_with_answer(p, a))
        for p, a in zip(puzzles, answers)
    ]
    rows = [r for r in rows if r[2]]
    fields = _em(rows)
    fields["kinds"] = _kinds(rows, _prior(fields))
    fields["twists"] = _twists(rows, _prior(fields))
    fields["family_sets"] = _family_sets(rows, _prior(fields))
    guess_rows = [(p, a) for p, a in zip(puzzles, answers) if a is not None and not p.query_seen]
    fields["unseen"] = _unseen(guess_rows, _prior(fields))
    symbols: dict[str, Counter] = defaultdict(Counter)
    for p, group, _ in rows:
        symbols[group].update(puzzle_symbols(p))
    fields["group_symbols"] = {g: _normalise(dict(sorted(symbols[g].items()))) for g in GROUPS}
    fields["group_share"] = _normalise(
        {g: sum(1 for _, grp, _ in rows if grp == g) + SMOOTHING for g in GROUPS}
    )
    fields["examples"] = _normalise(
        dict(sorted(Counter(str(len(p.examples)) for p, _, _ in rows).items()))
    )
    return fields


def evaluate(puzzles: list[EquationPrompt], answers: list[str], prior: Prior) -> dict[str, Any]:
    """Correct/total by subtype (metric.is_correct), unsolved reasons, trace lengths, seconds."""
    start = time.perf_counter()
    scores: Counter = Counter()
    unsolved: Counter = Counter()
    ambiguous: Counter = Counter()  # deduce rows whose hypotheses give several answers, by correct
    lengths = []
    for puzzle, answer in zip(puzzles, answers):
        subtype = "deduce" if puzzle.query_seen else "guess"
        result = solve(puzzle, prior)
        if isinstance(result, Unsolved):
            unsolved[result.reason.split(" (")[0]] += 1
            scores[subtype, False] += 1
            continue
        right = is_correct(answer, result.answer)
        scores[subtype, right] += 1
        if subtype == "deduce" and len({h.answer for h in hypotheses(puzzle, prior)}) > 1:
            ambiguous[right] += 1
        lengths.append(len(render(result)))
    lengths.sort()
    return {
        "correct": {
            t: (scores[t, True], scores[t, True] + scores[t, False]) for t in ("deduce", "guess")
        },
        "unsolved": dict(unsolved),
        "ambiguous_deduce": (ambiguous[True], ambiguous[True] + ambiguous[False]),
        "trace_chars": {
            q: lengths[min(len(lengths) - 1, int(q / 100 * len(lengths)))] for q in (50, 95, 100)
        }
        if lengths
        else {},
        "seconds": round(time.perf_counter() - start, 2),
    }


def cross_validate(
    puzzles: list[EquationPrompt], answers: list[str], folds: int, seed: int = 0
) -> dict:
    """Correct/total by subtype when each fold is solved with a prior fitted on the others."""
    order = list(range(len(puzzles)))
    random.Random(seed).shuffle(order)
    totals: Counter = Counter()
    for k in range(folds):
        held = set(order[k::folds])
        train = [i for i in order if i not in held]
        prior = Prior.from_json(fit_prior([puzzles[i] for i in train], [answers[i] for i in train]))
        result = evaluate([puzzles[i] for i in held], [answers[i] for i in held], prior)
        for subtype, (right, total) in result["correct"].items():
            totals[subtype, "right"] += right
            totals[subtype, "total"] += total
    return {t: (totals[t, "right"], totals[t, "total"]) for t in ("deduce", "guess")}


def _print_scores(label: str, correct: dict) -> None:
    for subtype, (right, total) in correct.items():
        print(f"{label} {subtype}: {right}/{total} = {right / max(total, 1):.1%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="a CSV with id,prompt[,answer] (e.g. train_dev.csv)")
    parser.add_argument("--out", type=Path, default=PRIOR_PATH, help="where to write the JSON")
    parser.add_argument(
        "--report",
        action="store_true",
        help="write nothing; score the shipped prior on the CSV (needs answers) and cross-validate",
    )
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds for --report")
    parser.add_argument(
        "--seeds",
        type=int,
        default=5,
        help="cross-validate with fold deals 0..N-1 and report each and the spread",
    )
    args = parser.parse_args(argv)
    puzzles, answers = [], []
    for row in read_rows(args.csv, required=("id", "prompt")):
        if classify(row["prompt"]).family != "equation_numeric":
            continue
        try:
            puzzles.append(parse(row["prompt"]))
        except PuzzleFormatError as err:
            print(f"skipping {row['id']}: {err}", file=sys.stderr)
            continue
        answers.append(row.get("answer") or None)
    if args.report:
        if any(a is None for a in answers):
            parser.error("--report needs an answer column")
        result = evaluate(puzzles, answers, load_prior())
        _print_scores("shipped prior (in-sample)", result["correct"])
        print(f"unsolved: {result['unsolved'] or 'none'}")
        right, total = result["ambiguous_deduce"]
        print(
            f"deduce rows with several answers among consistent hypotheses: {total} ({right} right)"
        )
        print(
            f"trace chars p50/p95/max: {result['trace_chars']}; solve+render {result['seconds']} s"
        )
        runs = [cross_validate(puzzles, answers, args.folds, seed) for seed in range(args.seeds)]
        for seed, run in enumerate(runs):
            _print_scores(f"{args.folds}-fold cross-validation (seed {seed})", run)
        for subtype in ("deduce", "guess"):
            rights = [run[subtype][0] for run in runs]
            total = runs[0][subtype][1]
            mean = sum(rights) / len(rights)
            print(
                f"{args.folds}-fold, {args.seeds} seeds, {subtype}: mean {mean:.1f}/{total} = "
                f"{mean / total:.1%}, range {min(rights)}-{max(rights)} "
                f"({min(rights) / total:.1%}-{max(rights) / total:.1%})"
            )
        return 0
    prior = {
        "source": f"scripts/fit_equation_prior.py on {args.csv.name} ({len(puzzles)} numeric rows)",
        **fit_prior(puzzles, answers),
    }
    with atomic_write(args.out) as f:  # the shipped prior is never left half-written
        f.write(json.dumps(prior, indent=1) + "\n")
    print(f"wrote {args.out} from {len(puzzles)} numeric equation rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
