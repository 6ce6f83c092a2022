"""Local evaluation exactly as the scorer does it: its prompt, its decoding, its metric.

`evaluate(config)` renders every puzzle with the base tokenizer's chat template and the
scorer's switches, generates (greedy, 7,680 new tokens, 8,192 context by default) with one
of three backends, and appends one JSON line per (id, sample) as soon as it exists:

    {"id", "sample", "family", "output", "extracted", "prompt_tokens", "output_tokens",
     "finish_reason", "truncated", "backend", "model", "adapter"}

A rerun reads what is there and generates only the missing (id, sample) pairs, so a killed
run loses at most the batch in flight and never duplicates a line. The resolved config is
written beside the outputs (`OUTPUTS.config.json`); resuming with settings that change
the generations (model, adapter, decoding, limits) is refused instead of mixing runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

from reasonlab.competition import MAX_MODEL_LEN, MAX_NEW_TOKENS, SCORER_SAMPLING
from reasonlab.evaluation.backends import (
    BACKENDS,
    Backend,
    BackendName,
    Generation,
    Request,
    vllm_available,
)
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

    def __post_init__(self) -> None:
        # Accept strings from YAML/CLI; store Paths.
        for name in ("data", "output", "adapter"):
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
        )
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")

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


def _sample_seed(seed: int, row_id: str, sample: int) -> int:
    """A 31-bit seed per (run seed, id, sample), stable across runs and machines."""
    digest = hashlib.sha256(f"{seed}/{row_id}/{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


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
    changed = [k for k in _GENERATION_KEYS if saved.get(k) != current[k]]
    if changed:
        detail = "; ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ValueError(
            f"{config.output} was generated with other settings ({detail}); "
            "write to a new output file, or delete it to start over"
        )


def _make_backend(config: EvalConfig, tokenizer) -> Backend:
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
    return backends.OpenAIBackend(
        config.url,
        config.served_model or config.base,
        config.temperature,
        config.top_p,
        concurrency=config.concurrency,
        api_key=os.environ.get("OPENAI_API_KEY"),
        count_tokens=lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]),
    )


def _line(
    config: EvalConfig, family: str, request: Request, text: str, tokens: int, finish: str
) -> dict:
    return {
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

    from reasonlab.formats.chat import render_scorer_prompt

    _recover(config.output)
    outputs_exist = config.output.is_file() and config.output.stat().st_size > 0
    resolved = config.resolved()
    _check_resume(config, resolved, config_path, outputs_exist)
    done = (
        {(str(x["id"]), int(x["sample"])) for x in read_jsonl(config.output)}
        if outputs_exist
        else set()
    )

    # Render and tokenize: the prompt text is the scorer's, its ids are what vLLM counts.
    tokenizer = AutoTokenizer.from_pretrained(config.base)
    families, requests, too_long = {}, [], []
    for row in rows:
        pending = [s for s in range(config.samples) if (row["id"], s) not in done]
        if not pending:
            continue
        families[row["id"]] = classify(row["prompt"]).family
        text = render_scorer_prompt(tokenizer, row["prompt"])
        ids = tuple(tokenizer(text)["input_ids"])
        room = min(config.max_new_tokens, config.max_model_len - len(ids))  # vLLM's cap
        for s in pending:
            request = Request(
                row["id"], s, text, ids, max(room, 0), _sample_seed(config.seed, row["id"], s)
            )
            (requests if room > 0 else too_long).append(request)
    skipped = len(rows) * config.samples - len(requests) - len(too_long)

    with atomic_write(config_path) as f:  # a crash never leaves half a config to resume against
        f.write(json.dumps(resolved, indent=2) + "\n")
    written = 0

    def write(line: dict) -> None:
        nonlocal written
        append_jsonl(config.output, line)
        written += 1
        if on_line:
            on_line(line)

    # vLLM rejects a prompt that leaves no room to generate; record it as an empty answer.
    for request in too_long:
        write(_line(config, families[request.id], request, "", 0, "prompt_too_long"))
    if requests:
        backend = _make_backend(config, tokenizer)
        with _progress_bar(progress, len(requests), f"eval ({config.backend})") as advance:

            def emit(generation: Generation) -> None:
                r = generation.request
                write(
                    _line(
                        config,
                        families[r.id],
                        r,
                        generation.text,
                        generation.output_tokens,
                        generation.finish_reason,
                    )
                )
                advance()

            backend.generate(requests, emit)

    report = None
    if rows and "answer" in rows[0]:
        wanted = {row["id"] for row in rows}
        lines = [
            x
            for x in read_jsonl(config.output)
            if x["id"] in wanted and int(x["sample"]) < config.samples
        ]
        report = score_outputs(lines, rows, source=str(config.output))
    return EvalResult(config.output, config_path, written, skipped, report)


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
