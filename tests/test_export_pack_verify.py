"""Export keeps the trained function; pack is deterministic; verify accepts good zips and names each fault."""

from __future__ import annotations

import json
import zipfile

import pytest

pytest.importorskip("peft")

from reasonlab.submission.export import export_adapter, merge_exported
from reasonlab.submission.pack import pack_adapter
from reasonlab.submission.verify import verify_submission


def _native_adapter(
    model, out, r, presets=("attention", "mamba_in", "shared_experts", "routed_experts", "lm_head")
):
    """Wrap `model` with LoRA (random B, as after training) and save it as `reasonlab train` does."""
    import torch
    from peft import LoraConfig, get_peft_model

    from reasonlab.training.lora_targets import resolve_targets
    from reasonlab.training.train import PARAMETER_MAP_FILE, parameter_wrappers

    targets = resolve_targets(model, presets)
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=r,
            lora_alpha=2 * r,
            target_modules=targets.target_modules,
            target_parameters=targets.target_parameters,
            init_lora_weights=False,
        ),
    )
    meta = next(peft_model.parameters()).is_meta
    state = {}
    for name, p in peft_model.named_parameters():
        if ".lora_" in name:
            key = name.replace(".default", "")
            state[key] = (
                torch.randn(p.shape, dtype=torch.bfloat16) * 0.02 if meta else p.detach().clone()
            )
    out.mkdir(parents=True)
    if meta:  # weights on the meta device cannot be saved by PEFT: write the same files by hand
        from safetensors.torch import save_file

        save_file(state, str(out / "adapter_model.safetensors"))
        config = peft_model.peft_config["default"].to_dict()
        config["target_modules"] = sorted(config["target_modules"])
        config["target_parameters"] = sorted(config["target_parameters"] or [])
        (out / "adapter_config.json").write_text(json.dumps(config, default=str))
    else:
        peft_model.save_pretrained(out, save_embedding_layers=False)
    (out / PARAMETER_MAP_FILE).write_text(json.dumps(parameter_wrappers(peft_model)))
    return peft_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_model):
    return tmp_path_factory.mktemp("epv"), tiny_model


@pytest.fixture(scope="module")
def exported(tiny):
    import torch
    from transformers import AutoModelForCausalLM

    root, model_dir = tiny
    torch.manual_seed(1)
    peft_model = _native_adapter(
        AutoModelForCausalLM.from_pretrained(model_dir), root / "native", r=4
    )
    result = export_adapter(root / "native", root / "export")
    return root, model_dir, peft_model, result


def test_export_layout(exported):
    from safetensors.torch import load_file

    root, _, _, result = exported
    keys = load_file(str(root / "export" / "adapter_model.safetensors"))
    assert all(
        k.startswith(("base_model.model.backbone.layers.", "base_model.model.lm_head."))
        for k in keys
    )
    # 8 routed experts, each with its own up/down pair; no fused 3-D key survives
    assert "base_model.model.backbone.layers.1.mixer.experts.7.up_proj.lora_A.weight" in keys
    assert keys[
        "base_model.model.backbone.layers.1.mixer.experts.0.down_proj.lora_B.weight"
    ].shape == (64, 4)
    assert not any(k.endswith("mixer.experts.lora_A.weight") for k in keys)
    config = json.loads((root / "export" / "adapter_config.json").read_text())
    assert (
        config["target_modules"]
        == result.target_modules
        == sorted(
            ["down_proj", "in_proj", "k_proj", "lm_head", "o_proj", "q_proj", "up_proj", "v_proj"]
        )
    )
    assert config["target_parameters"] is None


def test_exported_adapter_mapped_back_gives_the_same_logits(exported):
    import torch
    from transformers import AutoModelForCausalLM

    _, model_dir, peft_model, _ = exported
    ids = torch.tensor([[3, 40, 41, 42, 43, 44, 4, 10, 50, 60, 70, 80]])
    base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        before = base(input_ids=ids).logits
        want = peft_model.eval()(input_ids=ids).logits
        got = merge_exported(base, exported[0] / "export")(input_ids=ids).logits
    assert (want - before).abs().max() > 1e-2  # the adapter changes the function...
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)  # ...and the export keeps it


def test_pack_is_deterministic_and_verify_passes(exported, tmp_path):
    root, model_dir, _, _ = exported
    a = pack_adapter(root / "export", tmp_path / "a.zip")
    b = pack_adapter(root / "export", tmp_path / "b.zip")
    assert a.sha256 == b.sha256
    assert zipfile.ZipFile(a.zip_path).namelist() == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    report = verify_submission(a.zip_path, model_dir / "config.json")
    assert report.ok, report.checks


# --- verify rejects, each with a clear message -------------------------------------------


def _zip(path, files):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _good_files(root):
    return {
        n: (root / "export" / n).read_bytes()
        for n in ("adapter_config.json", "adapter_model.safetensors")
    }


def _edit_config(files, **changes):
    config = json.loads(files["adapter_config.json"])
    config.update(changes)
    return {**files, "adapter_config.json": json.dumps(config)}


