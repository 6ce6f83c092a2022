"""Packing: a row of several examples trains exactly as those examples one at a time.

The packer and collator are checked on their own; isolation on the tiny nemotron_h (fp32,
CPU, so the PyTorch Mamba path): packed loss = token-weighted mean of the examples'
losses, changing one example moves no other example's logits, and removing either half
of the isolation (the Mamba patch, the attention segments) makes them move.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from reasonlab.formats.chat import IGNORE_INDEX
from reasonlab.formats.csvio import DataError
from reasonlab.training.engine.kernels import mamba_path
from reasonlab.training.engine.packing import (
    collate_packed,
    isolate_packed_sequences,
    pack_examples,
    pad_row,
)
from reasonlab.training.recipe import RecipeError, load_recipe

TINY_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "tiny-cpu.yaml"


def _example(length: int, tag: int) -> dict[str, list[int]]:
    """Distinct tokens per example (tag), the first half a prompt without loss."""
    ids = [tag * 1000 + i for i in range(length)]
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * (length // 2) + ids[length // 2 :]}


def _segments(row: dict[str, list[int]]) -> list[dict[str, list[int]]]:
    """The examples of a packed row, cut back apart by seq_idx."""
    found: dict[int, dict[str, list[int]]] = {}
    for key in ("input_ids", "labels", "position_ids"):
        for k, value in zip(row["seq_idx"], row[key], strict=True):
            found.setdefault(k, {}).setdefault(key, []).append(value)
    return [found[k] for k in sorted(found)]


# --- the packer ---------------------------------------------------------------------------

PACK_CASES = [
    # (example lengths, pack_length, rows, dropped)
    ([6, 5, 4, 3, 2], 10, 2, 0),  # 6+4 and 5+3+2: best fit fills both rows
    ([4, 4, 4], 12, 1, 0),  # exactly pack_length fits
    ([10, 11, 3], 10, 2, 1),  # 11 is dropped whole, never cut
    ([1] * 9, 4, 3, 0),  # many short ones
    ([7, 7, 7], 10, 3, 0),  # none fit together
]


@pytest.mark.parametrize(("lengths", "pack_length", "n_rows", "dropped"), PACK_CASES)
def test_pack_examples_keeps_every_example_whole_and_apart(lengths, pack_length, n_rows, dropped):
    examples = [_example(n, tag) for tag, n in enumerate(lengths)]
    packing = pack_examples(examples, pack_length, seed=0)
    assert (len(packing.rows), packing.dropped_too_long) == (n_rows, dropped)
    assert packing.examples == len(lengths) - dropped
    seen = []
    for row in packing.rows:
        assert len(row["input_ids"]) <= pack_length
        assert {len(values) for values in row.values()} == {len(row["input_ids"])}
        for k, segment in enumerate(_segments(row)):
            original = next(e for e in examples if e["input_ids"] == segment["input_ids"])
            assert segment["position_ids"] == list(range(len(original["input_ids"])))
            # no token of one example is trained to predict the next example's first token
            assert segment["labels"] == [IGNORE_INDEX, *original["labels"][1:]]
            seen.append(segment["input_ids"][0] // 1000)
        assert sorted(set(row["seq_idx"])) == list(range(len(_segments(row))))
    assert sorted(seen) == [tag for tag, n in enumerate(lengths) if n <= pack_length]


def test_pack_examples_is_deterministic_given_the_seed():
    examples = [_example(n, tag) for tag, n in enumerate([3, 5, 3, 5, 3, 2, 2, 6])]
    assert pack_examples(examples, 8, seed=7) == pack_examples(examples, 8, seed=7)


def test_pack_examples_names_a_malformed_example():
    bad = [_example(4, 0), {"input_ids": [1, 2, 3], "labels": [1, 2]}]
    with pytest.raises(DataError, match="example 1"):
        pack_examples(bad, 16)


def test_collate_packed_flattens_a_batch_into_one_row():
    import torch

    rows = pack_examples([_example(3, 0), _example(2, 1), _example(4, 2)], 5).rows
    batch = collate_packed(rows)
    total = sum(len(row["input_ids"]) for row in rows)
    per_token = {"input_ids", "labels", "position_ids", "seq_idx"}  # and no attention_mask
    assert set(batch) == per_token | {"cu_seq_lens_q", "max_length_q"}
    assert {tuple(batch[key].shape) for key in per_token} == {(1, total)}
    # the attention's segments are the rows' examples: lengths 4 | 3, 2 in two rows of 5
    assert batch["cu_seq_lens_q"].tolist() == [0, 4, 7, 9] and batch["max_length_q"] == 4
    assert batch["cu_seq_lens_q"].dtype == torch.int32
    assert batch["seq_idx"].dtype == torch.int32 and batch["position_ids"].dtype == torch.long
    seq_idx = batch["seq_idx"][0].tolist()
    assert seq_idx == sorted(seq_idx) and sorted(set(seq_idx)) == [
        0,
        1,
        2,
    ]  # renumbered across rows


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pack_length": 8}, "pack_length"),
        ({"packing": "sometimes"}, "packing"),
    ],
)
def test_recipe_packing_fields_are_validated(tmp_path, fields, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: m\ndata: d\noutput_dir: o\n")
    assert load_recipe(recipe).packing is False and load_recipe(recipe).pack_length == 8192
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe, fields)


# --- isolation on the tiny model ----------------------------------------------------------


@pytest.fixture(scope="module")
def examples(tiny_model) -> list[dict[str, list[int]]]:
    """Four toy SFT rows tokenized as `train` tokenizes them (113-120 tokens each)."""
    from transformers import AutoTokenizer

    from reasonlab.formats.chat import sft_example, tokenize_example
    from reasonlab.formats.jsonl import read_jsonl
    from reasonlab.training.tiny_model import TOY_DATA_FILE

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rows = read_jsonl(tiny_model / TOY_DATA_FILE)[:4]
    return [tokenize_example(tokenizer, sft_example(tokenizer, row)) for row in rows]


def _model(tiny_model, isolate: bool = True):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa")
    model.train()  # the path training takes (dropout is 0)
    if isolate:
        # "fused" where the kernels are installed; this model's CPU tensors still take the
        # per-example path (`_isolating_forward`), so these tests check it everywhere
        assert isolate_packed_sequences(model) == mamba_path().kind
    return model


def _one_row(examples) -> dict:
    packing = pack_examples(examples, sum(len(e["input_ids"]) for e in examples))
    assert len(packing.rows) == 1
    return collate_packed(packing.rows)


def _weighted_mean_loss(model, examples):
    """Token-weighted mean of the examples' own losses, each run alone."""
    import torch

    losses, counts = [], []
    for example in examples:
        labels = example["labels"]
        out = model(input_ids=torch.tensor([example["input_ids"]]), labels=torch.tensor([labels]))
        losses.append(out.loss)
        counts.append(sum(label != IGNORE_INDEX for label in labels[1:]))  # shifted targets
    total = sum(counts)
    return sum(loss * n / total for loss, n in zip(losses, counts, strict=True))


