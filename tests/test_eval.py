"""`reasonlab eval`: the scorer's prompt and decoding on the tiny model, resuming, the HTTP backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from reasonlab.competition import GENERATION_PROMPT_END, PROMPT_SUFFIX
from reasonlab.evaluation.backends import BackendError, vllm_available
from reasonlab.evaluation.evaluate import EvalConfig, config_path_for, evaluate, select_rows
from reasonlab.formats.csvio import read_rows, write_rows
from reasonlab.formats.jsonl import read_jsonl

pytest.importorskip("transformers")

FIELDS = {
    "id", "sample", "family", "output", "extracted", "prompt_tokens", "output_tokens",
    "finish_reason", "truncated", "backend", "model", "adapter",
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tiny_model) -> Path:
    return tiny_model


@pytest.fixture(scope="module")
def data(generated_csv) -> Path:
    return generated_csv({"gravity": 4, "unit_conversion": 4}, seed=7)


@pytest.fixture(scope="module")
def adapter(tiny, tmp_path_factory) -> Path:
    """A native adapter from the training pipeline: two steps on the toy rows, a high rate."""
    from reasonlab.training.recipe import LoraRecipe, TrainRecipe
    from reasonlab.training.tiny_model import TOY_DATA_FILE
    from reasonlab.training.train import train

    recipe = TrainRecipe(
        model=str(tiny),
        data=str(tiny / TOY_DATA_FILE),
        output_dir=str(tmp_path_factory.mktemp("train")),
        lora=LoraRecipe(r=8, alpha=16),
        learning_rate=2e-2,  # so two steps move the greedy outputs
        lr_scheduler="constant",
        warmup_ratio=0.0,
        max_steps=2,
        batch_size=4,
        grad_accum=1,
        max_length=512,
        precision="fp32",
        gradient_checkpointing=False,
        logging_steps=1,
        save_steps=100,
        report_to="none",
    )
    return train(recipe, echo=lambda _: None).adapter_dir


@pytest.fixture(scope="module")
def exported(adapter, tmp_path_factory) -> Path:
    """The same adapter in the scorer's layout (`backbone.` names, per-expert LoRAs)."""
    from reasonlab.submission.export import export_adapter

    return export_adapter(adapter, tmp_path_factory.mktemp("export") / "adapter").out_dir


def keys(path: Path) -> list[tuple[str, int]]:
    return [(line["id"], line["sample"]) for line in read_jsonl(path)]


# ---------------------------------------------------------------- what a line holds
def test_greedy_lines_match_the_scorer_settings(cli, tiny, data, tmp_path):
    out = tmp_path / "out.jsonl"
    result = cli("eval", data, "--base", tiny, "-o", out, "--max-new-tokens", "16")
    assert "all" in result.output and "gravity" in result.output
    lines = read_jsonl(out)
    assert len(lines) == 8 and {line["sample"] for line in lines} == {0}
    for line in lines:
        assert set(line) == FIELDS
        assert line["backend"] == "hf" and line["adapter"] is None
        assert 0 < line["output_tokens"] <= 16
        assert line["truncated"] == (line["finish_reason"] == "length")
    assert Counter(line["family"] for line in lines) == {"gravity": 4, "unit_conversion": 4}
    saved = json.loads(config_path_for(out).read_text())
    assert (saved["temperature"], saved["max_model_len"], saved["max_new_tokens"]) == (
        0.0,
        8192,
        16,
    )


def test_defaults_are_the_scorers():
    config = EvalConfig(data="d.csv", base="m", output="o.jsonl")
    scorer = (0.0, 1.0, 7680, 8192, 1)
    assert (
        config.temperature,
        config.top_p,
        config.max_new_tokens,
        config.max_model_len,
        config.samples,
    ) == scorer
    assert config.backend == ("vllm" if vllm_available() else "hf")  # "auto", resolved


