"""Run the right solver on every row of a dataset, in parallel, never stopping on one row.

Each row becomes a `SolvedRow`: the answer, one status of `STATUSES` (they exclude each
other) and a detail saying why or how sure. With `render=True` the chain-of-thought trace
comes back too, so `traces` reuses this loop instead of repeating it; `styles` picks, per
family, one of the trace styles the family offers (`offered_styles`; default `compact`).

With `workers` > 1 the rows go to a process pool whose workers ignore SIGINT: Ctrl-C
reaches the parent alone, which terminates every worker before the KeyboardInterrupt
goes on (a run is never left half-alive, and nothing is written).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from reasonlab.puzzles.base import PuzzleFormatError, Solution
from reasonlab.puzzles.registry import UNKNOWN, classify, family_module

__all__ = [
    "ANSWERED",
    "PREDICTION_COLUMNS",
    "SOLUTION_STATUSES",
    "STATUSES",
    "SolvedRow",
    "offered_styles",
    "solve_one",
    "solve_rows",
]

PREDICTION_COLUMNS = ("id", "answer", "family", "status", "subtype", "detail")
# Every row has exactly one status; the answer column is filled for the first three.
STATUSES = {
    "solved": "every rule that fits the examples gives the answer",
    "ambiguous": "fitting rules disagree, a tie-break chose the answer",
    "guessed": "no rule justifies an answer, a best guess is given",
    "unsolved": "no answer",
    "no_solver": "no family recognises the prompt, or it has no solver",
    "error": "the solver failed (a bug, the detail says where)",
}
SOLUTION_STATUSES = ("solved", "ambiguous")  # a rule was found: these rows have a trace
ANSWERED = ("solved", "ambiguous", "guessed")
_CHUNK = 32  # rows per task sent to a worker: large enough to amortise pickling


@dataclass(frozen=True)
class SolvedRow:
    id: str
    family: str
    subtype: str
    answer: str  # empty exactly when the status is not in ANSWERED
    status: str  # one of STATUSES
    detail: str = ""  # the reason when unsolved, ambiguity or trace notes when solved
    ambiguous: bool = False
    alternatives: tuple[str, ...] = ()
    candidates: int = 1  # distinct rules that fit every example (a Solution's)
    agreeing: int = 1  # how many of them give `answer`
    trace: str | None = None  # the rendered chain of thought (render=True only)
    trace_complete: bool = True

    def as_prediction(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in PREDICTION_COLUMNS}


def _solution_detail(solution: Solution) -> str:
    parts = []
    if solution.candidates > 1:
        parts.append(f"{solution.agreeing}/{solution.candidates} consistent rules give this answer")
    if not solution.trace_complete:
        parts.append("trace incomplete")
    parts.extend(solution.notes)
    return "; ".join(parts)


def offered_styles(family: str) -> tuple[str, ...]:
    """The trace styles a family's `render` offers: `compact` always, and any named in the
    module's TRACE_STYLES (style name -> the render options that write it)."""
    return (
        "compact",
        *(s for s in getattr(family_module(family), "TRACE_STYLES", {}) if s != "compact"),
    )


def solve_one(
    row_id: str, prompt: str, render: bool = False, styles: Mapping[str, str] | None = None
) -> SolvedRow:
    """Classify, parse, solve (and render, in the family's style) one prompt; every
    failure becomes a status."""
    kind = classify(prompt)
    if kind.family == UNKNOWN:
        return SolvedRow(row_id, UNKNOWN, "", "", "no_solver", "no family recognises this prompt")
    try:
        module = family_module(kind.family)
    except ModuleNotFoundError:
        return SolvedRow(
            row_id, kind.family, kind.subtype, "", "no_solver", f"no solver for {kind.family} yet"
        )
    try:
        outcome = module.solve(module.parse(prompt))
        if not isinstance(outcome, Solution):
            status = "guessed" if outcome.partial else "unsolved"
            answer = outcome.partial or ""
            return SolvedRow(row_id, kind.family, kind.subtype, answer, status, outcome.reason)
        style = (styles or {}).get(kind.family, "compact")
        if not render:
            trace = None
        elif style == "compact":
            trace = module.render(outcome)
        else:
            trace = module.render(outcome, module.TRACE_STYLES[style])
    except PuzzleFormatError as err:
        return SolvedRow(
            row_id, kind.family, kind.subtype, "", "unsolved", f"malformed prompt: {err}"
        )
    except Exception as err:  # noqa: BLE001 -- one row's bug must not stop a 10,000-row run
        where = traceback.extract_tb(err.__traceback__)[-1]
        reason = f"{type(err).__name__}: {err} ({os.path.basename(where.filename)}:{where.lineno})"
        return SolvedRow(row_id, kind.family, kind.subtype, "", "error", reason)
    return SolvedRow(
        row_id,
        kind.family,
        kind.subtype,
        outcome.answer,
        "ambiguous" if outcome.ambiguous else "solved",
        _solution_detail(outcome),
        ambiguous=outcome.ambiguous,
        alternatives=tuple(outcome.alternatives),
        candidates=outcome.candidates,
        agreeing=outcome.agreeing,
        trace=trace,
        trace_complete=outcome.trace_complete,
    )


def _solve_chunk(
    chunk: list[tuple[str, str]], render: bool, styles: Mapping[str, str] | None
) -> list[SolvedRow]:
    return [solve_one(row_id, prompt, render, styles) for row_id, prompt in chunk]


def _solve_chunk_star(
    task: tuple[list[tuple[str, str]], bool, Mapping[str, str] | None],
) -> list[SolvedRow]:
    return _solve_chunk(*task)


def _ignore_sigint() -> None:
    # Ctrl-C signals the whole foreground process group; only the parent should act on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def solve_rows(
    rows: Sequence[dict[str, str]],
    workers: int = 1,
    render: bool = False,
    on_progress: Callable[[int], None] | None = None,
    styles: Mapping[str, str] | None = None,
) -> list[SolvedRow]:
    """Solve every row (`id`, `prompt`), in input order; `workers` > 1 uses processes."""
    items = [(row["id"], row["prompt"]) for row in rows]
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    results: list[SolvedRow] = []
    if workers <= 1:
        for chunk in chunks:
            results.extend(_solve_chunk(chunk, render, styles))
            if on_progress:
                on_progress(len(chunk))
        return results
    # multiprocessing.Pool, not ProcessPoolExecutor: terminate() stops busy workers at once,
    # where an executor's shutdown waits for them and can hang after cancelled futures
    # (python/cpython#94440, #125886: seen here as InvalidStateError CANCELLED on Ctrl-C).
    pool = multiprocessing.Pool(min(workers, len(chunks) or 1), initializer=_ignore_sigint)
    try:
        for chunk_result in pool.imap(_solve_chunk_star, [(c, render, styles) for c in chunks]):
            results.extend(chunk_result)
            if on_progress:
                on_progress(len(chunk_result))
    except BaseException:  # Ctrl-C, or a failure in on_progress: no worker outlives it
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()
    return results
