"""The data stage's commands: classify, solve, score, generate, audit, traces, dataset build, distill."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reasonlab.cli.common import console, fail, progress_bar, user_errors
from reasonlab.competition import MAX_NEW_TOKENS

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
    from reasonlab.formats.csvio import read_rows, write_rows
    from reasonlab.formats.files import check_outputs
    from reasonlab.puzzles.registry import classify as classify_prompt

    with user_errors():
        check_outputs([output], inputs=[data])
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
        with user_errors():
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
    from reasonlab.data.solve import PREDICTION_COLUMNS, solve_rows
    from reasonlab.formats.csvio import read_rows, write_rows
    from reasonlab.formats.files import check_outputs

    with user_errors():
        check_outputs([output], inputs=[data])
        rows = read_rows(data, required=("id", "prompt"))
    with progress_bar(len(rows), "solving") as advance:
        solved = solve_rows(rows, workers=workers, on_progress=advance)
    with user_errors():
        write_rows(output, (s.as_prediction() for s in solved), PREDICTION_COLUMNS)
    console.print(_solve_table(rows, solved, data.name))
    console.print(f"wrote {output}")


def _solve_table(rows: list[dict[str, str]], solved: list, title: str) -> Table:
    from reasonlab.data.score import group_labels
    from reasonlab.data.solve import ANSWERED, STATUSES
    from reasonlab.metric import is_correct

    has_gold = "answer" in rows[0]
    tally: dict[str, Counter] = {}
    for row, result in zip(rows, solved):
        for label in group_labels(result.family, result.subtype):
            counts = tally.setdefault(label, Counter())
            counts["total"] += 1
            counts[result.status] += 1
            if has_gold and result.answer and is_correct(row["answer"], result.answer):
                counts["correct"] += 1
    # Each row has one status, so the status columns add up to `rows`.
    caption = "; ".join(f"{status}: {meaning}" for status, meaning in STATUSES.items())
    if has_gold:
        caption += f". correct: right answers among {' + '.join(ANSWERED)}, of all rows"
    table = Table(title=f"{title}: solver results", caption=caption)
    columns = ["family", "rows", *STATUSES]
    columns += ["correct", "accuracy"] if has_gold else []
    for column in columns:
        table.add_column(column, justify="left" if column == "family" else "right", no_wrap=True)
    for label in sorted(tally):
        c = tally[label]
        cells = [c["total"], *(c[status] for status in STATUSES)]
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

    from reasonlab.data.score import score_files
    from reasonlab.formats.files import atomic_write, check_outputs

    with user_errors():
        check_outputs([per_row, json_out], inputs=[predictions, gold])
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
        with user_errors(), atomic_write(json_out) as f:
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
    from reasonlab.data.generate import GENERATED_COLUMNS, generate_mixed, generate_rows
    from reasonlab.formats.csvio import write_rows
    from reasonlab.formats.files import check_outputs
    from reasonlab.puzzles.registry import FAMILIES

    if family != "all" and family not in FAMILIES:
        raise fail(f"unknown family {family!r}; choose one of: all, {', '.join(FAMILIES)}")
    total = n * (len(FAMILIES) if family == "all" else 1)
    with user_errors(ValueError):
        check_outputs([output])
        with progress_bar(total, f"generating {family}") as advance:
            if family == "all":
                rows = generate_mixed(n, seed, on_progress=advance)
            else:
                rows = generate_rows(family, n, seed, subtype, on_progress=advance)
        write_rows(output, rows, GENERATED_COLUMNS)
    console.print(f"wrote {len(rows)} puzzles to {output}")


def _trace_table(result, title: str) -> Table:
    """Per family: rows, answers, kept, every drop by its reason, kept lengths (see traces.DROP_REASONS)."""
    from reasonlab.data.traces import DROP_REASONS, TraceStats

    caption = f"p50/p95/max: {result.counting} the model generates per kept row"
    caption += " (trace, </think>, boxed answer, <|im_end|>)"
    if not result.has_gold:
        caption += "; no gold answers in the data: 'right' and 'wrong' cannot be checked"
    incomplete = sum(s.counts["kept_incomplete"] for s in result.stats.values())
    if incomplete:
        caption += f"; {incomplete} kept traces are incomplete (--allow-incomplete)"
    table = Table(title=title, caption=caption)
    columns = ["family", "rows", "answered", "solver right", "kept"]
    columns += [f"dropped:\n{reason.replace('_', ' ')}" for reason in DROP_REASONS]
    columns += ["p50", "p95", "max"]
    for column in columns:
        table.add_column(column, justify="left" if column == "family" else "right")
    total = TraceStats()
    for family, stats in sorted(result.stats.items()):
        total.counts.update(stats.counts)
        total.tokens.extend(stats.tokens)
    named = sorted(result.stats.items()) + [("[bold]all", total)]
    for family, stats in named:
        s = stats.summary()
        right, dropped = s["solver_right"], dict(s["dropped"])
        if not result.has_gold:
            right = dropped["wrong"] = "-"
        cells = [s["rows"], s["answered"], right, s["kept"], *dropped.values()]
        table.add_row(family, *map(str, cells + list(s["tokens"].values())))
    return table


def traces(
    data: Annotated[Path, typer.Argument(help="CSV with id,prompt and, ideally, answer (gold).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="SFT JSONL to write.")],
    tokenizer: Annotated[
        Path | None,
        typer.Option(
            help="Tokenizer folder to count with; default: the real Nemotron tokenizer "
            "(rebuilt once and cached, see `reasonlab tokenizer`), or an estimate without it."
        ),
    ] = None,
    max_new_tokens: Annotated[
        int,
        typer.Option(
            min=1, max=MAX_NEW_TOKENS, help="Drop traces whose generation is longer than this."
        ),
    ] = MAX_NEW_TOKENS,
    allow_incomplete: Annotated[
        bool, typer.Option(help="Keep traces that skip part of a search.")
    ] = False,
    workers: Workers = 1,
) -> None:
    """Render solver steps as chain-of-thought SFT rows; keep only right answers within budget.

    A row is kept when the solver's answer is right (when DATA has answers), the trace
    shows the whole derivation, and what the model generates fits the scorer's limits:
    at most --max-new-tokens, and prompt + generation at most 8,192 tokens.
    """
    from reasonlab.data.traces import build_traces
    from reasonlab.formats.csvio import read_rows
    from reasonlab.formats.files import check_outputs
    from reasonlab.formats.jsonl import write_jsonl
    from reasonlab.formats.token_counts import TokenCounter

    with user_errors(OSError):
        check_outputs([output], inputs=[data])
        counter = TokenCounter.load(tokenizer)
        rows = read_rows(data, required=("id", "prompt"))
        with progress_bar(len(rows), "solving and rendering") as advance:
            result = build_traces(
                rows, counter, max_new_tokens, workers, allow_incomplete, on_progress=advance
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
    real: Annotated[
        list[Path] | None,
        typer.Option(
            "--real",
            help="Competition CSV (id,prompt,answer) to use instead of the recipe's `real` "
            "list (repeatable).",
        ),
    ] = None,
    workers: Workers = 1,
) -> None:
    """Mix real rows and generated puzzles, deduplicate, trace, shuffle; write JSONL + manifest.

    The recipe's `real` paths are relative to the recipe file; `--real` replaces them.
    """
    from reasonlab.data.build_dataset import build_dataset, manifest_path
    from reasonlab.data.dataset_recipe import load_recipe
    from reasonlab.formats.files import check_outputs, require_file

    with user_errors(OSError):
        loaded = load_recipe(recipe)
        if real:
            loaded = loaded.model_copy(update={"real": list(real)})
        for i, path in enumerate(loaded.real):  # before minutes of generating
            try:
                require_file(path, "CSV file")
            except FileNotFoundError as err:
                where = "--real" if real else f"{recipe}: real[{i}] (relative to the recipe)"
                raise fail(
                    f"{where}: {err}; give the competition's train.csv with --real"
                ) from None
        check_outputs([output, manifest_path(output)], inputs=[recipe, *loaded.real])
        with progress_bar(None, "building") as bar:
            result = build_dataset(
                loaded, output, workers=workers, on_progress=bar, on_stage=bar.stage
            )
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
    from reasonlab.data.audit import AUDIT_COLUMNS, audit_rows
    from reasonlab.formats.csvio import read_rows, write_rows
    from reasonlab.formats.files import check_outputs

    with user_errors():
        check_outputs([output], inputs=[data])
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
        line = f"  {finding.id} [{finding.family}] {finding.kind}: {finding.reason}"
        console.print(line, markup=False)  # [family] is text, not rich markup
    if output:
        with user_errors():
            write_rows(output, (asdict(f) for f in findings), AUDIT_COLUMNS)
        console.print(f"wrote {output}")


def distill(
    outputs: Annotated[Path, typer.Argument(help="A teacher's `reasonlab eval` outputs JSONL.")],
    gold: Annotated[Path, typer.Option("--gold", help="CSV with id,prompt,answer.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="SFT JSONL to write.")],
    keep: Annotated[
        str, typer.Option(help="shortest: one right output per id; all: every one.")
    ] = "shortest",
    max_new_tokens: Annotated[
        int,
        typer.Option(
            min=1, max=MAX_NEW_TOKENS, help="Drop outputs whose generation is longer than this."
        ),
    ] = MAX_NEW_TOKENS,
    tokenizer: Annotated[
        Path | None,
        typer.Option(help="Tokenizer folder to count with; default: the real Nemotron tokenizer."),
    ] = None,
) -> None:
    """Keep a teacher's right, complete generations as SFT rows (generate them with `eval --backend openai`).

    Lengths are what the student must generate (the output, </think>, the boxed answer,
    <|im_end|>) in the base model's tokens, not the teacher's.
    """
    from reasonlab.data.distill import distill as distill_outputs
    from reasonlab.formats.csvio import read_rows
    from reasonlab.formats.files import check_outputs
    from reasonlab.formats.jsonl import read_jsonl, write_jsonl
    from reasonlab.formats.token_counts import TokenCounter

    if keep not in ("shortest", "all"):
        raise fail(f"--keep must be 'shortest' or 'all', not {keep!r}")
    with user_errors(KeyError):
        check_outputs([output], inputs=[outputs, gold])
        result = distill_outputs(
            read_jsonl(outputs),
            read_rows(gold, required=("id", "prompt", "answer")),
            keep,  # type: ignore[arg-type]
            max_new_tokens,
            counter=TokenCounter.load(tokenizer),
        )
        write_jsonl(output, result.rows)
    c = result.counts
    console.print(
        f"{c['outputs']} outputs: {c['correct']} right, {c['truncated']} of those cut off, "
        f"{c['no_box']} without a box, {c['too_long']} over the budget ({max_new_tokens} "
        f"generated, 8,192 in all; {result.counting}); wrote {c['kept']} SFT rows to {output}"
    )


def register(app: typer.Typer) -> None:
    """Add the data stage's commands (and the `dataset` group) to the app."""
    for command in (classify, solve, score, generate, audit, traces, distill):
        app.command()(command)
    dataset = typer.Typer(help="Build SFT datasets from recipes.", no_args_is_help=True)
    dataset.command("build")(build)
    app.add_typer(dataset, name="dataset")
