"""`reasonlab bundle`: an offline install that is proven to install and run with no registry.

The slow tests run real pip against the real registry to build a bundle for this machine,
then install it into fresh virtual environments with no index (and, where `unshare --net`
works, no network) and run the demo from it. The fast ones pin the pieces: target tags,
which packages a left-out torch takes along, pip's failures in one line, the manifest's
checks, and the scripts and notebook.
"""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
import tarfile
import time
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment

from reasonlab.plans.bundle.build import BundleOptions, _build_requirements, build_bundle
from reasonlab.plans.bundle.check import check_bundle
from reasonlab.plans.bundle.kernels import KERNELS, KernelPlan, _sdist_requirements
from reasonlab.plans.bundle.manifest import (
    MANIFEST_FILE,
    BundleError,
    describe_file,
    read_manifest,
    verify_files,
    write_manifest,
)
from reasonlab.plans.bundle.pip import Resolution, Resolved, pip_failure, split_left_out
from reasonlab.plans.bundle.scripts import install_script, notebook, run_script
from reasonlab.plans.bundle.target import KAGGLE, Target

REPO = Path(__file__).resolve().parents[1]
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

# --- target tags: what a pip on the target machine accepts -------------------------------


@pytest.mark.parametrize(
    ("platform", "first", "contains", "excludes", "count"),
    [
        # glibc 2.35 runs every older manylinux wheel, legacy names included
        ("manylinux_2_35_x86_64", "manylinux_2_35_x86_64", "manylinux1_x86_64", "linux_x86_64", 34),
        ("manylinux_2_17_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_18_x86_64", 16),
        # manylinux2014 is the only legacy name aarch64 has
        ("manylinux_2_28_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64", "manylinux2010_aarch64", 25),
        # anything else is taken literally
        ("win_amd64", "win_amd64", "win_amd64", "manylinux1_x86_64", 1),
    ],
)  # fmt: skip
def test_platform_tags(platform, first, contains, excludes, count):
    tags = Target("3.12", platform).platform_tags()
    assert tags[0] == first and contains in tags and excludes not in tags
    assert len(tags) == count


def test_target_pip_args_and_native_builds():
    args = KAGGLE.pip_args(native=True)
    assert args[:7] == ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.12", "--abi", "cp312"]  # fmt: skip
    assert args[-2:] == ["--platform", "linux_x86_64"]  # a wheel compiled here, like the target


@pytest.mark.parametrize(
    ("python", "platform", "message"),
    [("3", "manylinux_2_35_x86_64", "major.minor"), ("3.12", "Many Linux", "platform tag")],
)
def test_bad_target(python, platform, message):
    with pytest.raises(ValueError, match=message):
        Target(python, platform)


# --- what leaving torch out takes along ----------------------------------------------------


def _package(name, requires=(), requested=False, extras=()):
    return Resolved(name, "1.0", f"https://x/{name}-1.0-py3-none-any.whl", "0" * 64, requested, extras, requires)  # fmt: skip


def test_left_out_package_takes_only_what_nothing_else_needs():
    resolution = Resolution(
        (
            _package(
                "reasonlab",
                ["typer>=0.12", "torch>=2.6; extra == 'train'", "huggingface-hub; extra == 'train'", "pytest; extra == 'dev'"],
                requested=True,
                extras=("train",),
            ),
            _package("typer", ["click>=8"]),
            _package("click"),
            _package("torch", ["nvidia-cublas; platform_system == 'Linux'", "filelock", "sympy", "setuptools; python_version >= '9.0'"]),
            _package("nvidia-cublas"),
            _package("sympy", ["mpmath"]),
            _package("mpmath"),
            _package("filelock"),  # torch needs it, and so does huggingface-hub
            _package("huggingface_hub", ["filelock"]),
            _package("pytest"),  # only the dev extra, which was not asked for
            _package("setuptools"),  # only under a marker that does not hold
        ),
        dict(default_environment(), platform_system="Linux"),
        "23.2.1",
    )  # fmt: skip
    kept, dropped = split_left_out(resolution, ["Torch"])
    assert sorted(p.key for p in kept) == ["click", "filelock", "huggingface-hub", "reasonlab", "typer"]  # fmt: skip
    assert sorted(p.key for p in dropped) == ["mpmath", "nvidia-cublas", "pytest", "setuptools", "sympy", "torch"]  # fmt: skip


# --- pip's failures in one line --------------------------------------------------------------

