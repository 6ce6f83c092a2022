"""What every command shares: one console, progress, and turning library errors into exit codes."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

__all__ = [
    "Progress",
    "console",
    "echo",
    "err_console",
    "fail",
    "progress_bar",
    "text_or_file",
    "user_errors",
]

# Off a terminal (logs, CI, pipes) rich would wrap tables at 80 columns; logs can be wider.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)

LOG_EVERY_S = 10.0  # off a terminal, one progress line at most this often


def echo(message: str) -> None:
    """Print library output as it is (paths and package names may hold [brackets])."""
    console.print(message, markup=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error in red on stderr; `raise fail(...)` ends the command with `code`."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}")  # a message may hold [brackets]
    return typer.Exit(code)


def _os_message(err: OSError) -> str:
    # "[Errno 13] Permission denied: 'out/x.csv'" -> "out/x.csv: Permission denied"
    if err.filename is not None and err.strerror:
        where = f"{err.filename} -> {err.filename2}" if err.filename2 else err.filename
        return f"{where}: {err.strerror}"
    return str(err)


@contextmanager
def user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Errors of these kinds, bad data, bad output paths and OS errors: one line, no traceback."""
    from reasonlab.formats.csvio import DataError
    from reasonlab.formats.files import OutputError

    try:
        yield
    except (DataError, OutputError, *kinds) as err:
        raise fail(str(err)) from None
    except OSError as err:  # a full disk, a folder that became unwritable, ...
        raise fail(_os_message(err)) from None


class Progress:
    """`advance(n)` by calling it; `stage(description, total)` starts a new bar.

    On a terminal it is a rich bar. Off one (a log, a pipe) it prints a plain line every
    `LOG_EVERY_S` seconds, so a redirected run still shows it is alive and how far it got.
    """

    def __init__(self, progress, description: str, total: int | None) -> None:
        self._progress, self._task = progress, None
        self._logged = self._started = time.monotonic()
        self.stage(description, total)

    def stage(self, description: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self.description, self.total, self.done = description, total, 0
        self._task = self._progress.add_task(description, total=total)

    def __call__(self, n: int = 1) -> None:
        self.done += n
        self._progress.advance(self._task, n)
        now = time.monotonic()
        if not self._progress.disable or now - self._logged < LOG_EVERY_S:
            return
        self._logged = now
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        of = f"/{self.total:,}" if self.total is not None else ""
        err_console.print(
            f"{self.description}: {self.done:,}{of}{share}, {now - self._started:,.0f} s",
            markup=False,
            highlight=False,
        )


@contextmanager
def progress_bar(total: int | None, description: str) -> Iterator[Progress]:
    """A progress bar (`total=None`: size unknown); yields a `Progress`, called to advance."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with RichProgress(
        *columns, console=err_console, transient=True, disable=not err_console.is_terminal
    ) as progress:
        yield Progress(progress, description, total)


def text_or_file(value: str | None) -> str | None:
    """`@path` reads a prompt from a file (multi-line prompts are awkward as flags)."""
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:])
    if not path.is_file():
        raise fail(f"{path}: no such file (a prompt given as @FILE)")
    return path.read_text(encoding="utf-8")
