"""A quantized frozen base (`base_precision` fp8 / nf4) trains the same LoRA (fp32 compute, on
the device `train` uses: the CPU in CI, where the tolerances below were measured).

Each run is the tiny model (every layer kind, 8 routed experts) wrapped by the project's own
`add_lora`, LoRA r=4 on every preset with B initialised non-zero (so every LoRA factor gets a
gradient), one batch of 2 x 48 tokens, one AdamW step (lr 1e-3). Two comparisons:

- against an fp32 base holding the very values the quantized base rebuilds: equal to float
  rounding (loss 1e-6, gradients 1e-4), so storage and per-use dequantization are exact;
- against the fp32 base itself (the cost of rounding the weights), measured on this CPU
  (torch 2.13, bitsandbytes 0.50.2) and asserted with headroom (`TOLERANCES`):

  base  loss before the step  loss after it    worst LoRA gradient cosine
  fp8   rel. diff 4.8e-05     rel. diff 5.4e-05  0.980 (layer 1 routed experts)
  nf4   rel. diff 6.2e-05     rel. diff 6.6e-05  0.828 (layer 4 routed experts)

The tiny model's random weights give a loss near log(vocabulary), so the loss moves little.
The gradients are the sharper test; the worst are the routed experts', where the rounding of
the layers before them flips near-tied expert choices of a few tokens.
"""

from __future__ import annotations

import json
from importlib.util import find_spec

import pytest

pytest.importorskip("peft")

import torch
from transformers import AutoModelForCausalLM

from reasonlab.training.engine.kernels import KernelError
from reasonlab.training.engine.paths import check, resolve_paths
from reasonlab.training.engine.quantized_base import (
    Fp8Weight,
    Nf4Weight,
    QuantizedLinear,
    QuantizedWeight,
    base_path,
    dequantized_matmul,
    planned_base_bytes,
    round_base,
    training_device,
)
from reasonlab.training.recipe import LoraRecipe, RecipeError, TrainRecipe, load_recipe

EVERY_PRESET = ("attention", "mamba_in", "shared_experts", "routed_experts", "lm_head")
NF4 = pytest.param(
    "nf4", marks=pytest.mark.skipif(find_spec("bitsandbytes") is None, reason="no bitsandbytes")
)
PRECISIONS = ["fp8", NF4]
FORMATS = {"fp8": Fp8Weight, "nf4": Nf4Weight}

# (loss before, loss after one step: relative difference at most; gradient cosine at least)
TOLERANCES = {"fp8": (1e-4, 1e-4, 0.9), "nf4": (2e-3, 2e-3, 0.8)}


# ---------------------------------------------------------------- the storage formats
@pytest.mark.parametrize(
    "precision, max_error, max_bytes_per_weight",
    [("fp8", 0.03, 1.01), pytest.param("nf4", 0.11, 0.53, marks=NF4.marks)],
)
def test_weights_are_stored_at_low_precision(precision, max_error, max_bytes_per_weight):
    """Gaussian (experts, out, in) weights: e4m3 keeps ~2% relative error, NF4 ~9%."""
    weight = torch.randn(4, 96, 512, generator=torch.Generator().manual_seed(0))
    stored = FORMATS[precision](weight)
    rebuilt = stored.dequantize()
    assert rebuilt.shape == weight.shape and rebuilt.dtype == weight.dtype
    assert float((rebuilt - weight).norm() / weight.norm()) < max_error
    assert all(b.dtype in (torch.uint8, torch.float32) for b in stored.buffers())
    assert stored.nbytes / weight.numel() < max_bytes_per_weight  # vs 2 for bf16, 4 for fp32


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("grouped", [False, True], ids=["linear", "grouped"])
def test_dequantized_matmul_is_the_matmul_with_the_rebuilt_weight(precision, grouped):
    from functools import partial

    from reasonlab.training.engine.expert_lora import grouped_mm

    generator = torch.Generator().manual_seed(1)
    shape = (3, 24, 64) if grouped else (24, 64)  # (experts,) out, in
    stored = FORMATS[precision](torch.randn(shape, generator=generator))
    x = torch.randn(10, 64, generator=generator, requires_grad=True)
    offsets = torch.tensor([4, 4, 10], dtype=torch.int32)  # an empty middle group
    matmul = partial(grouped_mm, offsets=offsets) if grouped else torch.matmul
    y = dequantized_matmul(x, stored, matmul)
    (grad,) = torch.autograd.grad(y.square().sum(), x)

    x_ref = x.detach().clone().requires_grad_()
    y_ref = matmul(x_ref, stored.dequantize().transpose(-2, -1))
    (grad_ref,) = torch.autograd.grad(y_ref.square().sum(), x_ref)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(grad, grad_ref)


