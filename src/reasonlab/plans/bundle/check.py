"""`reasonlab bundle --check DIR`: install the bundle with no registry, then run the demo from it.

1. every file the manifest lists is there with its sha256, and nothing unlisted sits in
   wheels/ or sdist/;
2. a fresh virtual environment from `python` (of the target's Python version);
3. packages the bundle leaves out for the target image (torch...) are lent from `python`:
   links to exactly those distributions (and what they need that the bundle lacks) on a
   `.pth` path, so everything else must come from the bundle;
4. the bundle's own install.sh, with pip's configuration files ignored, no index, an
   unreachable index URL, and, where `unshare --net` works, no network at all;
5. `pip check`, then `python -m reasonlab demo` from the environment (its reasonlab must be
   the installed wheel, not a checkout), and the bundled recipe validated.

A failure is one BundleError naming the file, the missing package or the conflict.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonlab.plans.bundle.manifest import BundleError, read_manifest, verify_files
from reasonlab.plans.bundle.pip import python_version, run_logged
from reasonlab.plans.bundle.scripts import INSTALL_FILE, RUN_FILE

__all__ = ["UNREACHABLE_INDEX", "CheckResult", "check_bundle", "offline_env"]

UNREACHABLE_INDEX = "http://127.0.0.1:9/simple"  # the discard port: nothing answers there


@dataclass
class CheckResult:
    files: int  # files whose sha256 matched the manifest
    python: str
    isolation: str  # how the registry was kept out
    installed: int = 0  # distributions in the environment after install.sh
    lent: list[str] = field(default_factory=list)  # left-out packages lent by `python`
    kernels: str = ""  # what became of the kernel builds
    recipe: str = ""  # the bundled recipe's validation, when one is bundled
    install_seconds: float = 0.0
    demo_seconds: float = 0.0


def offline_env() -> dict[str, str]:
    """This process's environment without pip's settings and this checkout's PYTHONPATH,
    pointing pip at no index and the Hugging Face libraries at no hub."""
    drop = ("PIP_", "PYTHON", "VIRTUAL_ENV", "CONDA_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(drop)}
    env.update(
        PIP_CONFIG_FILE=os.devnull,  # pip then reads no configuration file at all
        PIP_NO_INDEX="1",
        PIP_INDEX_URL=UNREACHABLE_INDEX,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PYTHONUNBUFFERED="1",  # stream the demo's lines as they come
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
    )
    return env


def check_bundle(
    bundle: Path, python: str = sys.executable, echo: Callable[[str], None] = print
) -> CheckResult:
    """Prove the bundle installs without a registry and runs the demo; BundleError otherwise."""
    manifest = read_manifest(bundle)
    verify_files(bundle, manifest)
    target = manifest["target"]["python"]
    have = python_version(python)
    if have != target:
        raise BundleError(
            f"the bundle is for Python {target}, {python} is {have}: give --python a {target} interpreter"
        )
    isolation, prefix = _isolation()
    result = CheckResult(len(manifest["files"]), python, isolation)
    echo(f"{result.files} files match the manifest; installing with {isolation}")
    env = offline_env()
    with tempfile.TemporaryDirectory(prefix="reasonlab-check-") as tmp:
        work = Path(tmp)
        venv = work / "venv"
        run_logged([python, "-m", "venv", venv], env=env, what="creating a virtual environment")
        venv_python = venv / "bin" / "python"
        result.lent = _lend_left_out(python, venv_python, manifest, venv / "lent", echo)
        result.kernels, skip = _kernel_builds(manifest, python)
        echo(result.kernels)

        started = time.monotonic()
        run_logged(
            [*prefix, "bash", bundle / INSTALL_FILE],
            env={**env, "PYTHON": str(venv_python), "SKIP_KERNEL_BUILD": "1" if skip else "0"},
            on_line=_show(echo, ("Successfully installed", "installed reasonlab", "kernel")),
            what=INSTALL_FILE,
        )
        run_logged([*prefix, venv_python, "-m", "pip", "check"], env=env, what="pip check")
        result.install_seconds = time.monotonic() - started
        installed = run_logged(
            [venv_python, "-m", "pip", "list", "--format", "json"], env=env, what="pip list"
        )
        result.installed = len(json.loads(installed[-1]))
        _installed_not_borrowed(venv_python, venv, env)
        run_logged(["bash", "-n", bundle / RUN_FILE], what=f"{RUN_FILE} (syntax)")

        started = time.monotonic()
        run_logged(
            [*prefix, venv_python, "-m", "reasonlab", "demo", "-o", work / "demo"],
            env=env,
            cwd=work,
            on_line=_show(echo, ("done", "total")),
            what="the demo in the bundle's environment",
        )
        result.demo_seconds = time.monotonic() - started
        if manifest.get("recipe"):
            result.recipe = _validate_recipe(venv_python, bundle, manifest["recipe"], env)
            echo(result.recipe)
    return result


def _isolation() -> tuple[str, list[str]]:
    """A command prefix that cuts the network, where this machine allows one."""
    if shutil.which("unshare"):
        for prefix in (["unshare", "--net"], ["unshare", "--net", "--map-root-user"]):
            probe = subprocess.run([*prefix, "true"], check=False, capture_output=True)
            if probe.returncode == 0:
                return "no network at all (`unshare --net`), no index, no pip config", prefix
    return f"no index, no pip config, index URL {UNREACHABLE_INDEX} (network up)", []


_LEND = r"""
import importlib.metadata as md, json, re, sys
wanted, bundled = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
key = lambda name: re.sub(r"[-_.]+", "-", name).lower()
found, todo = {}, list(wanted)
while todo:
    name = todo.pop()
    if key(name) in found or key(name) in bundled:
        continue
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        found[key(name)] = None
        continue
    found[key(name)] = sorted({str(dist.locate_file(f.parts[0])) for f in dist.files or () if f.parts[0] != ".."})
    todo += [re.match(r"[A-Za-z0-9._-]+", r).group(0) for r in dist.requires or () if "extra ==" not in r]
