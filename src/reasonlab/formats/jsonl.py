"""JSON Lines in and out: one JSON object per line, errors that name the file and line.

Reading rejects anything but an object per non-blank line (a stray list or a truncated
line from a crashed writer is an error, not a silently skipped row). `write_jsonl` is
atomic; `append_jsonl` flushes each line so a crash loses at most the row being written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from reasonlab.formats.csvio import DataError, read_text
from reasonlab.formats.files import atomic_write

__all__ = ["append_jsonl", "read_jsonl", "write_jsonl"]


def read_jsonl(path: str | Path) -> list[dict]:
    """Every object of a JSONL file in order; blank lines are skipped."""
    path = Path(path)
    rows: list[dict] = []
    # split on \n only: str.splitlines() would also cut at U+2028, which JSON leaves unescaped
    for line_no, line in enumerate(read_text(path, "JSONL file").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{path}: line {line_no} is not valid JSON ({err.msg} at column {err.colno})"
            ) from None
        if not isinstance(row, dict):
            raise DataError(
                f"{path}: line {line_no} holds a {type(row).__name__}, expected a JSON object"
            )
        rows.append(row)
    return rows


def _line(row: Mapping) -> str:
    # ensure_ascii=False keeps puzzle text readable; one object never spans lines.
    return json.dumps(dict(row), ensure_ascii=False) + "\n"


def write_jsonl(path: str | Path, rows: Iterable[Mapping]) -> int:
    """Write all rows atomically (temporary file, then rename); returns the row count."""
    count = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(_line(row))
            count += 1
    return count


def append_jsonl(path: str | Path, row: Mapping) -> None:
    """Append one row and flush it, creating the file (and its folder) when needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(_line(row))
        f.flush()