_CONFLICT = """ERROR: Cannot install torch==2.13.0 because these package versions have conflicting dependencies.

The conflict is caused by:
    The user requested torch==2.13.0
    The user requested (constraint) torch<=2.14.1

To fix this you could try to:"""


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            (
                "ERROR: Could not find a version that satisfies the requirement rich>=13 (from reasonlab[eval,train]) (from versions: none)\n"
                "ERROR: No matching distribution found for rich>=13"
            ),
            "missing package: no distribution of rich>=13 (needed by reasonlab[eval,train]) is available",
        ),
        ("ERROR: No matching distribution found for einops", "missing package: no distribution of einops is available"),
        (_CONFLICT, "conflicting packages: The user requested torch==2.13.0; The user requested (constraint) torch<=2.14.1"),
        (  # `pip check`
            "trl 1.16.0 has requirement transformers>=5.3, but you have transformers 4.57.0.",
            "conflicting packages: trl 1.16.0 has requirement transformers>=5.3, but you have transformers 4.57.0.",
        ),
        (
            (
                "WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError(...)': /simple/foo/\n"
                "ERROR: Could not find a version that satisfies the requirement foo (from versions: none)"
            ),
            "missing package: no distribution of foo is available (the package registry was not reachable)",
        ),
        ("Traceback (most recent call last):\nModuleNotFoundError: No module named 'torch'", "module torch is not importable"),
        ("collecting\nERROR: something else went wrong\n", "something else went wrong"),
    ],
)  # fmt: skip
def test_pip_failure_in_one_line(output, expected):
    assert pip_failure(output.splitlines()) == expected


# --- the manifest ------------------------------------------------------------------------------


