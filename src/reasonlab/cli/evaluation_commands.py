"""The evaluation stage's commands, measuring a model as the scorer does: eval, vote, report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reasonlab.cli.common import console, fail, text_or_file, user_errors

if TYPE_CHECKING:
    from reasonlab.evaluation.vote import VoteReport

__all__ = ["print_vote_table", "register"]


def print_vote_table(report: VoteReport, title: str = "Scored outputs") -> None:
    """One row per group: sample-0 accuracy, and with K > 1 pass@1, vote, pass@K, margin."""
    from rich.table import Table

    groups = report.groups()
    if not groups:
        console.print("[yellow]no outputs to score[/]")
        return
    k = groups[0].samples
    table = Table(title=title)
    for name in ("group", "rows", "K", "accuracy"):
        table.add_column(name, justify="left" if name == "group" else "right")
    if k > 1:
        for name in ("pass@1", "majority", f"pass@{k}", "margin"):
            table.add_column(name, justify="right")
    for g in groups:
        cells = [g.label, str(g.rows), str(g.samples), f"{g.accuracy:.1%}"]
        if k > 1:
            cells += [
                f"{g.pass_at_1:.1%}",
                f"{g.majority:.1%}",
                f"{g.pass_at_k:.1%}",
                f"{g.margin:.2f}",
            ]
        table.add_row(*cells, style="bold" if g.label == "all" else None)
    console.print(table)
    if report.missing:
        console.print(
            f"[yellow]{len(report.missing)} gold row(s) have no output yet[/] (not counted above)"
        )


def _write_rows_csv(report: VoteReport, path: Path) -> None:
    from reasonlab.formats.csvio import write_rows

    write_rows(
        path,
        (
            {
                "id": r.id,
                "family": r.family,
                "subtype": r.subtype,
                "gold": r.gold,
                "voted": r.vote.answer,
                "votes": r.vote.votes,
                "samples": r.samples,
                "correct_samples": sum(r.correct),
                "first_correct": int(r.first_correct),
                "vote_correct": int(r.vote_correct),
            }
            for r in report.rows
        ),
        (
            "id",
            "family",
            "subtype",
            "gold",
            "voted",
            "votes",
            "samples",
            "correct_samples",
            "first_correct",
            "vote_correct",
        ),
    )


def eval_command(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="CSV with id,prompt (and answer, to score)")],
    base: Annotated[
        str, typer.Option("--base", help="base model folder (its tokenizer renders the prompts)")
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="outputs JSONL (appended; a rerun resumes)")
    ],
    adapter: Annotated[
        Path | None, typer.Option("--adapter", help="PEFT LoRA adapter folder")
    ] = None,
    backend: Annotated[
        str,
        typer.Option("--backend", help="auto (vllm if installed, else hf) | hf | vllm | openai"),
    ] = "auto",
    samples: Annotated[int, typer.Option("--samples", "-k", help="samples per prompt (K)")] = 1,
    temperature: Annotated[
        float, typer.Option("--temperature", help="0 = greedy, as the scorer")
    ] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="scorer: 7680")] = 7680,
    max_model_len: Annotated[
        int, typer.Option("--max-model-len", help="prompt + output tokens; scorer: 8192")
    ] = 8192,
    limit: Annotated[int | None, typer.Option("--limit", help="only the first N rows")] = None,
    per_family: Annotated[
        int | None, typer.Option("--per-family", help="only the first N rows of each family")
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="hf: prompts per generate call")
    ] = 8,
    seed: Annotated[int, typer.Option("--seed", help="seeds sampling (temperature > 0)")] = 0,
    url: Annotated[
        str, typer.Option("--url", help="openai: server base URL")
    ] = "http://127.0.0.1:8000",
    served_model: Annotated[
        str | None, typer.Option("--served-model", help="openai: model name on the server")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="openai: requests in flight")
    ] = 16,
    api: Annotated[
        str,
        typer.Option(
            "--api",
            help="openai: completions (our rendered prompt, the scorer's bytes) | chat "
            "(messages; the server renders: hosted teachers)",
        ),
    ] = "completions",
    system_prompt: Annotated[
        str | None,
        typer.Option(
            "--system-prompt", help="a teacher's system prompt (text, or @FILE); default none"
        ),
    ] = None,
    instruction_template: Annotated[
        str | None,
        typer.Option(
            "--instruction-template",
            help="the user message, with {prompt} (the puzzle) and {answer} (gold) filled in "
            "(text, or @FILE); default: the scorer's (puzzle + its boxed-answer suffix)",
        ),
    ] = None,
    usd_per_mtok_in: Annotated[
        float, typer.Option("--usd-per-mtok-in", help="openai: your USD per 1M prompt tokens")
    ] = 0.0,
    usd_per_mtok_out: Annotated[
        float,
        typer.Option("--usd-per-mtok-out", help="openai: your USD per 1M completion tokens"),
    ] = 0.0,
    max_cost_usd: Annotated[
        float | None,
        typer.Option(
            "--max-cost-usd",
            help="openai: stop before this output file's spend (all runs) could exceed it; "
            "each request in flight counts at its worst case (prompt + max tokens)",
        ),
    ] = None,
    only_missing: Annotated[
        bool,
        typer.Option(
            "--only-missing",
            help="sample only rows without a right, complete, in-budget output in -o "
            "(K more per pass, passes until covered or --max-samples-per-row)",
        ),
    ] = False,
    max_samples_per_row: Annotated[
        int | None,
        typer.Option(
            "--max-samples-per-row", help="with --only-missing: samples per row at most (default K)"
        ),
    ] = None,
    covered_by: Annotated[
        Path | None,
        typer.Option(
            "--covered-by",
            help="with --only-missing: rows whose puzzle this SFT JSONL holds (e.g. the solver "
            "traces) count as covered",
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="YAML/JSON of EvalConfig fields; flags override it"),
    ] = None,
) -> None:
    """Generate with the scorer's prompt and decoding, append one JSON line per (id, sample), score."""
    from reasonlab.evaluation.backends import BackendError
    from reasonlab.evaluation.evaluate import (
        EvalConfig,
        config_path_for,
        evaluate,
        load_config_file,
    )
    from reasonlab.formats.files import check_outputs

    flags = {
        "data": data, "base": base, "output": output, "adapter": adapter, "backend": backend,
        "samples": samples, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
        "max_model_len": max_model_len, "limit": limit, "per_family": per_family, "batch_size": batch_size,
        "seed": seed, "url": url, "served_model": served_model, "concurrency": concurrency,
        "api": api, "system_prompt": text_or_file(system_prompt),
        "instruction_template": text_or_file(instruction_template), "usd_per_mtok_in": usd_per_mtok_in,
        "usd_per_mtok_out": usd_per_mtok_out, "max_cost_usd": max_cost_usd, "only_missing": only_missing,
        "max_samples_per_row": max_samples_per_row, "covered_by": covered_by,
    }  # fmt: skip
    with user_errors(ValueError, BackendError):
        settings = load_config_file(config_file) if config_file else {}
        # Defaults -> file -> flags: a flag wins only when the user typed it.
        for name, value in flags.items():
            # (compared by name: typer ships its own copy of click's ParameterSource)
            source = ctx.get_parameter_source(name)
            if name not in settings or getattr(source, "name", "") != "DEFAULT":
                settings[name] = value
        config = EvalConfig(**settings)
        check_outputs(
            [config.output, config_path_for(config.output)],
            inputs=[config.data, config_file],
        )
        if config.samples > 1 and config.temperature == 0:
            console.print(
                f"[yellow]note:[/] greedy decoding (temperature 0): the {config.samples} samples "
                "will be (nearly) identical; pass --temperature for a meaningful vote"
            )
        result = evaluate(config, progress=True)
    covered = f", {result.covered} row(s) already covered" if config.only_missing else ""
    console.print(
        f"{result.generated} new output(s), {result.skipped} already in {result.outputs}"
        f"{covered} (config: {result.config_path})"
    )
    if result.spend is not None:
        from reasonlab.evaluation.spend import describe

        console.print(describe(result.spend))
    if result.report is not None:
        print_vote_table(result.report, title=f"eval: {result.outputs.name}")
    if result.stopped == "cap":
        console.print(
            "[yellow]stopped at the cost cap:[/] the next request's worst case would cross it; "
            "raise --max-cost-usd and rerun to continue (nothing is paid twice)"
        )
    elif result.stopped == "interrupted":
        raise fail("interrupted: the requests in flight were written; rerun to resume", code=130)