print(json.dumps(found))
"""


def _lend_left_out(
    python: str, venv_python: Path, manifest: dict[str, Any], lent: Path, echo
) -> list[str]:
    """Put the left-out packages of `python` (and what they need that the bundle lacks) on
    the environment's path: the stand-in for the target image's own torch."""
    wanted = [entry["name"] for entry in manifest["left_out"]]
    if not wanted:
        return []
    bundled = [_key(e["name"]) for e in manifest["files"] if e["kind"] == "wheel"]
    output = run_logged(
        [python, "-c", _LEND, json.dumps(wanted), json.dumps(bundled)],
        what=f"finding the left-out packages in {python}",
    )
    found: dict[str, list[str] | None] = json.loads(output[-1])
    lent.mkdir()
    for paths in found.values():
        for path in paths or ():
            link = lent / Path(path).name
            if not link.exists():
                link.symlink_to(path)
    purelib = run_logged(
        [venv_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        what="locating the environment's site-packages",
    )[-1]
    (Path(purelib) / "_reasonlab_lent.pth").write_text(f"{lent}\n", encoding="utf-8")
    named = {_key(entry["name"]) for entry in manifest["left_out"] if "provides" in entry["why"]}
    absent = sorted(name for name in named if found.get(name) is None)
    names = sorted(name for name, paths in found.items() if paths)
    echo(f"lent by {python} (the target provides them): {', '.join(names) or 'nothing'}")
    if absent:
        echo(f"left out and not in {python} either: {', '.join(absent)}")
    return names


def _kernel_builds(manifest: dict[str, Any], python: str) -> tuple[str, bool]:
    """(what happens to the kernel builds, whether install.sh skips them)."""
    builds = [entry["name"] for entry in manifest["build_on_target"]]
    if not builds:
        return "no kernel to build on the target", True
    cuda = subprocess.run(
        [python, "-c", "import torch; print(torch.version.cuda or '')"],
        check=False,  # no torch there: no CUDA build
        capture_output=True,
        text=True,
    ).stdout.strip()
    if shutil.which("nvcc") and cuda:
        return f"compiling {', '.join(builds)} with nvcc (CUDA {cuda})", False
    why = "no nvcc on PATH" if not shutil.which("nvcc") else "no CUDA build of torch"
    return f"kernel builds not checked ({why} here): {', '.join(builds)}", True


def _installed_not_borrowed(venv_python: Path, venv: Path, env: dict[str, str]) -> None:
    """The environment's reasonlab must be the bundle's wheel, not a checkout on a path."""
    where = run_logged(
        [venv_python, "-c", "import reasonlab; print(reasonlab.__file__)"],
        env=env,
        what="importing reasonlab",
    )[-1]
    if not Path(where).resolve().is_relative_to(venv.resolve()):
        raise BundleError(f"the environment imports reasonlab from {where}, not from its install")


_RECIPE = (
    "import sys; from reasonlab.training.recipe import load_recipe; "
    "r = load_recipe(sys.argv[1], {'data': sys.argv[2]}); "
    "print(f'recipe {sys.argv[1]} loads: LoRA rank {r.lora.r}, {len(r.lora.targets)} target presets')"
)


def _validate_recipe(
    venv_python: Path, bundle: Path, recipe: dict[str, str], env: dict[str, str]
) -> str:
    data = bundle / recipe["data"]
    if not data.is_file():
        raise BundleError(f"{recipe['data']}: the recipe's data is not in the bundle")
    command = [venv_python, "-c", _RECIPE, bundle / recipe["path"], data]
    return run_logged(command, env=env, what="validating the recipe")[-1]


def _key(name: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(name)


def _show(echo: Callable[[str], None], starts: tuple[str, ...]) -> Callable[[str], None]:
    """Echo only the lines that say what happened (pip's and the demo's logs are long)."""

    def show(line: str) -> None:
        if line.strip().startswith(starts):
            echo("  " + line.strip())

    return show
