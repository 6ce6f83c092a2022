"""Arbitrary input never ends in a traceback: a clear error or a result.

Hypothesis throws arbitrary bytes and arbitrary CSV shapes at the CSV reader, and
arbitrary text plus mutated real-looking prompts at every family's prompt parser and at
the whole solve path. The only exceptions allowed are the ones the CLI turns into a
one-line message: `DataError` from the reader, `PuzzleFormatError` from a parser; a
row's solve must come back with a status other than `error` (a solver bug).
"""

from __future__ import annotations

import csv
import io
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonlab.data.generate import generate_rows
from reasonlab.data.solve import solve_one
from reasonlab.formats.csvio import DataError, read_rows
from reasonlab.puzzles.base import PuzzleFormatError
from reasonlab.puzzles.registry import FAMILIES, classify, family_module

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def csv_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "data.csv"


def _read_or_data_error(path, required=("id", "prompt")):
    """The reader's contract: rows, or a DataError that names the file."""
    try:
        return read_rows(path, required=required)
    except DataError as err:
        assert str(path) in str(err) and "\n" not in str(err), str(err)
        return None


# --- the CSV reader ---------------------------------------------------------------------

# Bytes that make CSVs interesting: quotes, separators, line ends, NUL, a BOM, invalid UTF-8.
_CSV_BYTES = st.lists(
    st.sampled_from(
        [
            b'"',
            b",",
            b"\n",
            b"\r",
            b"\r\n",
            b"\0",
            b"\xef\xbb\xbf",
            b"\xff",
            b"\xc3",
            b"id",
            b"prompt",
        ]
    )
    | st.binary(max_size=8),
    max_size=60,
).map(b"".join)


@FUZZ
@given(data=st.binary(max_size=400) | _CSV_BYTES)
def test_csv_reader_takes_any_bytes(csv_path, data):
    csv_path.write_bytes(data)
    rows = _read_or_data_error(csv_path)
    if rows is not None:
        assert rows and all({"id", "prompt"} <= set(row) for row in rows)


_FIELD = st.text(alphabet=string.printable + "é√\u2028\0", max_size=12)


@FUZZ
@given(
    header=st.lists(st.sampled_from(["id", "prompt", "answer", "x", "", " id "]), max_size=5),
    records=st.lists(st.lists(_FIELD, max_size=6), max_size=6),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
)
def test_csv_reader_takes_any_shape(csv_path, header, records, quoting):
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=quoting, lineterminator="\n")
    for record in [header, *records]:
        writer.writerow(record)
    csv_path.write_text(buffer.getvalue(), encoding="utf-8")
    _read_or_data_error(csv_path)


@FUZZ
@given(
    records=st.lists(st.tuples(_FIELD, _FIELD), max_size=8, unique_by=lambda r: r[0].strip()),
    bom=st.booleans(),
)
def test_csv_rows_written_by_csv_writer_read_back(csv_path, records, bom):
    """Well-formed files (unique non-empty ids, no NUL) read back field for field."""
    records = [(i, p) for i, p in records if i.strip() and "\0" not in i + p]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["id", "prompt"])
    writer.writerows(records)
    csv_path.write_bytes(("\ufeff" if bom else "").encode() + buffer.getvalue().encode())
    rows = _read_or_data_error(csv_path)
    if not records:
        assert rows is None
        return
    assert rows == [{"id": i.strip(), "prompt": p} for i, p in records]


# --- every family's prompt parser -------------------------------------------------------

BASES = {family: [row["prompt"] for row in generate_rows(family, 4, seed=3)] for family in FAMILIES}


@st.composite
def mutated_prompt(draw, family: str) -> str:
    """A real-looking prompt of `family`, cut, spliced or with characters swapped."""
    text = draw(st.sampled_from(BASES[family]))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        insert = draw(
            st.sampled_from(["", "\n", " -> ", " = ", "0", "1", "99", "-", ".", "??", "\u00a0"])
            | st.text(max_size=6)
        )
        text = text[:i] + insert + text[j:]
    return text


@pytest.mark.parametrize("family", FAMILIES)
@FUZZ
@given(data=st.data())
def test_parsers_take_any_text(family, data):
    module = family_module(family)
    text = data.draw(st.text(max_size=300) | mutated_prompt(family), label="prompt")
    try:
        module.parse(text)
    except PuzzleFormatError as err:
        assert str(err) and "\n" not in str(err)
    classify(text)  # never raises: an unrecognised prompt is `unknown`


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_solving_a_mutated_prompt_gives_a_status_not_a_bug(family, data):
    text = data.draw(mutated_prompt(family), label="prompt")
    result = solve_one("x", text, render=True)
    assert result.status != "error", result.detail
    if result.trace is not None:
        assert result.answer