# ---------------------------------------------------------------- one step on the tiny model
def _recipe(tiny_model, precision: str) -> TrainRecipe:
    return TrainRecipe(
        model=str(tiny_model),
        data="d",
        output_dir="o",
        lora=LoraRecipe(r=4, alpha=8, targets=EVERY_PRESET),
        base_precision=precision,
    )


def _one_step(tiny_model, base: str, out) -> dict:
    """The run the module docstring describes; saves the adapter as `reasonlab train` does.

    `base`: fp32, fp8, nf4, or `fp8-rounded` / `nf4-rounded`: an fp32 base holding the values
    the quantized one rebuilds (so the quantized run must match it to float rounding).
    """
    from reasonlab.training.train import PARAMETER_MAP_FILE, add_lora, parameter_wrappers

    torch.manual_seed(0)
    # on the device `train` trains on (the quantized base is stored there)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model.to(training_device())
    precision, _, rounded = base.partition("-")
    if rounded:
        round_base(model, precision)
    lines: list[str] = []
    recipe = _recipe(tiny_model, "bf16" if precision == "fp32" or rounded else precision)
    # the LoRA is created (same seed, same values) before the base is quantized
    peft_model, adapted = add_lora(model, recipe, echo=lines.append)
    torch.manual_seed(2)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    peft_model.train()
    ids = torch.randint(
        0, model.config.vocab_size, (2, 48), generator=torch.Generator().manual_seed(3)
    )
    batch = {"input_ids": ids.to(model.device), "labels": ids.to(model.device)}
    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-3)
    loss = peft_model(**batch).loss
    loss.backward()
    loss = float(loss)
    grads = {n: p.grad.detach().flatten().clone() for n, p in trainable.items()}
    optimizer.step()
    with torch.no_grad():
        after = float(peft_model(**batch).loss)
    peft_model.save_pretrained(out / "native", save_embedding_layers=False)
    (out / "native" / PARAMETER_MAP_FILE).write_text(json.dumps(parameter_wrappers(peft_model)))
    return {
        "model": peft_model,
        "adapted": adapted,
        "lines": lines,
        "losses": (loss, after),
        "grads": grads,
        "lora": {n: (p.shape, p.dtype) for n, p in trainable.items()},
        "out": out,
    }


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    """Every base of `_one_step`, computed once for the module (nf4 where bitsandbytes is)."""
    found = {}
    for base in ("fp32", "fp8", "fp8-rounded", "nf4", "nf4-rounded"):
        if base.startswith("nf4") and find_spec("bitsandbytes") is None:
            continue
        found[base] = _one_step(tiny_model, base, tmp_path_factory.mktemp(base))
    return found


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_quantized_base_trains_exactly_the_model_of_its_rebuilt_weights(runs, precision):
    """Storage and per-use dequantization add nothing beyond the rounding of the weights."""
    reference, quantized = runs[f"{precision}-rounded"], runs[precision]
    assert quantized["losses"] == pytest.approx(reference["losses"], rel=1e-6)
    for name, grad in quantized["grads"].items():
        error = (grad - reference["grads"][name]).norm() / reference["grads"][name].norm()
        assert error < 1e-4, f"{name}: relative gradient error {float(error):.2e}"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_one_step_loss_is_within_tolerance_of_the_full_precision_base(runs, precision):
    if training_device().type == "cuda":
        # CUDA's arithmetic flips other near-tied expert choices than this CPU's: on the
        # H200, fp8 was 1.2e-4 from fp32 before the step (bench/check_quantized_base_gpu.py
        # measures the GPU's figures on a larger model)
        pytest.skip("tolerances measured on the CPU")
    before, after, _ = TOLERANCES[precision]
    reference, quantized = runs["fp32"]["losses"], runs[precision]["losses"]
    assert quantized[0] == pytest.approx(reference[0], rel=before)
    assert quantized[1] == pytest.approx(reference[1], rel=after)
    assert quantized[1] < quantized[0]  # the step still lowers the loss


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_lora_gets_a_gradient_close_to_the_full_precision_one(runs, precision):
    reference, quantized = runs["fp32"], runs[precision]
    assert quantized["lora"] == reference["lora"]  # same LoRA names, shapes, dtypes (fp32)
    assert len(quantized["grads"]) == 2 * 15  # A and B of every adapted module
    for name, grad in quantized["grads"].items():
        assert grad.norm() > 0, name
        cosine = torch.nn.functional.cosine_similarity(grad, reference["grads"][name], dim=0)
        assert cosine >= TOLERANCES[precision][2], f"{name}: cosine {float(cosine):.4f}"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_base_is_held_quantized_and_the_rest_is_not(runs, precision, tiny_model):
    model = runs[precision]["model"]
    experts = [
        m for n, m in model.named_modules() if n.endswith("mixer.experts.base_layer.base_layer")
    ]
    assert len(experts) == 2  # the tiny model's two MoE layers
    for module in experts:
        for weight in (module.up_proj, module.down_proj):
            assert isinstance(weight, FORMATS[precision])
            assert next(weight.buffers()).dtype == torch.uint8  # codes: fp8 bytes or packed nf4
            # bytes a weight, of 4 in the fp32 compute dtype (fp8: in = 32 makes scales 1/8 more)
            assert weight.nbytes < weight.shape.numel() * (1.2 if precision == "fp8" else 0.6)
        assert not list(module.parameters())  # no full-precision copy left behind
    quantized = {n for n, m in model.named_modules() if isinstance(m, QuantizedLinear)}
    assert len(quantized) == 10 and all(n.endswith(".base_layer") for n in quantized)
    kept = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any("out_proj" in n for n in kept) and any("lm_head" in n for n in kept)
    # the dry run's prediction is the bytes actually held (fp32 compute: 4 bytes a parameter)
    unwrapped = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    held = sum(p.numel() * 4 for n, p in model.named_parameters() if ".lora_" not in n)
    held += sum(m.nbytes for m in model.modules() if isinstance(m, QuantizedWeight))
    assert planned_base_bytes(unwrapped, precision, element_size=4) == held
    assert (
        f"base weights quantized to {precision}: 10 Linear layers and 4"
        in runs[precision]["lines"][-1]
    )