def test_greedy_equals_argmax_without_cache(tiny, data, tmp_path):
    """Batched, left-padded, cached generate gives what a plain argmax loop gives."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonlab.formats.chat import render_scorer_prompt

    out = tmp_path / "out.jsonl"
    evaluate(
        EvalConfig(
            data=data, base=str(tiny), output=out, max_new_tokens=8, batch_size=4, per_family=2
        )
    )
    by_id = {line["id"]: line for line in read_jsonl(out)}
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    for row in read_rows(data)[:1]:
        rendered = render_scorer_prompt(tokenizer, row["prompt"])
        assert rendered.endswith(GENERATION_PROMPT_END) and PROMPT_SUFFIX in rendered
        ids = tokenizer(rendered)["input_ids"]
        seq = list(ids)
        with torch.no_grad():
            for _ in range(8):
                seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
                if seq[-1] == tokenizer.eos_token_id:
                    break
        new = [t for t in seq[len(ids) :] if t != tokenizer.eos_token_id]
        assert by_id[row["id"]]["output"] == tokenizer.decode(new, skip_special_tokens=True)
        assert by_id[row["id"]]["prompt_tokens"] == len(ids)


def test_model_generation_config_does_not_change_decoding(tiny, data, tmp_path):
    """The scorer's SamplingParams ignore generation_config.json; so must we."""
    import shutil

    eager = shutil.copytree(tiny, tmp_path / "eager")
    settings = json.loads((eager / "generation_config.json").read_text())
    settings.update(do_sample=True, temperature=0.6, top_p=0.9, top_k=3, repetition_penalty=5.0)
    (eager / "generation_config.json").write_text(json.dumps(settings))
    outputs = []
    for base in (tiny, eager):
        out = tmp_path / f"{base.name}.jsonl"
        evaluate(EvalConfig(data=data, base=str(base), output=out, max_new_tokens=12, limit=3))
        outputs.append([line["output"] for line in read_jsonl(out)])
    assert outputs[0] == outputs[1]


def test_context_limit_caps_new_tokens(tiny, data, tmp_path):
    """Like vLLM: new tokens = min(max_new_tokens, max_model_len - prompt tokens)."""
    out = tmp_path / "probe.jsonl"
    evaluate(EvalConfig(data=data, base=str(tiny), output=out, max_new_tokens=1, limit=1))
    prompt_tokens = read_jsonl(out)[0]["prompt_tokens"]

    out = tmp_path / "capped.jsonl"
    evaluate(
        EvalConfig(
            data=data,
            base=str(tiny),
            output=out,
            max_new_tokens=50,
            max_model_len=prompt_tokens + 3,
            limit=1,
        )
    )
    line = read_jsonl(out)[0]
    assert line["output_tokens"] <= 3 and (line["output_tokens"] < 3 or line["truncated"])

    out = tmp_path / "too_long.jsonl"
    evaluate(
        EvalConfig(data=data, base=str(tiny), output=out, max_model_len=prompt_tokens, limit=1)
    )
    line = read_jsonl(out)[0]
    assert (line["finish_reason"], line["output"], line["output_tokens"]) == (
        "prompt_too_long",
        "",
        0,
    )


def test_data_without_answers_is_generated_not_scored(tiny, data, tmp_path):
    """A test.csv (id,prompt) evaluates too: outputs are written, nothing is scored."""
    unanswered = tmp_path / "test.csv"
    write_rows(unanswered, read_rows(data)[:2], ("id", "prompt"))
    result = evaluate(
        EvalConfig(data=unanswered, base=str(tiny), output=tmp_path / "o.jsonl", max_new_tokens=4)
    )
    assert result.report is None and result.generated == 2


# ---------------------------------------------------------------- adapters and samples
def test_trained_adapter_native_and_exported(cli, tiny, data, adapter, exported, tmp_path):
    """The trained adapter changes the outputs; its scorer-layout export gives the same ones."""
    runs = {}
    for name, extra in (
        ("base", []),
        ("native", ["--adapter", adapter]),
        ("exported", ["--adapter", exported]),
    ):
        out = tmp_path / f"{name}.jsonl"
        cli(
            "eval",
            data,
            "--base",
            tiny,
            "-o",
            out,
            "--max-new-tokens",
            "12",
            "--limit",
            "3",
            *extra,
        )
        runs[name] = read_jsonl(out)
    outputs = {name: [x["output"] for x in lines] for name, lines in runs.items()}
    assert all(line["adapter"] == str(exported) for line in runs["exported"])
    assert outputs["native"] != outputs["base"]
    assert outputs["exported"] == outputs["native"]