def vote_command(
    outputs: Annotated[Path, typer.Argument(help="outputs JSONL written by `reasonlab eval`")],
    gold: Annotated[Path, typer.Option("--gold", help="CSV with id,prompt,answer")],
    rows: Annotated[
        Path | None, typer.Option("--rows", help="also write one CSV row per gold row")
    ] = None,
) -> None:
    """Re-score saved outputs (no generation): accuracy, pass@1, majority vote, pass@K, margin."""
    from reasonlab.evaluation.vote import vote_files
    from reasonlab.formats.files import check_outputs

    with user_errors():
        check_outputs([rows], inputs=[outputs, gold])
        report = vote_files(outputs, gold)
        if rows is not None:
            _write_rows_csv(report, rows)
    if not report.rows:
        raise fail(f"{outputs}: no output matches a row of {gold}")
    print_vote_table(report, title=f"vote: {outputs.name}")


def report_command(
    outputs: Annotated[Path, typer.Argument(help="outputs JSONL written by `reasonlab eval`")],
    gold: Annotated[Path, typer.Option("--gold", help="CSV with id,prompt,answer")],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")] = Path(
        "report.html"
    ),
    worst: Annotated[int, typer.Option("--worst", help="examples shown per family")] = 3,
) -> None:
    """Write one self-contained HTML page: accuracy, output lengths, missing boxes, worst examples."""
    from reasonlab.evaluation.report import write_report
    from reasonlab.formats.files import check_outputs

    with user_errors():
        check_outputs([output], inputs=[outputs, gold])
        path = write_report(outputs, gold, output, worst=worst)
    console.print(f"report written to {path}")


def register(app: typer.Typer) -> None:
    """Add the evaluation stage's commands to the app."""
    app.command("eval")(eval_command)
    app.command("vote")(vote_command)
    app.command("report")(report_command)
