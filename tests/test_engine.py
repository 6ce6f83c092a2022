"""The training engine's fast paths compute what the reference paths compute (CPU, fp32).

Grouped routed-expert LoRA against PEFT's delta-weight wrapper, LoRA Linear layers as one
addmm against PEFT's forward, the chunked loss against transformers' full-logits loss,
packed attention against a block-diagonal mask, the compiled norms against the model's, and
the checks and dry run that say which path runs. The CUDA cases (flash varlen, the compiled
norm) run where a GPU is: `pytest tests/test_engine.py -k "packed_attention or compiled"`.
"""

from __future__ import annotations

import pytest

pytest.importorskip("peft")

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from reasonlab.training.engine.chunked_loss import use_chunked_loss
from reasonlab.training.engine.expert_lora import (
    GroupedExpertsLoRA,
    grouped_mm,
    use_grouped_expert_lora,
)
from reasonlab.training.engine.kernels import KernelError, MambaPath
from reasonlab.training.engine.lora_linear import FusedLoraLinear, use_fused_lora_linear
from reasonlab.training.engine.paths import EnginePaths, check
from reasonlab.training.engine.quantized_base import base_path
from reasonlab.training.lora_targets import resolve_targets
from reasonlab.training.recipe import LoraRecipe, RecipeError, TrainRecipe

EVERY_PRESET = ("attention", "mamba_in", "shared_experts", "routed_experts", "lm_head")