# The sampler: Gumbel noise from per-row generators over logits / T (and top-p).
def test_seeded_sampling_draws_from_the_softmax():
    import torch

    from reasonlab.evaluation.backends import _SeededSampling

    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    n = 20_000
    sampler = _SeededSampling(range(n), temperature=0.7, top_p=1.0)
    picks = sampler(None, logits.repeat(n, 1)).argmax(dim=-1)
    observed = torch.bincount(picks, minlength=4).float() / n
    assert torch.allclose(observed, (logits / 0.7).softmax(-1), atol=0.015)
    # top-p 0.8 keeps the smallest prefix holding 80% of the mass (here the first two tokens)
    picks = _SeededSampling(range(n), temperature=0.7, top_p=0.8)(None, logits.repeat(n, 1)).argmax(
        -1
    )
    assert set(picks.tolist()) == {0, 1}


def test_top_p_near_zero_sampling_is_greedy(tiny, data, tmp_path):
    greedy, nucleus = tmp_path / "greedy.jsonl", tmp_path / "nucleus.jsonl"
    evaluate(EvalConfig(data=data, base=str(tiny), output=greedy, max_new_tokens=8, limit=3))
    evaluate(
        EvalConfig(
            data=data,
            base=str(tiny),
            output=nucleus,
            max_new_tokens=8,
            limit=3,
            temperature=1.0,
            top_p=1e-6,
        )
    )
    assert [x["output"] for x in read_jsonl(greedy)] == [x["output"] for x in read_jsonl(nucleus)]


def test_k3_sampling_is_reproducible_and_resumable(cli, tiny, data, tmp_path):
    args = [
        "--base",
        tiny,
        "--samples",
        "3",
        "--temperature",
        "1.0",
        "--max-new-tokens",
        "8",
        "--seed",
        "5",
    ]
    once, resumed = tmp_path / "once.jsonl", tmp_path / "resumed.jsonl"
    result = cli("eval", data, *args, "-o", once, "--per-family", "2")
    assert "pass@3" in result.output and "majority" in result.output
    cli("eval", data, *args, "-o", resumed, "--per-family", "1", "--batch-size", "1")
    cli("eval", data, *args, "-o", resumed, "--per-family", "2", "--batch-size", "3")

    def by_key(path):
        return {(x["id"], x["sample"]): x["output"] for x in read_jsonl(path)}

    assert len(by_key(once)) == 4 * 3
    # Same (id, sample) -> same text, whatever the batch or the run it was made in.
    assert by_key(once) == by_key(resumed)
    # Samples of one id differ (temperature 1 on a random model).
    assert (
        len({text for (row_id, _), text in by_key(once).items() if row_id == keys(once)[0][0]}) > 1
    )


def test_vote_and_report_on_k3_outputs(cli, tiny, data, tmp_path):
    out = tmp_path / "k3.jsonl"
    cli(
        "eval",
        data,
        "--base",
        tiny,
        "-o",
        out,
        "-k",
        "3",
        "--temperature",
        "0.8",
        "--max-new-tokens",
        "8",
        "--limit",
        "4",
    )
    result = cli("vote", out, "--gold", data)
    assert "pass@3" in result.output
    cli("report", out, "--gold", data, "-o", tmp_path / "r.html")
    assert "<img" in (tmp_path / "r.html").read_text()


# ---------------------------------------------------------------- resuming
def test_limit_then_full_run_adds_only_the_rest(cli, tiny, data, tmp_path):
    out = tmp_path / "out.jsonl"
    cli("eval", data, "--base", tiny, "-o", out, "--max-new-tokens", "6", "--limit", "3")
    first = keys(out)
    result = cli("eval", data, "--base", tiny, "-o", out, "--max-new-tokens", "6")
    assert "5 new output(s), 3 already" in result.output.replace("\n", " ")
    all_keys = keys(out)
    assert all_keys[:3] == first and len(all_keys) == len(set(all_keys)) == 8
    result = cli("eval", data, "--base", tiny, "-o", out, "--max-new-tokens", "6")
    assert "0 new output(s), 8 already" in result.output.replace("\n", " ")
    assert len(keys(out)) == 8


def test_half_written_line_is_dropped_and_regenerated(tiny, data, tmp_path):
    out = tmp_path / "out.jsonl"
    evaluate(EvalConfig(data=data, base=str(tiny), output=out, max_new_tokens=4, limit=2))
    with out.open("a") as f:
        f.write('{"id": "unit_conversion-7-000003", "sam')  # a crash mid-write
    result = evaluate(EvalConfig(data=data, base=str(tiny), output=out, max_new_tokens=4))
    assert result.generated == 6 and result.skipped == 2
    assert sorted(keys(out)) == sorted({(r["id"], 0) for r in read_rows(data)})


