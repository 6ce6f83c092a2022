"""Sharded training (`sharding: fsdp2`): the plan under a launcher, and one process's adapter.

The equality check launches two CPU processes (gloo) through the real CLI, Trainer,
accelerate and torch FSDP2 (`bench/check_sharded_train.py --device cpu`): minutes, so slow.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reasonlab.training.engine.sharded import describe
from reasonlab.training.recipe import RecipeError, TrainRecipe, load_recipe

pytest.importorskip("peft")

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}  # child processes run this checkout


def _sharded_recipe(tmp_path: Path, tiny_model: Path) -> Path:
    from reasonlab.training.tiny_model import TOY_DATA_FILE

    recipe = tmp_path / "sharded.yaml"
    recipe.write_text(
        (REPO / "configs" / "tiny-cpu.yaml").read_text()
        + f"sharding: fsdp2\nmodel: {tiny_model}\ndata: {tiny_model / TOY_DATA_FILE}\n"
        f"output_dir: {tmp_path / 'run'}\n"
    )
    return recipe


@pytest.mark.parametrize(
    ("sharding", "processes", "expected"),
    [
        ("none", "1", "none: one process"),
        ("fsdp2", "1", "none: one process (fsdp2 shards under a launcher of several)"),
        ("none", "2", "none: 2 processes, each with the whole model (DDP)"),
        ("fsdp2", "4", "FSDP2 over 4 processes: one unit per NemotronHBlock"),
    ],
)
def test_the_plan_says_how_the_model_is_spread(monkeypatch, sharding, processes, expected):
    monkeypatch.setenv("WORLD_SIZE", processes)  # what accelerate launch / torchrun set
    assert describe(TrainRecipe(model="m", data="d", output_dir="o", sharding=sharding)).startswith(
        expected
    )


def test_dry_run_under_a_launcher_plans_rows_for_every_process(
    cli, tiny_model, tmp_path, monkeypatch
):
    recipe = _sharded_recipe(tmp_path, tiny_model)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    output = cli("train", recipe, "--dry-run").output
    # tiny-cpu.yaml: batch 4 x grad_accum 1 x 2 processes
    assert "rows: 64, 8 per optimizer step, 8 steps per epoch" in output
    assert "sharding: FSDP2 over 2 processes" in output
    monkeypatch.setenv("RANK", "1")
    assert "rows:" not in cli("train", recipe, "--dry-run").output  # one plan, from rank 0


def test_sharding_needs_the_grouped_expert_lora():
    with pytest.raises(RecipeError, match="sharding: fsdp2 needs expert_lora: grouped"):
        load_recipe(None, {"model": "m", "data": "d", "output_dir": "o", "sharding": "fsdp2",
                           "expert_lora": "peft"})  # fmt: skip


def test_sharding_refuses_the_8bit_optimizer():
    """bitsandbytes' update fails on FSDP2's DTensor parameters at the first step."""
    with pytest.raises(RecipeError, match="sharding: fsdp2 needs optimizer"):
        load_recipe(None, {"model": "m", "data": "d", "output_dir": "o", "sharding": "fsdp2",
                           "optimizer": "adamw_bnb_8bit"})  # fmt: skip


# One process under a one-process gloo group: shard_model's layout and what survives it.
LAYOUT = """
import json, sys, torch
from accelerate import PartialState
from torch.distributed.fsdp import FSDPModule
from reasonlab.training.engine import sharded
from reasonlab.training.engine.packing import collate_packed, isolate_packed_sequences, pack_examples
from reasonlab.training.recipe import LoraRecipe, TrainRecipe
from reasonlab.training.train import add_lora

PartialState(cpu=True)
recipe = TrainRecipe(model=sys.argv[1], data="d", output_dir="o", precision="fp32",
                     lora=LoraRecipe(r=8, alpha=16), packing=True, loss_chunk_tokens=16,
                     sharding="fsdp2")
