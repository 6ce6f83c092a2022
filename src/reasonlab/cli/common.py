"""What every command shares: one console, and turning library errors into exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

__all__ = ["console", "echo", "err_console", "fail", "progress_bar", "user_errors"]

# Off a terminal (logs, CI, pipes) rich would wrap tables at 80 columns; logs can be wider.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


def echo(message: str) -> None:
    """Print library output as it is (paths and package names may hold [brackets])."""
    console.print(message, markup=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error in red on stderr; `raise fail(...)` ends the command with `code`."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@contextmanager
def user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Errors of these kinds are the user's to fix: print them plainly, no traceback."""
    from reasonlab.formats.csvio import DataError

    try:
        yield
    except (DataError, FileNotFoundError, *kinds) as err:
        raise fail(str(err)) from None


@contextmanager
def progress_bar(total: int | None, description: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar (`total=None`: size unknown); yields `advance(n)`. Quiet off a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(
        *columns, console=err_console, transient=True, disable=not err_console.is_terminal
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
