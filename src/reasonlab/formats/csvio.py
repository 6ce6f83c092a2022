"""Competition CSVs in and out: strict about shape, forgiving about encoding.

Reading accepts a UTF-8 BOM, quoted multi-line fields and extra columns; a missing
required column, an empty file or a duplicate id raises `DataError` naming the file,
column or id (and the line). Writing is atomic (`files.atomic_write`).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from reasonlab.formats.files import atomic_write

__all__ = ["DataError", "read_rows", "write_rows"]

csv.field_size_limit(sys.maxsize)  # prompts and raw model outputs can be long


class DataError(ValueError):
    """Input data that cannot be used as given; the message says where and why."""


def read_rows(path: str | Path, required: Sequence[str] = ("id",)) -> list[dict[str, str]]:
    """All rows of a CSV as dicts; `required` columns must exist and ids must be unique."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise DataError(f"{path}: empty file (no header row)")
        header = [name.strip() for name in reader.fieldnames]
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(
                f"{path}: missing required column(s) {', '.join(missing)}; found {', '.join(header)}"
            )
        reader.fieldnames = header
        rows, seen = [], {}
        for row in reader:
            if None in row:  # more fields than the header names: the row's quoting is broken
                raise DataError(f"{path}: line {reader.line_num} has more fields than the header")
            if "id" in header:
                row_id = row["id"] = (row["id"] or "").strip()
                if not row_id:
                    raise DataError(f"{path}: line {reader.line_num} has an empty id")
                if row_id in seen:
                    raise DataError(
                        f"{path}: duplicate id {row_id!r} (lines {seen[row_id]} and {reader.line_num})"
                    )
                seen[row_id] = reader.line_num
            rows.append({k: (v if v is not None else "") for k, v in row.items()})
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows


def write_rows(path: str | Path, rows: Iterable[dict[str, object]], columns: Sequence[str]) -> int:
    """Write rows (only `columns`, in that order) atomically; returns the row count."""
    count = 0
    with atomic_write(path) as f:
        writer = csv.DictWriter(
            f, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count
