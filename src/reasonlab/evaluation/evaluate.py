"""Local evaluation exactly as the scorer does it: its prompt, its decoding, its metric.

`evaluate(config)` renders every puzzle with the base tokenizer's chat template and the
scorer's switches, generates (greedy, 7,680 new tokens, 8,192 context by default) with one
of three backends, and appends one JSON line per (id, sample) as soon as it exists:

    {"id", "sample", "family", "output", "extracted", "prompt_tokens", "output_tokens",
     "finish_reason", "truncated", "backend", "model", "adapter"}

(the HTTP backend adds the server's `usage` and its `cost_usd` at the given prices).
A rerun reads what is there and generates only the missing (id, sample) pairs, so a killed
run loses at most the batch in flight and never duplicates a line. The resolved config is
written beside the outputs (`OUTPUTS.config.json`); resuming with settings that change
the generations (model, adapter, decoding, limits, prompts) is refused instead of mixing runs.

A teacher run (`backend="openai"`) also keeps a spend ledger beside the outputs and stops
before `max_cost_usd` would be crossed (see `spend`); with `only_missing` it samples only
the rows that lack a generation `distill` would keep (see `requests`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from reasonlab.competition import MAX_MODEL_LEN, MAX_NEW_TOKENS, SCORER_SAMPLING, user_message
from reasonlab.evaluation.backends import (
    BACKENDS,
    Backend,
    BackendName,
    Generation,
    Request,
    vllm_available,
)
from reasonlab.evaluation.openai_backend import Api, OpenAIBackend
from reasonlab.evaluation.requests import PromptRenderer, plan_samples
from reasonlab.evaluation.spend import Prices, SpendLedger, SpendSummary, ledger_path_for
from reasonlab.evaluation.vote import VoteReport, score_outputs
from reasonlab.formats.csvio import DataError, read_rows, read_text
from reasonlab.formats.files import atomic_write, sha256_file
from reasonlab.formats.jsonl import append_jsonl, read_jsonl
from reasonlab.metric import extract_answer
from reasonlab.puzzles.registry import classify

__all__ = [
    "EvalConfig",
    "EvalResult",
    "config_path_for",
    "evaluate",
    "load_config_file",
    "select_rows",
]

# Settings that change what a generation is: a resumed run must keep them.
_GENERATION_KEYS = (
    "base", "adapter", "adapter_sha256", "temperature", "top_p", "max_new_tokens", "max_model_len", "seed",
    "api", "system_prompt", "instruction_template",
)  # fmt: skip


@dataclass(frozen=True)
class EvalConfig:
    """Everything one evaluation run needs; the defaults are the scorer's."""

    data: Path  # CSV with id,prompt (answer optional: without it nothing is scored)
    base: str  # base model folder; its tokenizer renders the prompts for every backend
    output: Path  # outputs JSONL, appended to
    adapter: Path | None = None  # PEFT LoRA folder
    backend: BackendName = "auto"  # vllm (the scorer's engine) where installed, else hf
    samples: int = 1  # K per prompt; the scorer takes 1
    temperature: float = SCORER_SAMPLING["temperature"]  # 0 = greedy, as the scorer
    top_p: float = SCORER_SAMPLING["top_p"]
    max_new_tokens: int = MAX_NEW_TOKENS  # 7,680
    max_model_len: int = MAX_MODEL_LEN  # 8,192 = prompt + output, as vLLM enforces
    limit: int | None = None  # first N rows (after per_family)
    per_family: int | None = None  # first N rows of each family
    batch_size: int = 8  # hf: prompts per generate call
    seed: int = 0  # sampling seed; each (id, sample) derives its own from it
    url: str = "http://127.0.0.1:8000"  # openai: server base URL (without /v1)
    served_model: str | None = None  # openai: model name on the server (default: base)
    concurrency: int = 16  # openai: requests in flight
    api: Api = "completions"  # openai: our rendered prompt (completions) or messages (chat)
    # A teacher's own instructions; None keeps the scorer's prompt (no system turn, the
    # puzzle + suffix). The template's {prompt} is the puzzle, {answer} the gold answer.
    system_prompt: str | None = None
    instruction_template: str | None = None
    usd_per_mtok_in: float = 0.0  # openai: your price per million prompt tokens
    usd_per_mtok_out: float = 0.0  # openai: ... and per million completion tokens
    max_cost_usd: float | None = None  # openai: stop before the outputs file costs more
    only_missing: bool = False  # sample only rows without a generation distill would keep
    max_samples_per_row: int | None = None  # only_missing: samples per row at most (default K)
    # only_missing: rows whose puzzle this SFT JSONL holds count as covered (solver traces)
    covered_by: Path | None = None

    def __post_init__(self) -> None:
        # Accept strings from YAML/CLI; store Paths.
        for name in ("data", "output", "adapter", "covered_by"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "base", str(self.base))
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if (
            self.backend == "auto"
        ):  # resolved here, so outputs and the saved config name the real one
            object.__setattr__(self, "backend", "vllm" if vllm_available() else "hf")
        positive = (
            "samples",
            "max_new_tokens",
            "max_model_len",
            "batch_size",
            "concurrency",
            "limit",
            "per_family",
            "max_samples_per_row",
        )
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")
        self._check_teacher_settings()

    def _check_teacher_settings(self) -> None:
        if self.api not in ("completions", "chat"):
            raise ValueError(f"api must be 'completions' or 'chat', not {self.api!r}")
        if self.api == "chat" and self.backend != "openai":
            raise ValueError("api 'chat' is for the openai backend (a server renders the messages)")
        if self.instruction_template is not None and "{prompt}" not in self.instruction_template:
            raise ValueError("instruction_template must contain {prompt} (where the puzzle goes)")
        self.prices()  # prices must be >= 0
        if self.max_cost_usd is not None:
            if self.backend != "openai":
                raise ValueError("max_cost_usd is for the openai backend (a paid server)")
            if self.max_cost_usd <= 0 or not (self.usd_per_mtok_in or self.usd_per_mtok_out):
                raise ValueError(
                    "max_cost_usd needs a positive cap and usd_per_mtok_in / usd_per_mtok_out "
                    "(the prices that turn tokens into dollars)"
                )
        for name in ("max_samples_per_row", "covered_by"):
            if getattr(self, name) is not None and not self.only_missing:
                raise ValueError(f"{name} applies with only_missing")

    def prices(self) -> Prices:
        return Prices(self.usd_per_mtok_in, self.usd_per_mtok_out)

    @property
    def samples_per_row(self) -> int:
        """The most sample numbers a row can have in the outputs: K, or the only_missing cap."""
        return (self.max_samples_per_row or self.samples) if self.only_missing else self.samples

    def resolved(self) -> dict:
        """JSON-ready settings, paths made absolute so a rerun from elsewhere compares equal."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value.resolve())
            elif f.name == "base" and Path(value).exists():
                value = str(Path(value).resolve())
            out[f.name] = value
        out["adapter_sha256"] = _fingerprint(self.adapter) if self.adapter else None
        return out


def _fingerprint(adapter: Path) -> str | None:
    """sha256 over an adapter's config and weights: a retrained adapter in the same folder differs."""
    if not adapter.is_dir():
        return None
    files = [
        f"{path.name} {sha256_file(path)}\n"
        for path in sorted(adapter.iterdir())
        if path.name == "adapter_config.json" or path.suffix == ".safetensors"
    ]
    return hashlib.sha256("".join(files).encode()).hexdigest()


