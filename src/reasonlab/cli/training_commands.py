"""The training stage's commands: tokenizer, tiny-model, train."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reasonlab.cli.common import console, echo, fail, user_errors


def tokenizer(
    out: Annotated[Path, typer.Option("-o", "--output", help="folder to write")],
) -> None:
    """Write the base model's real tokenizer (rebuilt offline, sha256-checked) to a folder.

    NVIDIA-Nemotron-3-Nano-30B-A3B's tokenizer.json is rebuilt byte for byte from the Tekken
    vocabulary that mistral-common ships and checked against the published size and
    sha256; tokenizer_config.json carries the base model's chat template (from trl).
    `AutoTokenizer.from_pretrained(OUT)` loads the folder. The first run rebuilds (seconds)
    and caches it under $XDG_CACHE_HOME/reasonlab (~/.cache/reasonlab); every command that
    counts tokens (traces, dataset build, distill, budget) then uses it by default.
    """
    from reasonlab.formats.tokenizer import TOKENIZER_SHA256, write_tokenizer

    with user_errors(OSError):
        path = write_tokenizer(out)
    console.print(f"tokenizer.json (sha256 {TOKENIZER_SHA256}) and tokenizer_config.json in {path}")


def tiny_model(
    out: Annotated[Path, typer.Option("-o", "--output", help="folder to write")],
) -> None:
    """Write a random tiny nemotron_h, its tokenizer (real chat template) and toy SFT rows."""
    from reasonlab.formats.files import check_outputs
    from reasonlab.training.tiny_model import TOY_DATA_FILE, make_tiny_model

    with user_errors():
        check_outputs(folders=[out])
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
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="print the path each component takes (Mamba kernels, expert LoRA, attention, "
            "norms, packing, loss, activation checkpointing, optimizer, base) and the rows and "
            "tokens per step; load no weights, train nothing",
        ),
    ] = False,
    init_adapter: Annotated[
        str | None,
        typer.Option(help="start from this trained adapter's weights (overrides `init_adapter`)"),
    ] = None,
    base_precision: Annotated[
        str | None,
        typer.Option(
            help="store the frozen base as bf16, fp8 or nf4 (overrides `base_precision`); "
            "the adapter is the same"
        ),
    ] = None,
) -> None:
    """LoRA SFT from a recipe; flags override the recipe's fields of the same meaning."""
    from reasonlab.formats.files import check_outputs
    from reasonlab.training.recipe import RecipeError, load_recipe

    with user_errors(RecipeError):
        recipe = load_recipe(
            config,
            {
                "model": model,
                "data": data,
                "output_dir": output_dir,
                "max_steps": max_steps,
                "init_adapter": init_adapter,
                "base_precision": base_precision,
            },
        )
        if Path(recipe.data).is_dir():
            raise RecipeError(f"data: {recipe.data}: is a folder, expected an SFT JSONL file")
        check_outputs(folders=[recipe.output_dir], inputs=[recipe.data, config])
    from reasonlab.training.engine.kernels import KernelError
    from reasonlab.training.engine.sharded import ShardingError
    from reasonlab.training.train import dry_run as plan_training
    from reasonlab.training.train import is_main_process
    from reasonlab.training.train import train as run_training

    if dry_run:
        with user_errors(RecipeError, KernelError, ValueError):
            plan_training(recipe, echo=echo)
        return
    with user_errors(RecipeError, KernelError, ShardingError, ValueError):
        result = run_training(recipe, resume=resume, echo=echo)
    if not is_main_process():
        return
    losses = result.losses
    if losses:
        console.print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} logged steps")
    console.print(f"adapter: {result.adapter_dir}")
    if result.zero_grad:
        raise fail(f"no gradient at the first step for {result.zero_grad}")


def register(app: typer.Typer) -> None:
    """Add the training stage's commands to the app."""
    app.command("tokenizer")(tokenizer)
    app.command("tiny-model")(tiny_model)
    app.command("train")(train)
