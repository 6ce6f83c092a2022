"""Pack an exported adapter into `submission.zip`: files at the root, identical bytes every time.

Only the two files the scorer reads go in (the tokenizer always comes from the base
model). Fixed timestamps, permissions, order and compression make the zip's bytes a
function of the adapter alone, so two packs of one adapter hash the same.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from reasonlab.formats.csvio import DataError
from reasonlab.formats.files import atomic_write, sha256_file
from reasonlab.submission.export import ADAPTER_CONFIG, ADAPTER_WEIGHTS

__all__ = ["PICKLE_SUFFIXES", "PackResult", "pack_adapter"]

PICKLE_SUFFIXES = (
    ".bin",
    ".pt",
    ".pth",
    ".pkl",
    ".pickle",
    ".ckpt",
)  # torch pickles run code on load
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can record


@dataclass(frozen=True)
class PackResult:
    zip_path: Path
    files: list[str]
    bytes: int
    sha256: str


def pack_adapter(adapter_dir: str | Path, zip_path: str | Path) -> PackResult:
    """Zip `adapter_config.json` and `adapter_model.safetensors` of `adapter_dir` at the root."""
    adapter_dir, zip_path = Path(adapter_dir), Path(zip_path)
    if not adapter_dir.is_dir():
        what = (
            "is a file, expected the exported adapter's folder"
            if adapter_dir.exists()
            else "no such folder"
        )
        raise DataError(f"{adapter_dir}: {what}")
    pickles = sorted(p.name for p in adapter_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise DataError(
            f"{adapter_dir}: pickle weights {pickles} are refused; export to safetensors"
        )
    names = [ADAPTER_CONFIG, ADAPTER_WEIGHTS]
    missing = [n for n in names if not (adapter_dir / n).is_file()]
    if missing:
        raise DataError(
            f"{adapter_dir}: missing {', '.join(missing)} (run `reasonlab export` first)"
        )
    with atomic_write(zip_path, binary=True) as f, zipfile.ZipFile(f, "w") as zf:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
            info.create_system = 3  # unix, whatever OS packs it
            with (
                (adapter_dir / name).open("rb") as src,
                zf.open(info, "w", force_zip64=True) as dst,
            ):
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    return PackResult(zip_path, names, zip_path.stat().st_size, sha256_file(zip_path))