def test_padded_rows_have_one_shape_and_the_same_loss(tiny_model, examples):
    """Rows filled to pack_length (one shape every step) train exactly what they held."""
    import torch

    rows = pack_examples(examples, 400).rows
    assert len({len(row["input_ids"]) for row in rows}) > 1  # the rows differ before padding
    padded = [collate_packed([row], pad_to=400) for row in rows]
    assert {tuple(batch["input_ids"].shape) for batch in padded} == {(1, 400)}
    model = _model(tiny_model)
    with torch.no_grad():
        for row, batch in zip(rows, padded, strict=True):
            plain = model(**collate_packed([row])).loss
            assert abs(float(model(**batch).loss) - float(plain)) <= 1e-5 * float(plain)
    with pytest.raises(ValueError, match="longer than 10"):
        pad_row(rows[0], 10)


def test_packed_loss_equals_the_examples_one_at_a_time(tiny_model, examples):
    import torch

    model = _model(tiny_model)
    with torch.no_grad():
        expected = _weighted_mean_loss(model, examples)
        packed = model(**_one_row(examples)).loss
    assert abs(float(packed) - float(expected)) / float(expected) <= 1e-4


def _logits(model, batch, replace=None):
    """Logits of the row; the tokens where `replace` is true swapped for random ones first."""
    import torch

    batch = dict(batch)
    if replace is not None:
        ids = batch["input_ids"].clone()
        noise = torch.Generator().manual_seed(0)
        ids[0, replace] = torch.randint(10, 500, (int(replace.sum()),), generator=noise)
        batch["input_ids"] = ids
    with torch.no_grad():
        return model(**batch).logits[0]


