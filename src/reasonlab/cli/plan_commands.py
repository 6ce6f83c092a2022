"""Plans that compose the stages: `budget` (what a $5, $100 or $15,000 run buys), `star`,
`demo`, and `bundle` (an offline install for Kaggle's internet-off notebooks)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reasonlab.cli.common import console, fail, progress_bar, text_or_file, user_errors
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
    tokenizer: Annotated[
        Path | None,
        typer.Option(help="With --sft: tokenizer folder to count with; default: the real one."),
    ] = None,
    teacher: Annotated[
        Path | None,
        typer.Option(help="A teacher pilot's `eval --backend openai` outputs: price per kept row."),
    ] = None,
    gold: Annotated[
        Path | None, typer.Option(help="With --teacher: the CSV with answers it ran on.")
    ] = None,
    usd_per_mtok_in: Annotated[
        float, typer.Option(help="With --teacher: your USD per 1M prompt tokens.")
    ] = 0.0,
    usd_per_mtok_out: Annotated[
        float, typer.Option(help="With --teacher: your USD per 1M completion tokens.")
    ] = 0.0,
    star_rows: Annotated[
        int | None, typer.Option(help="Price a STaR round: rows sampled per round (needs --sft).")
    ] = None,
    star_samples: Annotated[int, typer.Option(help="STaR: tries per row.")] = 4,
    star_tokens_per_try: Annotated[
        float | None, typer.Option(help="STaR: mean output tokens per try (from a pilot eval).")
    ] = None,
    star_heldout_rows: Annotated[int, typer.Option(help="STaR: held-out rows evaluated.")] = 0,
    gen_tokens_per_s: Annotated[
        float | None,
        typer.Option(help="STaR: output tokens/s of generation (bench/bench_generate.py)."),
    ] = None,
) -> None:
    """Plan a budget: GPU hours, tokens, examples and epochs per dollar amount; with --teacher,
    the rows a teacher run buys; with --star-rows, the GPU hours of a STaR round."""
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
    budgets = usd or DEFAULT_BUDGETS_USD
    if teacher is not None:
        _print_teacher(budgets, teacher, gold, usd_per_mtok_in, usd_per_mtok_out)
    if star_rows is not None:
        if rows is None or star_tokens_per_try is None or gen_tokens_per_s is None:
            raise fail("--star-rows needs --sft, --star-tokens-per-try and --gen-tokens-per-s")
        _print_star(
            budgets, gpu_hour_usd, speed, rows, tokens_per_example,
            star_rows, star_samples, star_tokens_per_try, star_heldout_rows, gen_tokens_per_s,
        )  # fmt: skip


def _print_teacher(
    budgets: Sequence[float], outputs: Path, gold: Path | None, usd_in: float, usd_out: float
) -> None:
    from reasonlab.evaluation.spend import Prices
    from reasonlab.plans.budget import measure_teacher, plan_teacher

    if gold is None:
        raise fail("--teacher needs --gold (the rows it ran on, with answers)")
    with user_errors(ValueError, KeyError):
        measure = measure_teacher(outputs, gold)
        lines = plan_teacher(budgets, Prices(usd_in, usd_out), measure)
    table = Table(
        title="What a teacher run buys",
        caption=f"measured on {outputs.name}: {measure.prompt_tokens:,.0f} prompt + "
        f"{measure.completion_tokens:,.0f} completion tokens per request, "
        f"{measure.kept_rows}/{measure.requests} = {measure.keep_rate:.1%} rows kept per request; "
        f"${usd_in:g} / ${usd_out:g} per 1M tokens in / out",
    )
    for column in ("budget", "requests", "kept rows", "$ per kept row"):
        table.add_column(column, justify="right", no_wrap=True)
    for line in lines:
        table.add_row(
            f"${line.usd:,.0f}", f"{line.requests:,}", f"{line.kept_rows:,}",
            f"${line.usd_per_kept_row:,.4f}",
        )  # fmt: skip
    console.print(table)


def _print_star(
    budgets: Sequence[float], gpu_hour_usd: float, train_speed: float, sft_rows: int,
    tokens_per_example: float, rows: int, samples: int, tokens_per_try: float,
    heldout_rows: int, gen_speed: float,
) -> None:  # fmt: skip
    from reasonlab.plans.budget import plan_star_round

    with user_errors(ValueError):
        one = plan_star_round(
            rows, samples, tokens_per_try, gen_speed, sft_rows, tokens_per_example,
            train_speed, heldout_rows,
        )  # fmt: skip
    usd = one.gpu_hours * gpu_hour_usd
    table = Table(
        title="What a STaR round costs (one GPU)",
        caption=f"sampling {rows:,} rows x {samples} tries x {tokens_per_try:,.0f} tokens "
        f"(+ {heldout_rows:,} held-out) at {gen_speed:,.0f} tokens/s; training an epoch of "
        f"{sft_rows:,} rows x {tokens_per_example:,.0f} tokens at {train_speed:,.0f} tokens/s",
    )
    for column in ("part", "tokens", "GPU hours", "cost"):
        table.add_column(column, justify="right", no_wrap=True)
    for part, tokens, hours in (
        ("generate + held-out", one.generate_tokens, one.generate_hours),
        ("train", one.train_tokens, one.train_hours),
        ("round", one.generate_tokens + one.train_tokens, one.gpu_hours),
    ):
        table.add_row(
            part, f"{tokens / 1e6:,.1f}M", f"{hours:,.2f}", f"${hours * gpu_hour_usd:,.2f}"
        )
    console.print(table)
    console.print(
        "rounds per budget: "
        + ", ".join(f"${b:,.0f}: {math.floor(b / usd) if usd else 0:,}" for b in budgets)
    )


def demo_command(
    out_dir: Annotated[
        Path, typer.Option("-o", "--output", help="folder for every artifact")
    ] = Path("demo-out"),
) -> None:
    """The whole pipeline end to end on CPU with tiny sizes: generate ... train ... eval, report."""
    from reasonlab.formats.files import check_outputs
    from reasonlab.plans.demo import DemoConfig, run_demo

    with user_errors(ValueError):
        check_outputs(folders=[out_dir])
        run_demo(DemoConfig(out_dir=out_dir), console=console)


def star_command(
    base: Annotated[str, typer.Option("--base", help="base model folder")],
    rows: Annotated[
        Path, typer.Option("--rows", help="CSV id,prompt,answer: the rows sampled each round")
    ],
    heldout: Annotated[
        Path, typer.Option("--heldout", help="CSV id,prompt,answer never trained on")
    ],
    sft: Annotated[Path, typer.Option("--sft", help="the SFT set round 1 merges into")],
    recipe: Annotated[
        Path, typer.Option("--recipe", help="training YAML (model/data/output_dir set per round)")
    ],
    out_dir: Annotated[Path, typer.Option("-o", "--output", help="folder of the rounds")],
    adapter: Annotated[
        Path | None,
        typer.Option("--adapter", help="native adapter to start from (default: the base model)"),
    ] = None,
    rounds: Annotated[int, typer.Option("--rounds", help="rounds to run (more continue)")] = 2,
    samples: Annotated[int, typer.Option("--samples", "-k", help="tries per row per round")] = 4,
    temperature: Annotated[float, typer.Option("--temperature", help="> 0")] = 0.7,
    top_p: Annotated[float, typer.Option("--top-p")] = 1.0,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="per try; longer tries are not kept")
    ] = 7680,
    heldout_max_new_tokens: Annotated[
        int, typer.Option("--heldout-max-new-tokens", help="held-out eval; scorer: 7680")
    ] = 7680,
    backend: Annotated[
        str, typer.Option("--backend", help="auto (vllm if installed, else hf) | hf | vllm")
    ] = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="hf: prompts per generate call")
    ] = 8,
    skip_covered: Annotated[
        bool,
        typer.Option(
            "--skip-covered/--all-rows",
            help="sample only rows whose puzzle is not in the SFT set yet (their tries could "
            "only be dropped as duplicates), or every row",
        ),
    ] = True,
    rationalize: Annotated[
        bool,
        typer.Option(
            "--rationalize",
            help="ask rows with no right try again, the gold answer given as a hint "
            "(kept traces must not mention it)",
        ),
    ] = False,
    hint_template: Annotated[
        str | None,
        typer.Option(
            "--hint-template", help="rationalization prompt with {prompt} and {answer} (or @FILE)"
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Self-improvement rounds (STaR): sample, keep the right tries, merge, train on, measure.

    Each round gets its own folder under -o; a rerun resumes at the first unfinished step.
    """
    from reasonlab.evaluation.backends import BackendError
    from reasonlab.plans.star import HINT_TEMPLATE, StarConfig, run_star
    from reasonlab.training.recipe import RecipeError

    with user_errors(ValueError, BackendError, RecipeError):
        config = StarConfig(
            base=base, rows=rows, heldout=heldout, sft=sft, recipe=recipe, out_dir=out_dir,
            adapter=adapter, rounds=rounds, samples=samples, temperature=temperature, top_p=top_p,
            max_new_tokens=max_new_tokens, heldout_max_new_tokens=heldout_max_new_tokens,
            backend=backend, batch_size=batch_size, skip_covered=skip_covered, rationalize=rationalize,
            hint_template=text_or_file(hint_template) or HINT_TEMPLATE, seed=seed,
        )  # fmt: skip
        summaries = run_star(config, echo=console.print, progress=True)
    print_star_table(summaries)


