"""Every shipped training recipe loads, and recipe validation names the field it refuses.

Training recipes are the configs with a `lora:` section; other configs belong to other
commands and are tested by their owners.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reasonlab.training.recipe import RecipeError, load_recipe

CONFIGS = [
    p
    for p in sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
    if "lora" in (yaml.safe_load(p.read_text()) or {})
]


def test_the_three_recipes_ship():
    assert {p.name for p in CONFIGS} >= {
        "tiny-cpu.yaml",
        "nemotron-1gpu.yaml",
        "nemotron-multi-gpu.yaml",
    }


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads(path):
    recipe = load_recipe(path)
    assert path.read_text().startswith("# ")  # each starts with the command that runs it
    assert recipe.lora.r <= 32


def test_nemotron_1gpu_is_the_winners_recipe():
    recipe = load_recipe(Path(__file__).parent.parent / "configs" / "nemotron-1gpu.yaml")
    assert (
        recipe.lora.r,
        recipe.lora.alpha,
        recipe.learning_rate,
        recipe.lr_scheduler,
        recipe.epochs,
    ) == (32, 32, 2e-4, "cosine", 1)
    # effective batch ~16 examples: two packed 8k-token rows of ~10 traced examples each
    assert recipe.packing and recipe.pack_length == 8192
    assert recipe.batch_size * recipe.grad_accum == 2


def _write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


BASE = "model: m\ndata: d.jsonl\noutput_dir: o\n"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (BASE + "lora:\n  r: 64\n", "lora.r"),  # rank above the competition's 32
        (BASE + "lora:\n  targets: [attention, out_proj]\n", "lora.targets"),  # not a preset
        (BASE + "lora:\n  dropout: 0.1\n", "lora"),  # dropout with routed experts
        (BASE + "learning_rate: -1\n", "learning_rate"),
        (BASE + "precision: fp8\n", "precision"),
        (BASE + "epochs_typo: 2\n", "epochs_typo"),
        ("data: d.jsonl\noutput_dir: o\n", "model"),
    ],
)
def test_bad_recipe_names_the_field(tmp_path, text, field):
    with pytest.raises(RecipeError, match=field.replace(".", r"\.")):
        load_recipe(_write(tmp_path, text))


def test_flags_override_yaml(tmp_path):
    recipe = load_recipe(
        _write(tmp_path, BASE + "max_steps: 5\n"),
        {"max_steps": 9, "model": None, "data": "x.jsonl"},
    )
    assert (recipe.max_steps, recipe.model, recipe.data) == (9, "m", "x.jsonl")
