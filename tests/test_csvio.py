"""Reading competition CSVs: robust to encodings and quoting, strict about shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from reasonlab.formats.csvio import DataError, read_rows, write_rows


def test_bom_multiline_and_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes('\ufeffid,prompt,answer,extra\r\n1,"line one\nline ""two""",XI,x\r\n'.encode())
    rows = read_rows(path, required=("id", "prompt", "answer"))
    assert rows == [{"id": "1", "prompt": 'line one\nline "two"', "answer": "XI", "extra": "x"}]


# (file contents, words the error must name)
BROKEN = [
    ("", ["empty"]),
    ("id,prompt\n", ["no data rows"]),
    ("id,question\n1,x\n", ["missing", "prompt"]),
    ("id,prompt\n1,a\n2,b\n1,c\n", ["duplicate id", "'1'", "lines 2 and 4"]),
    ("id,prompt\n,a\n", ["empty id"]),
    ('id,prompt\n1,"a",b\n', ["more fields"]),
]


@pytest.mark.parametrize(("content", "words"), BROKEN)
def test_broken_files_name_the_problem(tmp_path: Path, content: str, words: list[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        read_rows(path, required=("id", "prompt"))
    assert str(path) in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_rows(tmp_path / "nope.csv")


def test_write_is_atomic_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    rows = [{"id": "a", "answer": 'x}\\y, "z"\nw'}]
    write_rows(path, rows, ("id", "answer"))
    assert read_rows(path) == rows

    def exploding():
        yield {"id": "b", "answer": "1"}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_rows(path, exploding(), ("id", "answer"))
    assert read_rows(path) == rows  # the earlier file survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temp file left behind
