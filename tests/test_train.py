"""End to end on the tiny model through the CLI: tiny-model -> train -> export -> pack -> verify."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from conftest import TINY_RECIPE

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def trained(cli, train_cli, tmp_path_factory):
    """`tiny-model` then `train` through the CLI, 8 steps; (root, train's output)."""
    root = tmp_path_factory.mktemp("e2e")
    cli("tiny-model", "-o", root / "tiny")
    return root, train_cli(root / "train", "--max-steps", "8", model=root / "tiny").output


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


def test_export_pack_verify_passes_on_the_trained_adapter(cli, trained):
    root, _ = trained
    cli("export", root / "train" / "adapter", "-o", root / "export")
    cli("pack", root / "export", "-o", root / "a.zip")
    cli("pack", root / "export", "-o", root / "b.zip")
    assert (root / "a.zip").read_bytes() == (root / "b.zip").read_bytes()  # deterministic
    output = cli("verify", root / "a.zip", "--config", root / "tiny" / "config.json").output
    # every check passes; the recipe's shared-expert LoRA draws the scorer-version warning
    statuses = re.findall(r"\b(pass|warn|fail|skip)\b", output)
    assert sorted(statuses) == ["pass"] * 8 + ["warn"] and "shared-expert" in output


def test_an_intermediate_checkpoint_exports_and_verifies(cli, trained):
    """Users export checkpoint-N/ to pick the best one: each carries what export needs."""
    root, _ = trained
    checkpoint = root / "train" / "checkpoint-6"
    assert (checkpoint / "lora_parameters.json").is_file()
    cli("export", checkpoint, "-o", root / "export-6")
    cli("pack", root / "export-6", "-o", root / "c6.zip")
    cli("verify", root / "c6.zip", "--config", root / "tiny" / "config.json")


def test_resume_continues_from_the_last_checkpoint(train_cli, trained):
    root, _ = trained
    tiny = root / "tiny"
    output = train_cli(root / "train", "--max-steps", "10", "--resume", model=tiny).output
    # the first run saved checkpoint-6 (save_steps) and checkpoint-8 (its end)
    assert "resuming from" in output and "checkpoint-8" in output
    assert (root / "train" / "checkpoint-10").is_dir()
    summary = json.loads((root / "train" / "adapter" / "training_summary.json").read_text())
    assert len(summary["losses"]) == 10  # the restored history plus steps 9 and 10


def test_init_adapter_continues_from_the_trained_weights(train_cli, trained, tmp_path):
    """One step from the trained adapter starts at the trained loss, not the random one."""
    root, _ = trained
    first = json.loads((root / "train" / "adapter" / "training_summary.json").read_text())["losses"]
    adapter = root / "train" / "adapter"
    output = train_cli(
        tmp_path / "next", "--max-steps", "1", "--init-adapter", adapter, model=root / "tiny"
    ).output
    assert "continuing from" in output and "30 LoRA tensors loaded" in output
    (loss,) = json.loads((tmp_path / "next" / "adapter" / "training_summary.json").read_text())[
        "losses"
    ]
    assert loss < first[0] - 0.2  # same first batch (same seed), trained weights


def test_init_adapter_of_another_shape_is_refused(cli, trained, tmp_path):
    root, _ = trained
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {root / 'tiny'}\ndata: {root / 'tiny' / 'toy_sft.jsonl'}\noutput_dir: {tmp_path}\n"
        f"init_adapter: {root / 'train' / 'adapter'}\nlora:\n  r: 4\n  alpha: 16\n"
        "precision: fp32\nreport_to: none\n"
    )
    result = cli("train", recipe, expect=1)
    assert "init_adapter" in result.output and "r=8" in result.output


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        ("/nonexistent/model", None, "not a model folder"),
        (None, "/nonexistent/sft.jsonl", "no such file"),
        (None, "/", "data: /: is a folder, expected an SFT JSONL file"),
    ],
)
def test_train_input_errors_are_clear(train_cli, tmp_path, model, data, message):
    result = train_cli(tmp_path, model=model, data=data, expect=1)
    assert message in result.output