@dataclass(frozen=True)
class EvalResult:
    outputs: Path
    config_path: Path
    generated: int  # lines written by this run
    skipped: int  # (id, sample) pairs already in the outputs
    report: VoteReport | None  # None when the data has no answer column
    covered: int = 0  # only_missing: rows that already had a keepable generation
    stopped: str | None = None  # "cap" or "interrupted": ended with requests left unsent
    spend: SpendSummary | None = None  # openai: tokens and dollars


def config_path_for(outputs: Path) -> Path:
    """`run.jsonl` -> `run.config.json`: the resolved config lives beside its outputs."""
    return outputs.with_name(outputs.stem + ".config.json")


def load_config_file(path: str | Path) -> dict:
    """EvalConfig fields from a YAML or JSON file (unknown keys are an error)."""
    import yaml

    path = Path(path)
    settings = yaml.safe_load(read_text(path, "YAML/JSON config")) or {}  # YAML reads JSON too
    if not isinstance(settings, dict):
        raise DataError(f"{path}: expected a mapping of EvalConfig fields")
    known = {f.name for f in fields(EvalConfig)}
    settings.pop(
        "adapter_sha256", None
    )  # derived, written in saved configs: a saved one loads back
    unknown = sorted(set(settings) - known)
    if unknown:
        raise DataError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return settings


def select_rows(
    rows: Sequence[Mapping[str, str]], limit: int | None, per_family: int | None
) -> list[Mapping]:
    """The first `per_family` rows of each family (file order), then the first `limit` of those."""
    if per_family is not None:
        taken: dict[str, int] = {}
        kept = []
        for row in rows:
            family = classify(row["prompt"]).family
            if taken.get(family, 0) < per_family:
                taken[family] = taken.get(family, 0) + 1
                kept.append(row)
        rows = kept
    return list(rows[:limit] if limit is not None else rows)


def _recover(path: Path) -> None:
    """Drop a half-written last line (a run killed mid-write); its row is generated again."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        f.truncate(data.rfind(b"\n") + 1)  # rfind is -1 when no line is complete: truncate to 0


def _check_resume(
    config: EvalConfig, current: dict, config_path: Path, outputs_exist: bool
) -> None:
    if not (outputs_exist and config_path.is_file()):
        return
    saved = json.loads(config_path.read_text(encoding="utf-8"))
    # A key added since that run was written: it ran with the field's default.
    defaults = {f.name: f.default for f in fields(EvalConfig) if f.default is not MISSING}
    saved = {k: saved.get(k, defaults.get(k)) for k in _GENERATION_KEYS}
    changed = [k for k in _GENERATION_KEYS if saved[k] != current[k]]
    if changed:
        detail = "; ".join(f"{k}: {saved[k]!r} -> {current[k]!r}" for k in changed)
        raise ValueError(
            f"{config.output} was generated with other settings ({detail}); "
            "write to a new output file, or delete it to start over"
        )


def _make_backend(config: EvalConfig, tokenizer, ledger: SpendLedger | None) -> Backend:
    from reasonlab.evaluation import backends

    if config.backend == "hf":
        return backends.HFBackend(
            config.base,
            config.adapter,
            tokenizer,
            config.temperature,
            config.top_p,
            config.batch_size,
        )
    if config.backend == "vllm":
        if not backends.vllm_available():
            raise ValueError(
                "backend 'vllm' needs vllm installed (pip install vllm, on a CUDA machine)"
            )
        return backends.VLLMBackend(
            config.base, config.adapter, config.temperature, config.top_p, config.max_model_len
        )
    return OpenAIBackend(
        config.url,
        config.served_model or config.base,
        config.temperature,
        config.top_p,
        api=config.api,
        system_prompt=config.system_prompt,
        concurrency=config.concurrency,
        api_key=os.environ.get("OPENAI_API_KEY"),
        count_tokens=lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]),
        ledger=ledger,
    )


def _line(
    config: EvalConfig,
    family: str,
    request: Request,
    text: str,
    tokens: int,
    finish: str,
    usage: tuple[int, int] | None = None,
) -> dict:
    line = {
        "id": request.id,
        "sample": request.sample,
        "family": family,
        "output": text,
        "extracted": extract_answer(text),
        "prompt_tokens": len(request.prompt_ids),
        "output_tokens": tokens,
        "finish_reason": finish,
        "truncated": finish != "stop",
        "backend": config.backend,
        "model": config.base,
        "adapter": str(config.adapter) if config.adapter else None,
    }
    if config.backend == "openai":  # what the server billed, at the user's prices
        line["usage"] = (
            None if usage is None else {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
        )
        line["cost_usd"] = None if usage is None else config.prices().cost(*usage)
    return line


def evaluate(
    config: EvalConfig, progress: bool = False, on_line: Callable[[dict], None] | None = None
) -> EvalResult:
    """Generate the missing (id, sample) outputs of `config`, append them, and score the file.

    `on_line` sees every line as it is written (the demo counts them); `progress` shows a bar.
    """
    rows = select_rows(
        read_rows(config.data, required=("id", "prompt")), config.limit, config.per_family
    )
    config_path = config_path_for(config.output)
    with _exclusive(config.output):
        return _evaluate_locked(config, rows, config_path, progress, on_line)


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the outputs file: two runs appending to it would duplicate.

    The kernel drops the lock when the process dies (even on SIGKILL), so no stale lock stays.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{path}: another `reasonlab eval` is writing to it") from None
        yield


def _evaluate_locked(
    config: EvalConfig,
    rows: list[Mapping],
    config_path: Path,
    progress: bool,
    on_line: Callable[[dict], None] | None,
) -> EvalResult:
    from transformers import AutoTokenizer

    from reasonlab.data.distill import keep_reason

    _recover(config.output)
    outputs_exist = config.output.is_file() and config.output.stat().st_size > 0
    resolved = config.resolved()
    _check_resume(config, resolved, config_path, outputs_exist)
    gold = {row["id"]: row["answer"] for row in rows} if rows and "answer" in rows[0] else None
    if config.only_missing and gold is None:
        raise DataError(
            f"{config.data}: only_missing needs an answer column to know which rows are covered"
        )

    done: dict[str, set[int]] = {}
    covered: set[str] = set()  # rows holding a generation distill would keep

    def record(line: Mapping) -> None:
        row_id = str(line["id"])
        done.setdefault(row_id, set()).add(int(line["sample"]))
        # A prompt too long for the context never succeeds: no further samples for it.
        hopeless = line.get("finish_reason") == "prompt_too_long"
        if (
            config.only_missing
            and row_id in gold
            and (hopeless or keep_reason(line, gold[row_id], config.max_new_tokens) == "kept")
        ):
            covered.add(row_id)

    for line in read_jsonl(config.output) if outputs_exist else []:
        record(line)
    if config.covered_by is not None:  # an SFT row's key for its puzzle: the user message
        traced = {row["messages"][0]["content"] for row in read_jsonl(config.covered_by)}
        covered |= {row["id"] for row in rows if user_message(row["prompt"]) in traced}
    wanted = {row["id"] for row in rows}
    skipped = sum(
        len({s for s in done.get(row_id, ()) if s < config.samples_per_row}) for row_id in wanted
    )
    already_covered = len(covered & wanted)

    # Render and tokenize: the prompt text is the scorer's (or the teacher's instructions),
    # its ids what vLLM counts against the context.
    tokenizer = AutoTokenizer.from_pretrained(config.base)
    renderer = PromptRenderer(
        tokenizer, config.api == "chat", config.system_prompt, config.instruction_template,
        config.max_new_tokens, config.max_model_len, config.seed,
    )  # fmt: skip
    families = {row["id"]: classify(row["prompt"]).family for row in rows}
    with atomic_write(config_path) as f:  # a crash never leaves half a config to resume against
        f.write(json.dumps(resolved, indent=2) + "\n")
    ledger = None
    if config.backend == "openai":
        ledger = SpendLedger(ledger_path_for(config.output), config.prices(), config.max_cost_usd)
    written, backend, stopped = 0, None, None

    def write(line: dict) -> None:
        nonlocal written
        append_jsonl(config.output, line)
        record(line)
        written += 1
        if on_line:
            on_line(line)

    # One pass; with only_missing, passes until every row is covered or has all its samples.
    while stopped is None:
        plan = plan_samples(
            rows, done, config.samples, config.only_missing, config.max_samples_per_row, covered
        )
        if not plan:
            break
        requests = [r for row, samples in plan for r in renderer.requests(row, samples)]
        # vLLM rejects a prompt that leaves no room to generate; record it as an empty answer.
        for request in (r for r in requests if r.max_new_tokens == 0):
            write(_line(config, families[request.id], request, "", 0, "prompt_too_long"))
        requests = [r for r in requests if r.max_new_tokens > 0]
        if requests:
            backend = backend or _make_backend(config, tokenizer, ledger)
            with _progress_bar(progress, len(requests), f"eval ({config.backend})") as advance:

                def emit(generation: Generation) -> None:
                    r = generation.request
                    text, tokens = generation.text, generation.output_tokens
                    finish, usage = generation.finish_reason, generation.usage
                    write(_line(config, families[r.id], r, text, tokens, finish, usage))
                    advance()

                stopped = backend.generate(requests, emit)
        if not config.only_missing:
            break

    report = None
    if gold is not None:
        lines = [
            x
            for x in read_jsonl(config.output)
            if x["id"] in wanted and int(x["sample"]) < config.samples_per_row
        ]
        report = score_outputs(lines, rows, source=str(config.output))
    spend = ledger.summary() if ledger is not None else None
    return EvalResult(
        config.output, config_path, written, skipped, report, already_covered, stopped, spend
    )


class _progress_bar:
    """A rich progress bar, or nothing; `with _progress_bar(...) as advance: advance()`."""

    def __init__(self, show: bool, total: int, label: str):
        self.show, self.total, self.label = show, total, label
        self.progress = None

    def __enter__(self) -> Callable[[], None]:
        if not self.show:
            return lambda: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(),
        )  # fmt: skip
        self.progress.start()
        task = self.progress.add_task(self.label, total=self.total)
        return lambda: self.progress.advance(task)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
