"""Commands that make training data: traces, dataset build, audit."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reasonlab.cli.common import console, fail, progress_bar, user_errors

__all__ = ["register"]

Workers = Annotated[int, typer.Option("--workers", "-w", min=1, help="Processes to solve with.")]


def _trace_table(result, title: str) -> Table:
    unit = "tokens" if result.exact_tokens else "tokens (estimated: chars/3)"
    table = Table(title=title, caption=f"lengths in {unit} of the assistant turn")
    columns = (
        "family",
        "in",
        "solved",
        "correct",
        "kept",
        "dropped: length",
        "dropped: other",
        "p50",
        "p95",
        "max",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "family" else "right")
    for family in sorted(result.stats):
        s = result.stats[family]
        c = s.counts
        other = c["dropped_trace_answer"] + c["dropped_incomplete"]
        cells = (c["in"], c["solved"], c["correct"], c["kept"], c["dropped_length"], other)
        table.add_row(
            family,
            *map(str, cells),
            str(s.percentile(0.5)),
            str(s.percentile(0.95)),
            str(max(s.tokens, default=0)),
        )
    return table


def traces(
    data: Annotated[Path, typer.Argument(help="CSV with id,prompt and, ideally, answer (gold).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="SFT JSONL to write.")],
    tokenizer: Annotated[
        Path | None, typer.Option(help="Tokenizer folder for exact token counts.")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Drop traces longer than this.")] = 7680,
    allow_incomplete: Annotated[
        bool, typer.Option(help="Keep traces that skip part of a search.")
    ] = False,
    workers: Workers = 1,
) -> None:
    """Render solver steps as chain-of-thought SFT rows; keep only right answers within budget."""
    from reasonlab.dataset.csvio import read_rows
    from reasonlab.dataset.jsonl import write_jsonl
    from reasonlab.pipeline.traces import build_traces

    with user_errors(OSError):
        rows = read_rows(data, required=("id", "prompt"))
        with progress_bar(len(rows), "solving and rendering") as advance:
            result = build_traces(
                rows, tokenizer, max_new_tokens, workers, allow_incomplete, on_progress=advance
            )
    write_jsonl(output, result.rows)
    console.print(_trace_table(result, f"{data.name}: traces"))
    console.print(f"wrote {len(result.rows)} SFT rows to {output}")


def build(
    recipe: Annotated[
        Path, typer.Argument(help="Dataset recipe YAML (real CSVs, generated counts, seed).")
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="SFT JSONL to write (manifest beside it).")
    ],
    workers: Workers = 1,
) -> None:
    """Mix real rows and generated puzzles, deduplicate, trace, shuffle; write JSONL + manifest."""
    from reasonlab.dataset.recipe import load_recipe
    from reasonlab.pipeline.build_dataset import build_dataset, manifest_path

    with user_errors(OSError):
        loaded = load_recipe(recipe)
        with progress_bar(None, "building") as advance:
            result = build_dataset(loaded, output, workers=workers, on_progress=advance)
    console.print(_trace_table(result, f"{recipe.name}: dataset"))
    console.print(f"wrote {len(result.rows)} rows to {output} and {manifest_path(output)}")


def audit(
    data: Annotated[Path, typer.Argument(help="CSV with id,prompt,answer.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the flagged rows as CSV.")
    ] = None,
    workers: Workers = 1,
) -> None:
    """List rows no rule explains, and rows whose given answer no consistent rule gives."""
    from reasonlab.dataset.csvio import read_rows, write_rows
    from reasonlab.pipeline.audit import AUDIT_COLUMNS, audit_rows

    with user_errors():
        rows = read_rows(data, required=("id", "prompt", "answer"))
    with progress_bar(len(rows), "auditing") as advance:
        findings = audit_rows(rows, workers=workers, on_progress=advance)
    counts = Counter((f.family, f.kind) for f in findings)
    table = Table(title=f"{data.name}: {len(findings)} of {len(rows)} rows flagged")
    for column in ("family", "kind", "rows"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for (family, kind), count in sorted(counts.items()):
        table.add_row(family, kind, str(count))
    console.print(table)
    for finding in findings[:20]:
        console.print(f"  {finding.id} [{finding.family}] {finding.kind}: {finding.reason}")
    if output:
        write_rows(output, (asdict(f) for f in findings), AUDIT_COLUMNS)
        console.print(f"wrote {output}")


def distill(
    outputs: Annotated[Path, typer.Argument(help="A teacher's `reasonlab eval` outputs JSONL.")],
    gold: Annotated[Path, typer.Option("--gold", help="CSV with id,prompt,answer.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="SFT JSONL to write.")],
    keep: Annotated[
        str, typer.Option(help="shortest: one right output per id; all: every one.")
    ] = "shortest",
    max_new_tokens: Annotated[int, typer.Option(help="Drop outputs longer than this.")] = 7680,
) -> None:
    """Keep a teacher's right, complete generations as SFT rows (generate them with `eval --backend openai`)."""
    from reasonlab.dataset.csvio import read_rows
    from reasonlab.dataset.jsonl import read_jsonl, write_jsonl
    from reasonlab.pipeline.distill import distill as distill_outputs

    if keep not in ("shortest", "all"):
        raise fail(f"--keep must be 'shortest' or 'all', not {keep!r}")
    with user_errors(KeyError):
        result = distill_outputs(
            read_jsonl(outputs),
            read_rows(gold, required=("id", "prompt", "answer")),
            keep,
            max_new_tokens,
        )  # type: ignore[arg-type]
    write_jsonl(output, result.rows)
    c = result.counts
    console.print(
        f"{c['outputs']} outputs: {c['correct']} right, {c['truncated']} of those cut off, "
        f"{c['too_long']} over {max_new_tokens} tokens; wrote {c['kept']} SFT rows to {output}"
    )


def register(app: typer.Typer) -> None:
    """Add `traces`, `audit`, `distill` and the `dataset` group to the app."""
    app.command()(traces)
    app.command()(audit)
    app.command()(distill)
    dataset = typer.Typer(help="Build SFT datasets from recipes.", no_args_is_help=True)
    dataset.command("build")(build)
    app.add_typer(dataset, name="dataset")