def print_star_table(summaries: list[dict]) -> None:
    """One line per round: what it sampled, kept and gained, and the held-out accuracy."""
    from reasonlab.plans.star import gained_text

    groups = list(summaries[0]["heldout_accuracy"])  # "all" and the held-out set's families
    table = Table(title="STaR rounds", caption="held-out: greedy, sample 0, as the scorer")
    columns = ("round", "tries", "right", "kept", "duplicates", "gained", "SFT rows", "loss")
    for column in columns + tuple(f"held-out {g}" for g in groups):
        table.add_column(column, justify="left" if column == "gained" else "right")
    for s in summaries:
        tries = s.get("tries")
        right = f"{s['right_tries'] / tries:.1%}" if tries else "-"
        loss = " -> ".join(f"{x:.2f}" for x in s.get("train_loss", [])) or "-"
        cells = [
            str(s["round"]), str(tries or "-"), right, str(s.get("kept", "-")),
            str(s.get("duplicates", "-")), gained_text(s.get("gained", {})), str(s["sft_rows"]), loss,
        ]  # fmt: skip
        cells += [f"{s['heldout_accuracy'].get(g, 0.0):.1%}" for g in groups]
        table.add_row(*cells)
    console.print(table)


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
    app.command("star")(star_command)
    app.command("demo")(demo_command)
    app.command()(bundle)
