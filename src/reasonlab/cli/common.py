"""What every command shares: one console, and turning library errors into exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

__all__ = ["console", "err_console", "fail", "progress_bar", "text_or_file", "user_errors"]

# Off a terminal (logs, CI, pipes) rich would wrap tables at 80 columns; logs can be wider.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


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


def text_or_file(value: str | None) -> str | None:
    """`@path` reads a prompt from a file (multi-line prompts are awkward as flags)."""
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:])
    if not path.is_file():
        raise fail(f"{path}: no such file (a prompt given as @FILE)")
    return path.read_text(encoding="utf-8")