def _peft_model(tiny_model, seed: int = 0):
    """The tiny model with LoRA on every preset, B initialised non-zero so every path counts."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    targets = resolve_targets(model, EVERY_PRESET)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=targets.target_modules,
        target_parameters=targets.target_parameters,
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, config)
    peft_model.train()
    return peft_model


def _batch(vocab: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """Two rows of different lengths, right-padded, prompts masked as training masks them."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (2, 48), generator=generator)
    labels = ids.clone()
    labels[:, :10] = -100  # prompt
    labels[1, 30:] = -100  # padding of the shorter row
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _loss_and_grads(
    model, batch, autocast: bool = False, **kwargs
) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and LoRA gradients (fp32) of one step; `autocast`: under CPU bf16 autocast."""
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(**batch, **kwargs).loss
    loss.backward()
    grads = {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss), grads


def _assert_same(reference, fast, rtol: float = 1e-5):
    (loss_ref, grads_ref), (loss_fast, grads_fast) = reference, fast
    assert loss_fast == pytest.approx(loss_ref, rel=rtol)
    assert grads_fast.keys() == grads_ref.keys() and len(grads_ref) >= 15
    for name, grad in grads_ref.items():
        error = (grads_fast[name] - grad).norm() / grad.norm().clamp(min=1e-12)
        assert error < 1e-4, f"{name}: relative gradient error {float(error):.2e}"


# ---------------------------------------------------------------- grouped expert LoRA
def test_grouped_mm_matches_a_loop_over_groups():
    x, w = torch.randn(10, 6), torch.randn(3, 6, 5)
    offsets = torch.tensor([3, 3, 10], dtype=torch.int32)  # the middle group is empty
    expected = torch.cat([x[:3] @ w[0], x[3:10] @ w[2]])
    torch.testing.assert_close(grouped_mm(x, w, offsets), expected)


def test_grouped_expert_lora_equals_the_peft_wrapper(tiny_model):
    model = _peft_model(tiny_model)
    batch = _batch(model.config.vocab_size)
    reference = _loss_and_grads(model, batch)
    swapped = use_grouped_expert_lora(model)
    experts = [m for m in model.modules() if isinstance(m, GroupedExpertsLoRA)]
    assert swapped == len(experts) > 0  # one per MoE layer: the outer of the two wrappers
    _assert_same(reference, _loss_and_grads(model, batch))


def test_the_fast_path_keeps_the_saved_adapter(tiny_model, tmp_path):
    """Grouped expert LoRA, LoRA Linear as addmm and bf16 activations: the same saved keys."""
    from reasonlab.training.engine.activations import keep_activations_in_compute_dtype

    reference, fast = _peft_model(tiny_model), _peft_model(tiny_model)
    use_grouped_expert_lora(fast)
    use_fused_lora_linear(fast)
    keep_activations_in_compute_dtype(fast)
    reference.save_pretrained(tmp_path / "ref")
    fast.save_pretrained(tmp_path / "fast")
    from safetensors.torch import load_file

    ref = load_file(tmp_path / "ref" / "adapter_model.safetensors")
    new = load_file(tmp_path / "fast" / "adapter_model.safetensors")
    assert ref.keys() == new.keys()
    assert all(torch.equal(ref[k], new[k]) for k in ref)


# ---------------------------------------------------------------- LoRA Linear as one addmm
def test_fused_lora_linear_equals_peft(tiny_model):
    model = _peft_model(tiny_model)
    batch = _batch(model.config.vocab_size)
    reference = _loss_and_grads(model, batch)
    swapped = use_fused_lora_linear(model)
    assert swapped == sum(isinstance(m, FusedLoraLinear) for m in model.modules()) >= 5
    _assert_same(reference, _loss_and_grads(model, batch))


def test_fused_lora_linear_under_bf16_autocast_matches_peft(tiny_model):
    """As `train` runs on a GPU: a bf16 base, fp32 LoRA, autocast choosing bf16 matmuls."""
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    targets = resolve_targets(base, ("attention", "mamba_in", "shared_experts", "lm_head"))
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=targets.target_modules, init_lora_weights=False
    )
    model = get_peft_model(base, config)
    batch = _batch(model.config.vocab_size)
    loss_ref, grads_ref = _loss_and_grads(model, batch, autocast=True)
    use_fused_lora_linear(model)
    loss_fast, grads_fast = _loss_and_grads(model, batch, autocast=True)
    assert loss_fast == pytest.approx(loss_ref, rel=1e-2)
    assert grads_fast.keys() == grads_ref.keys()
    for name, grad in grads_ref.items():
        cosine = torch.nn.functional.cosine_similarity(
            grads_fast[name].flatten(), grad.flatten(), 0
        )
        assert cosine > 0.99, f"{name}: gradient cosine {float(cosine):.4f}"


def test_fused_lora_linear_leaves_disabled_adapters_to_peft(tiny_model):
    plain = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model = _peft_model(tiny_model)
    use_fused_lora_linear(model)
    ids = _batch(model.config.vocab_size)["input_ids"]
    with torch.no_grad():
        expected = plain(input_ids=ids).logits
        with model.disable_adapter():
            torch.testing.assert_close(model(input_ids=ids).logits, expected)
        assert not torch.allclose(model(input_ids=ids).logits, expected)


# ---------------------------------------------------------------- chunked loss
@pytest.mark.parametrize("chunk", [7, 4096])  # several chunks with a ragged last one; one chunk
def test_chunked_loss_equals_the_full_logits_loss(tiny_model, chunk):
    model = _peft_model(tiny_model)
    batch = _batch(model.config.vocab_size)
    reference = _loss_and_grads(model, batch)
    use_chunked_loss(model.get_base_model(), chunk)
    _assert_same(reference, _loss_and_grads(model, batch))


def test_chunked_loss_divides_by_the_trainers_token_count(tiny_model):
    """Under gradient accumulation the trainer passes the tokens of all micro-batches."""
    model = _peft_model(tiny_model)
    batch = _batch(model.config.vocab_size)
    reference = _loss_and_grads(model, batch, num_items_in_batch=torch.tensor(1000))
    use_chunked_loss(model.get_base_model(), 16)
    _assert_same(reference, _loss_and_grads(model, batch, num_items_in_batch=torch.tensor(1000)))


def test_without_labels_the_model_returns_logits(tiny_model):
    model = _peft_model(tiny_model)
    use_chunked_loss(model.get_base_model(), 16)
    ids = _batch(model.config.vocab_size)["input_ids"]
    assert model(input_ids=ids).logits.shape == (*ids.shape, model.config.vocab_size)


# ---------------------------------------------------------------- checks and the dry run
def _paths(kind: str) -> EnginePaths:
    bf16 = base_path("bf16")
    mamba = MambaPath(kind, "test")
    return EnginePaths(
        mamba, "grouped", "addmm", "sdpa", "as shipped", "off", "chunked", "all kept", "adamw", bf16
    )


def _recipe(**fields) -> TrainRecipe:
    return TrainRecipe(model="m", data="d", output_dir="o", **fields)


def test_kernels_required_refuses_the_pytorch_path():
    with pytest.raises(KernelError, match="kernels: required"):
        check(_recipe(kernels="required"), _paths("pytorch"))
    check(_recipe(kernels="required"), _paths("fused"))


def test_mamba_out_lora_is_refused_under_the_fused_kernel_only():
    recipe = _recipe(lora=LoraRecipe(targets=("mamba_in", "mamba_out")))
    with pytest.raises(RecipeError, match=r"lora\.targets: mamba_out"):
        check(recipe, _paths("fused"))
    check(recipe, _paths("pytorch"))  # its gradient is real on the PyTorch path


def test_the_8bit_optimizer_without_bitsandbytes_is_refused_by_name(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: None if name == "bitsandbytes" else find_spec(name),
    )
    with pytest.raises(RecipeError, match="optimizer: adamw_bnb_8bit needs bitsandbytes"):
        check(_recipe(optimizer="adamw_bnb_8bit"), _paths("fused"))
    check(_recipe(), _paths("fused"))


def test_dry_run_names_every_path_and_trains_nothing(train_cli, tmp_path):
    from reasonlab.training.engine.kernels import mamba_path

    output = train_cli(tmp_path / "run", "--dry-run").output
    for line in (
        f"mamba: {mamba_path().kind}",  # pytorch, unless a GPU with the kernels is here
        "experts: grouped LoRA",
        "linear: LoRA as one addmm",
        "attention: sdpa",
        "norms: compiled" if torch.cuda.is_available() else "norms: as shipped (no CUDA here",
        "packing: off",
        "activations: all kept",  # tiny-cpu.yaml: gradient_checkpointing: false
    ):
        assert line in output
    assert "loss: chunked" in output and "optimizer: adamw_torch_fused" in output
    assert "rows: 64, 4 per optimizer step, 16 steps per epoch" in output
    assert not (tmp_path / "run").exists()


def test_a_packed_run_names_its_attention_and_why():
    from types import SimpleNamespace

    from reasonlab.training.engine.paths import resolve_paths

    config = SimpleNamespace(_attn_implementation="sdpa")
    packed = dict(
        line.split(": ", 1) for line in resolve_paths(_recipe(packing=True), config).lines()
    )
    assert packed["attention"].startswith("packed, each example alone: ")
    if not torch.cuda.is_available():  # the fallback says why
        assert packed["attention"].endswith("one causal sdpa call per example (no CUDA here)")
    assert packed["packing"].startswith("on (rows of <= 8192 tokens")
    assert "attention: sdpa" in resolve_paths(_recipe(), config).lines()


def test_kernels_required_on_this_cpu_is_a_one_line_error(cli, tiny_model, tmp_path):
    from reasonlab.training.engine.kernels import mamba_path
    from reasonlab.training.tiny_model import TOY_DATA_FILE

    if mamba_path().kind == "fused":
        pytest.skip("the fused kernels run here")

    recipe = tmp_path / "required.yaml"
    recipe.write_text(
        f"model: {tiny_model}\ndata: {tiny_model / TOY_DATA_FILE}\n"
        f"output_dir: {tmp_path / 'run'}\nkernels: required\n"
    )
    result = cli("train", recipe, "--dry-run", expect=1)
    assert "kernels: required, but the Mamba path is pytorch" in result.output


def test_kernels_off_then_on_binds_the_kernel_wrappers_again(tiny_model):
    # An A/B check in one process (bench/check_fast_path_gpu.py) runs `off`, then `required`:
    # the second model must not keep the PyTorch reference the first one bound.
    import importlib

    from reasonlab.training.engine.kernels import select

    modeling = importlib.import_module("transformers.models.nemotron_h.modeling_nemotron_h")
    name = "mamba2_split_conv1d_scan_combined"
    wrapper = getattr(modeling, name)
    select("off")
    assert getattr(modeling, name) is wrapper.__wrapped__
    select("auto")
    assert getattr(modeling, name) is wrapper


def test_a_bound_kernel_runs_only_on_cuda_tensors():
    # transformers calls a bound Mamba kernel whatever the device; behind `_by_device` a
    # CPU tensor takes the PyTorch body, and the path checks still see the kernel.
    import importlib

    from reasonlab.training.engine.kernels import _by_device, _implementation

    modeling = importlib.import_module("transformers.models.nemotron_h.modeling_nemotron_h")
    reference = modeling.causal_conv1d_fn.__wrapped__

    def cuda_only_kernel(x, *args, **kwargs):  # as causal_conv1d's extension answers a CPU x
        raise RuntimeError("Expected x.is_cuda() to be true, but got false.")

    dispatched = _by_device(cuda_only_kernel, reference)
    x, weight = torch.randn(1, 8, 16), torch.randn(8, 4)
    torch.testing.assert_close(dispatched(x, weight), reference(x, weight))
    torch.testing.assert_close(dispatched(hidden_states=x, weight=weight), reference(x, weight))
    assert dispatched.__wrapped__ is reference  # `kernels: off` binds the reference through it
    assert _implementation(dispatched) is cuda_only_kernel
    if torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="is_cuda"):
            dispatched(x.cuda(), weight.cuda())


def test_pinned_expert_choice_replays_the_recorded_run():
    # bench/check_fast_path_gpu.py judges bf16 gradients with each router's top-k choice
    # pinned to the fp32 run's: replayed in fp32 it is that run again; in bf16 it removes
    # the flipped near-ties, so the gradients come closer to the fp32 ones than free routing.
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "check_fast_path_gpu.py"
    spec = importlib.util.spec_from_file_location("check_fast_path_gpu", path)
    check_gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_gpu)
    config = check_gpu._config("ME*E")
    config.vocab_size = 4096  # the real 131k head is minutes of CPU here
    ids = torch.randint(0, config.vocab_size, (1, 256), generator=torch.Generator().manual_seed(2))
    batch = {"input_ids": ids, "labels": ids.clone()}

    def run(dtype, pin):
        return check_gpu._run(check_gpu.REFERENCE_ENGINE, config, batch, dtype, 1, pin, "cpu")

    pin = check_gpu.RoutingPin()
    losses, truth = run(torch.float32, pin)
    assert sorted(pin.choices) == ["model.layers.1.mixer.gate", "model.layers.3.mixer.gate"]
    assert all(len(calls) == 2 for calls in pin.choices.values())  # before and after the step
    pin.replay = True
    assert run(torch.float32, pin)[0] == pytest.approx(losses, rel=1e-6)  # CPU threads' sums
    pinned = check_gpu._cosines(run(torch.bfloat16, pin)[1], truth)
    free = check_gpu._cosines(run(torch.bfloat16, check_gpu.RoutingPin())[1], truth)
    assert min(pinned.values()) > min(free.values())
    assert min(pinned.values()) >= 0.999


# ---------------------------------------------------------------- activations
def test_relu_squared_in_the_compute_dtype_equals_the_fp32_detour():
    from transformers.activations import ReLUSquaredActivation

    from reasonlab.training.engine.activations import ComputeDtypeActivation

    x = torch.randn(4096, dtype=torch.bfloat16) * 30
    relu2 = ReLUSquaredActivation()
    kept = ComputeDtypeActivation(relu2)(x)
    assert kept.dtype == torch.bfloat16
    assert torch.equal(kept, relu2(x.float()).to(torch.bfloat16))


def test_every_relu_squared_of_the_model_is_wrapped_and_the_loss_is_unchanged(tiny_model):
    from reasonlab.training.engine.activations import keep_activations_in_compute_dtype

    model = _peft_model(tiny_model)
    batch = _batch(model.config.vocab_size)
    reference = _loss_and_grads(model, batch)
    moe_layers = model.config.hybrid_override_pattern.count("E")
    # each MoE layer: its shared expert (an MLP) and its routed experts
    assert keep_activations_in_compute_dtype(model) == 2 * moe_layers
    _assert_same(reference, _loss_and_grads(model, batch))


# ---------------------------------------------------------------- checkpointing per layer kind
def test_only_the_named_layer_kinds_are_recomputed_and_the_gradients_are_unchanged(tiny_model):
    """`checkpoint_layers: [moe]`: each MoE mixer runs twice in a step (forward, recompute),
    every other mixer once; the loss and LoRA gradients are those of no checkpointing."""
    from reasonlab.training.engine.checkpointing import checkpoint_layers

    model = _peft_model(tiny_model)
    batch = _batch(model.config.vocab_size)
    reference = _loss_and_grads(model, batch)
    counts = checkpoint_layers(model, ["moe"])
    pattern = model.config.hybrid_override_pattern
    assert counts["moe checkpointed"] == pattern.count("E") > 0
    assert counts["mamba kept"] == pattern.count("M") > 0
    assert counts["attention kept"] == pattern.count("*") > 0
    calls = dict.fromkeys(pattern, 0)
    for block, letter in zip(model.get_base_model().model.layers, pattern):

        def count(*_, letter=letter):
            calls[letter] += 1

        # a pre-hook: the recompute stops once it has what the backward needs (torch's
        # early stop), before a mixer's forward returns
        block.mixer.register_forward_pre_hook(count)
    _assert_same(reference, _loss_and_grads(model, batch))
    assert calls == {"E": 2 * pattern.count("E"), "M": pattern.count("M"), "*": pattern.count("*")}


def test_the_activations_line_says_what_is_recomputed_and_kept():
    from reasonlab.training.engine.checkpointing import describe

    pattern = "MEM*E"
    every = ["mamba", "moe", "attention", "mlp"]
    assert describe(pattern, every, True).startswith("checkpointed per layer")
    assert describe(pattern, every, False).startswith("all kept")
    assert describe(pattern, ["moe"], True) == (
        "checkpointed: 2 moe blocks, recomputed in the backward; "
        "kept: 2 mamba, 1 attention blocks (checkpoint_layers: moe)"
    )
    assert describe("", ["moe"], True).endswith(
        "moe blocks, recomputed in the backward; others kept"
    )


# ---------------------------------------------------------------- packed attention
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _qkv(tokens: int, device: str = "cpu", dtype=torch.float32, seed: int = 0):
    """(1, heads, tokens, dim) queries and grouped keys / values: 8 query heads, 2 KV heads."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [(1, 8, tokens, 16), (1, 2, tokens, 16), (1, 2, tokens, 16)]
    return [torch.randn(s, generator=generator).to(device, dtype) for s in shapes]