def test_a_second_writer_is_refused(tiny, data, tmp_path):
    import fcntl

    out = tmp_path / "out.jsonl"
    with out.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running `reasonlab eval` holds it
        with pytest.raises(ValueError, match="another `reasonlab eval` is writing"):
            evaluate(EvalConfig(data=data, base=str(tiny), output=out, max_new_tokens=2, limit=1))
    evaluate(EvalConfig(data=data, base=str(tiny), output=out, max_new_tokens=2, limit=1))
    assert len(read_jsonl(out)) == 1


def test_changed_settings_refuse_to_resume(cli, tiny, data, tmp_path):
    out = tmp_path / "out.jsonl"
    cli("eval", data, "--base", tiny, "-o", out, "--max-new-tokens", "4", "--limit", "1")
    result = cli("eval", data, "--base", tiny, "-o", out, "--max-new-tokens", "5", expect=1)
    assert "max_new_tokens: 4 -> 5" in result.output


def test_retrained_adapter_in_the_same_folder_refuses_to_resume(cli, tiny, data, adapter, tmp_path):
    import shutil

    copy = shutil.copytree(adapter, tmp_path / "adapter")
    out = tmp_path / "out.jsonl"
    cli(
        "eval",
        data,
        "--base",
        tiny,
        "--adapter",
        copy,
        "-o",
        out,
        "--max-new-tokens",
        "4",
        "--limit",
        "1",
    )
    with (copy / "adapter_config.json").open("a") as f:
        f.write("\n")  # same folder, other bytes: as if trained again
    result = cli(
        "eval",
        data,
        "--base",
        tiny,
        "--adapter",
        copy,
        "-o",
        out,
        "--max-new-tokens",
        "4",
        expect=1,
    )
    assert "adapter_sha256" in result.output


@pytest.mark.slow  # ~15 s alone, a subprocess start and three runs; the fast resume tests are above
def test_killed_run_resumes_without_loss_or_duplicates(tiny, data, tmp_path):
    """SIGKILL a real `reasonlab eval` process mid-run, resume, compare with a clean run."""
    out, clean = tmp_path / "killed.jsonl", tmp_path / "clean.jsonl"
    settings = {"max_new_tokens": 48, "batch_size": 1}
    command = [
        sys.executable, "-c", "from reasonlab.cli import main; main()", "eval", str(data), "--base", str(tiny),
        "-o", str(out), "--max-new-tokens", "48", "--batch-size", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_file() and len(out.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(out.read_text().splitlines())
    assert killed and 2 <= partial < 8, f"the run should be killed midway, had {partial} lines"

    resumed = evaluate(EvalConfig(data=data, base=str(tiny), output=out, **settings))
    assert resumed.skipped == partial and resumed.generated == 8 - partial
    evaluate(EvalConfig(data=data, base=str(tiny), output=clean, **settings))
    got = {(x["id"], x["sample"]): x["output"] for x in read_jsonl(out)}
    assert len(read_jsonl(out)) == len(got) == 8
    assert got == {(x["id"], x["sample"]): x["output"] for x in read_jsonl(clean)}


# ---------------------------------------------------------------- selection and validation
def test_select_rows(data):
    rows = read_rows(data)
    assert [r["id"] for r in select_rows(rows, None, 1)] == [
        "gravity-7-000000",
        "unit_conversion-7-000000",
    ]
    assert len(select_rows(rows, 3, None)) == 3
    assert len(select_rows(rows, 3, 1)) == 2


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("backend", "tgi", "backend must be one of"),
        ("samples", 0, "samples must be at least 1"),
        ("temperature", -1.0, "temperature must be >= 0"),
        ("top_p", 0.0, "top_p must be in"),
    ],
)
def test_bad_config(field, value, message):
    with pytest.raises(ValueError, match=message):
        EvalConfig(data="d.csv", base="m", output="o.jsonl", **{field: value})


def test_config_file_and_flags(cli, tiny, data, tmp_path):
    """Defaults, then the file, then flags typed on the command line."""
    out = tmp_path / "out.jsonl"
    (tmp_path / "eval.yaml").write_text("max_new_tokens: 3\nlimit: 2\nbatch_size: 1\n")
    cli("eval", data, "--base", tiny, "-o", out, "--config", tmp_path / "eval.yaml", "--limit", "1")
    saved = json.loads(config_path_for(out).read_text())
    assert (saved["max_new_tokens"], saved["limit"], saved["batch_size"]) == (3, 1, 1)
    (tmp_path / "bad.yaml").write_text("max_tokens: 3\n")
    result = cli(
        "eval", data, "--base", tiny, "-o", out, "--config", tmp_path / "bad.yaml", expect=1
    )
    assert "unknown setting(s) max_tokens" in result.output


