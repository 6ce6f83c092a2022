"""Files the stages read and write: atomic writes, checks before work, one sha256 for every caller.

An output is written beside its final path and renamed into place, so a crash or Ctrl-C
never leaves half a file where a finished one was expected; it gets the mode a plain
`open(path, "w")` would give (the umask's, or the replaced file's). `check_outputs` runs
before any work: an output that is one of the inputs (the same file once links are
resolved) or that cannot be created is refused then, not after an hour of solving.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "OutputError",
    "atomic_path",
    "atomic_write",
    "check_outputs",
    "require_file",
    "sha256_file",
]


class OutputError(ValueError):
    """An output path that must not or cannot be written; the message names it and why."""


def require_file(path: str | Path, what: str = "file") -> Path:
    """`path` as a Path when it is an existing file; otherwise FileNotFoundError saying what is there."""
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path}: is a folder, expected a {what}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


def _umask() -> int:
    # /proc tells without changing anything; os.umask can only be read by setting it.
    try:
        status = Path("/proc/self/status").read_text()
        if found := re.search(r"^Umask:\s*([0-7]+)$", status, re.MULTILINE):
            return int(found[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_write_mode(path: Path) -> int:
    """The mode `open(path, "w")` leaves: an existing file keeps its own, a new one 0o666 - umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` for writers that take a name; renamed into place on success."""
    path = Path(path)
    if path.is_symlink():  # a plain write goes through the link; so does this one
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, _plain_write_mode(path))  # mkstemp makes it 0600
        finally:
            os.close(fd)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: str | Path, binary: bool = False) -> Iterator[io.IOBase]:
    """Write to a temporary file beside `path`, then rename it into place."""
    with atomic_path(path) as tmp:
        handle = tmp.open("wb") if binary else tmp.open("w", newline="", encoding="utf-8")
        with handle as f:
            yield f


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)  # hard links too
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _check_creatable(path: Path, folder: bool) -> None:
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{path}: is a file, expected a folder to write into")
    if not folder and path.is_dir():
        raise OutputError(f"{path}: is a folder, expected a file path to write")
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{path}: cannot be created: {existing} is not a folder")
    try:  # the only reliable test of writability (ACLs, read-only mounts, root)
        fd, probe = tempfile.mkstemp(prefix=".reasonlab-probe-", dir=existing)
    except OSError as err:
        raise OutputError(
            f"{path}: cannot be created: {existing} is not writable ({err.strerror})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_outputs(
    files: Iterable[str | Path | None] = (),
    inputs: Iterable[str | Path | None] = (),
    folders: Iterable[str | Path | None] = (),
) -> None:
    """Before any work: every output can be created and none is an input or another output.

    `files` are files the command will write, `folders` folders it will write into,
    `inputs` files it reads (None entries, for options not given, are skipped).
    """
    outputs = [(Path(p), False) for p in files if p is not None]
    outputs += [(Path(p), True) for p in folders if p is not None]
    read = [Path(p) for p in inputs if p is not None]
    for i, (path, folder) in enumerate(outputs):
        clash = next((p for p in read if _same_file(path, p)), None)
        if clash is not None:
            raise OutputError(
                f"{path}: is also an input ({clash}); writing it would destroy that input, "
                "choose another output path"
            )
        twin = next((p for p, _ in outputs[:i] if _same_file(path, p)), None)
        if twin is not None:
            raise OutputError(f"{path}: given as two different outputs ({twin})")
        _check_creatable(path, folder)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks (adapters and datasets can be GBs)."""
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
