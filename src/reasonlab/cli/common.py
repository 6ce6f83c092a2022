"""What every command shares: one console, and turning library errors into exit codes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

__all__ = ["console", "fail", "user_errors"]

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error in red on stderr; `raise fail(...)` ends the command with `code`."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@contextmanager
def user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Errors of these kinds are the user's to fix: print them plainly, no traceback."""
    from reasonlab.dataset.csvio import DataError

    try:
        yield
    except (DataError, FileNotFoundError, *kinds) as err:
        raise fail(str(err)) from None