def _edit_tensors(files, edit):
    from safetensors.torch import load, save

    tensors = load(files["adapter_model.safetensors"])
    edit(tensors)
    return {**files, "adapter_model.safetensors": save(tensors)}


def _rename(tensors, old, new):
    for ab in "AB":
        tensors[f"base_model.model.{new}.lora_{ab}.weight"] = tensors.pop(
            f"base_model.model.{old}.lora_{ab}.weight"
        )


CASES = {
    "rank 64": (lambda f: _edit_config(f, r=64), "rank", "exceeds 32"),
    "rank_pattern 64": (
        lambda f: _edit_config(f, rank_pattern={"q_proj": 64}),
        "rank",
        "exceeds 32",
    ),
    "pickle .bin": (
        lambda f: {**f, "adapter_model.bin": b"\x80\x04pickle"},
        "weights_format",
        "pickle weights refused",
    ),
    "path with ..": (lambda f: {**f, "../evil.txt": b"x"}, "archive", "'..' in path"),
    "absolute path": (lambda f: {**f, "/etc/evil": b"x"}, "archive", "absolute path"),
    "missing config": (
        lambda f: {"adapter_model.safetensors": f["adapter_model.safetensors"]},
        "adapter_config",
        "found 0",
    ),
    "two configs": (
        lambda f: {**f, "x/adapter_config.json": f["adapter_config.json"]},
        "adapter_config",
        "found 2",
    ),
    "nonexistent module": (
        lambda f: _edit_tensors(
            f,
            lambda t: _rename(
                t, "backbone.layers.3.mixer.q_proj", "backbone.layers.3.mixer.zz_proj"
            ),
        ),
        "keys",
        "no module",
    ),
    "native name": (
        lambda f: _edit_tensors(
            f, lambda t: _rename(t, "backbone.layers.3.mixer.q_proj", "model.layers.3.mixer.q_proj")
        ),
        "keys",
        "reasonlab export",
    ),
    "shape mismatch": (
        lambda f: _edit_tensors(
            f,
            lambda t: t.update(
                {
                    "base_model.model.backbone.layers.3.mixer.q_proj.lora_A.weight": t[
                        "base_model.model.backbone.layers.3.mixer.q_proj.lora_A.weight"
                    ][:, :10].contiguous()
                }
            ),
        ),
        "shapes",
        "expected",
    ),
    "out_proj target": (
        lambda f: _edit_tensors(
            _edit_config(f, target_modules=["q_proj", "out_proj"]), lambda t: None
        ),
        "targets",
        "forbidden 'out_proj'",
    ),
    "out_proj key": (
        lambda f: _edit_tensors(
            f,
            lambda t: _rename(
                t, "backbone.layers.0.mixer.in_proj", "backbone.layers.0.mixer.out_proj"
            ),
        ),
        "keys",
        "must stay frozen",
    ),
    "NaN": (
        lambda f: _edit_tensors(
            f,
            lambda t: t["base_model.model.lm_head.lora_B.weight"].__setitem__((0, 0), float("nan")),
        ),
        "values",
        "NaN",
    ),
    "fused experts": (
        lambda f: _edit_config(f, target_parameters=["experts.up_proj"]),
        "targets",
        "fused 3-D",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_verify_rejects(exported, tmp_path, case):
    root, model_dir, _, _ = exported
    make, check, message = CASES[case]
    report = verify_submission(
        _zip(tmp_path / "s.zip", make(_good_files(root))), model_dir / "config.json"
    )
    assert not report.ok
    failed = [c for c in report.checks if c.status == "fail"]
    assert [c.name for c in failed] == [check] and message in failed[0].detail, report.checks


def test_verify_refuses_a_zip_bomb_by_declared_size(exported, tmp_path):
    from reasonlab.submission.verify import VerifyOptions

    root, model_dir, _, _ = exported
    files = {**_good_files(root), "padding.txt": b"\0" * 2_000_000}  # deflates to ~2 kB
    report = verify_submission(
        _zip(tmp_path / "s.zip", files),
        model_dir / "config.json",
        VerifyOptions(max_declared_bytes=1_000_000),
    )
    assert report.checks[0].status == "fail" and "exceeds the limit" in report.checks[0].detail


@pytest.mark.slow  # ~21 s: 30B shapes on the meta device, ~27M LoRA values at r=1
def test_real_architecture_adapter_from_a_meta_model_verifies(tmp_path):
    """An adapter exported from the real 30B shapes (built on the meta device) passes the default check."""
    import torch
    from transformers import AutoModelForCausalLM

    from reasonlab.submission.verify import load_architecture

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(load_architecture())
    _native_adapter(model, tmp_path / "native", r=1)
    result = export_adapter(tmp_path / "native", tmp_path / "export")
    assert result.experts_split == 2 * 23  # up and down of every MoE layer
    report = verify_submission(pack_adapter(tmp_path / "export", tmp_path / "s.zip").zip_path)
    assert report.ok, report.checks


def test_real_config_matches_the_shared_copy(real_config):
    from reasonlab.submission.verify import REAL_ARCHITECTURE

    real = json.loads(real_config.read_text())
    assert {k: real[k] for k in REAL_ARCHITECTURE} == REAL_ARCHITECTURE