torch.manual_seed(0)
model, _ = add_lora(sharded.load_base(recipe, torch.float32), recipe, echo=lambda _: None)
isolate_packed_sequences(model)
with torch.no_grad():
    torch.nn.init.normal_(model.base_model.model.lm_head.lora_B.default.weight)  # B != 0
examples = [{"input_ids": list(range(5, 5 + n)), "labels": list(range(5, 5 + n))} for n in (40, 30)]
batch = collate_packed(pack_examples(examples, 128).rows)
before = float(model(**batch).loss)
sharded.shard_model(model, recipe)
loss = model(**batch).loss
loss.backward()
print(json.dumps({
    "units": sorted(n for n, m in model.named_modules() if isinstance(m, FSDPModule)),
    "experts": [type(m).__name__ for n, m in model.named_modules() if n.endswith("mixer.experts")],
    "mixers": [getattr(m.forward, "_isolates_packed", False) for m in model.modules()
               if type(m).__name__ == "NemotronHMamba2Mixer"],
    "loss_forward": model.get_base_model().forward.__func__.__module__,
    "grads": sorted({type(p.grad).__name__ for p in model.parameters() if p.requires_grad}),
    "loss_before": before, "loss_after": float(loss),
}))
"""


def test_sharding_keeps_the_engines_patches_and_the_loss(tiny_model):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    group = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    done = subprocess.run(
        [sys.executable, "-c", LAYOUT, str(tiny_model)],
        capture_output=True, text=True, check=False,
        env={**ENV, **group, "MASTER_PORT": str(port), "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    blocks = [f"base_model.model.model.layers.{i}" for i in range(5)]
    # the root (""), the embedding and one unit per block; lm_head stays in the root
    assert facts["units"] == ["", "base_model.model.model.embeddings", *blocks]
    assert facts["experts"] == ["GroupedExpertsLoRA"] * 2  # the class swap survives
    assert facts["mixers"] == [True, True]  # the packed-row Mamba forward survives
    assert facts["loss_forward"] == "reasonlab.training.engine.chunked_loss"
    assert facts["grads"] == ["DTensor"]  # every LoRA gradient is a shard
    assert facts["loss_after"] == pytest.approx(facts["loss_before"], rel=1e-6)


@pytest.mark.slow  # ~3.5 min on two busy cores: three trainings, a resume, export, verify
def test_two_sharded_processes_train_the_one_process_adapter(tmp_path):
    done = subprocess.run(
        [sys.executable, REPO / "bench" / "check_sharded_train.py", "--device", "cpu",
         "--workdir", tmp_path, "--json", tmp_path / "result.json"],
        capture_output=True, text=True, env=ENV, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["plan_ok"], result["plan"]  # 4 rows per step over 2 processes, FSDP2
    for after in ("after_4_steps", "after_6_steps_resumed"):
        assert result[after]["tensors"] == 30 and result[after]["same_keys_shapes_dtypes"]
        # measured 3.4e-6 and 3.5e-6 (weights up to 0.2): reduction order, nothing more
        assert result[after]["max_abs_difference"] <= 1e-4
    assert result["resumed_from_checkpoint_4"]
    assert result["losses_sharded"] == pytest.approx(result["losses_one_process"], abs=1e-5)


@pytest.mark.slow  # ~45 s: two processes load the tiny model before accelerate decides
def test_a_cpu_launch_refuses_to_shard_in_one_line(tiny_model, tmp_path):
    recipe = _sharded_recipe(tmp_path, tiny_model)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "reasonlab", "train", recipe],
        capture_output=True, text=True, check=False,
        env={**ENV, "ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert done.returncode != 0
    assert "error: sharding: fsdp2 needs GPUs; accelerate set this launch up as MULTI_CPU" in (
        done.stdout + done.stderr
    )
    assert "ShardingError" not in done.stdout + done.stderr  # no traceback from reasonlab
