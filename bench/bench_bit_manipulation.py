"""Bit-manipulation benchmark: speed, accuracy, ambiguity and trace lengths.

    python bench/bench_bit_manipulation.py /work/shared/data/train_dev.csv [--tokenizer DIR] [--notation hex] [--style explicit]
    python bench/bench_bit_manipulation.py --generate 500             # N generated puzzles

Single process on purpose: this is the per-row cost the lead's `--workers` divides.
Prints rows/s and total seconds of parse+solve (render timed apart), correct/total by
the competition metric when answers are known, how many rows were ambiguous (several
rules fit and disagree on the query) or unsolved and why, and the distribution of
trace lengths in characters and in the tokens the model generates (trace, </think>, the
boxed answer, <|im_end|>): exact with the real tokenizer, estimated without the ML extras,
with how many would not fit the scorer's limits.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter

from reasonlab.competition import user_message
from reasonlab.formats.csvio import read_rows
from reasonlab.formats.token_counts import TokenCounter
from reasonlab.metric import extract_answer, is_correct
from reasonlab.puzzles.base import Solution
from reasonlab.puzzles.bits import family as bits
from reasonlab.puzzles.registry import classify


def _percentiles(values: list[int]) -> str:
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]
    return (
        f"p50 {pick(0.5)}  p95 {pick(0.95)}  max {values[-1]}  mean {statistics.fmean(values):.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "data", nargs="?", help="competition CSV (id,prompt[,answer]); bit rows are used"
    )
    parser.add_argument(
        "--generate", type=int, default=1000, help="without DATA: puzzles to generate"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tokenizer", help="a tokenizer folder to count with (default: the real Nemotron one)"
    )
    parser.add_argument("--notation", choices=("bin", "hex"), default="bin")
    parser.add_argument("--style", choices=tuple(bits.TRACE_STYLES), default="compact")
    args = parser.parse_args()
    if args.data:
        rows = [
            r
            for r in read_rows(args.data, required=("id", "prompt"))
            if classify(r["prompt"]).family == bits.NAME
        ]
    else:
        rng = random.Random(args.seed)
        rows = []
        for i in range(args.generate):
            g = bits.generate(rng)
            rows.append({"id": f"gen{i}", "prompt": g.prompt, "answer": g.answer})

    start = time.perf_counter()
    results = [bits.solve(bits.parse(r["prompt"])) for r in rows]
    seconds = time.perf_counter() - start
    print(
        f"rows {len(rows)}  solve {seconds:.2f} s  {len(rows) / seconds:.0f} rows/s (single process)"
    )

    solved = [(r, s) for r, s in zip(rows, results) if isinstance(s, Solution)]
    unsolved = Counter(s.reason for s in results if not isinstance(s, Solution))
    ambiguous = sum(1 for _, s in solved if s.ambiguous)
    several = sum(1 for _, s in solved if s.candidates > 1)
    print(
        f"rows where several distinct rules fit: {several} (they disagree on the query in {ambiguous})"
    )
    fallback = sum(1 for _, s in solved if any(n.startswith("fallback") for n in s.notes))
    print(
        f"solved {len(solved)}  unsolved {sum(unsolved.values())}  ambiguous {ambiguous}  fallback {fallback}"
    )
    for reason, n in unsolved.most_common():
        print(f"  unsolved x{n}: {reason}")
    if all(r.get("answer") for r in rows):
        correct = sum(1 for r, s in solved if is_correct(r["answer"], s.answer))
        amb_correct = sum(1 for r, s in solved if s.ambiguous and is_correct(r["answer"], s.answer))
        print(
            f"correct {correct}/{len(rows)} = {100 * correct / len(rows):.2f}%  (ambiguous rows: {amb_correct}/{ambiguous})"
        )

    options = bits.RenderOptions(notation=args.notation, style=args.style)
    start = time.perf_counter()
    traces = [bits.render(s, options) for _, s in solved]
    print(
        f"render {time.perf_counter() - start:.2f} s  notation {args.notation}  style {args.style}"
    )
    broken = sum(1 for t, (_, s) in zip(traces, solved) if extract_answer(t) != s.answer)
    print(
        f"trace chars: {_percentiles([len(t) for t in traces])}  (boxed answer != solver answer: {broken})"
    )
    counter = TokenCounter.load(args.tokenizer)  # the real tokenizer unless told otherwise
    lengths = counter.lengths([(user_message(r["prompt"]), t) for t, (r, _) in zip(traces, solved)])
    print(f"generated {counter.describe()}: {_percentiles([n.generated for n in lengths])}")
    over = sum(not n.fits() for n in lengths)
    print(f"completions over the scorer's limits: {over}")


if __name__ == "__main__":
    main()
