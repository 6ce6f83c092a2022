"""The whole pipeline end to end on a CPU in a few minutes: the README's first command.

generate -> solve -> traces -> tiny model -> train -> export -> pack -> verify -> eval -> report,
each stage calling the same library function its command calls, every artifact under one
folder. The model is the random tiny `nemotron_h` and the sizes are toys: the demo proves
the plumbing (shapes, formats, the scorer's prompt, resumable evaluation), not the recipe.
Its model writes garbage, so its eval accuracy is about 0; the solver's is the real figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["STAGES", "DemoConfig", "DemoResult", "run_demo"]

STAGES = (
    "generate",
    "solve",
    "traces",
    "tiny model",
    "train",
    "export",
    "pack",
    "verify",
    "eval",
    "report",
)


@dataclass(frozen=True)
class DemoConfig:
    """Toy sizes that finish in a few minutes on 2 CPU cores."""

    out_dir: Path = Path("demo-out")
    train_per_family: int = 6  # puzzles per family for traces: enough rows for a few steps
    eval_per_family: int = 2  # puzzles per family to evaluate (14 rows)
    seed: int = 0  # train puzzles use seed, eval puzzles seed + 1: disjoint sets
    train_steps: int = 8  # optimizer steps, batch 2: the loss visibly moves
    # tokens (prompt + completion, the real tokenizer's); longer traces are left out of the
    # toy training, which is most of the demo's CPU time
    train_max_length: int = 384
    eval_max_new_tokens: int = 24  # the tiny model writes garbage: a short cut keeps eval fast
    eval_samples: int = 1
    families: tuple[str, ...] = ()  # empty: every family in the registry

    def __post_init__(self) -> None:
        from reasonlab.puzzles.registry import FAMILIES

        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "families", tuple(self.families))
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise ValueError(
                f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; known: {', '.join(FAMILIES)}"
            )
        for name in (
            "train_per_family",
            "eval_per_family",
            "train_steps",
            "eval_max_new_tokens",
            "eval_samples",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")


@dataclass
class DemoResult:
    artifacts: list[tuple[str, Path, str]] = field(
        default_factory=list
    )  # (stage, path, what it shows)
    seconds: dict[str, float] = field(default_factory=dict)


class _Stages:
    """One overall bar over STAGES and one bar per stage; records timings and artifacts."""

    def __init__(self, progress, result: DemoResult):
        self.progress, self.result = progress, result
        self.overall = progress.add_task("demo", total=len(STAGES))
        self.task, self.name, self.started = None, "", 0.0

    def start(self, name: str, total: int | None = None) -> Callable[..., None]:
        """Open a stage's bar; returns its `advance(n=1)` (a callback for library progress)."""
        self.progress.update(self.overall, description=f"demo: {name}")
        self.task, self.name, self.started = (
            self.progress.add_task(f"  {name}", total=total),
            name,
            time.monotonic(),
        )
        task = self.task
        return lambda n=1, *_: self.progress.advance(task, n)

    def finish(self, path: Path, note: str) -> None:
        seconds = time.monotonic() - self.started
        total = self.progress.tasks[self.task].total or 1
        self.progress.update(self.task, total=total, completed=total)
        self.progress.advance(self.overall)
        self.result.artifacts.append((self.name, path, note))
        self.result.seconds[self.name] = seconds
        self.echo(f"[green]done[/] {self.name}: {note} [dim]({seconds:.1f} s)[/]")

    def echo(self, text: str) -> None:
        self.progress.console.print(text)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the live bars while a library draws its own (the trainer's tqdm bar)."""
        self.progress.stop()
        try:
            yield
        finally:
            self.progress.start()


def run_demo(config: DemoConfig = DemoConfig(), console=None) -> DemoResult:
    """Run every stage, showing progress, and print a closing table of artifacts."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TimeElapsedColumn,
    )

    console = console or Console(highlight=False)
    _quiet_libraries()
    config.out_dir.mkdir(parents=True, exist_ok=True)
    result = DemoResult()
    progress = Progress(
        SpinnerColumn(), "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console,
    )  # fmt: skip
    with progress:
        _run_stages(config, config.out_dir, _Stages(progress, result))
    _summary(console, result)
    return result


def _run_stages(config: DemoConfig, out: Path, stages: _Stages) -> None:
    from reasonlab.data.generate import generate_mixed
    from reasonlab.data.score import score_predictions
    from reasonlab.data.solve import PREDICTION_COLUMNS, solve_rows
    from reasonlab.data.traces import build_traces
    from reasonlab.evaluation.evaluate import EvalConfig, evaluate
    from reasonlab.evaluation.report import write_report
    from reasonlab.formats.csvio import write_rows
    from reasonlab.formats.jsonl import write_jsonl
    from reasonlab.puzzles.registry import FAMILIES
    from reasonlab.submission.export import export_adapter
    from reasonlab.submission.pack import pack_adapter
    from reasonlab.submission.verify import verify_submission
    from reasonlab.training.recipe import LoraRecipe, TrainRecipe
    from reasonlab.training.tiny_model import TinyModelOptions, make_tiny_model
    from reasonlab.training.train import train

    # 1. generate: competition-shaped CSVs, one to train on and a disjoint one to evaluate
    families = config.families or FAMILIES
    advance = stages.start(
        "generate", len(families) * (config.train_per_family + config.eval_per_family)
    )
    train_rows = generate_mixed(config.train_per_family, config.seed, families, on_progress=advance)
    eval_rows = generate_mixed(
        config.eval_per_family, config.seed + 1, families, on_progress=advance
    )
    train_csv, eval_csv = out / "train_puzzles.csv", out / "eval_puzzles.csv"
    write_rows(train_csv, train_rows, ("id", "prompt", "answer"))
    write_rows(eval_csv, eval_rows, ("id", "prompt", "answer"))
    stages.finish(eval_csv, f"{len(train_rows)} train + {len(eval_rows)} eval puzzles")

    # 2. solve: the deterministic solvers on the eval set, scored with the competition metric
    advance = stages.start("solve", len(eval_rows))
    solved = solve_rows(eval_rows, on_progress=advance)
    predictions = out / "eval_predictions.csv"
    write_rows(predictions, [s.as_prediction() for s in solved], PREDICTION_COLUMNS)
    solver_score = score_predictions([s.as_prediction() for s in solved], eval_rows)
    stages.finish(
        predictions, f"solver accuracy {solver_score.accuracy:.1%} on {len(eval_rows)} puzzles"
    )

    # 3. traces: each solver's steps as the chain of thought, for SFT
    advance = stages.start("traces", len(train_rows))
    traces = build_traces(train_rows, on_progress=advance)
    sft = out / "sft.jsonl"
    write_jsonl(sft, traces.rows)
    stages.finish(sft, f"{len(traces.rows)} SFT rows from {len(train_rows)} puzzles")

    # 4. tiny model: random weights, the real architecture's layer kinds and chat template
    stages.start("tiny model")
    model_dir = make_tiny_model(out / "tiny-model", TinyModelOptions(toy_rows=0))
    stages.finish(model_dir, "random nemotron_h + tokenizer with the real chat template")

    # 5. train: LoRA SFT on the traces (the tiny-cpu recipe's knobs)
    stages.start("train", config.train_steps)
    recipe = TrainRecipe(
        model=str(model_dir),
        data=str(sft),
        output_dir=str(out / "train"),
        lora=LoraRecipe(r=8, alpha=16, dropout=0.0),
        learning_rate=5e-3,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        max_steps=config.train_steps,
        # 2 rows a step: the loss runs the 131,072-way lm_head on labelled tokens only
        # (loss_chunk_tokens at a time), so logits stay under 0.5 GB
        batch_size=2,
        grad_accum=1,
        max_length=config.train_max_length,
        seed=config.seed,
        precision="fp32",
        gradient_checkpointing=False,
        logging_steps=1,
        save_steps=10_000,  # no intermediate checkpoints in a demo
        report_to="none",
    )
    with stages.paused():
        trained = train(recipe, echo=lambda line: stages.echo(f"  [dim]{line}[/]"))
    losses = trained.losses
    loss_note = f"loss {losses[0]:.2f} -> {losses[-1]:.2f}" if losses else "no loss logged"
    stages.finish(trained.adapter_dir, f"{trained.examples} examples, {loss_note}")

    # 6. export: native names -> the scorer's (backbone., per-expert LoRAs)
    stages.start("export")
    exported = export_adapter(trained.adapter_dir, out / "export")
    stages.finish(
        exported.out_dir, f"{exported.tensors} tensors, {exported.experts_split} expert LoRAs split"
    )

    # 7. pack: submission.zip with the adapter files at its root
    stages.start("pack")
    packed = pack_adapter(exported.out_dir, out / "submission.zip")
    stages.finish(packed.zip_path, f"{len(packed.files)} files, {packed.bytes:,} bytes")

    # 8. verify: the zip against the (tiny) architecture, as the scorer will meet it
    stages.start("verify")
    verdict = verify_submission(packed.zip_path, model_dir / "config.json")
    passed = sum(c.status in ("pass", "warn") for c in verdict.checks)
    if not verdict.ok:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in verdict.checks if c.status != "pass")
        raise RuntimeError(f"verify failed on the demo's own submission: {failed}")
    warned = sum(c.status == "warn" for c in verdict.checks)
    stages.finish(
        packed.zip_path,
        f"{passed}/{len(verdict.checks)} checks pass"
        + (f" ({warned} with a warning)" if warned else ""),
    )

    # 9. eval: the scorer's prompt and greedy decoding, with the exported adapter
    outputs = out / "eval_outputs.jsonl"
    outputs.unlink(missing_ok=True)  # a rerun of the demo evaluates its new adapter afresh
    advance = stages.start("eval", len(eval_rows) * config.eval_samples)
    evaluation = evaluate(
        EvalConfig(
            data=eval_csv,
            base=str(model_dir),
            output=outputs,
            adapter=exported.out_dir,
            samples=config.eval_samples,
            max_new_tokens=config.eval_max_new_tokens,
        ),
        on_line=lambda line: advance(),
    )
    overall = evaluation.report.overall if evaluation.report else None
    score_note = (
        f"model accuracy {overall.accuracy:.1%} (random tiny model)" if overall else "no answers"
    )
    stages.finish(outputs, f"{evaluation.generated} outputs; {score_note}")

    # 10. report: one self-contained HTML page
    stages.start("report")
    page = write_report(outputs, eval_csv, out / "report.html")
    stages.finish(page, "open it in a browser")


def _quiet_libraries() -> None:
    """Only errors from transformers: its kernel-fallback notes and load bars drown the demo's own."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _summary(console, result: DemoResult) -> None:
    from rich.table import Table

    table = Table(title="reasonlab demo: artifacts")
    table.add_column("stage")
    table.add_column("artifact", overflow="fold")
    table.add_column("what it shows")
    table.add_column("s", justify="right")
    for name, path, note in result.artifacts:
        table.add_row(name, str(path), note, f"{result.seconds[name]:.1f}")
    console.print(table)
    console.print(f"total {sum(result.seconds.values()):.0f} s")
