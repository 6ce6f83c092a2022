"""Commands on competition data: classify, solve, score, generate, traces, audit."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
