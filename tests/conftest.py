"""Shared fixtures: CSV writers and the CLI runner."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reasonlab.cli import app

REPO = Path(__file__).resolve().parents[1]
# The competition's dev split sits beside the checkout on dev machines and in CI; it is
# never committed, so tests that read it skip without it.
DEV_CSV = REPO.parent / "shared" / "data" / "train_dev.csv"


@pytest.fixture(scope="session")
def dev_rows() -> dict[str, list[dict[str, str]]]:
    """The dev split's rows grouped by family (`unknown` included); skips when absent."""
    from reasonlab.dataset.csvio import read_rows
    from reasonlab.puzzles.registry import classify

    if not DEV_CSV.is_file():
        pytest.skip("dev CSV (train_dev.csv) not present")
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in read_rows(DEV_CSV, required=("id", "prompt", "answer")):
        groups[classify(row["prompt"]).family].append(row)
    return groups


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write rows (dicts) to a CSV in tmp_path; returns its path."""

    def write(
        name: str, rows: Sequence[dict[str, str]], columns: Sequence[str] | None = None
    ) -> Path:
        path = tmp_path / name
        columns = list(columns or rows[0].keys())
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        return path

    return write


@pytest.fixture
def cli() -> Callable[..., object]:
    """Run `reasonlab ARGS...` in-process; returns the click Result."""
    runner = CliRunner()

    def run(*args: str, expect: int = 0):
        result = runner.invoke(app, [str(a) for a in args])
        if result.exit_code != expect:
            raise AssertionError(
                f"reasonlab {' '.join(map(str, args))} exited {result.exit_code}, expected {expect}\n"
                f"{result.output}\n{result.exception!r}"
            )
        return result

    return run