def _block_diagonal_reference(q, k, v, bounds: list[int]) -> torch.Tensor:
    """sdpa over the whole row with a block-diagonal causal mask: what transformers builds."""
    tokens = q.shape[2]
    example = torch.bucketize(torch.arange(tokens), torch.tensor(bounds[1:]), right=True)
    causal = torch.ones(tokens, tokens, dtype=torch.bool).tril()
    mask = (causal & (example[:, None] == example[None, :])).to(q.device)
    out = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(4, dim=1), v.repeat_interleave(4, dim=1), attn_mask=mask, scale=0.3
    )
    return out.transpose(1, 2)  # (1, tokens, heads, dim), as attention functions return


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_packed_attention_equals_a_block_diagonal_mask(device):
    from reasonlab.training.engine.packed_attention import packed_attention

    bounds = [0, 5, 6, 19, 40]  # a one-token example among them
    dtype = torch.bfloat16 if device == "cuda" else torch.float32  # CUDA: the flash varlen kernel
    q, k, v = _qkv(40, device, dtype)
    cu = torch.tensor(bounds, dtype=torch.int32)
    out, weights = packed_attention(
        None, q, k, v, None, scaling=0.3, cu_seq_lens_q=cu, max_length_q=21
    )
    reference = _block_diagonal_reference(q.float(), k.float(), v.float(), bounds)
    assert weights is None and out.shape == reference.shape and out.dtype == dtype
    tolerance = 2e-2 if device == "cuda" else 1e-6
    torch.testing.assert_close(out.float(), reference, rtol=tolerance, atol=tolerance)
    alone, _ = packed_attention(None, q, k, v, None, scaling=0.3)  # no boundaries: one example
    full = _block_diagonal_reference(q.float(), k.float(), v.float(), [0, 40])
    torch.testing.assert_close(alone.float(), full, rtol=tolerance, atol=tolerance)