def _wheel(folder: Path, name: str, version_: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel (what a package index would serve), written by hand."""
    dist = f"{name}-{version_}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version_}\n"
    metadata += "".join(f"Requires-Dist: {line}\n" for line in requires)
    files = {
        f"{name}/__init__.py": "",
        f"{dist}/METADATA": metadata,
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    path = folder / f"{name}-{version_}-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def _mini_bundle(root: Path, wheels: dict[str, tuple[str, tuple[str, ...]]], install: str) -> Path:
    """A bundle folder with hand-made wheels, the real install.sh and a real manifest."""
    paths = [_wheel(root / "wheels", name, v, requires) for name, (v, requires) in wheels.items()]
    (root / "install.sh").write_text(install_script("this machine", [install], [], []))
    files = [describe_file(root, p, "wheel") for p in paths]
    files.append(describe_file(root, root / "install.sh", "script"))
    meta = {
        "target": {"python": THIS_PYTHON},
        "install": {"requirements": [install]},
        "left_out": [],
        "build_on_target": [],
    }
    write_manifest(root, meta, files)
    return root


def test_manifest_lists_every_file_with_sha256_and_version(tmp_path):
    bundle = _mini_bundle(tmp_path, {"tinypkg": ("1.0", ())}, "tinypkg==1.0")
    manifest = read_manifest(bundle)
    wheel = next(e for e in manifest["files"] if e["kind"] == "wheel")
    assert (wheel["name"], wheel["version"], len(wheel["sha256"])) == ("tinypkg", "1.0", 64)
    assert manifest["total_bytes"] == sum(e["bytes"] for e in manifest["files"])
    verify_files(bundle, manifest)  # as written: passes


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: (b / "wheels/tinypkg-1.0-py3-none-any.whl").write_bytes(b"x"), "tinypkg-1.0-py3-none-any.whl: sha256 differs"),
        (lambda b: (b / "install.sh").unlink(), "install.sh: listed in the manifest but missing"),
        (lambda b: _wheel(b / "wheels", "extra", "2.0"), "extra-2.0-py3-none-any.whl: not in the manifest"),
    ],
)  # fmt: skip
def test_manifest_check_names_the_file(tmp_path, damage, message):
    bundle = _mini_bundle(tmp_path, {"tinypkg": ("1.0", ())}, "tinypkg==1.0")
    damage(bundle)
    with pytest.raises(BundleError, match=message):
        verify_files(bundle, read_manifest(bundle))


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), ("{", "not valid JSON"), ('{"format": "other"}', "format is not")],
)
def test_bad_manifest(tmp_path, content, message):
    if content is not None:
        (tmp_path / MANIFEST_FILE).write_text(content)
    with pytest.raises(BundleError, match=message):
        read_manifest(tmp_path)


def test_check_refuses_another_python(tmp_path):
    bundle = _mini_bundle(tmp_path, {"tinypkg": ("1.0", ())}, "tinypkg==1.0")
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest["target"]["python"] = "3.99"
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="the bundle is for Python 3.99.*give --python"):
        check_bundle(bundle)


# --- options, before any pip runs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"leave_out": ("torch[cuda]",)}, "--leave-out 'torch\\[cuda\\]': give a name and a version only"),
        ({"pins": ("torch==",)}, "--pin 'torch==': not a requirement"),
        ({"recipe": Path("no/such.yaml")}, "--recipe no/such.yaml: no such file"),
        ({"data": (Path("no/such.csv"),)}, "--data no/such.csv: no such file"),
        ({"tokenizer": Path("no/such")}, "--tokenizer no/such: no such folder"),
    ],
)  # fmt: skip
def test_bad_options(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        BundleOptions(out_dir=tmp_path / "b", **options)


@pytest.mark.parametrize(
    ("recipe_changes", "extra_data", "message"),
    [
        ({"data": "no/such.jsonl"}, None, "its data no/such.jsonl is not a file here"),
        ({"lora": {"r": 64}}, None, "lora.r: .*exceeds the competition's limit of 32"),
        ({}, "other/sft.jsonl", "two data files share a name"),
    ],
)  # fmt: skip
def test_user_files_are_refused_before_any_download(tmp_path, recipe_changes, extra_data, message):
    (tmp_path / "sft.jsonl").write_text("{}\n")
    recipe = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
    recipe.update({"data": str(tmp_path / "sft.jsonl"), **recipe_changes})
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    data = ()
    if extra_data:
        (tmp_path / extra_data).parent.mkdir()
        (tmp_path / extra_data).write_text("{}\n")
        data = (tmp_path / extra_data,)
    options = BundleOptions(out_dir=tmp_path / "b", recipe=tmp_path / "r.yaml", data=data)
    with pytest.raises(ValueError, match=message):
        build_bundle(options)
    assert not (tmp_path / "b").exists()  # nothing was built, let alone downloaded


def test_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="holds notes.txt, which no bundle writes"):
        build_bundle(BundleOptions(out_dir=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_cli_needs_exactly_one_mode(cli, tmp_path):
    assert "give -o DIR" in cli("bundle", expect=1).output
    assert "give -o DIR" in cli("bundle", "-o", tmp_path, "--check", tmp_path, expect=1).output


# --- kernels, scripts and the notebook ------------------------------------------------------------


def test_kernel_requirements_come_from_the_sdist(tmp_path):
    """pyproject's build requires and dependencies, PKG-INFO's Requires-Dist; no extras, not itself."""
    sdist = tmp_path / "mamba_ssm-2.2.6.post3.tar.gz"
    members = {
        "mamba_ssm-2.2.6.post3/pyproject.toml": '[build-system]\nrequires = ["setuptools", "wheel", "torch"]\n'
        '[project]\ndependencies = ["torch", "triton", "einops"]\n',
        "mamba_ssm-2.2.6.post3/PKG-INFO": "Name: mamba_ssm\nRequires-Dist: ninja\n"
        'Requires-Dist: causal-conv1d>=1.2.0; extra == "causal-conv1d"\nRequires-Dist: mamba-ssm[dev]\n',
        "mamba_ssm-2.2.6.post3/tests/pyproject.toml": '[build-system]\nrequires = ["ignored"]\n',
    }  # fmt: skip
    with tarfile.open(sdist, "w:gz") as archive:
        for name, text in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
    assert _sdist_requirements(sdist, "mamba-ssm") == ("setuptools", "wheel", "torch", "triton", "einops", "ninja")  # fmt: skip


def test_target_build_command_is_exact():
    plans = [KernelPlan(k, Path(f"x/{k.name.replace('-', '_')}-{k.version}.tar.gz"), None, (), "") for k in KERNELS]  # fmt: skip
    assert [plan.command() for plan in plans] == [
        "CAUSAL_CONV1D_FORCE_BUILD=TRUE python -m pip install --no-index --find-links wheels --no-build-isolation sdist/causal_conv1d-1.5.3.post1.tar.gz",
        "MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE python -m pip install --no-index --find-links wheels --no-build-isolation sdist/mamba_ssm-2.2.6.post3.tar.gz",
    ]  # fmt: skip
    script = install_script("Kaggle", ["reasonlab[train]==0.1.0", "ninja"], plans, ["torch"])
    assert "--no-index --find-links \"$here/wheels\" 'reasonlab[train]==0.1.0' ninja" in script
    assert (
        'MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE "$python" -m pip install --no-index'
        in script
    )


def test_kernel_build_requirements_merge_and_skip_the_left_out():
    causal, mamba = KERNELS
    plans = [
        KernelPlan(causal, Path("c.tar.gz"), None, ("setuptools", "wheel", "torch", "ninja"), ""),
        KernelPlan(mamba, Path("m.tar.gz"), None, ("setuptools>=61.0.0", "Wheel", "triton", "einops"), ""),
    ]  # fmt: skip
    assert _build_requirements(plans, ("torch==2.6.0", "triton")) == ["setuptools>=61.0.0", "wheel", "ninja", "einops"]  # fmt: skip


@pytest.mark.parametrize("recipe", [None, "nemotron-1gpu.yaml"])
@pytest.mark.parametrize("kernels", [False, True])
def test_scripts_are_valid_bash_and_the_notebook_valid_python(tmp_path, recipe, kernels):
    plans = [KernelPlan(k, Path(f"{k.name}.tar.gz"), None, (), "") for k in KERNELS] if kernels else []  # fmt: skip
    for name, text in [
        ("install.sh", install_script("t", ["reasonlab==0.1.0"], plans, [])),
        ("run.sh", run_script(recipe, "sft.jsonl" if recipe else None)),
    ]:
        (tmp_path / name).write_text(text)
        subprocess.run(["bash", "-n", tmp_path / name], check=True)
    page = notebook(recipe is not None, has_tokenizer=True)
    assert page["nbformat"] == 4 and page["cells"][0]["cell_type"] == "markdown"
    code = [c for c in page["cells"] if c["cell_type"] == "code"]
    for cell in code:  # IPython's `!command` lines aside, every cell is Python
        ast.parse("".join(line for line in cell["source"] if not line.startswith("!")))
    shell = "".join(line for c in code for line in c["source"] if line.startswith("!"))
    assert 'bash "{BUNDLE}/install.sh"' in shell and 'bash "{BUNDLE}/run.sh"' in shell


# --- the real thing: pip, the registry, a fresh virtual environment --------------------------------


def _recipe_with_data(folder: Path) -> tuple[Path, Path]:
    """The tiny-cpu recipe pointed at SFT rows traced from generated puzzles; an eval CSV."""
    from reasonlab.data.generate import generate_mixed
    from reasonlab.data.traces import build_traces
    from reasonlab.formats.csvio import write_rows
    from reasonlab.formats.jsonl import write_jsonl

    folder.mkdir()
    sft = folder / "sft.jsonl"
    write_jsonl(sft, build_traces(generate_mixed(2, seed=0)).rows)
    recipe = yaml.safe_load((REPO / "configs" / "tiny-cpu.yaml").read_text())
    recipe["data"] = str(sft)
    (folder / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    evaluation = folder / "eval.csv"
    write_rows(evaluation, generate_mixed(1, seed=1), ("id", "prompt", "answer"))
    return folder / "tiny.yaml", evaluation


def _wheel_names(bundle: Path) -> set[str]:
    return {p.name for p in (bundle / "wheels").glob("*.whl")}


@pytest.mark.slow  # downloads ~350 MB once, installs twice: ~15 min on 2 busy cores
def test_bundle_for_this_machine_installs_and_runs_the_demo_offline(tmp_path):
    torch_version = version("torch")  # the CPU build on this machine's disk (pip finds it)
    recipe, evaluation = _recipe_with_data(tmp_path / "user")
    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    (tokenizer / "tokenizer_config.json").write_text('{"model_max_length": 8192}')
    out = tmp_path / "bundle"
    common = {
        "out_dir": out,
        "target": Target.this_machine(),
        "kernels": False,
        "recipe": recipe,
        "data": (evaluation,),
        "tokenizer": tokenizer,
    }
    lines: list[str] = []
    started = time.monotonic()

    def echo(line: str) -> None:  # the log, timed, shown with `pytest -s`
        lines.append(line)
        print(f"[{time.monotonic() - started:6.0f} s] {line}", flush=True)

    # 1. The Kaggle shape: torch left out (the image has it); the check lends this Python's.
    first = build_bundle(BundleOptions(**common, leave_out=("torch",)), echo=echo)
    manifest = read_manifest(out)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {e["path"] for e in manifest["files"]} == on_disk - {MANIFEST_FILE}
    wheels = [e for e in manifest["files"] if e["kind"] == "wheel"]
    assert all(e["name"] and e["version"] and len(e["sha256"]) == 64 for e in wheels)
    assert {e["name"] for e in wheels} >= {"reasonlab", "transformers", "peft", "trl"}
    assert not any(e["name"] == "torch" for e in wheels)
    assert {"name": "torch", "why": "left out: the target provides it"}.items() <= next(
        e for e in manifest["left_out"] if e["name"] == "torch"
    ).items()
    kinds = {e["path"]: e["kind"] for e in manifest["files"]}
    assert kinds["recipe/tiny.yaml"] == "recipe" and kinds["data/sft.jsonl"] == "data"
    assert (
        kinds["data/eval.csv"] == "data" and kinds["tokenizer/tokenizer_config.json"] == "tokenizer"
    )
    assert manifest["recipe"] == {"path": "recipe/tiny.yaml", "data": "data/sft.jsonl"}
    assert first.downloaded == first.wheels - 1  # all but the project's own wheel

    checked = check_bundle(out, echo=echo)
    assert "torch" in checked.lent
    assert checked.installed >= len(wheels) and checked.demo_seconds > 0
    assert checked.recipe.startswith("recipe") and "LoRA rank 8" in checked.recipe
    assert any("done verify: 9/9 checks pass" in line for line in lines)

    # 2. Everything bundled, torch included: a rerun over the same folder keeps every wheel
    # it can and downloads only what is new; then a check with nothing lent.
    before = _wheel_names(out)
    second = build_bundle(
        BundleOptions(**common, leave_out=(), pins=(f"torch=={torch_version}",)), echo=echo
    )
    after = _wheel_names(out)
    assert any(name.startswith("torch-") for name in after - before)
    assert second.downloaded == len(after - before)
    assert second.reused == len(after & before) - 1  # the project's wheel is rebuilt
    assert sorted(second.removed) == sorted(f"wheels/{n}" for n in before - after)
    checked = check_bundle(out, echo=echo)
    assert checked.lent == [] and checked.installed >= len(after)

    # 3. A bundle that lacks a package fails, naming it.
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    rich = next(e for e in manifest["files"] if e.get("name") == "rich")
    manifest["files"].remove(rich)
    (out / rich["path"]).unlink()
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="install.sh failed: missing package: .* of rich") as err:
        check_bundle(out, echo=echo)
    echo(f"error: {err.value}")


@pytest.mark.slow  # two fresh virtual environments: ~30 s
@pytest.mark.parametrize(
    ("wheels", "message"),
    [
        ({"tinypkg": ("1.0", ("absentpkg",))}, "missing package: no distribution of absentpkg"),
        (
            {"tinypkg": ("1.0", ("otherpkg>=2",)), "otherpkg": ("1.0", ())},
            r"missing package: no distribution of otherpkg>=2 \(needed by tinypkg\)",
        ),
    ],
)
def test_check_names_the_missing_or_conflicting_package(tmp_path, wheels, message):
    bundle = _mini_bundle(tmp_path, wheels, "tinypkg==1.0")
    with pytest.raises(BundleError, match=f"install.sh failed: {message}"):
        check_bundle(bundle, echo=lambda line: None)


@pytest.mark.slow  # fetches two sdists (~140 kB) from the registry; their setup.py imports torch
def test_kernel_sources_ship_with_the_command_that_builds_them(tmp_path):
    pytest.importorskip("torch")
    from reasonlab.plans.bundle.kernels import builder_missing, plan_kernels

    staging = tmp_path / "staging"
    staging.mkdir()
    plans = plan_kernels(KAGGLE, tmp_path / "sdist", staging, tmp_path / "wheels")
    assert [p.sdist.name for p in plans] == ["causal_conv1d-1.5.3.post1.tar.gz", "mamba_ssm-2.2.6.post3.tar.gz"]  # fmt: skip
    missing = builder_missing(KAGGLE)
    if missing is not None:  # no nvcc, a CPU torch or another Python: built on the target
        assert all(p.wheel is None and missing in p.note for p in plans)
    causal, mamba = (set(p.requirements) for p in plans)
    assert {"ninja", "packaging", "torch"} <= causal
    assert {"einops", "transformers", "triton", "torch"} <= mamba
