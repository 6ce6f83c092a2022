"""GPU kernel packages that PyPI ships only as source: built here when possible, else on the target.

transformers' `nemotron_h` runs its Mamba layers through `mamba_ssm` (Triton and CUDA) and
`causal_conv1d` (CUDA) when both import, and through a slower PyTorch path otherwise.
Neither has a wheel on PyPI, and the setup.py of each, without `*_FORCE_BUILD=TRUE`,
tries to download a prebuilt wheel from GitHub, which an internet-off notebook cannot
reach (and only an HTTP error, not a missing network, falls back to compiling).

A build needs nvcc, a CUDA build of torch and the target's Python: the extension is
compiled against that torch's ABI, so the wheel only loads beside the same torch. Where
this machine has all three the wheel is built here; otherwise the sdist ships and the
manifest and install.sh carry the exact command that compiles it on the target.

mamba-ssm is built Triton-only (`MAMBA_SKIP_CUDA_BUILD=TRUE`): Mamba-2 (this model) needs
only its Triton SSD kernels, and the skipped CUDA part (Mamba-1's selective scan) is what
makes a full build take most of an hour. Its package root still imports that missing
`selective_scan_cuda` extension (2.2.6.post3 and 2.3.2.post1 alike), which would send
transformers silently to the PyTorch path; `training.engine.kernels.prepare()` satisfies that
import before the model is built, and `train` prints which path ran.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

from reasonlab.plans.bundle.manifest import BundleError
from reasonlab.plans.bundle.pip import run_pip
from reasonlab.plans.bundle.target import Target

__all__ = ["KERNELS", "Kernel", "KernelPlan", "builder_missing", "plan_kernels"]


@dataclass(frozen=True)
class Kernel:
    name: str
    version: str
    metadata_env: tuple[tuple[str, str], ...]  # lets setup.py report its metadata without nvcc
    build_env: tuple[tuple[str, str], ...]  # compile from source, never fetch from GitHub
    undeclared: tuple[str, ...] = ()  # what its setup.py needs that its sdist's metadata omits


# The newest mamba-ssm before 2.3, which added tilelang and quack-kernels (GPU-only wheels)
# to its requirements, and the causal-conv1d of the same months (`mamba_ssm` 2.2.6 imports
# its `cpp_functions`, which 1.5.3 has).
KERNELS = (
    Kernel(
        "causal-conv1d",
        "1.5.3.post1",
        metadata_env=(("CAUSAL_CONV1D_SKIP_CUDA_BUILD", "TRUE"),),
        build_env=(("CAUSAL_CONV1D_FORCE_BUILD", "TRUE"),),
        # setup.py imports packaging and lists ninja (parallel nvcc); PKG-INFO and pyproject don't
        undeclared=("packaging", "ninja"),
    ),
    Kernel(
        "mamba-ssm",
        "2.2.6.post3",
        metadata_env=(("MAMBA_SKIP_CUDA_BUILD", "TRUE"),),
        build_env=(("MAMBA_SKIP_CUDA_BUILD", "TRUE"), ("MAMBA_FORCE_BUILD", "TRUE")),
    ),
)


@dataclass(frozen=True)
class KernelPlan:
    kernel: Kernel
    sdist: Path
    wheel: Path | None  # built on this machine; None: build on the target
    requirements: tuple[str, ...]  # what its build and its import need besides itself
    note: str  # why it was (not) built here

    def command(self, python: str = "python", wheels: str = "wheels", sdist: str = "") -> str:
        """The exact command that compiles and installs it on the target, offline."""
        env = " ".join(f"{key}={value}" for key, value in self.kernel.build_env)
        source = sdist or f"sdist/{self.sdist.name}"
        return (
            f"{env} {python} -m pip install --no-index --find-links {wheels} "
            f"--no-build-isolation {source}"
        )


def builder_missing(target: Target) -> str | None:
    """Why this machine cannot build the kernels for `target`; None when it can."""
    if shutil.which("nvcc") is None:
        return "no nvcc on PATH"
    try:
        import torch
    except ImportError:
        return "torch is not importable"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU build"
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here != target.python:
        return f"this Python is {here}, the target's {target.python}"
    return None


def plan_kernels(
    target: Target,
    sdist_dir: Path,
    staging: Path,
    built_before: Path,
    on_line: Callable[[str], None] | None = None,
) -> list[KernelPlan]:
    """Fetch every kernel's sdist, then build its wheel into `staging` or plan a target build.

    A wheel built by an earlier run (in `built_before`) is reused: a CUDA build takes long.
    """
    sources = _fetch_sources(sdist_dir, on_line)
    missing = builder_missing(target)
    plans = []
    for kernel in KERNELS:
        sdist = sources[kernel.name]
        requirements = _sdist_requirements(sdist, kernel.name) + kernel.undeclared
        earlier = _wheel_of(kernel, built_before)
        if earlier is not None:
            wheel = Path(shutil.copy2(earlier, staging / earlier.name))
            note = f"built by an earlier run ({earlier.name})"
        elif missing is None:
            wheel = _build(kernel, sdist, staging, on_line)
            note = (
                f"built here against torch {_torch_version()}; needs the same torch on the target"
            )
        else:
            wheel, note = None, f"build on the target: {missing} here"
        plans.append(KernelPlan(kernel, sdist, wheel, requirements, note))
    return plans


def _fetch_sources(sdist_dir: Path, on_line: Callable[[str], None] | None) -> dict[str, Path]:
    """`pip download` of the pinned sdists (an existing file is reused by pip itself).

    pip runs each setup.py to read its metadata, and those import torch: so this runs in
    the interpreter that runs reasonlab, with the flags that skip the CUDA part.
    """
    sdist_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    for kernel in KERNELS:
        env.update(kernel.metadata_env)
    args = ["download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation"]
    args += ["--progress-bar", "off", "-d", str(sdist_dir)]
    args += [f"{k.name}=={k.version}" for k in KERNELS]
    try:
        run_pip(sys.executable, args, env=env, on_line=on_line, what="fetching the kernel sources")
    except BundleError as err:
        raise BundleError(
            f"{err} (their setup.py needs torch importable; or --no-kernels)"
        ) from None
    found = {}
    for kernel in KERNELS:
        stem = f"{kernel.name.replace('-', '_')}-{kernel.version}"
        path = sdist_dir / f"{stem}.tar.gz"
        if not path.is_file():
            raise BundleError(f"pip reported success but {path} is not there")
        found[kernel.name] = path
    return found


def _sdist_requirements(sdist: Path, name: str) -> tuple[str, ...]:
    """Its pyproject's build-system requires and dependencies, and PKG-INFO's Requires-Dist.

    Without extras, and without the package itself: what pip must find in the bundle to
    compile and import it on the target.
    """
    found: list[str] = []
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            parts = PurePosixPath(member.name).parts
            if len(parts) != 2 or not member.isfile():
                continue  # only the top folder's own pyproject.toml and PKG-INFO
            data = archive.extractfile(member)
            if data is None:
                continue
            if parts[1] == "pyproject.toml":
                document = tomllib.loads(data.read().decode("utf-8"))
                found += document.get("build-system", {}).get("requires", [])
                found += document.get("project", {}).get("dependencies", [])
            elif parts[1] == "PKG-INFO":
                headers = HeaderParser().parsestr(data.read().decode("utf-8"))
                found += headers.get_all("Requires-Dist") or []
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    unique: list[str] = []
    for line in found:
        requirement = Requirement(line)
        if "extra" in str(requirement.marker or "") or line in unique:
            continue
        if canonicalize_name(requirement.name) != canonicalize_name(name):
            unique.append(line)
    return tuple(unique)


def _wheel_of(kernel: Kernel, folder: Path) -> Path | None:
    stem = f"{kernel.name.replace('-', '_')}-{kernel.version}-"
    return next(iter(sorted(folder.glob(f"{stem}*.whl"))), None)


def _build(kernel: Kernel, sdist: Path, staging: Path, on_line) -> Path:
    """Compile with nvcc into a wheel (`--no-build-isolation`: against this machine's torch)."""
    env = {**os.environ, **dict(kernel.build_env)}
    args = ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir"]
    run_pip(
        sys.executable,
        [*args, "-w", str(staging), str(sdist)],
        env=env,
        on_line=on_line,
        what=f"building {kernel.name}",
    )
    wheel = _wheel_of(kernel, staging)
    if wheel is None:
        raise BundleError(f"building {kernel.name}: pip wrote no wheel into {staging}")
    return wheel


def _torch_version() -> str:
    import torch

    return f"{torch.__version__} (CUDA {torch.version.cuda})"