def test_packed_attention_refuses_what_it_cannot_honour():
    from reasonlab.training.engine.packed_attention import packed_attention

    q, k, v = _qkv(6)
    with pytest.raises(ValueError, match="attention_mask"):
        packed_attention(None, q, k, v, torch.ones(1, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch of 2"):
        packed_attention(None, *(t.expand(2, -1, -1, -1) for t in (q, k, v)), None)


# ---------------------------------------------------------------- compiled norms
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_compiled_norms_compute_the_models_norm(device):
    from reasonlab.training.engine.compiled_norm import NORM_CLASS, compile_norms
    from reasonlab.training.tiny_model import tiny_config

    torch.manual_seed(0)  # the tiny architecture; no tokenizer needed
    config = tiny_config(vocab_size=512, eos_token_id=2)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).to(device)
    with torch.no_grad():  # norm weights other than 1, so the weight's multiply counts
        for name, param in model.named_parameters():
            if name.endswith(("norm.weight", "norm_f.weight")):
                param.uniform_(0.5, 1.5)
    norms = [m for m in model.modules() if type(m).__name__ == NORM_CLASS]
    x = (torch.randn(1, 37, model.config.hidden_size) * 5).to(device, torch.bfloat16)
    x.requires_grad_(True)
    expected = [norm(x) for norm in norms]
    expected_grad = torch.autograd.grad(sum(y.float().sum() for y in expected), x)[0]
    assert compile_norms(model) == len(norms) == model.config.num_hidden_layers + 1
    got = [norm(x) for norm in norms]
    got_grad = torch.autograd.grad(sum(y.float().sum() for y in got), x)[0]
    if device == "cpu":  # as shipped: the same function
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
        assert torch.equal(got_grad, expected_grad)
    else:  # the same fp32 arithmetic; only the mean's addition order may differ
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)
        torch.testing.assert_close(got_grad, expected_grad, rtol=1e-2, atol=1e-2)


@CUDA
def test_compiled_expert_combine_is_the_eager_one():
    """The CUDA path's compiled reorder + routing-weighted sum: same values and gradients."""
    from reasonlab.training.engine.expert_lora import _combine, _combine_compiled

    tokens, top_k, hidden = 300, 6, 256
    order = torch.randperm(tokens * top_k, device="cuda")
    y = torch.randn(tokens * top_k, hidden, device="cuda", dtype=torch.bfloat16)
    weights = torch.rand(tokens, top_k, device="cuda").softmax(-1)
    results = []
    for combine in (_combine, _combine_compiled()):
        inputs = [y.clone().requires_grad_(True), weights.clone().requires_grad_(True)]
        out = combine(inputs[0], order, inputs[1], torch.bfloat16)
        grads = torch.autograd.grad(out.float().square().sum(), inputs)
        results.append((out, *grads))
    for eager, compiled in zip(*results, strict=True):
        torch.testing.assert_close(compiled.float(), eager.float(), rtol=1e-2, atol=1e-2)