@pytest.mark.parametrize(
    ("removed", "moves"),
    [
        (None, False),  # full isolation: the other examples do not see the change at all
        ("mamba patch", True),  # transformers alone: conv and SSM state run into the next example
        ("attention segments", True),  # attention then spans the whole row
    ],
)
def test_changing_one_example_moves_no_other(tiny_model, examples, removed, moves):

    model = _model(tiny_model, isolate=removed != "mamba patch")
    batch = _one_row(examples)
    first = batch["seq_idx"][0] == 0
    if removed == "mamba patch":
        del batch["seq_idx"]  # what HF's torch path can be given (it refuses or ignores seq_idx)
    if removed == "attention segments":
        del batch["cu_seq_lens_q"], batch["max_length_q"]
    moved = (_logits(model, batch, first) - _logits(model, batch)).abs()
    assert float(moved[first].max()) > 1e-2  # the changed example itself does change
    if moves:
        assert float(moved[~first].max()) > 1e-2
    else:
        assert float(moved[~first].max()) <= 1e-6


def test_transformers_alone_does_not_isolate_mamba(tiny_model, examples):
    """Why the patch exists: without it, seq_idx is refused (5.24) or silently ignored (5.17)."""
    model = _model(tiny_model, isolate=False)
    batch = _one_row(examples)
    first = batch["seq_idx"][0] == 0
    try:
        before = _logits(model, batch)
    except ValueError as err:
        assert "packed sequences" in str(err)
        return
    after = _logits(model, batch, first)
    assert float((after - before)[~first].abs().max()) > 1e-2


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_transformers_hands_seq_idx_to_every_mamba_kernel(tiny_model, monkeypatch, mode):
    """What the fused path relies on: a model-level seq_idx reaches the conv and scan calls.

    The three module functions are wrapped to record what they are given and then run the
    real (PyTorch) function without it; train mode goes through the fused
    conv+scan call first (which returns None without mamba_ssm), eval mode through the conv
    and the scan apart.
    """
    import torch
    from transformers.models.nemotron_h import modeling_nemotron_h

    given: dict[str, object] = {}

    def recording(name, function):
        def call(*args, seq_idx=None, **kwargs):
            given[name] = seq_idx
            return function(*args, **kwargs)

        return call

    for name in ("causal_conv1d_fn", "mamba2_chunk_scan", "mamba2_split_conv1d_scan_combined"):
        monkeypatch.setattr(
            modeling_nemotron_h, name, recording(name, getattr(modeling_nemotron_h, name))
        )
    model = _model(tiny_model, isolate=False)
    getattr(model, mode)()
    seq_idx = torch.tensor([[0] * 9 + [1] * 7], dtype=torch.int32)
    with torch.no_grad():
        model(input_ids=torch.randint(10, 500, (1, 16)), seq_idx=seq_idx)
    expected = {"causal_conv1d_fn", "mamba2_chunk_scan"} | (
        {"mamba2_split_conv1d_scan_combined"} if mode == "train" else set()
    )
    assert set(given) == expected
    assert all(value is seq_idx for value in given.values())


