"""Plans that compose the stages: `budget` (what a $5, $100 or $15,000 run buys) and `demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reasonlab.cli.common import console, fail, user_errors

__all__ = ["register"]

DEFAULT_BUDGETS_USD = (5.0, 100.0, 15000.0)  # a hobbyist, a serious entrant, a top team


def budget(
    gpu_hour_usd: Annotated[
        float, typer.Option(help="What one GPU hour costs you (your provider's price).")
    ],
    usd: Annotated[
        list[float] | None,
        typer.Option("--usd", help="Budgets to plan (repeatable); default $5, $100 and $15,000."),
    ] = None,
    sft: Annotated[
        Path | None, typer.Option(help="SFT JSONL: mean tokens per example and epochs from it.")
    ] = None,
    tokens_per_example: Annotated[
        float | None, typer.Option(help="Without --sft: mean tokens per example.")
    ] = None,
    tokens_per_s: Annotated[
        float | None,
        typer.Option(help="Training tokens/s per GPU; default: the measured H200 figure."),
    ] = None,
    gpus: Annotated[
        int, typer.Option(min=1, help="GPUs in the run (wall time assumes linear scaling).")
    ] = 1,
    tokenizer: Annotated[
        Path | None,
        typer.Option(help="With --sft: tokenizer folder to count with; default: the real one."),
    ] = None,
) -> None:
    """Plan a training budget: GPU hours, tokens, examples and epochs per dollar amount."""
    from reasonlab.formats.token_counts import TokenCounter
    from reasonlab.plans.budget import (
        MEASURED_SOURCE,
        MEASURED_TOKENS_PER_S,
        plan_budget,
        sft_token_stats,
    )

    rows, counting = None, "given"
    if sft is not None:
        with user_errors(ValueError, KeyError):
            counter = TokenCounter.load(tokenizer)
            rows, tokens_per_example = sft_token_stats(sft, counter)
        counting = f"{counter.describe()}, prompt + completion as training tokenizes them"
    if tokens_per_example is None:
        raise fail("give --sft SFT.jsonl or --tokens-per-example N")
    speed = tokens_per_s or MEASURED_TOKENS_PER_S
    with user_errors(ValueError):
        lines = plan_budget(
            usd or DEFAULT_BUDGETS_USD, gpu_hour_usd, tokens_per_example, speed, gpus, rows
        )
    source = "given" if tokens_per_s else MEASURED_SOURCE
    table = Table(
        title="What a budget buys",
        caption=f"{speed:,.0f} tokens/s per GPU ({source}); "
        f"{tokens_per_example:,.0f} tokens per example ({counting}); "
        f"${gpu_hour_usd:,.2f} per GPU hour",
    )
    for column in ("budget", "GPU hours", "wall hours", "tokens", "examples", "epochs of --sft"):
        table.add_column(column, justify="right", no_wrap=True)
    for line in lines:
        epochs = f"{line.epochs:.2f}" if line.epochs is not None else "-"
        table.add_row(
            f"${line.usd:,.0f}",
            f"{line.gpu_hours:,.1f}",
            f"{line.wall_hours:,.1f}",
            f"{line.tokens / 1e6:,.1f}M",
            f"{line.examples:,}",
            epochs,
        )
    console.print(table)


def demo_command(
    out_dir: Annotated[
        Path, typer.Option("-o", "--output", help="folder for every artifact")
    ] = Path("demo-out"),
) -> None:
    """The whole pipeline end to end on CPU with tiny sizes: generate ... train ... eval, report."""
    from reasonlab.plans.demo import DemoConfig, run_demo

    with user_errors(ValueError):
        run_demo(DemoConfig(out_dir=out_dir), console=console)


def register(app: typer.Typer) -> None:
    """Add the plan commands to the app."""
    app.command()(budget)
    app.command("demo")(demo_command)
