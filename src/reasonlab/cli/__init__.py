"""The `reasonlab` command: one typer app; each command module registers its own commands.

Commands stay thin (parse arguments, call one library function, print a table) and
import torch and friends inside the function that needs them, so `--help`, `classify`,
`solve` and `score` start instantly and run without the ML extras installed.
"""

from __future__ import annotations

import typer

from reasonlab.cli import (
    data_commands,
    eval_commands,
    model_commands,
    plan_commands,
    trace_commands,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="reasonlab",
    help="From a reasoning-puzzle competition's CSV to a scored LoRA submission.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (data_commands, trace_commands, model_commands, eval_commands, plan_commands):
    module.register(app)


def main() -> None:
    app()
