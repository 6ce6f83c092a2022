"""Copy a wheel keeping only the native libraries a given machine loads (RECORD rewritten).

    python scripts/slim_wheel.py bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl \
        --keep libbitsandbytes_cuda130.so --keep libbitsandbytes_cpu.so -o .whl/

bitsandbytes ships one library per CUDA/ROCm/XPU version in one 43 MB wheel, and loads the
one matching torch's CUDA (`libbitsandbytes_cuda130.so` for torch 2.11+cu130). A GPU machine
whose files travel under a size limit needs only that one (and the CPU library): the slim
copy is ~5 MB. Every `.so` not named by `--keep` is left out; everything else is copied byte
for byte, and RECORD lists exactly what the copy holds, so pip installs it as usual.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path, PurePosixPath


def slim_wheel(wheel: Path, keep: set[str], out_dir: Path) -> tuple[Path, list[str]]:
    """Write the slim copy into `out_dir` (same file name); returns it and what was left out."""
    out = out_dir / wheel.name
    if out.resolve() == wheel.resolve():
        raise SystemExit(f"{out}: the output would overwrite the input wheel")
    with zipfile.ZipFile(wheel) as source:
        entries = source.infolist()
        files = {e.filename: PurePosixPath(e.filename).name for e in entries}
        unknown = sorted(set(keep) - set(files.values()))
        if unknown:
            raise SystemExit(f"{wheel}: no {', '.join(unknown)} in this wheel")
        dropped = [f for f, name in files.items() if name.endswith(".so") and name not in keep]
        out_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out.with_suffix(".part"), "w", zipfile.ZIP_DEFLATED) as target:
            for entry in entries:
                if entry.filename in dropped:
                    continue
                data = source.read(entry)
                if entry.filename.endswith(".dist-info/RECORD"):
                    lines = data.decode().splitlines(keepends=True)
                    data = "".join(
                        line for line in lines if line.split(",", 1)[0] not in dropped
                    ).encode()
                target.writestr(entry, data)
    out.with_suffix(".part").replace(out)
    return out, dropped


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--keep", action="append", required=True, help="a library file name")
    parser.add_argument("-o", "--out-dir", type=Path, required=True)
    args = parser.parse_args()
    out, dropped = slim_wheel(args.wheel, set(args.keep), args.out_dir)
    size = out.stat().st_size / 2**20
    print(f"{out}: {size:.1f} MiB, {len(dropped)} libraries left out")


if __name__ == "__main__":
    main()
