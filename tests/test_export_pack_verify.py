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


def test_pack_bytes_survive_a_clock_change(exported, tmp_path, monkeypatch):
    """Same adapter, later wall clock and newer file times: the same bytes, every field pinned."""
    import os
    import shutil
    import time

    root = exported[0]
    first = pack_adapter(root / "export", tmp_path / "a.zip")
    copy = shutil.copytree(root / "export", tmp_path / "export")
    later = time.time() + 400 * 86400  # 400 days on, another second, minute and year
    for path in copy.iterdir():
        os.utime(path, (later, later))
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(
        time, "localtime", lambda secs=None: time.gmtime(later if secs is None else secs)
    )
    second = pack_adapter(copy, tmp_path / "b.zip")
    assert first.sha256 == second.sha256
    with zipfile.ZipFile(second.zip_path) as zf:
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0), info
            assert info.external_attr >> 16 == 0o100644, info  # a regular file, rw-r--r--
            assert info.compress_type == zipfile.ZIP_DEFLATED, info
            assert info.create_system == 3, info  # unix, whatever OS packs it


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


# verify's rules, one crafted zip each, are in test_verify_rules.py; these are the archive's.
ARCHIVE_CASES = {
    "path with ..": (lambda f: {**f, "../evil.txt": b"x"}, "'..' in path"),
    "absolute path": (lambda f: {**f, "/etc/evil": b"x"}, "absolute path"),
}


@pytest.mark.parametrize("case", sorted(ARCHIVE_CASES))
def test_verify_refuses_unsafe_archives(exported, tmp_path, case):
    root, model_dir, _, _ = exported
    make, message = ARCHIVE_CASES[case]
    report = verify_submission(
        _zip(tmp_path / "s.zip", make(_good_files(root))), model_dir / "config.json"
    )
    failed = [c for c in report.checks if c.status == "fail"]
    assert [c.name for c in failed] == ["archive"] and message in failed[0].detail, report.checks


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
