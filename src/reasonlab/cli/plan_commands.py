"""Plans that compose the stages: `budget` (what a $5, $100 or $15,000 run buys), `demo`, and
`bundle` (an offline install for Kaggle's internet-off notebooks)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reasonlab.cli.common import console, fail, progress_bar, user_errors
from reasonlab.plans.bundle.target import KAGGLE, KAGGLE_LEAVE_OUT

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
) -> None:
    """Plan a training budget: GPU hours, tokens, examples and epochs per dollar amount."""
    from reasonlab.plans.budget import (
        MEASURED_SOURCE,
        MEASURED_TOKENS_PER_S,
        plan_budget,
        sft_token_stats,
    )

    rows = None
    if sft is not None:
        with user_errors(ValueError, KeyError):
            rows, tokens_per_example = sft_token_stats(sft)
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
        f"{tokens_per_example:,.0f} tokens per example; ${gpu_hour_usd:,.2f} per GPU hour",
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


def bundle(
    out: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="folder to write; a rerun reuses its verified wheels (resumes)"
        ),
    ] = None,
    check: Annotated[
        Path | None,
        typer.Option(
            help="instead: install this bundle in a fresh venv, no registry; run the demo"
        ),
    ] = None,
    python_version: Annotated[
        str, typer.Option(help="target Python (major.minor); default: the Kaggle GPU image's")
    ] = KAGGLE.python,
    platform: Annotated[
        str,
        typer.Option(
            help="target wheel platform tag; manylinux_2_N accepts every older glibc's wheels. "
            "Default: the Kaggle image (Ubuntu 22.04, glibc 2.35)"
        ),
    ] = KAGGLE.platform,
    leave_out: Annotated[
        str,
        typer.Option(
            help="comma-separated packages the target image has (a pin such as torch==2.6.0 "
            "makes the rest agree with it); '' bundles everything"
        ),
    ] = ",".join(KAGGLE_LEAVE_OUT),
    pin: Annotated[
        list[str] | None,
        typer.Option(help="extra requirement for the resolution, e.g. torch==2.13.0 (repeatable)"),
    ] = None,
    extras: Annotated[str, typer.Option(help="reasonlab's extras to install")] = "train,eval",
    recipe: Annotated[
        Path | None, typer.Option(help="training recipe for run.sh; its `data` file comes along")
    ] = None,
    data: Annotated[
        list[Path] | None, typer.Option(help="another file for data/ (repeatable)")
    ] = None,
    tokenizer: Annotated[
        Path | None, typer.Option(help="tokenizer folder (`reasonlab tokenizer -o DIR`)")
    ] = None,
    kernels: Annotated[
        bool,
        typer.Option(
            help="mamba-ssm and causal-conv1d: compiled here given nvcc and a CUDA torch of the "
            "target's Python, else their sources with the command that compiles them there"
        ),
    ] = True,
    project: Annotated[
        Path | None, typer.Option(help="reasonlab source checkout (default: the one running)")
    ] = None,
    python: Annotated[
        str | None,
        typer.Option(
            help="interpreter that runs pip (one of the target's version reads markers exactly); "
            "with --check, the one the venv is made from. Default: this one"
        ),
    ] = None,
) -> None:
    """An offline bundle: wheels for the target, recipe, data, install.sh, run.sh, a notebook.

    `reasonlab bundle -o DIR` collects it (pip resolves and downloads); `reasonlab bundle
    --check DIR` proves it installs with no registry and runs the demo.
    """
    import sys

    from reasonlab.plans.bundle.manifest import BundleError

    if (out is None) == (check is None):
        raise fail("give -o DIR to write a bundle or --check DIR to check one")
    if check is not None:
        from reasonlab.plans.bundle.check import check_bundle

        with user_errors(BundleError):
            result = check_bundle(check, python or sys.executable, echo=console.print)
        console.print(
            f"[green]bundle OK[/]: {result.installed} packages installed in "
            f"{result.install_seconds:.0f} s with {result.isolation}; demo ran in "
            f"{result.demo_seconds:.0f} s. {result.kernels}."
        )
        return

    from reasonlab.plans.bundle.build import BundleOptions, build_bundle
    from reasonlab.plans.bundle.target import Target

    with user_errors(ValueError):
        options = BundleOptions(
            out_dir=out,
            target=Target(python_version, platform),
            leave_out=tuple(name.strip() for name in leave_out.split(",") if name.strip()),
            pins=tuple(pin or ()),
            extras=tuple(name.strip() for name in extras.split(",") if name.strip()),
            recipe=recipe,
            data=tuple(data or ()),
            tokenizer=tokenizer,
            kernels=kernels,
            project=project,
            python=python or sys.executable,
        )
        result = build_bundle(options, echo=console.print, progress=progress_bar)
    console.print(
        f"[green]bundle written[/]: {result.out_dir} ({result.total_bytes / 1e6:,.1f} MB, "
        f"{result.wheels} wheels: {result.downloaded} downloaded, {result.reused} reused)"
    )
    for plan in result.kernels:
        if plan.wheel is None:
            console.print(f"build on the target: {plan.command()}")
    if result.removed:
        console.print(f"removed from an earlier run: {', '.join(result.removed)}")
    console.print(f"check it: reasonlab bundle --check {result.out_dir}")


def register(app: typer.Typer) -> None:
    """Add the plan commands to the app."""
    app.command()(budget)
    app.command("demo")(demo_command)
    app.command()(bundle)
