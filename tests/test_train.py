"""End to end on the tiny model through the CLI: tiny-model -> train -> export -> pack -> verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("peft")

from typer.testing import CliRunner

from reasonlab.cli import app

runner = CliRunner()
TINY_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "tiny-cpu.yaml"


def _ok(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    _ok(["tiny-model", "-o", str(root / "tiny")])
    out = _ok(
        [
            "train",
            str(TINY_RECIPE),
            "--model",
            str(root / "tiny"),
            "--data",
            str(root / "tiny" / "toy_sft.jsonl"),
            "--output-dir",
            str(root / "train"),
            "--max-steps",
            "8",
        ]
    )
    return root, out


def test_train_lowers_the_loss_and_adapts_every_preset(trained):
    root, output = trained
    summary = json.loads((root / "train" / "adapter" / "training_summary.json").read_text())
    losses = summary["losses"]
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.3
    adapted = summary["adapted"]
    for fragment in (
        "mixer.in_proj",
        "mixer.q_proj",
        "shared_experts.up_proj",
        "experts.up_proj",
        "experts.down_proj",
        "lm_head",
    ):
        assert any(fragment in name for name in adapted), fragment
    assert not any(name.endswith(("out_proj", "conv1d", "gate")) for name in adapted)
    assert summary["zero_grad"] == []  # every adapted module got a gradient at step 1
    assert "adapted 15 modules/parameters" in output
    assert (root / "train" / "adapter" / "train_recipe.yaml").is_file()


def test_export_pack_verify_passes_on_the_trained_adapter(trained):
    root, _ = trained
    _ok(["export", str(root / "train" / "adapter"), "-o", str(root / "export")])
    _ok(["pack", str(root / "export"), "-o", str(root / "a.zip")])
    _ok(["pack", str(root / "export"), "-o", str(root / "b.zip")])
    assert (root / "a.zip").read_bytes() == (root / "b.zip").read_bytes()  # deterministic
    output = _ok(["verify", str(root / "a.zip"), "--config", str(root / "tiny" / "config.json")])
    assert output.count("pass") == 9


def test_resume_continues_from_the_last_checkpoint(trained):
    root, _ = trained
    output = _ok(
        [
            "train",
            str(TINY_RECIPE),
            "--model",
            str(root / "tiny"),
            "--data",
            str(root / "tiny" / "toy_sft.jsonl"),
            "--output-dir",
            str(root / "train"),
            "--max-steps",
            "10",
            "--resume",
        ]
    )
    # the first run saved checkpoint-6 (save_steps) and checkpoint-8 (its end)
    assert "resuming from" in output and "checkpoint-8" in output
    assert (root / "train" / "checkpoint-10").is_dir()
    summary = json.loads((root / "train" / "adapter" / "training_summary.json").read_text())
    assert len(summary["losses"]) == 10  # the restored history plus steps 9 and 10


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        ("/nonexistent/model", None, "not a model folder"),
        (None, "/nonexistent/sft.jsonl", "no such file"),
    ],
)
def test_train_input_errors_are_clear(trained, tmp_path, model, data, message):
    tiny = trained[0] / "tiny"
    args = ["--model", model or str(tiny), "--data", data or str(tiny / "toy_sft.jsonl")]
    result = runner.invoke(app, ["train", str(TINY_RECIPE), "--output-dir", str(tmp_path), *args])
    assert result.exit_code == 1 and message in result.output


def test_rank_64_is_refused_naming_the_field(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: m\ndata: d\noutput_dir: o\nlora:\n  r: 64\n")
    result = runner.invoke(app, ["train", str(recipe)])
    assert result.exit_code == 1 and "lora.r" in result.output and "32" in result.output


@pytest.mark.parametrize("command", ["tiny-model", "train", "export", "pack", "verify"])
def test_help(command):
    assert runner.invoke(app, [command, "--help"]).exit_code == 0
