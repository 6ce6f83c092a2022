"""Commands on competition data: classify, solve, score, generate (traces, dataset, audit below)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reasonlab.cli.common import console, fail, progress_bar, user_errors

__all__ = ["register"]

Workers = Annotated[
    int,
    typer.Option("--workers", "-w", min=1, help="Processes to solve with (1 = in this process)."),
]


def classify(
    data: Annotated[Path, typer.Argument(help="Competition CSV with at least id,prompt.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write id,family,subtype here.")
    ] = None,
) -> None:
    """Name the puzzle family of every row (and deduce/guess for equations); print counts."""
    from reasonlab.dataset.csvio import read_rows, write_rows
    from reasonlab.puzzles.registry import classify as classify_prompt

    with user_errors():
        rows = read_rows(data, required=("id", "prompt"))
    labels = [{"id": row["id"], **asdict(classify_prompt(row["prompt"]))} for row in rows]
    counts = Counter((label["family"], label["subtype"]) for label in labels)
    table = Table(title=f"{data.name}: {len(rows)} rows")
    for column in ("family", "subtype", "rows", "share"):
        table.add_column(
            column, justify="right" if column in ("rows", "share") else "left", no_wrap=True
        )
    for (family, subtype), count in sorted(counts.items()):
        table.add_row(family, subtype, str(count), f"{count / len(rows):.1%}")
    console.print(table)
    if output:
        write_rows(output, labels, ("id", "family", "subtype"))
        console.print(f"wrote {output}")


def solve(
    data: Annotated[Path, typer.Argument(help="Competition CSV (id,prompt[,answer]).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Predictions CSV to write.")],
    workers: Workers = 1,
) -> None:
    """Run every family's deterministic solver; write id,answer,family,status,... per row.

    With an `answer` column in DATA, also prints correct/total per family by the metric.
    """
    from reasonlab.dataset.csvio import read_rows, write_rows
    from reasonlab.pipeline.solve import PREDICTION_COLUMNS, solve_rows

    with user_errors():
        rows = read_rows(data, required=("id", "prompt"))
    with progress_bar(len(rows), "solving") as advance:
        solved = solve_rows(rows, workers=workers, on_progress=advance)
    write_rows(output, (s.as_prediction() for s in solved), PREDICTION_COLUMNS)
    console.print(_solve_table(rows, solved, data.name))
    console.print(f"wrote {output}")


def _solve_table(rows: list[dict[str, str]], solved: list, title: str) -> Table:
    from reasonlab.metric import is_correct
    from reasonlab.pipeline.score import group_labels

    has_gold = "answer" in rows[0]
    tally: dict[str, Counter] = {}
    for row, result in zip(rows, solved):
        for label in group_labels(result.family, result.subtype):
            counts = tally.setdefault(label, Counter())
            counts["total"] += 1
            counts[result.status] += 1
            counts["ambiguous"] += result.ambiguous
            if has_gold and result.answer and is_correct(row["answer"], result.answer):
                counts["correct"] += 1
    table = Table(title=f"{title}: solver results")
    columns = ["family", "rows", "solved", "ambiguous", "unsolved", "no_solver", "error"]
    columns += ["correct", "accuracy"] if has_gold else []
    for column in columns:
        table.add_column(column, justify="left" if column == "family" else "right", no_wrap=True)
    for label in sorted(tally):
        c = tally[label]
        cells = [c["total"], c["solved"], c["ambiguous"], c["unsolved"], c["no_solver"], c["error"]]
        cells += [c["correct"], f"{c['correct'] / c['total']:.1%}"] if has_gold else []
        table.add_row(label, *map(str, cells))
    return table


def score(
    predictions: Annotated[
        Path, typer.Argument(help="CSV with id and answer (extracted) or output (raw text).")
    ],
    gold: Annotated[Path, typer.Option("--gold", help="Gold CSV with id,prompt,answer.")],
    per_row: Annotated[
        Path | None, typer.Option("--per-row", help="Write id,family,extracted,gold,correct.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the summary as JSON.")
    ] = None,
) -> None:
    """Score predictions exactly as the competition does; per-family accuracy table."""
    import json

    from reasonlab.dataset.csvio import atomic_write
    from reasonlab.pipeline.score import score_files

    with user_errors():
        report = score_files(predictions, gold, per_row)
    table = Table(title=f"{predictions.name} vs {gold.name}")
    for column in ("family", "correct", "total", "accuracy"):
        table.add_column(column, justify="left" if column == "family" else "right", no_wrap=True)
    for group in report.groups():
        table.add_row(group.label, str(group.correct), str(group.total), f"{group.accuracy:.2%}")
    total = len(report.rows)
    table.add_row(
        "[bold]all",
        str(sum(r.correct for r in report.rows)),
        str(total),
        f"[bold]{report.accuracy:.2%}",
    )
    console.print(table)
    if report.missing_ids:
        shown = ", ".join(report.missing_ids[:10])
        console.print(
            f"[yellow]{len(report.missing_ids)} gold id(s) had no prediction (counted wrong): {shown}"
        )
    if json_out:
        summary = {
            "accuracy": report.accuracy,
            "rows": total,
            "missing": report.missing_ids,
            "groups": {
                g.label: {"correct": g.correct, "total": g.total, "accuracy": g.accuracy}
                for g in report.groups()
            },
        }
        with atomic_write(json_out) as f:
            json.dump(summary, f, indent=2)


def generate(
    family: Annotated[str, typer.Option("--family", "-f", help="A family name, or 'all'.")],
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="Puzzles per family.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="CSV to write (id,prompt,answer,family,subtype).")
    ],
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 0,
    subtype: Annotated[
        str | None, typer.Option(help="deduce or guess (equation families only).")
    ] = None,
) -> None:
    """Generate fresh puzzles with exact answers in the competition's wording."""
    from reasonlab.dataset.csvio import write_rows
    from reasonlab.pipeline.generate import GENERATED_COLUMNS, generate_mixed, generate_rows
    from reasonlab.puzzles.registry import FAMILIES

    if family != "all" and family not in FAMILIES:
        raise fail(f"unknown family {family!r}; choose one of: all, {', '.join(FAMILIES)}")
    total = n * (len(FAMILIES) if family == "all" else 1)
    with user_errors(ValueError), progress_bar(total, f"generating {family}") as advance:
        if family == "all":
            rows = generate_mixed(n, seed, on_progress=advance)
        else:
            rows = generate_rows(family, n, seed, subtype, on_progress=advance)
    write_rows(output, rows, GENERATED_COLUMNS)
    console.print(f"wrote {len(rows)} puzzles to {output}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    for command in (classify, solve, score, generate):
        app.command()(command)
