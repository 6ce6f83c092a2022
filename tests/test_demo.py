"""`reasonlab demo`: every stage end to end on the CPU, every artifact where the summary says."""

from __future__ import annotations

import json
import zipfile
from html.parser import HTMLParser

import pytest

from reasonlab.formats.csvio import read_rows
from reasonlab.formats.jsonl import read_jsonl
from reasonlab.plans.demo import STAGES, DemoConfig, run_demo
from reasonlab.puzzles.registry import FAMILIES

pytest.importorskip("transformers")


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images = 0

    def handle_starttag(self, tag, attrs):
        self.images += tag == "img" and dict(attrs).get("src", "").startswith(
            "data:image/png;base64,"
        )


def test_small_demo_runs_every_stage(tmp_path):
    """A smaller-than-default run (2 training steps)."""
    out = tmp_path / "demo"
    config = DemoConfig(
        out_dir=out, train_per_family=2, eval_per_family=1, train_steps=2, eval_max_new_tokens=8
    )
    result = run_demo(config)

    assert [stage for stage, _, _ in result.artifacts] == list(STAGES)
    paths = {stage: path for stage, path, _ in result.artifacts}
    for stage, path in paths.items():
        assert path.exists(), f"{stage}: {path} is missing"
        assert out in path.parents, f"{stage}: {path} is outside the demo folder"

    eval_rows = read_rows(paths["generate"], required=("id", "prompt", "answer"))
    assert len(eval_rows) == len(FAMILIES)
    outputs = read_jsonl(paths["eval"])
    assert sorted(x["id"] for x in outputs) == sorted(r["id"] for r in eval_rows)
    assert all(x["adapter"] == str(out / "export") for x in outputs)  # the exported adapter
    config_saved = json.loads((out / "eval_outputs.config.json").read_text())
    assert config_saved["adapter_sha256"] and config_saved["max_new_tokens"] == 8

    with zipfile.ZipFile(paths["pack"]) as archive:
        assert "adapter_config.json" in archive.namelist()
    parser = _Images()
    parser.feed(paths["report"].read_text())
    assert parser.images == 2
    notes = {stage: note for stage, _, note in result.artifacts}
    assert "checks pass" in notes["verify"] and "loss" in notes["train"]


@pytest.mark.slow  # the full default demo, twice: ~25 s on 2 idle cores, minutes on busy ones
def test_demo_command_with_defaults_twice(cli, tmp_path):
    """What the README's first command runs; a second run into the same folder redoes everything."""
    out = tmp_path / "demo-out"
    for _ in range(2):
        result = cli("demo", "-o", out)
        assert "reasonlab demo: artifacts" in result.output
        assert (out / "report.html").is_file() and (out / "submission.zip").is_file()
        outputs = read_jsonl(out / "eval_outputs.jsonl")
        assert len(outputs) == len({x["id"] for x in outputs}) == 2 * len(FAMILIES)


def test_bad_demo_config():
    with pytest.raises(ValueError, match="train_steps must be at least 1"):
        DemoConfig(train_steps=0)
    with pytest.raises(ValueError, match="unknown family nope"):
        DemoConfig(families=("nope",))