@pytest.mark.parametrize("precision", PRECISIONS)
def test_an_adapter_trained_on_a_quantized_base_exports_packs_and_verifies(
    runs, precision, tiny_model
):
    from safetensors.torch import load_file

    from reasonlab.submission.export import export_adapter
    from reasonlab.submission.pack import pack_adapter
    from reasonlab.submission.verify import verify_submission

    exported = {}
    for name in ("fp32", precision):
        out = runs[name]["out"]
        export_adapter(out / "native", out / "export")
        packed = pack_adapter(out / "export", out / "adapter.zip")
        report = verify_submission(packed.zip_path, tiny_model / "config.json")
        assert report.ok, report.checks
        tensors = load_file(str(out / "export" / "adapter_model.safetensors"))
        config = json.loads((out / "export" / "adapter_config.json").read_text())
        exported[name] = ({k: v.shape for k, v in tensors.items()}, config)
    assert exported[precision] == exported["fp32"]


# ---------------------------------------------------------------- validation and the dry run
def test_a_quantized_base_needs_the_grouped_expert_lora():
    with pytest.raises(RecipeError, match="base_precision: nf4 quantizes the routed experts"):
        load_recipe(
            None,
            {
                "model": "m",
                "data": "d",
                "output_dir": "o",
                "base_precision": "nf4",
                "expert_lora": "peft",
            },
        )
    with pytest.raises(RecipeError, match="base_precision"):
        load_recipe(None, {"model": "m", "data": "d", "output_dir": "o", "base_precision": "int3"})


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU"
)
def test_fp8_is_refused_without_a_gpu_naming_the_field(tiny_model):
    recipe = _recipe(tiny_model, "fp8")
    with pytest.raises(
        KernelError, match=r"base_precision: fp8 needs a GPU .*compute capability >= 8\.9"
    ):
        check(recipe, resolve_paths(recipe, None))


def test_nf4_is_refused_without_bitsandbytes(tiny_model, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "bitsandbytes", None)  # import fails
    assert "needs bitsandbytes" in base_path("nf4").problem
    recipe = _recipe(tiny_model, "nf4")
    with pytest.raises(KernelError, match=r"base_precision: nf4 needs bitsandbytes"):
        check(recipe, resolve_paths(recipe, None))


@pytest.mark.skipif(find_spec("bitsandbytes") is None, reason="no bitsandbytes")
def test_dry_run_names_the_base_and_its_memory(train_cli, tmp_path):
    output = train_cli(tmp_path / "run", "--dry-run", "--base-precision", "nf4").output
    assert "base: nf4 (bitsandbytes" in output and "routed experts" in output
    assert "with the base in nf4 (base in bf16" in output


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU"
)
def test_fp8_dry_run_on_this_cpu_is_a_one_line_error(train_cli, tmp_path):
    result = train_cli(tmp_path / "run", "--dry-run", "--base-precision", "fp8", expect=1)
    assert "base_precision: fp8 needs a GPU" in result.output
    assert "Traceback" not in result.output


def test_real_architecture_base_sizes():
    """The real 31.6B shapes (meta device): what each base precision holds in memory."""
    from reasonlab.submission.verify import load_architecture

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(load_architecture())
    gib = {p: planned_base_bytes(model, p) / 2**30 for p in ("bf16", "fp8", "nf4")}
    assert gib["bf16"] == pytest.approx(58.82, abs=0.01)
    assert gib["fp8"] == pytest.approx(30.36, abs=0.01)
    assert gib["nf4"] == pytest.approx(16.51, abs=0.01)
