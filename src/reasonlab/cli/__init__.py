"""The `reasonlab` command: one typer app; each command module registers its own commands.

Commands stay thin (parse arguments, call one library function, print a table) and
import torch and friends inside the function that needs them, so `--help`, `classify`,
`solve` and `score` start instantly and run without the ML extras installed.
"""

from __future__ import annotations

import typer

from reasonlab.cli import (
    data_commands,
    evaluation_commands,
    plan_commands,
    submission_commands,
    training_commands,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="reasonlab",
    help="From a reasoning-puzzle competition's CSV to a scored LoRA submission.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# One command module per stage, in the order a user walks them.
for module in (
    data_commands,
    training_commands,
    submission_commands,
    evaluation_commands,
    plan_commands,
):
    module.register(app)


def main() -> None:
    app()
