"""Commands on models and adapters: tiny-model, train, export, pack, verify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reasonlab.cli.common import console, fail, user_errors


def tiny_model(
    out: Annotated[Path, typer.Option("-o", "--output", help="folder to write")],
) -> None:
    """Write a random tiny nemotron_h, its tokenizer (real chat template) and toy SFT rows."""
    from reasonlab.pipeline.tiny_model import TOY_DATA_FILE, make_tiny_model

    with user_errors():
        path = make_tiny_model(out)
    console.print(f"tiny model, tokenizer and {TOY_DATA_FILE} written to {path}")


def train(
    config: Annotated[Path, typer.Argument(help="YAML recipe")],
    model: Annotated[str | None, typer.Option(help="base model folder (overrides `model`)")] = None,
    data: Annotated[str | None, typer.Option(help="SFT JSONL (overrides `data`)")] = None,
    output_dir: Annotated[str | None, typer.Option(help="overrides `output_dir`")] = None,
    max_steps: Annotated[int | None, typer.Option(help="overrides `max_steps`")] = None,
    resume: Annotated[
        bool, typer.Option(help="continue from the last checkpoint in output_dir")
    ] = False,
) -> None:
    """LoRA SFT from a recipe; flags override the recipe's fields of the same meaning."""
    from reasonlab.pipeline.train_config import RecipeError, load_recipe

    with user_errors(RecipeError):
        recipe = load_recipe(
            config, {"model": model, "data": data, "output_dir": output_dir, "max_steps": max_steps}
        )
    from reasonlab.pipeline.train import is_main_process
    from reasonlab.pipeline.train import train as run_training

    with user_errors(RecipeError, ValueError):
        result = run_training(recipe, resume=resume, echo=console.print)
    if not is_main_process():
        return
    losses = result.losses
    if losses:
        console.print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} logged steps")
    console.print(f"adapter: {result.adapter_dir}")
    if result.zero_grad:
        raise fail(f"no gradient at the first step for {result.zero_grad}")


def export(
    adapter_dir: Annotated[Path, typer.Argument(help="adapter folder written by `train`")],
    out: Annotated[
        Path, typer.Option("-o", "--output", help="folder for the scorer-layout adapter")
    ],
) -> None:
    """Rename and split a native adapter into the layout the scorer's vLLM loads."""
    from reasonlab.pipeline.export import export_adapter

    with user_errors():
        result = export_adapter(adapter_dir, out)
    console.print(
        f"{result.tensors} tensors, target_modules {result.target_modules}, "
        f"{result.experts_split} expert LoRAs split per expert -> {result.out_dir}"
    )
    if result.dropped:
        console.print(f"left out (not LoRA weights): {result.dropped}")


def pack(
    adapter_dir: Annotated[Path, typer.Argument(help="exported adapter folder")],
    out: Annotated[Path, typer.Option("-o", "--output", help="zip to write")] = Path(
        "submission.zip"
    ),
) -> None:
    """Zip an exported adapter deterministically (files at the root)."""
    from reasonlab.pipeline.pack import pack_adapter

    with user_errors():
        result = pack_adapter(adapter_dir, out)
    console.print(f"{result.zip_path}: {result.bytes:,} B, sha256 {result.sha256}")


def verify(
    zip_path: Annotated[Path, typer.Argument(help="submission zip")],
    config: Annotated[
        Path | None, typer.Option(help="architecture config.json (default: the real model)")
    ] = None,
) -> None:
    """Check a submission against the real architecture; exit 0 only when every check passes."""
    from rich.table import Table

    from reasonlab.pipeline.verify import verify_submission

    with user_errors(ValueError):
        report = verify_submission(zip_path, config)
    table = Table(title=f"verify {zip_path}")
    for column in ("check", "result", "detail"):
        table.add_column(column)
    colours = {"pass": "green", "fail": "red", "skip": "yellow"}
    for check in report.checks:
        table.add_row(check.name, f"[{colours[check.status]}]{check.status}[/]", check.detail)
    console.print(table)
    if not report.ok:
        raise fail("submission failed verification")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("tiny-model")(tiny_model)
    app.command("train")(train)
    app.command("export")(export)
    app.command("pack")(pack)
    app.command("verify")(verify)