def test_rank_64_is_refused_naming_the_field(cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: m\ndata: d\noutput_dir: o\nlora:\n  r: 64\n")
    result = cli("train", recipe, expect=1)
    assert "lora.r" in result.output and "32" in result.output


def test_the_8bit_optimizer_trains_and_resumes(cli, trained, tmp_path):
    """`optimizer: adamw_bnb_8bit` (the 80 GB card's choice): the loss falls, and --resume
    reloads the checkpoint's 8-bit state."""
    root, _ = trained
    recipe = tmp_path / "r.yaml"
    fields = yaml.safe_load((root / "train" / "adapter" / "train_recipe.yaml").read_text())
    recipe.write_text(yaml.safe_dump({**fields, "optimizer": "adamw_bnb_8bit"}))
    output = cli("train", recipe, "--output-dir", tmp_path / "run", "--max-steps", "6").output
    assert "optimizer: adamw_bnb_8bit" in output
    summary = tmp_path / "run" / "adapter" / "training_summary.json"
    losses = json.loads(summary.read_text())["losses"]
    assert losses[-1] < losses[0] - 0.3
    args = ("--output-dir", tmp_path / "run", "--max-steps", "8", "--resume")
    assert "checkpoint-6" in cli("train", recipe, *args).output
    assert len(json.loads(summary.read_text())["losses"]) == 8


def test_out_of_gpu_memory_names_the_settings_that_fit(train_cli, tmp_path, monkeypatch):
    """A recipe too big for the card: one line that says which fields lower the peak."""
    import torch
    from transformers import Trainer

    def out_of_memory(self, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")

    monkeypatch.setattr(Trainer, "train", out_of_memory)
    output = " ".join(train_cli(tmp_path / "run", expect=1).output.split())  # unwrapped
    assert "out of GPU memory at step 1 (CUDA out of memory. Tried to allocate 2.00 GiB)" in output
    # tiny-cpu.yaml: no checkpointing, 4,096-token loss chunks (the default), batch 4, bf16 base
    for setting in (
        "loss_chunk_tokens: 1024",
        "base_precision: fp8",
        "optimizer: adamw_bnb_8bit",
        "gradient_checkpointing: true",
        "batch_size: 1 (grad_accum: 4)",
    ):
        assert setting in output
    assert "Traceback" not in output


def test_memory_savers_leave_out_what_a_recipe_already_does():
    from reasonlab.training.recipe import load_recipe, memory_savers

    fields = {"model": "m", "data": "d", "output_dir": "o"}
    lean = {"loss_chunk_tokens": 1024, "base_precision": "nf4", "optimizer": "adamw_bnb_8bit"}
    recipe = load_recipe(None, {**fields, **lean, "packing": True, "pack_length": 4096})
    assert memory_savers(recipe) == ["pack_length: 2048"]
    sharded = load_recipe(None, {**fields, "sharding": "fsdp2", "gradient_checkpointing": False})
    assert memory_savers(sharded) == [
        "loss_chunk_tokens: 1024",
        "gradient_checkpointing: true (checkpoint_layers: [mamba, moe])",
    ]
    some = load_recipe(None, {**fields, **lean, "checkpoint_layers": ["moe", "attention"]})
    assert memory_savers(some) == ["checkpoint_layers: [mamba, moe, attention, mlp]"]


def test_a_run_that_checkpoints_only_moe_blocks_says_so_and_trains(cli, tiny_model, tmp_path):
    from reasonlab.training.tiny_model import TOY_DATA_FILE

    recipe = tmp_path / "r.yaml"
    fields = yaml.safe_load(TINY_RECIPE.read_text())
    fields.update(gradient_checkpointing=True, checkpoint_layers=["moe"])
    recipe.write_text(yaml.safe_dump(fields))
    data = tiny_model / TOY_DATA_FILE
    args = ("--model", tiny_model, "--data", data, "--output-dir", tmp_path / "run")
    output = cli("train", recipe, *args, "--max-steps", "2").output
    assert "activations: checkpointed: " in output and " moe blocks, recomputed" in output
    assert "(checkpoint_layers: moe)" in output
    summary = json.loads((tmp_path / "run" / "adapter" / "training_summary.json").read_text())
    assert len(summary["losses"]) == 2 and not summary["zero_grad"]
