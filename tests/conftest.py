"""Shared fixtures: CSV writers, the CLI runner, the tiny model and the train command."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reasonlab.cli import app

REPO = Path(__file__).resolve().parents[1]
# The competition's dev split sits beside the checkout on dev machines and in CI; it is
# never committed, so tests that read it skip without it.
DEV_CSV = REPO.parent / "shared" / "data" / "train_dev.csv"
TINY_RECIPE = REPO / "configs" / "tiny-cpu.yaml"
# The real base model's config.json, beside the checkout like the dev split (not committed).
REAL_CONFIG_COPY = REPO.parent / "shared" / "data" / "nemotron-3-nano-30b-a3b.config.json"


@pytest.fixture(scope="session", autouse=True)
def _mamba_kernels_by_device() -> None:
    """Where the Mamba kernels are installed (a GPU machine), the tests' CPU models take the
    PyTorch path as `train` and `eval` would (`training.engine.kernels.prepare`)."""
    from reasonlab.training.engine.kernels import prepare

    prepare()


@pytest.fixture(scope="session")
def dev_rows() -> dict[str, list[dict[str, str]]]:
    """The dev split's rows grouped by family (`unknown` included); skips when absent."""
    from reasonlab.formats.csvio import read_rows
    from reasonlab.puzzles.registry import classify

    if not DEV_CSV.is_file():
        pytest.skip("dev CSV (train_dev.csv) not present")
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in read_rows(DEV_CSV, required=("id", "prompt", "answer")):
        groups[classify(row["prompt"]).family].append(row)
    return groups


@pytest.fixture(scope="session")
def real_config() -> Path:
    """The real base model's config.json (shared beside the checkout); skips when absent."""
    if not REAL_CONFIG_COPY.is_file():
        pytest.skip("no copy of the real config here")
    return REAL_CONFIG_COPY


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write rows (dicts) to a CSV in tmp_path; returns its path."""

    def write(
        name: str, rows: Sequence[dict[str, str]], columns: Sequence[str] | None = None
    ) -> Path:
        path = tmp_path / name
        columns = list(columns or rows[0].keys())
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        return path

    return write


@pytest.fixture(scope="session")
def generated_csv(tmp_path_factory) -> Callable[..., Path]:
    """Write puzzles of the project's own generators to a competition-style CSV; returns it.

    `counts` maps family -> rows, each family drawn with `seed`.
    """
    from reasonlab.data.generate import generate_rows
    from reasonlab.formats.csvio import write_rows

    def write(counts: dict[str, int], seed: int) -> Path:
        rows = [row for family, n in counts.items() for row in generate_rows(family, n, seed=seed)]
        path = tmp_path_factory.mktemp("generated") / "puzzles.csv"
        write_rows(path, rows, ("id", "prompt", "answer"))
        return path

    return write


@pytest.fixture(scope="session")
def cli() -> Callable[..., object]:
    """Run `reasonlab ARGS...` in-process; returns the click Result."""
    runner = CliRunner()

    def run(*args: str, expect: int = 0):
        result = runner.invoke(app, [str(a) for a in args])
        if result.exit_code != expect:
            raise AssertionError(
                f"reasonlab {' '.join(map(str, args))} exited {result.exit_code}, expected {expect}\n"
                f"{result.output}\n{result.exception!r}"
            )
        return result

    return run


@pytest.fixture(scope="session")
def real_tokenizer():
    """The base model's real tokenizer, rebuilt once into the user cache and loaded once.

    Needs the train extra (transformers, tokenizers, trl, mistral-common): skips without
    transformers, and fails, rather than skips, when transformers is there but the
    tokenizer cannot be rebuilt (a broken install must not pass as a skipped test).
    """
    pytest.importorskip("transformers")
    from reasonlab.formats.tokenizer import cached_tokenizer_dir, load_tokenizer

    return load_tokenizer(cached_tokenizer_dir())


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """One tiny random nemotron_h (with its tokenizer and toy SFT rows) for the whole run.

    Tests read it and never write into it: outputs go to their own tmp folders.
    """
    pytest.importorskip("transformers")
    from reasonlab.training.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def train_cli(cli, tiny_model) -> Callable[..., object]:
    """`reasonlab train configs/tiny-cpu.yaml` on the tiny model into `output_dir`, plus flags."""
    from reasonlab.training.tiny_model import TOY_DATA_FILE

    def run(output_dir: Path, *flags: str, expect: int = 0, model=None, data=None):
        model = Path(model or tiny_model)
        data = data or model / TOY_DATA_FILE
        args = ("--model", model, "--data", data, "--output-dir", output_dir)
        return cli("train", TINY_RECIPE, *args, *flags, expect=expect)

    return run
