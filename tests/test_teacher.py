"""Teacher runs with money in mind: usage, prices, a hard cap, resuming, `--only-missing`.

Every test talks to a real HTTP server speaking the OpenAI chat-completions API, started
here on the loopback interface: it answers each puzzle (right after a set number of wrong
tries), reports `usage`, and records what it billed, so the tests check the client's
bookkeeping against the server's, not against itself.
"""

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

from reasonlab.competition import user_message
from reasonlab.evaluation.backends import BackendError
from reasonlab.evaluation.evaluate import EvalConfig, evaluate
from reasonlab.evaluation.spend import Prices, SpendLedger, ledger_path_for
from reasonlab.formats.csvio import read_rows
from reasonlab.formats.jsonl import read_jsonl

pytest.importorskip("transformers")

PRICES = Prices(usd_per_mtok_in=1_000.0, usd_per_mtok_out=10_000.0)  # $0.001 / $0.01 a token
COMPLETION_TOKENS = 30  # what the server bills per answer (our max_tokens is 64)
MAX_REQUESTS = 400  # the server refuses beyond this: a runaway client cannot loop forever


class ChatServer(BaseHTTPRequestHandler):
    """POST /v1/chat/completions: finds the puzzle in the user message and answers it.

    Puzzle i answers wrong for its first `wrong_first[i]` requests, then right. The
    thinking comes back in `reasoning_content`, apart from the boxed answer, as reasoning
    models serve it. `billed` holds (id, seed, usage) of every answer fully sent.
    """

    state: ClassVar[dict] = {}  # set by the fixture, per test

    def log_message(self, *args):
        pass

    def do_POST(self):
        s = self.state
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with s["lock"]:
            s["requests"].append(body)
            s["inflight"] += 1
            s["peak"] = max(s["peak"], s["inflight"])
            refused = len(s["requests"]) > MAX_REQUESTS or self.path != "/v1/chat/completions"
        try:
            if refused:
                return self._send(400, {"error": "refused"})
            time.sleep(s["delay_s"])
            user = body["messages"][-1]["content"]
            row = next(r for r in s["rows"] if r["prompt"] in user)
            with s["lock"]:
                tries = s["tries"][row["id"]] = s["tries"][row["id"]] + 1
            answer = row["answer"] if tries > s["wrong_first"].get(row["id"], 0) else "-1"
            completion = s["completion_tokens"]
            usage = {"prompt_tokens": sum(len(m["content"]) for m in body["messages"]) // 4,
                     "completion_tokens": completion, "total_tokens": 0}  # fmt: skip
            message = {"role": "assistant", "content": f"\\boxed{{{answer}}}",
                       "reasoning_content": f"I work it out step by step and get {answer}."}  # fmt: skip
            self._send(200, {"id": "x", "object": "chat.completion", "usage": usage,
                             "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})  # fmt: skip
            with s["lock"]:
                s["billed"].append((row["id"], body.get("seed"), usage))
        finally:
            with s["lock"]:
                s["inflight"] -= 1

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


@pytest.fixture(scope="module")
def data(generated_csv) -> Path:
    return generated_csv({"gravity": 3, "numeral": 3}, seed=3)


@pytest.fixture
def server(data):
    rows = read_rows(data)
    ChatServer.state = {
        "lock": threading.Lock(), "requests": [], "billed": [], "inflight": 0, "peak": 0,
        "rows": rows, "tries": Counter(), "wrong_first": {}, "delay_s": 0.01,
        "completion_tokens": COMPLETION_TOKENS,
    }  # fmt: skip
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ChatServer)  # loopback only
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", ChatServer.state
    httpd.shutdown()
    httpd.server_close()


def teacher_flags(url: str) -> list[str]:
    return [
        "--backend", "openai", "--api", "chat", "--url", url, "--served-model", "teacher",
        "--temperature", "0.7", "--max-new-tokens", "64", "--usd-per-mtok-in", "1000",
        "--usd-per-mtok-out", "10000",
    ]  # fmt: skip


def teacher_config(data: Path, tiny: Path, out: Path, url: str, **extra) -> EvalConfig:
    settings = {
        "data": data, "base": str(tiny), "output": out, "backend": "openai", "api": "chat",
        "url": url, "served_model": "teacher", "temperature": 0.7, "max_new_tokens": 64,
        "usd_per_mtok_in": PRICES.usd_per_mtok_in, "usd_per_mtok_out": PRICES.usd_per_mtok_out,
    }  # fmt: skip
    return EvalConfig(**{**settings, **extra})


def billed_usd(state: dict) -> float:
    return sum(
        PRICES.cost(u["prompt_tokens"], u["completion_tokens"]) for _, _, u in state["billed"]
    )


def keys(path: Path) -> list[tuple[str, int]]:
    return [(x["id"], x["sample"]) for x in read_jsonl(path)]


# ---------------------------------------------------------------- usage, prices, prompts
def test_usage_and_cost_per_request_and_in_total(cli, tiny_model, data, tmp_path, server):
    url, state = server
    out = tmp_path / "teacher.jsonl"
    template = "Solve this carefully.\n{prompt}\nEnd with \\boxed{}."
    result = cli(
        "eval", data, "--base", tiny_model, "-o", out, *teacher_flags(url), "-k", "2",
        "--system-prompt", "You are a careful teacher.", "--instruction-template", template,
    )  # fmt: skip
    lines = read_jsonl(out)
    assert len(lines) == 12 and len(set(keys(out))) == 12
    # The teacher's prompt went out as chat messages; the server rendered them.
    for body in state["requests"]:
        system, user = body["messages"]
        assert system == {"role": "system", "content": "You are a careful teacher."}
        assert (
            user["content"].startswith("Solve this carefully.\n")
            and "{prompt}" not in user["content"]
        )
        assert (body["model"], body["max_completion_tokens"], "prompt" in body) == (
            "teacher",
            64,
            False,
        )
    # Per request: the server's usage and its price; the thinking joined back before the answer.
    billed = {(row_id, seed): usage for row_id, seed, usage in state["billed"]}
    for line in lines:
        assert line["output"].endswith("\n</think>\n\\boxed{" + line["extracted"] + "}")
        usage = line["usage"]
        assert usage == {
            k: v
            for k, v in billed.pop((line["id"], _seed(line)), {}).items()
            if k != "total_tokens"
        }
        assert line["cost_usd"] == pytest.approx(
            PRICES.cost(usage["prompt_tokens"], COMPLETION_TOKENS)
        )
    assert not billed  # every billed answer is a line
    # In total: the ledger, the lines and the server agree; the command says so.
    total = sum(line["cost_usd"] for line in lines)
    assert total == pytest.approx(billed_usd(state))
    assert SpendLedger(ledger_path_for(out), PRICES).before_usd == pytest.approx(total)
    assert f"spent ${total:,.4f} this run (12 answers / 12 attempts" in " ".join(
        result.output.split()
    )


def _seed(line: dict) -> int:
    from reasonlab.evaluation.requests import sample_seed

    return sample_seed(0, line["id"], line["sample"])


def test_default_teacher_prompt_is_the_scorers(tiny_model, data, tmp_path, server):
    url, state = server
    evaluate(teacher_config(data, tiny_model, tmp_path / "o.jsonl", url, limit=2))
    prompts = {r["prompt"] for r in read_rows(data)}
    for body in state["requests"]:
        (user,) = body["messages"]  # no system turn, as the scorer
        assert any(user["content"] == user_message(p) for p in prompts)


def test_changed_teacher_prompt_refuses_to_resume(tiny_model, data, tmp_path, server):
    url, _ = server
    out = tmp_path / "o.jsonl"
    evaluate(teacher_config(data, tiny_model, out, url, limit=1, system_prompt="A"))
    with pytest.raises(ValueError, match="system_prompt: 'A' -> 'B'"):
        evaluate(teacher_config(data, tiny_model, out, url, system_prompt="B"))


# ---------------------------------------------------------------- the cap
def test_cap_stops_before_it_is_crossed_and_a_rerun_pays_nothing_twice(
    cli, tiny_model, data, tmp_path, server
):
    url, state = server
    out = tmp_path / "capped.jsonl"
    cap = 2.5  # 12 answers cost $4.67 here; a worst case (64 tokens out) about $1.15
    config = teacher_config(data, tiny_model, out, url, samples=2, concurrency=3, max_cost_usd=cap)
    first = evaluate(config)
    ledger = read_jsonl(ledger_path_for(out))
    worst = max(e["worst_usd"] for e in ledger if e["event"] == "sent")
    assert first.stopped == "cap" and 0 < first.generated < 12
    # What the server billed stays under the cap, and the client's count is the server's.
    assert billed_usd(state) <= cap
    assert first.spend.usd_total == pytest.approx(billed_usd(state))
    assert cap - first.spend.usd_total < worst  # it stopped because the next one might not fit
    assert 1 < state["peak"] <= 3  # in flight together, each counted at its worst case

    # The same cap again: nothing is sent.
    sent = len(state["requests"])
    again = cli(
        "eval",
        data,
        "--base",
        tiny_model,
        "-o",
        out,
        *teacher_flags(url),
        "-k",
        "2",
        "--max-cost-usd",
        str(cap),
    )
    assert len(state["requests"]) == sent and "stopped at the cost cap" in again.output
    # A higher cap: the rest, and no (id, sample) is ever paid for twice.
    evaluate(
        teacher_config(data, tiny_model, out, url, samples=2, concurrency=3, max_cost_usd=100.0)
    )
    assert len(read_jsonl(out)) == 12
    paid = Counter((row_id, seed) for row_id, seed, _ in state["billed"])
    assert len(paid) == 12 and set(paid.values()) == {1}


def test_a_server_billing_past_max_tokens_stops_the_run(tiny_model, data, tmp_path, server):
    url, state = server
    state["completion_tokens"] = 65  # more than the 64 asked for: the cap cannot hold
    config = teacher_config(
        data, tiny_model, tmp_path / "o.jsonl", url, max_cost_usd=100.0, concurrency=1
    )
    with pytest.raises(BackendError, match="cost cap cannot be guaranteed"):
        evaluate(config)
    assert len(state["billed"]) == 1  # nothing more was sent after the first overrun


# ---------------------------------------------------------------- killed runs
def _start(data: Path, tiny: Path, out: Path, url: str) -> subprocess.Popen:
    command = [
        sys.executable, "-c", "from reasonlab.cli import main; main()", "eval", str(data),
        "--base", str(tiny), "-o", str(out), *teacher_flags(url), "-k", "2", "--concurrency", "3",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_lines(proc: subprocess.Popen, out: Path, n: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_file() and len(out.read_text().splitlines()) >= n:
            return
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"the run ended or stalled before {n} lines: {proc.stderr.read()!r}")


def _wait_until_idle(state: dict) -> None:
    """The server records a bill just after sending it: let the last handler finish."""
    deadline = time.monotonic() + 10
    while state["inflight"] and time.monotonic() < deadline:
        time.sleep(0.01)


def test_sigterm_stops_cleanly_and_the_rerun_pays_nothing_twice(tiny_model, data, tmp_path, server):
    url, state = server
    state["delay_s"] = 0.3  # slow answers: three are in flight when the signal lands
    out = tmp_path / "killed.jsonl"
    proc = _start(data, tiny_model, out, url)
    _wait_for_lines(proc, out, 2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    _wait_until_idle(state)
    written = set(keys(out))
    assert 2 <= len(written) < 12
    # Clean stop: every answer the server billed was written (those in flight were drained).
    assert Counter(row_id for row_id, _, _ in state["billed"]) == Counter(i for i, _ in written)
    state["delay_s"] = 0.01
    resumed = evaluate(teacher_config(data, tiny_model, out, url, samples=2, concurrency=3))
    assert resumed.skipped == len(written) and resumed.generated == 12 - len(written)
    paid = Counter((row_id, seed) for row_id, seed, _ in state["billed"])
    assert len(paid) == 12 and set(paid.values()) == {1}
    assert resumed.spend.usd_total == pytest.approx(billed_usd(state))


@pytest.mark.slow  # a second subprocess start; the SIGTERM test above covers the clean path
def test_sigkill_loses_at_most_what_was_in_flight_and_counts_it(tiny_model, data, tmp_path, server):
    url, state = server
    state["delay_s"] = 0.3
    out = tmp_path / "killed.jsonl"
    proc = _start(data, tiny_model, out, url)
    _wait_for_lines(proc, out, 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = set(keys(out))
    ledger = SpendLedger(ledger_path_for(out), PRICES)
    # In flight at the kill: sent, never settled, counted at their worst case.
    assert ledger.before_usd >= sum(x["cost_usd"] for x in read_jsonl(out))
    _wait_until_idle(state)  # the server finishes (and bills) what was in flight
    before = len(state["requests"])
    evaluate(teacher_config(data, tiny_model, out, url, samples=2, concurrency=3))
    again = Counter((row_id, seed) for row_id, seed, _ in state["billed"])
    resent = {k for k, n in again.items() if n > 1}
    assert len(read_jsonl(out)) == len(set(keys(out))) == 12
    assert (
        not {(i, _seed({"id": i, "sample": s})) for i, s in written} & resent
    )  # written: never again
    assert len(resent) <= 3 and len(state["requests"]) - before == 12 - len(written)


# ---------------------------------------------------------------- --only-missing
def test_only_missing_sends_nothing_for_covered_rows(cli, tiny_model, data, tmp_path, server):
    url, state = server
    ids = [r["id"] for r in read_rows(data)]
    prompts = {r["id"]: r["prompt"] for r in read_rows(data)}
    state["wrong_first"] = {row_id: i % 3 for i, row_id in enumerate(ids)}  # 0, 1 or 2 wrong tries
    out = tmp_path / "o.jsonl"
    base = ["eval", data, "--base", tiny_model, "-o", out, *teacher_flags(url)]

    def asked(since: int) -> Counter:
        bodies = state["requests"][since:]
        return Counter(
            next(i for i in ids if prompts[i] in b["messages"][-1]["content"]) for b in bodies
        )

    cli(*base)  # one sample each: rows 0 and 3 are right
    n = len(state["requests"])
    cli(*base, "--only-missing", "--max-samples-per-row", "2")
    assert asked(n) == {ids[i]: 1 for i in (1, 2, 4, 5)}  # nothing for the covered rows
    n = len(state["requests"])
    result = cli(*base, "--only-missing", "-k", "2", "--max-samples-per-row", "4")
    assert asked(n) == {ids[2]: 2, ids[5]: 2}  # only rows still wrong; both right by sample 2
    assert "4 row(s) already covered" in " ".join(result.output.split())
    n = len(state["requests"])
    cli(*base, "--only-missing", "-k", "2", "--max-samples-per-row", "4")
    assert len(state["requests"]) == n  # every row covered: nothing sent

    from reasonlab.data.distill import distill

    assert len(distill(read_jsonl(out), read_rows(data)).rows) == 6


def test_only_missing_skips_rows_the_solver_traces_cover(cli, tiny_model, data, tmp_path, server):
    """--covered-by: a teacher pays only for the rows an SFT set (the solver traces) lacks."""
    from reasonlab.data.traces import sft_row
    from reasonlab.formats.jsonl import write_jsonl

    url, state = server
    rows = read_rows(data)
    traces = tmp_path / "traces.jsonl"
    write_jsonl(traces, [sft_row("other-id", "", r["prompt"], "\\boxed{1}") for r in rows[:4]])
    out = tmp_path / "o.jsonl"
    flags = [*teacher_flags(url), "--only-missing", "--covered-by", traces]
    result = cli("eval", data, "--base", tiny_model, "-o", out, *flags)
    assert sorted(keys(out)) == [(rows[4]["id"], 0), (rows[5]["id"], 0)]
    assert len(state["requests"]) == 2 and "4 row(s) already covered" in " ".join(
        result.output.split()
    )


def test_only_missing_stops_at_the_samples_per_row(tiny_model, data, tmp_path, server):
    """A row that stays wrong gets exactly max_samples_per_row samples, in waves of K."""
    url, state = server
    row_id = read_rows(data)[0]["id"]
    state["wrong_first"] = {row_id: 99}
    out = tmp_path / "o.jsonl"
    result = evaluate(
        teacher_config(
            data, tiny_model, out, url, only_missing=True, samples=2, max_samples_per_row=5, limit=1
        )
    )
    assert sorted(s for _, s in keys(out)) == [0, 1, 2, 3, 4] and result.generated == 5
    assert result.report.rows[0].samples == 5


# ---------------------------------------------------------------- the ledger and the settings
def test_ledger_counts_unsettled_attempts_at_their_worst(tmp_path):
    path = tmp_path / "run.spend.jsonl"
    ledger = SpendLedger(path, PRICES, cap_usd=1.0)
    a = ledger.try_send("a", 0, 0.4)
    b = ledger.try_send("b", 0, 0.4)
    assert ledger.try_send("c", 0, 0.4) is None  # 0.8 reserved + 0.4 > 1.0
    ledger.settle(a, 200, (100, 10))  # $0.1 + $0.1
    assert ledger.spent_usd == pytest.approx(0.2)
    ledger.settle(ledger.try_send("c", 0, 0.4), 429, None)  # refused: free
    # b is never settled (a kill): the next run counts it at its worst case
    reloaded = SpendLedger(path, PRICES, cap_usd=1.0)
    assert reloaded.before_usd == pytest.approx(0.2 + 0.4)
    assert reloaded.try_send("d", 0, 0.5) is None and reloaded.try_send("d", 0, 0.4) is not None
    assert b is not None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"backend": "openai", "max_cost_usd": 5.0}, "needs a positive cap and usd_per_mtok"),
        ({"backend": "hf", "max_cost_usd": 5.0, "usd_per_mtok_in": 1.0}, "for the openai backend"),
        ({"backend": "hf", "api": "chat"}, "api 'chat' is for the openai backend"),
        ({"backend": "openai", "instruction_template": "no placeholder"}, "must contain {prompt}"),
        ({"backend": "openai", "max_samples_per_row": 3}, "applies with only_missing"),
        ({"backend": "openai", "usd_per_mtok_in": -1.0}, "usd_per_mtok_in must be >= 0"),
    ],
)
def test_bad_teacher_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        EvalConfig(data="d.csv", base="m", output="o.jsonl", **settings)


def test_completions_prompt_carries_the_teacher_instructions(tiny_model):
    """Rendered by us (completions): the system turn and the filled template, scorer's ending."""
    from transformers import AutoTokenizer

    from reasonlab.competition import GENERATION_PROMPT_END
    from reasonlab.evaluation.requests import PromptRenderer
    from reasonlab.formats.csvio import DataError

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    row = {"id": "r1", "prompt": "PUZZLE", "answer": "42"}
    hint = PromptRenderer(tokenizer, False, "Be brief.", "{prompt}\nHint: {answer}", 64, 8192, 0)
    text, ids = hint.render(row)
    assert "<|im_start|>system\nBe brief." in text and "PUZZLE\nHint: 42" in text
    assert text.endswith(GENERATION_PROMPT_END) and len(ids) > 0
    (request,) = hint.requests(row, [3])
    assert (request.sample, request.max_new_tokens) == (3, 64)
    with pytest.raises(DataError, match="row r1: the instruction template uses"):
        hint.render({"id": "r1", "prompt": "PUZZLE"})
