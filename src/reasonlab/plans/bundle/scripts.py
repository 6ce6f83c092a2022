"""What a bundle runs on the target: install.sh, run.sh and a Kaggle notebook around them.

install.sh installs with `pip --no-index --find-links wheels/` (no registry is ever asked),
then compiles the source-only GPU kernels; run.sh runs the bundled recipe (train, export,
pack, verify) or, without one, the demo. The notebook finds the bundle and the base model
among the notebook's inputs and calls the two scripts, so a Kaggle user only attaches the
bundle as a dataset and runs all.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from reasonlab.plans.bundle.kernels import KernelPlan

__all__ = ["INSTALL_FILE", "NOTEBOOK_FILE", "RUN_FILE", "install_script", "notebook", "run_script"]

INSTALL_FILE = "install.sh"
RUN_FILE = "run.sh"
NOTEBOOK_FILE = "reasonlab-offline.ipynb"

_PROLOGUE = """set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
"""


def install_script(
    target: str,
    requirements: Sequence[str],
    builds: Sequence[KernelPlan],
    left_out: Sequence[str],
) -> str:
    """install.sh: the packages from wheels/, then each kernel compiled from sdist/."""
    provided = ", ".join(left_out) if left_out else "nothing"
    lines = [
        "#!/usr/bin/env bash",
        "# Install this bundle with no network: every package comes from wheels/ (pip --no-index).",
        f"# Written by `reasonlab bundle` for {target}.",
        "#   bash install.sh                         # into the `python` on PATH",
        "#   PYTHON=/path/to/python bash install.sh  # into another interpreter",
        f"# Left out (the target provides them, with what only they need): {provided}.",
        _PROLOGUE,
        '"$python" -m pip install --no-index --find-links "$here/wheels" '
        + " ".join(shlex.quote(r) for r in requirements),
    ]
    if builds:
        names = " ".join(plan.kernel.name for plan in builds)
        lines += [
            "",
            "# GPU kernels that ship only as source, compiled with nvcc against the installed torch",
            "# (SKIP_KERNEL_BUILD=1 skips them: transformers then takes its slower PyTorch path).",
            'if [ "${SKIP_KERNEL_BUILD:-0}" = 1 ]; then',
            f'  echo "kernel builds skipped (SKIP_KERNEL_BUILD=1): {names}"',
            "else",
        ]
        for plan in builds:
            command = plan.command(
                '"$python"', '"$here/wheels"', f'"$here/sdist/{plan.sdist.name}"'
            )
            lines.append(f"  {command}")
        lines.append("fi")
    lines += [
        "",
        """"$python" -c 'import importlib.metadata as m; print("installed reasonlab", m.version("reasonlab"))'""",
    ]
    return "\n".join(lines) + "\n"


def run_script(recipe: str | None, data: str | None) -> str:
    """run.sh: the bundled recipe end to end on $MODEL, or the demo when no recipe was bundled."""
    head = ["#!/usr/bin/env bash"]
    if recipe is None:
        head += [
            "# No recipe was bundled: run the demo (every stage on a tiny random model, CPU is enough).",
            "#   OUT=/kaggle/working bash run.sh",
            _PROLOGUE + 'out="${OUT:-$PWD/reasonlab-out}"',
            '"$python" -m reasonlab demo -o "$out/demo"',
        ]
        return "\n".join(head) + "\n"
    head += [
        "# Run the bundled recipe: train -> export -> pack -> verify, every output under $OUT.",
        "#   MODEL=/path/to/base-model OUT=/kaggle/working bash run.sh",
        _PROLOGUE
        + 'model="${MODEL:?set MODEL to the base model folder (config.json, weights, tokenizer)}"\n'
        + 'out="${OUT:-$PWD/reasonlab-out}"',
        (
            f'"$python" -m reasonlab train "$here/recipe/{recipe}" --model "$model" '
            f'--data "$here/data/{data}" --output-dir "$out/train"'
        ),
        '"$python" -m reasonlab export "$out/train/adapter" -o "$out/export"',
        '"$python" -m reasonlab pack "$out/export" -o "$out/submission.zip"',
        '"$python" -m reasonlab verify "$out/submission.zip" --config "$model/config.json"',
        'echo "submission: $out/submission.zip"',
    ]
    return "\n".join(head) + "\n"


def notebook(has_recipe: bool, has_tokenizer: bool) -> dict[str, Any]:
    """A Kaggle notebook (nbformat 4) that installs the attached bundle and runs run.sh."""
    intro = [
        "# reasonlab, offline",
        "Installs reasonlab from a bundle written by `reasonlab bundle` and runs "
        + ("the bundled recipe on the base model." if has_recipe else "the demo."),
        "The internet can stay off: pip reads only the bundle's `wheels/` (`--no-index`).",
        "",
        "1. Upload the bundle folder as a Kaggle dataset and add it to this notebook"
        + (", with the base model." if has_recipe else "."),
        "2. Choose the GPU accelerator, then Run All. Outputs land in `/kaggle/working`.",
    ]
    if has_tokenizer:
        intro.append(
            "\nThe rebuilt tokenizer is in `BUNDLE / 'tokenizer'`: pass it to `--tokenizer`."
        )
    find_bundle = """import json, os, sys
from pathlib import Path

# The bundle: the attached input that holds bundle-manifest.json.
BUNDLE = next(p.parent for p in sorted(Path("/kaggle/input").glob("**/bundle-manifest.json")))
manifest = json.loads((BUNDLE / "bundle-manifest.json").read_text())
print(BUNDLE, manifest["target"], f'{manifest["total_bytes"] / 1e6:,.0f} MB')"""
    install = '!PYTHON="{sys.executable}" bash "{BUNDLE}/install.sh"'
    if has_recipe:
        settings = """# The base model: the attached input whose config.json is a nemotron_h (or set MODEL).
def is_base_model(config):
    try:
        return json.loads(config.read_text()).get("model_type") == "nemotron_h"
    except (OSError, ValueError):
        return False


MODEL = next(p.parent for p in sorted(Path("/kaggle/input").glob("**/config.json")) if is_base_model(p))
os.environ.update(MODEL=str(MODEL), OUT="/kaggle/working", PYTHON=sys.executable)
print("base model:", MODEL)"""
    else:
        settings = 'os.environ.update(OUT="/kaggle/working", PYTHON=sys.executable)'
    run = '!bash "{BUNDLE}/run.sh"'
    cells = [("markdown", "\n".join(intro)), ("code", find_bundle), ("code", install)]
    cells += [("code", settings), ("code", run)]
    return {
        "cells": [_cell(number, kind, text) for number, (kind, text) in enumerate(cells)],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _cell(number: int, kind: str, text: str) -> dict[str, Any]:
    lines = text.splitlines(keepends=True)
    cell: dict[str, Any] = {"cell_type": kind, "id": f"cell-{number}", "metadata": {}}
    cell["source"] = lines
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell
