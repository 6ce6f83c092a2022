"""`reasonlab bundle -o DIR`: everything an internet-off notebook needs, in one folder.

Top to bottom: build the project's wheel; fetch (and, given a builder, compile) the GPU
kernels; let pip resolve the whole set for the target; leave out what the target image
has; download what is not already here and verified; copy the recipe, its data and the
tokenizer; write install.sh, run.sh, the notebook; write the manifest last.

    DIR/wheels/      every wheel pip installs from (`--no-index --find-links`)
    DIR/sdist/       kernel sources to compile on the target (when not built here)
    DIR/recipe/      the training recipe, as given
    DIR/data/        the recipe's data and any --data files
    DIR/tokenizer/   the rebuilt tokenizer (--tokenizer)
    DIR/install.sh, DIR/run.sh, DIR/reasonlab-offline.ipynb
    DIR/bundle-manifest.json

A rerun into the same folder keeps every wheel whose sha256 matches pip's answer and
downloads only the rest, so an interrupted bundle resumes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonlab.formats.files import atomic_write, sha256_file
from reasonlab.plans.bundle.kernels import KernelPlan, plan_kernels
from reasonlab.plans.bundle.manifest import (
    MANIFEST_FILE,
    BundleError,
    FileEntry,
    describe_file,
    write_manifest,
)
from reasonlab.plans.bundle.pip import Resolved, python_version, resolve, run_pip, split_left_out
from reasonlab.plans.bundle.scripts import (
    INSTALL_FILE,
    NOTEBOOK_FILE,
    RUN_FILE,
    install_script,
    notebook,
    run_script,
)
from reasonlab.plans.bundle.target import KAGGLE, KAGGLE_LEAVE_OUT, Target

__all__ = ["BundleOptions", "BundleResult", "build_bundle"]

STAGING = ".staging"  # wheels built this run (the project's, the kernels'): pip's find-links
_TOP_LEVEL = {"wheels", "sdist", "recipe", "data", "tokenizer", STAGING}
_TOP_FILES = {INSTALL_FILE, RUN_FILE, NOTEBOOK_FILE, MANIFEST_FILE}

Progress = Callable[[int | None, str], contextlib.AbstractContextManager[Callable[[int], None]]]


@dataclass(frozen=True)
class BundleOptions:
    out_dir: Path
    target: Target = KAGGLE
    leave_out: tuple[str, ...] = KAGGLE_LEAVE_OUT  # names, or pins such as torch==2.6.0
    pins: tuple[str, ...] = ()  # extra requirements for the resolution, e.g. torch==2.13.0
    extras: tuple[str, ...] = ("train", "eval")  # reasonlab's extras the path needs
    recipe: Path | None = None  # a training recipe; its `data` file is bundled with it
    data: tuple[Path, ...] = ()  # more files for data/ (CSVs to evaluate on, say)
    tokenizer: Path | None = None  # a tokenizer folder (`reasonlab tokenizer -o DIR`)
    kernels: bool = True  # mamba-ssm and causal-conv1d (see kernels.py)
    project: Path | None = None  # the source checkout; default: the one reasonlab runs from
    python: str = sys.executable  # runs pip; one of the target's version reads markers exactly

    def __post_init__(self) -> None:
        from packaging.requirements import InvalidRequirement, Requirement

        for name in ("leave_out", "pins", "extras", "data"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        for option, values in (("--leave-out", self.leave_out), ("--pin", self.pins)):
            for value in values:
                try:
                    requirement = Requirement(value)
                except InvalidRequirement as err:
                    raise ValueError(f"{option} {value!r}: not a requirement ({err})") from None
                if requirement.url or requirement.marker or requirement.extras:
                    raise ValueError(f"{option} {value!r}: give a name and a version only")
        for path, what in [(self.recipe, "--recipe"), *((p, "--data") for p in self.data)]:
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{what} {path}: no such file")
        if self.tokenizer is not None and not Path(self.tokenizer).is_dir():
            raise ValueError(f"--tokenizer {self.tokenizer}: no such folder")


@dataclass
class BundleResult:
    out_dir: Path
    manifest: Path
    wheels: int = 0
    downloaded: int = 0  # fetched by pip this run
    reused: int = 0  # already here with the right sha256
    removed: list[str] = field(default_factory=list)  # stale files of an earlier run
    left_out: list[Resolved] = field(default_factory=list)
    kernels: list[KernelPlan] = field(default_factory=list)
    total_bytes: int = 0


@contextlib.contextmanager
def _no_progress(total: int | None, description: str) -> Iterator[Callable[[int], None]]:
    yield lambda n=1: None


def build_bundle(
    options: BundleOptions,
    echo: Callable[[str], None] = print,
    progress: Progress = _no_progress,
) -> BundleResult:
    """Write (or complete) the bundle in `options.out_dir`; BundleError says what went wrong."""
    out = options.out_dir
    user_files = _user_files(options)
    _refuse_foreign_folder(out)
    (out / MANIFEST_FILE).unlink(missing_ok=True)  # an earlier run's: no longer what is here
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (out / "wheels").mkdir(exist_ok=True)

    # 1. the project's own wheel (pure Python: one wheel serves every target)
    project = options.project or _source_checkout()
    echo(f"building the reasonlab wheel from {project}")
    run_pip(
        sys.executable,
        ["wheel", "--no-deps", "--no-build-isolation", "-w", str(staging), str(project)],
        what=f"building the wheel of {project}",
    )
    version = _project_version(staging)
    extras = f"[{','.join(options.extras)}]" if options.extras else ""
    requirements = [f"reasonlab{extras}=={version}"]

    # 2. GPU kernels that ship only as source
    kernels: list[KernelPlan] = []
    if options.kernels:
        echo("fetching the kernel sources (mamba-ssm, causal-conv1d)")
        kernels = plan_kernels(options.target, out / "sdist", staging, out / "wheels")
        for plan in kernels:
            echo(f"  {plan.kernel.name} {plan.kernel.version}: {plan.note}")
            if plan.wheel is not None:
                requirements.append(f"{plan.kernel.name}=={plan.kernel.version}")
            else:
                requirements += plan.requirements
    else:
        shutil.rmtree(out / "sdist", ignore_errors=True)

    # 3. pip resolves everything for the target, then the left-out packages drop away
    echo(f"resolving for {options.target.describe()} with {options.python}")
    if python_version(options.python) != options.target.python:
        echo(
            f"  note: environment markers are evaluated for {options.python}'s Python, not "
            f"{options.target.python}; give --python a {options.target.python} interpreter to be exact"
        )
    # A left-out pin (torch==2.6.0, the image's) makes the rest agree with the image's version.
    pinned_out = [spec for spec in options.leave_out if _requirement(spec).specifier]
    with progress(None, "resolving") as advance:
        resolution = resolve(
            options.python,
            options.target,
            [*requirements, *options.pins, *pinned_out],
            [staging],
            native=any(plan.wheel for plan in kernels),
            on_line=lambda line: advance(1) if line.startswith("Collecting") else None,
        )
    kept, dropped = split_left_out(resolution, [_name_of(spec) for spec in options.leave_out])
    echo(
        f"  {len(kept)} packages to bundle; left out: "
        + (", ".join(f"{p.name} {p.version}" for p in dropped) or "nothing")
    )

    # 4. wheels: reuse what is here and verified, copy what was built, download the rest
    result = BundleResult(out, out / MANIFEST_FILE, left_out=dropped, kernels=kernels)
    result.downloaded, result.reused = _collect_wheels(options, kept, staging, echo, progress)
    wanted = {p.filename for p in kept}
    result.removed = _remove_stale(out / "wheels", wanted)
    if options.kernels:
        result.removed += _remove_stale(out / "sdist", {plan.sdist.name for plan in kernels})

    # 5. the user's files, then the scripts and the notebook
    _copy_user_files(options, user_files, out)
    recipe_name = options.recipe.name if options.recipe else None
    data_name = user_files.recipe_data
    builds = [plan for plan in kernels if plan.wheel is None]
    install_requirements = requirements[:1] + [
        f"{plan.kernel.name}=={plan.kernel.version}" for plan in kernels if plan.wheel is not None
    ]
    install_requirements += _build_requirements(builds, options.leave_out)
    left_names = sorted({_name_of(spec) for spec in options.leave_out})
    _write_text(
        out / INSTALL_FILE,
        install_script(options.target.describe(), install_requirements, builds, left_names),
        mode=0o755,
    )
    _write_text(out / RUN_FILE, run_script(recipe_name, data_name), mode=0o755)
    page = notebook(recipe_name is not None, options.tokenizer is not None)
    _write_text(out / NOTEBOOK_FILE, json.dumps(page, indent=1) + "\n")

    # 6. the manifest, last: a bundle with a manifest is a finished one
    shutil.rmtree(staging)
    files = _describe_all(out)
    result.wheels = sum(entry.kind == "wheel" for entry in files)
    result.total_bytes = sum(entry.bytes for entry in files)
    meta = _manifest_meta(options, version, resolution.pip_version, install_requirements)
    meta["recipe"] = (
        {"path": f"recipe/{recipe_name}", "data": f"data/{data_name}"} if recipe_name else None
    )
    meta["left_out"] = [
        {"name": p.name, "version": p.version, "why": _why_left_out(p, options.leave_out)}
        for p in dropped
    ]
    meta["build_on_target"] = [
        {
            "name": plan.kernel.name,
            "version": plan.kernel.version,
            "sdist": f"sdist/{plan.sdist.name}",
            "command": plan.command(),
            "note": plan.note,
        }
        for plan in builds
    ]
    meta["built_here"] = [
        {"name": p.kernel.name, "version": p.kernel.version, "note": p.note}
        for p in kernels
        if p.wheel is not None
    ]
    write_manifest(out, meta, files)
    return result


def _refuse_foreign_folder(out: Path) -> None:
    """Write only into a new folder, an empty one, or an earlier bundle: never over other files."""
    if not out.exists():
        out.mkdir(parents=True)
        return
    if not out.is_dir():
        raise BundleError(f"{out}: exists and is not a folder")
    for entry in sorted(out.iterdir()):
        if entry.name not in (_TOP_LEVEL if entry.is_dir() else _TOP_FILES):
            raise BundleError(
                f"{out}: holds {entry.name}, which no bundle writes; give a new or empty folder"
            )


def _source_checkout() -> Path:
    """The checkout this reasonlab runs from (editable install or PYTHONPATH=src)."""
    import reasonlab

    root = Path(reasonlab.__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or 'name = "reasonlab"' not in pyproject.read_text("utf-8"):
        raise BundleError(
            f"no reasonlab source checkout above {Path(reasonlab.__file__).parent}: give --project"
        )
    return root


def _project_version(staging: Path) -> str:
    from packaging.utils import parse_wheel_filename

    wheels = sorted(staging.glob("reasonlab-*.whl"))
    if len(wheels) != 1:
        raise BundleError(f"expected one reasonlab wheel in {staging}, found {len(wheels)}")
    return str(parse_wheel_filename(wheels[0].name)[1])


def _requirement(spec: str):
    from packaging.requirements import Requirement

    return Requirement(spec)


def _name_of(spec: str) -> str:
    return _requirement(spec).name


def _collect_wheels(
    options: BundleOptions,
    kept: list[Resolved],
    staging: Path,
    echo: Callable[[str], None],
    progress: Progress,
) -> tuple[int, int]:
    """Put every kept wheel in wheels/ with pip's sha256; returns (downloaded, reused)."""
    wheels = options.out_dir / "wheels"
    to_fetch = []
    reused = 0
    for package in kept:
        path = wheels / package.filename
        if package.path_in(staging):  # built this run: the project's wheel, a kernel's
            shutil.copy2(staging / package.filename, path)
        elif path.is_file() and sha256_file(path) == package.sha256:
            reused += 1
        else:
            path.unlink(missing_ok=True)  # a partial or changed file is fetched again
            to_fetch.append(package)
    echo(f"  {reused} wheels already here and verified, {len(to_fetch)} to download")
    if to_fetch:
        with tempfile.TemporaryDirectory(prefix="reasonlab-bundle-") as tmp:
            # Exact files with their hashes: pip fetches what it resolved, and checks it.
            listing = Path(tmp) / "requirements.txt"
            listing.write_text(
                "".join(f"{p.url} --hash=sha256:{p.sha256}\n" for p in to_fetch), "utf-8"
            )
            args = ["download", "--no-deps", "--require-hashes", "--progress-bar", "off"]
            args += ["-d", str(wheels), "-r", str(listing), *options.target.pip_args()]
            with progress(len(to_fetch), "downloading wheels") as advance:

                def on_line(line: str) -> None:
                    if line.lstrip().startswith("Downloading"):
                        echo("  " + line.strip())  # pip names the file and its size
                    elif line.startswith(("Saved ", "File was already downloaded")):
                        advance(1)

                run_pip(options.python, args, on_line=on_line, what="downloading wheels")
    for package in kept:
        path = wheels / package.filename
        if not path.is_file() or sha256_file(path) != package.sha256:
            raise BundleError(f"wheels/{package.filename}: missing or not the file pip resolved")
    return len(to_fetch), reused


def _remove_stale(folder: Path, wanted: set[str]) -> list[str]:
    removed = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        if path.name not in wanted:
            path.unlink()
            removed.append(f"{folder.name}/{path.name}")
    return removed


@dataclass(frozen=True)
class _UserFiles:
    recipe: Path | None
    recipe_data: str | None  # file name of the recipe's `data` in data/
    data: tuple[Path, ...]  # every file for data/, the recipe's first


def _user_files(options: BundleOptions) -> _UserFiles:
    """The recipe (validated as `train` would), its data and the --data files, checked before
    any download: a recipe that cannot run must not cost a bundle's worth of wheels first."""
    data_files = list(options.data)
    data_name = None
    if options.recipe is not None:
        from reasonlab.training.recipe import load_recipe

        recipe = load_recipe(options.recipe)
        data = Path(recipe.data)  # relative to the working folder, as `train` reads it
        if not data.is_file():
            raise BundleError(
                f"{options.recipe}: its data {recipe.data} is not a file here (build it first)"
            )
        data_name = data.name
        if data.resolve() not in {p.resolve() for p in data_files}:
            data_files.insert(0, data)
    names = [p.name for p in data_files]
    if len(set(names)) != len(names):
        raise BundleError(f"two data files share a name: {sorted(names)} (data/ is one folder)")
    return _UserFiles(options.recipe, data_name, tuple(data_files))


def _copy_user_files(options: BundleOptions, files: _UserFiles, out: Path) -> None:
    """recipe/, data/ and tokenizer/ afresh (an earlier run's copies are replaced)."""
    for folder in ("recipe", "data", "tokenizer"):
        shutil.rmtree(out / folder, ignore_errors=True)
    if files.recipe is not None:
        (out / "recipe").mkdir()
        shutil.copy2(files.recipe, out / "recipe" / files.recipe.name)
    if files.data:
        (out / "data").mkdir()
    for path in files.data:
        shutil.copy2(path, out / "data" / path.name)
    if options.tokenizer is not None:
        shutil.copytree(options.tokenizer, out / "tokenizer")


def _build_requirements(builds: list[KernelPlan], leave_out: tuple[str, ...]) -> list[str]:
    """What compiling the kernels on the target needs installed first (torch is the image's),
    one line per package: `setuptools` and `setuptools>=61.0.0` become `setuptools>=61.0.0`."""
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name

    left = {canonicalize_name(_name_of(spec)) for spec in leave_out}
    merged: dict[str, tuple[str, SpecifierSet]] = {}
    for plan in builds:
        for line in plan.requirements:
            requirement = _requirement(line)
            key = canonicalize_name(requirement.name)
            if key in left:
                continue
            name, specifier = merged.get(key, (requirement.name, SpecifierSet()))
            merged[key] = (name, specifier & requirement.specifier)
    return [f"{name}{specifier}" for name, specifier in merged.values()]


def _write_text(path: Path, text: str, mode: int = 0o644) -> None:
    with atomic_write(path) as f:
        f.write(text)
    path.chmod(mode)


def _describe_all(out: Path) -> list[FileEntry]:
    kinds: dict[str, Any] = {
        "wheels": "wheel",
        "sdist": "sdist",
        "recipe": "recipe",
        "data": "data",
        "tokenizer": "tokenizer",
    }
    files = [
        describe_file(out, path, kinds[folder])
        for folder in kinds
        for path in sorted((out / folder).rglob("*"))
        if path.is_file()
    ]
    files += [describe_file(out, out / name, "script") for name in (INSTALL_FILE, RUN_FILE)]
    files.append(describe_file(out, out / NOTEBOOK_FILE, "notebook"))
    return files


def _why_left_out(package: Resolved, leave_out: tuple[str, ...]) -> str:
    from packaging.utils import canonicalize_name

    named = {canonicalize_name(_name_of(spec)) for spec in leave_out}
    if package.key in named:
        return "left out: the target provides it"
    return "needed only by a left-out package"


def _manifest_meta(
    options: BundleOptions, version: str, pip_version: str, install: list[str]
) -> dict[str, Any]:
    import platform

    return {
        "reasonlab": version,
        "target": {
            "python": options.target.python,
            "implementation": "cp",
            "abi": options.target.abi,
            "platform": options.target.platform,
        },
        "built_with": {
            "python": options.python,
            "python_version": python_version(options.python),
            "pip": pip_version,
            "machine": f"{platform.system()} {platform.machine()}",
        },
        "install": {
            "requirements": install,
            "command": f"bash {INSTALL_FILE}",
            "pip": "pip install --no-index --find-links wheels " + " ".join(install),
        },
        "tokenizer": "tokenizer" if options.tokenizer else None,
    }