# ---------------------------------------------------------------- vLLM (only where installed)
@pytest.mark.gpu
@pytest.mark.skipif(not vllm_available(), reason="vllm is not installed")
def test_vllm_backend_runs(tiny, data, tmp_path):
    out = tmp_path / "out.jsonl"
    evaluate(
        EvalConfig(data=data, base=str(tiny), output=out, backend="vllm", max_new_tokens=8, limit=2)
    )
    assert len(read_jsonl(out)) == 2


# ---------------------------------------------------------------- OpenAI-compatible server
class _Completions(BaseHTTPRequestHandler):
    """A real HTTP server: answers each prompt with its gold answer; fails some calls first."""

    gold: ClassVar[dict[str, str]] = {}  # set by the fixture, per test
    state: ClassVar[dict] = {}

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        lock = self.state["lock"]
        with lock:
            self.state["requests"].append(body)
            n = len(self.state["requests"])
            self.state["inflight"] += 1
            self.state["peak"] = max(self.state["peak"], self.state["inflight"])
        try:
            time.sleep(0.02)  # long enough for concurrent requests to overlap
            if self.path != "/v1/completions":
                return self._send(404, {"error": "not found"})
            if n % 4 == 1:  # every fourth call: overloaded or broken, then a retry succeeds
                return self._send(429 if n % 8 == 1 else 503, {"error": "try again"})
            answer = next(a for puzzle, a in self.gold.items() if puzzle in body["prompt"])
            if body.get("seed", 0) % 2:  # odd seeds write the same number another way
                answer = f"{float(answer):.4f}"
            text = f"thinking...\n</think>\nSo \\boxed{{{answer}}}"
            self._send(200, {
                "choices": [{"text": text, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 7},
            })  # fmt: skip
        finally:
            with lock:
                self.state["inflight"] -= 1

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server(data):
    _Completions.gold = {row["prompt"]: row["answer"] for row in read_rows(data)}
    _Completions.state = {"lock": threading.Lock(), "requests": [], "inflight": 0, "peak": 0}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Completions)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Completions.state
    httpd.shutdown()
    httpd.server_close()


def test_openai_backend_over_http(cli, tiny, data, tmp_path, server):
    url, state = server
    out = tmp_path / "out.jsonl"
    result = cli(
        "eval", data, "--base", tiny, "-o", out, "--backend", "openai", "--url", url,
        "--served-model", "tiny-lora", "--samples", "3", "--temperature", "0.7", "--concurrency", "3",
    )  # fmt: skip
    lines = read_jsonl(out)
    assert len(lines) == 24 and len(set(keys(out))) == 24
    assert all(line["output_tokens"] == 7 and line["backend"] == "openai" for line in lines)
    # Every call carried the scorer's rendered prompt and our settings.
    for body in state["requests"]:
        assert body["prompt"].endswith(GENERATION_PROMPT_END) and PROMPT_SUFFIX in body["prompt"]
        assert (body["model"], body["temperature"], body["max_tokens"]) == ("tiny-lora", 0.7, 7680)
    assert len(state["requests"]) > 24  # the failed calls were retried
    assert 1 < state["peak"] <= 3  # concurrent, within the bound
    # "12.3" and "12.3000" are one answer: every vote is unanimous and right.
    assert "100.0%" in result.output
    report = evaluate(
        EvalConfig(
            data=data,
            base=str(tiny),
            output=out,
            backend="openai",
            url=url,
            samples=3,
            temperature=0.7,
            served_model="tiny-lora",
        )
    ).report
    assert report.overall.majority == 1.0 and report.overall.margin == 1.0
    assert {line["extracted"] for line in lines} != {
        line["extracted"] for line in lines if line["sample"] == 0
    }


def test_openai_backend_gives_up_on_a_client_error(tiny, data, tmp_path, server):
    url, _ = server
    config = EvalConfig(
        data=data,
        base=str(tiny),
        output=tmp_path / "o.jsonl",
        backend="openai",
        url=url + "/nope",
        limit=1,
    )
    with pytest.raises(BackendError, match="answered 404"):
        evaluate(config)
