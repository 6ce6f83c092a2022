"""The bundle's manifest: every file with its kind, size, sha256 and (for packages) version.

`bundle-manifest.json` at the bundle's root is written last, so a bundle with a manifest
is a finished one; `--check` starts by proving every listed file is there with its
sha256 and no unlisted package file was slipped in beside them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from reasonlab.formats.files import atomic_write, sha256_file

__all__ = [
    "FORMAT",
    "MANIFEST_FILE",
    "BundleError",
    "FileEntry",
    "describe_file",
    "read_manifest",
    "verify_files",
    "write_manifest",
]

MANIFEST_FILE = "bundle-manifest.json"
FORMAT = "reasonlab-bundle/1"
PACKAGE_DIRS = ("wheels", "sdist")  # folders pip reads: nothing unlisted may sit there

Kind = Literal["wheel", "sdist", "recipe", "data", "tokenizer", "script", "notebook"]


class BundleError(ValueError):
    """A bundle that cannot be built, or does not install; the message names the file or package."""


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the bundle's root, with forward slashes
    kind: Kind
    sha256: str
    bytes: int
    name: str | None = None  # the package's name, for wheels and sdists
    version: str | None = None  # the package's version, for wheels and sdists


def describe_file(root: Path, path: Path, kind: Kind) -> FileEntry:
    """Hash a file of the bundle; a wheel's or sdist's name and version come from its filename."""
    from packaging.utils import parse_sdist_filename, parse_wheel_filename

    name = version = None
    if kind == "wheel":
        name, parsed, _, _ = parse_wheel_filename(path.name)
        version = str(parsed)
    elif kind == "sdist":
        name, parsed = parse_sdist_filename(path.name)
        version = str(parsed)
    return FileEntry(
        path=path.relative_to(root).as_posix(),
        kind=kind,
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
        name=name,
        version=version,
    )


def write_manifest(root: Path, meta: dict[str, Any], files: list[FileEntry]) -> Path:
    """Write the manifest (meta first, then `files` sorted by path, then their total)."""
    entries = sorted(files, key=lambda entry: entry.path)
    document = {
        "format": FORMAT,
        **meta,
        "files": [{k: v for k, v in asdict(e).items() if v is not None} for e in entries],
        "total_bytes": sum(entry.bytes for entry in entries),
    }
    path = root / MANIFEST_FILE
    with atomic_write(path) as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    path.chmod(0o644)  # readable by whoever uploads or installs the bundle
    return path


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of the bundle at `root`, its shape checked; BundleError names what is wrong."""
    path = root / MANIFEST_FILE
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle folder")
    if not path.is_file():
        raise BundleError(f"{path}: not found (is {root} a folder `reasonlab bundle` wrote?)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise BundleError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: format is not {FORMAT}")
    for field in ("target", "install", "files", "left_out", "build_on_target"):
        if field not in manifest:
            raise BundleError(f"{path}: no `{field}` field")
    for number, entry in enumerate(manifest["files"]):
        missing = {"path", "kind", "sha256", "bytes"} - set(entry)
        if missing or entry["kind"] not in get_args(Kind):
            raise BundleError(f"{path}: files[{number}] lacks {sorted(missing) or 'a known kind'}")
    return manifest


def verify_files(root: Path, manifest: dict[str, Any]) -> None:
    """Every listed file exists with its sha256; no unlisted file sits among the packages."""
    listed = set()
    for entry in manifest["files"]:
        path = root / entry["path"]
        listed.add(path)
        if not path.is_file():
            raise BundleError(f"{entry['path']}: listed in the manifest but missing")
        if sha256_file(path) != entry["sha256"]:
            raise BundleError(f"{entry['path']}: sha256 differs from the manifest's (changed?)")
    for folder in PACKAGE_DIRS:
        for path in sorted((root / folder).glob("*")):
            if path not in listed:
                raise BundleError(
                    f"{path.relative_to(root)}: not in the manifest (pip would install it)"
                )