def test_gradient_checkpointing_gives_the_examples_own_gradients(tiny_model, examples):
    """Packed, checkpointed: loss and every parameter's gradient as the examples one at a time."""
    reference = _model(tiny_model)
    expected = _weighted_mean_loss(reference, examples)
    expected.backward()
    packed_model = _model(tiny_model)
    packed_model.gradient_checkpointing_enable(
        gradient_checkpointing_kwargs={"use_reentrant": False}
    )
    packed = packed_model(**_one_row(examples)).loss
    packed.backward()
    assert abs(float(packed) - float(expected)) / float(expected) <= 1e-4
    want = dict(reference.named_parameters())
    compared = 0
    for name, param in packed_model.named_parameters():
        if param.grad is None:
            assert want[name].grad is None, name
            continue
        diff = float((param.grad - want[name].grad).norm())
        assert diff <= 1e-4 * float(want[name].grad.norm()) + 1e-8, name
        compared += 1
    assert compared > 30  # Mamba, attention, experts, embeddings, head


# --- end to end: train with packing, then export, pack, verify ----------------------------


@pytest.fixture(scope="module")
def packed_training(cli, tiny_model, tmp_path_factory):
    """`train` on the tiny model, packed and checkpointed, 8 steps, and 1 unpacked step."""
    import yaml

    from reasonlab.training.tiny_model import TOY_DATA_FILE

    root = tmp_path_factory.mktemp("packed")
    fields = yaml.safe_load(TINY_RECIPE.read_text())
    fields.update(packing=True, pack_length=512, batch_size=1, gradient_checkpointing=True)
    recipe = root / "packed.yaml"
    recipe.write_text(yaml.safe_dump(fields))
    common = ("--model", tiny_model, "--data", tiny_model / TOY_DATA_FILE)
    packed = cli("train", recipe, *common, "--output-dir", root / "packed", "--max-steps", "8")
    plain = cli("train", TINY_RECIPE, *common, "--output-dir", root / "plain", "--max-steps", "1")
    return root, packed.output, plain.output


def test_packed_training_lowers_the_loss(packed_training):
    root, output, plain_output = packed_training
    # 64 toy examples of 113-120 tokens (the real tokenizer): 4 to a 512-token row
    assert "packing: on (rows of <= 512 tokens;" in output
    assert "examples: 64 (dropped 0 too long)" in output and "rows: 16," in output
    apart = "seq_idx in the fused kernels" if mamba_path().kind == "fused" else "one mixer call"
    assert f"Mamba by {apart}" in output
    assert "packing: off" in plain_output
    summary = json.loads((root / "packed" / "adapter" / "training_summary.json").read_text())
    losses = summary["losses"]
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.3
    assert summary["zero_grad"] == []  # every adapted module got a gradient at step 1
    assert summary["examples"] == 64  # examples trained on, not the 16 rows they fill


def test_packed_adapter_exports_packs_and_verifies_like_an_unpacked_one(
    cli, packed_training, tiny_model
):
    from safetensors import safe_open

    root, _, _ = packed_training
    shapes, verdicts = {}, {}
    for name in ("packed", "plain"):
        cli("export", root / name / "adapter", "-o", root / f"{name}-export")
        cli("pack", root / f"{name}-export", "-o", root / f"{name}.zip")
        verified = cli("verify", root / f"{name}.zip", "--config", tiny_model / "config.json")
        verdicts[name] = [verified.output.count(word) for word in ("pass", "warn", "fail")]
        with safe_open(root / f"{name}-export" / "adapter_model.safetensors", "pt") as f:
            shapes[name] = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118
    assert shapes["packed"] == shapes["plain"]
    assert verdicts["packed"] == verdicts["plain"] and verdicts["packed"][2] == 0  # no check fails


def test_isolation_refuses_another_architecture(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
    )
    with pytest.raises(ValueError, match="nemotron_h"):
        isolate_packed_sequences(LlamaForCausalLM(config))


def test_isolated_model_still_runs_unpacked(tiny_model, examples):
    """Unpacked input runs as on a model never patched.

    The wrapped mixer is the mixer; the attention is the packed one over a single segment
    (a causal sdpa call of its own), so the logits agree to fp32 rounding.
    """
    import torch

    ids = torch.tensor([examples[0]["input_ids"]])
    with torch.no_grad():
        plain = _model(tiny_model, isolate=False)(input_ids=ids).logits
        wrapped = _model(tiny_model)(input_ids=ids).logits
    torch.testing.assert_close(wrapped, plain, rtol=1e-5, atol=1e-6)
