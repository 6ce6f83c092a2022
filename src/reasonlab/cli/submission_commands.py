"""The submission stage's commands: export, pack, verify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reasonlab.cli.common import console, fail, user_errors


def export(
    adapter_dir: Annotated[Path, typer.Argument(help="adapter folder written by `train`")],
    out: Annotated[
        Path, typer.Option("-o", "--output", help="folder for the scorer-layout adapter")
    ],
) -> None:
    """Rename and split a native adapter into the layout the scorer's vLLM loads."""
    from reasonlab.formats.files import check_outputs
    from reasonlab.submission.export import (
        ADAPTER_CONFIG,
        ADAPTER_WEIGHTS,
        PARAMETER_MAP_FILE,
        export_adapter,
    )

    with user_errors():
        check_outputs(
            [out / ADAPTER_CONFIG, out / ADAPTER_WEIGHTS],
            inputs=[adapter_dir / n for n in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, PARAMETER_MAP_FILE)],
        )
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
    from reasonlab.formats.files import check_outputs
    from reasonlab.submission.export import ADAPTER_CONFIG, ADAPTER_WEIGHTS
    from reasonlab.submission.pack import pack_adapter

    with user_errors():
        check_outputs([out], inputs=[adapter_dir / ADAPTER_CONFIG, adapter_dir / ADAPTER_WEIGHTS])
        result = pack_adapter(adapter_dir, out)
    console.print(f"{result.zip_path}: {result.bytes:,} B, sha256 {result.sha256}")


def verify(
    zip_path: Annotated[Path, typer.Argument(help="submission zip")],
    config: Annotated[
        Path | None,
        typer.Option(help="the model's config.json (default: the real Nemotron-3-Nano-30B's)"),
    ] = None,
) -> None:
    """Judge a submission as the scorer's vLLM would; exit 0 when it loads every tensor.

    fail: vLLM refuses the adapter, or loads part of it and never applies it. warn: vLLM
    loads and applies it, but read why. The rules: README, "What verify checks".
    """
    from rich.markup import escape
    from rich.table import Table

    from reasonlab.submission.verify import verify_submission

    with user_errors(ValueError):
        report = verify_submission(zip_path, config)
    table = Table(title=f"verify {zip_path}")
    for column in ("check", "result", "detail"):
        table.add_column(column)
    colours = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
    for check in report.checks:
        status = f"[{colours[check.status]}]{check.status}[/]"
        table.add_row(check.name, status, escape(check.detail))
    console.print(table)
    if not report.ok:
        raise fail("submission failed verification")
    warned = [c.name for c in report.checks if c.status == "warn"]
    if warned:
        console.print(f"[yellow]accepted, with warnings[/] ({', '.join(warned)}): read them above")


def register(app: typer.Typer) -> None:
    """Add the submission stage's commands to the app."""
    app.command("export")(export)
    app.command("pack")(pack)
    app.command("verify")(verify)
