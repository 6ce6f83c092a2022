"""Competition CSVs in and out: strict about shape and encoding, with errors that say where.

Reading accepts a UTF-8 BOM, quoted multi-line fields and extra columns; text that is
not UTF-8, a missing required column, an empty file or a duplicate id raises `DataError`
naming the file, column or id, and the line a record starts on. Writing is atomic
(`files.atomic_write`).
"""

from __future__ import annotations

import codecs
import csv
import io
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from reasonlab.formats.files import atomic_write, require_file

__all__ = ["DataError", "read_rows", "read_text", "write_rows"]

csv.field_size_limit(sys.maxsize)  # prompts and raw model outputs can be long


class DataError(ValueError):
    """Input data that cannot be used as given; the message says where and why."""


def read_text(path: str | Path, what: str = "CSV file") -> str:
    """A whole file as text: UTF-8 (a BOM is dropped); anything else is a `DataError` saying where."""
    path = Path(path)
    try:
        data = require_file(path, what).read_bytes()
    except FileNotFoundError as err:
        raise DataError(str(err)) from None
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = bom + err.start
        line = data[:offset].count(b"\n") + 1
        raise DataError(
            f"{path}: not UTF-8 text: byte 0x{data[offset]:02x} at offset {offset} (line {line}); "
            "save the file as UTF-8"
        ) from None


def read_rows(path: str | Path, required: Sequence[str] = ("id",)) -> list[dict[str, str]]:
    """All rows of a CSV as dicts; `required` columns must exist and ids must be unique.

    Errors cite the line a record starts on (a quoted prompt spans several lines).
    """
    path = Path(path)
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    start = 1  # the line the record being read starts on

    def records() -> Iterator[list[str]]:
        nonlocal start
        while True:
            start = reader.line_num + 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                raise DataError(f"{path}: line {start} is not valid CSV ({err})") from None
            if record:  # a blank line between records
                yield record

    found = records()
    header = [name.strip() for name in next(found, [])]
    if not header:
        raise DataError(f"{path}: empty file (no header row)")
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{path}: missing required column(s) {', '.join(missing)}; "
            f"found {', '.join(map(repr, header))}"  # repr: a header cell may hold a newline
        )
    twice = sorted({name for name in header if name and header.count(name) > 1})
    if twice:
        raise DataError(
            f"{path}: column(s) {', '.join(map(repr, twice))} appear more than once in the header"
        )
    rows, seen = [], {}
    for record in found:
        if len(record) > len(header):  # more fields than the header names: broken quoting
            raise DataError(f"{path}: line {start} has more fields than the header")
        row = dict(zip(header, record + [""] * (len(header) - len(record))))
        if "id" in header:
            row_id = row["id"] = row["id"].strip()
            if not row_id:
                raise DataError(f"{path}: line {start} has an empty id")
            if row_id in seen:
                raise DataError(
                    f"{path}: duplicate id {row_id!r} (lines {seen[row_id]} and {start})"
                )
            seen[row_id] = start
        rows.append(row)
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
