"""Self-improvement rounds (STaR): the student's own right answers become its next training data.

Round 0 measures the starting adapter (or the base model) on the held-out set. Each round
r >= 1 then runs these steps in `OUT/round-NN/`, each the same library call its command
makes:

    generate     K samples at temperature > 0 with the current adapter on the rows whose
                 puzzle is not in the SFT set yet (all rows with skip_covered off)    (eval)
    rationalize  optional: rows with no right sample, asked again with the gold answer as a
                 hint; a kept trace must not mention the hint, and is paired with the
                 scorer's prompt, which has none                                      (eval)
    distill      right, complete, in-budget outputs, the shortest per row -> kept.jsonl
    merge        the previous SFT set + kept rows, one row per puzzle -> sft.jsonl
    train        continue from the current adapter on sft.jsonl -> train/adapter     (train)
    export       the scorer's layout, which both eval backends load -> export/
    heldout      greedy eval on the held-out set; per-family report.html              (eval)

After each step `state.json` names the steps done, so a rerun after a kill skips them and
starts at the first unfinished one (which itself resumes: eval appends, train restarts
from its last checkpoint). `summary.json` is the round's line of the table; `rounds.json`
holds all lines. The resolved settings are saved as `star.json`; a rerun with other
settings is refused, except `rounds`: more rounds continue where the last one ended.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from reasonlab.competition import MAX_NEW_TOKENS, PROMPT_SUFFIX, user_message
from reasonlab.evaluation.backends import BACKENDS, BackendName
from reasonlab.formats.files import atomic_write

__all__ = ["FILES", "HINT_TEMPLATE", "STEPS", "StarConfig", "gained_text", "round_dir", "run_star"]

STEPS = ("generate", "rationalize", "distill", "merge", "train", "export", "heldout")
BASELINE_STEPS = ("export", "heldout")  # round 0: measure what the rounds start from
# The rationalization prompt: the puzzle, the gold answer as a hint, the scorer's suffix.
HINT_TEMPLATE = (
    "{prompt}\nHint: the correct answer is {answer}. Work it out step by step as if you had "
    "not been told, and do not mention this hint.\n" + PROMPT_SUFFIX
)
HINT_WORDS = ("hint",)  # a rationalized trace that says these is dropped: the hint is gone


@dataclass(frozen=True)
class StarConfig:
    """Everything the rounds need; paths are made absolute in `star.json`."""

    base: str  # base model folder
    rows: Path  # CSV id,prompt,answer: the rows the student samples on each round
    heldout: Path  # CSV id,prompt,answer never trained on: each round's accuracy
    sft: Path  # the SFT set round 1 merges into (JSONL, e.g. from `traces`)
    recipe: Path  # training YAML; model, data, output_dir and init_adapter are set per round
    out_dir: Path
    adapter: Path | None = None  # native adapter to start from (train's adapter/); None: base
    rounds: int = 2
    samples: int = 4  # K tries per row per round
    temperature: float = 0.7  # > 0, or the K tries are one
    top_p: float = 1.0
    max_new_tokens: int = MAX_NEW_TOKENS  # per try; distill keeps only what fits it
    heldout_max_new_tokens: int = MAX_NEW_TOKENS  # the scorer's
    backend: BackendName = "auto"  # vllm where installed, else hf
    batch_size: int = 8  # hf: prompts per generate call
    skip_covered: bool = True  # rows already in the SFT set are not sampled (tries wasted)
    rationalize: bool = False
    hint_template: str = HINT_TEMPLATE
    seed: int = 0  # round r samples with seed + r: new tries each round

    def __post_init__(self) -> None:
        for name in ("rows", "heldout", "sft", "recipe", "out_dir", "adapter"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "base", str(self.base))
        for name in ("rows", "heldout", "sft", "recipe"):
            if not getattr(self, name).is_file():
                raise FileNotFoundError(f"{name}: {getattr(self, name)}: no such file")
        if self.adapter is not None and not (self.adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(f"adapter: {self.adapter} is not an adapter folder")
        for name in ("rounds", "samples", "max_new_tokens", "heldout_max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0: STaR needs K different tries per row")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if "{answer}" not in self.hint_template or "{prompt}" not in self.hint_template:
            raise ValueError("hint_template must contain {prompt} and {answer}")

    def resolved(self) -> dict:
        out = asdict(self)
        for name, value in out.items():
            if isinstance(value, Path):
                out[name] = str(value.resolve())
        if Path(self.base).exists():
            out["base"] = str(Path(self.base).resolve())
        return out


def round_dir(out_dir: Path, number: int) -> Path:
    return Path(out_dir) / f"round-{number:02d}"


# What each round folder holds (round 0: export, heldout, report, state, summary).
FILES = {
    "rows": "rows.csv",  # the rows sampled this round
    "generate": "generate.jsonl",  # eval outputs: K tries per row
    "hint_rows": "rationalize_rows.csv",  # rows without a right try (rationalize)
    "rationalize": "rationalize.jsonl",  # eval outputs with the hint
    "kept": "kept.jsonl",  # SFT rows from right tries
    "distill": "distill.json",  # distill's counts
    "sft": "sft.jsonl",  # the merged set this round trains on
    "merge": "merge.json",  # rows gained per family, duplicates dropped
    "train": "train",  # train's output_dir (checkpoints, adapter/)
    "export": "export",  # the adapter in the scorer's layout
    "heldout": "heldout.jsonl",  # greedy eval outputs on the held-out set
    "report": "report.html",  # per-family report of those
    "state": "state.json",  # the steps done
    "summary": "summary.json",  # the round's line of the table
}


@dataclass(frozen=True)
class _Round:
    """The files of one round, and where its inputs come from."""

    config: StarConfig
    number: int

    @property
    def folder(self) -> Path:
        return round_dir(self.config.out_dir, self.number)

    def file(self, name: str) -> Path:
        return self.folder / FILES[name]

    @property
    def adapter(self) -> Path:
        return self.file("train") / "adapter"

    @property
    def previous(self) -> _Round:
        return _Round(self.config, self.number - 1)

    def start_adapter(self) -> tuple[Path | None, Path | None]:
        """(native adapter to continue training from, exported one to generate with)."""
        if self.number == 1:
            exported = self.previous.file("export") if self.config.adapter is not None else None
            return self.config.adapter, exported
        return self.previous.adapter, self.previous.file("export")

    def start_sft(self) -> Path:
        return self.config.sft if self.number == 1 else self.previous.file("sft")


Echo = Callable[[str], None]
OnStep = Callable[[int, str], None]


def run_star(
    config: StarConfig, echo: Echo = print, on_step: OnStep | None = None, progress: bool = False
) -> list[dict]:
    """Run round 0 and rounds 1..`rounds`, skipping finished steps; one summary per round."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(config)
    summaries = []
    for number in range(config.rounds + 1):
        summaries.append(_run_round(_Round(config, number), echo, on_step, progress))
        _write_json(config.out_dir / "rounds.json", summaries)
    return summaries


def _check_settings(config: StarConfig) -> None:
    path = config.out_dir / "star.json"
    current = config.resolved()
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        changed = [k for k in current if k != "rounds" and saved.get(k) != current[k]]
        if changed:
            detail = "; ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
            raise ValueError(
                f"{config.out_dir} holds rounds run with other settings ({detail}); "
                "use a new output folder"
            )
    _write_json(path, current)


def _run_round(rnd: _Round, echo: Echo, on_step: OnStep | None, progress: bool) -> dict:
    rnd.folder.mkdir(parents=True, exist_ok=True)
    done = json.loads(rnd.file("state").read_text())["done"] if rnd.file("state").is_file() else []
    steps = BASELINE_STEPS if rnd.number == 0 else STEPS
    for step in steps:
        if step in done:
            continue
        echo(f"round {rnd.number}: {step}")
        _STEP_FUNCTIONS[step](rnd, echo, progress)
        done.append(step)
        _write_json(rnd.file("state"), {"done": done})
        if on_step is not None:
            on_step(rnd.number, step)
    summary = _summary(rnd)
    _write_json(rnd.file("summary"), summary)
    return summary


# ---------------------------------------------------------------- the steps
def _eval_config(rnd: _Round, **settings):
    from reasonlab.evaluation.evaluate import EvalConfig

    c = rnd.config
    return EvalConfig(base=c.base, backend=c.backend, batch_size=c.batch_size, **settings)


def _sampling(rnd: _Round) -> dict:
    c = rnd.config
    return {"samples": c.samples, "temperature": c.temperature, "top_p": c.top_p,
            "max_new_tokens": c.max_new_tokens, "seed": c.seed + rnd.number}  # fmt: skip


def _generate(rnd: _Round, echo: Echo, progress: bool) -> None:
    from reasonlab.evaluation.evaluate import evaluate
    from reasonlab.formats.csvio import read_rows, write_rows
    from reasonlab.formats.jsonl import read_jsonl

    rows = read_rows(rnd.config.rows, required=("id", "prompt", "answer"))
    sampled = rows
    if rnd.config.skip_covered:  # the SFT set's key for a puzzle: its user message
        covered = {row["messages"][0]["content"] for row in read_jsonl(rnd.start_sft())}
        sampled = [row for row in rows if user_message(row["prompt"]) not in covered]
    write_rows(rnd.file("rows"), sampled, ("id", "prompt", "answer"))
    echo(f"  sampling {len(sampled)} row(s); {len(rows) - len(sampled)} already in the SFT set")
    rnd.file("generate").touch()  # exists even when nothing is left to sample
    if sampled:
        _, exported = rnd.start_adapter()
        config = _eval_config(
            rnd, data=rnd.file("rows"), output=rnd.file("generate"), adapter=exported,
            **_sampling(rnd),
        )  # fmt: skip
        evaluate(config, progress=progress)


def _rationalize(rnd: _Round, echo: Echo, progress: bool) -> None:
    """Rows whose K tries were all wrong, asked again with the answer as a hint."""
    if not rnd.config.rationalize:
        return
    from reasonlab.data.distill import keep_reason
    from reasonlab.evaluation.evaluate import evaluate
    from reasonlab.formats.csvio import read_rows, write_rows
    from reasonlab.formats.jsonl import read_jsonl

    rows = read_rows(rnd.file("rows"), required=("id", "prompt", "answer"))
    gold = {row["id"]: row["answer"] for row in rows}
    right = {
        line["id"]
        for line in read_jsonl(rnd.file("generate"))
        if keep_reason(line, gold[line["id"]], rnd.config.max_new_tokens) == "kept"
    }
    missing = [row for row in rows if row["id"] not in right]
    write_rows(rnd.file("hint_rows"), missing, ("id", "prompt", "answer"))
    echo(f"  {len(missing)} row(s) without a right try, asked again with the answer as a hint")
    if missing:
        _, exported = rnd.start_adapter()
        config = _eval_config(
            rnd, data=rnd.file("hint_rows"), output=rnd.file("rationalize"), adapter=exported,
            instruction_template=rnd.config.hint_template, **_sampling(rnd),
        )  # fmt: skip
        evaluate(config, progress=progress)


def _distill(rnd: _Round, echo: Echo, progress: bool) -> None:
    from reasonlab.data.distill import distill
    from reasonlab.formats.csvio import read_rows
    from reasonlab.formats.jsonl import read_jsonl, write_jsonl

    gold = read_rows(rnd.config.rows, required=("id", "prompt", "answer"))
    plain = distill(
        read_jsonl(rnd.file("generate")), gold, max_new_tokens=rnd.config.max_new_tokens
    )
    rows, counts = list(plain.rows), {"generate": dict(plain.counts)}
    if rnd.file("rationalize").is_file():
        hinted = distill(
            read_jsonl(rnd.file("rationalize")),
            gold,
            max_new_tokens=rnd.config.max_new_tokens,
            forbidden=HINT_WORDS,
        )
        rows += [{**row, "rationalized": True} for row in hinted.rows]  # rows no plain try got
        counts["rationalize"] = dict(hinted.counts)
    write_jsonl(rnd.file("kept"), rows)
    _write_json(rnd.file("distill"), counts)
    echo(f"  kept {len(rows)} row(s)")


def _merge(rnd: _Round, echo: Echo, progress: bool) -> None:
    from reasonlab.data.distill import merge_sft
    from reasonlab.formats.jsonl import read_jsonl, write_jsonl

    merged, gained, dropped = merge_sft(read_jsonl(rnd.start_sft()), read_jsonl(rnd.file("kept")))
    write_jsonl(rnd.file("sft"), merged)
    _write_json(
        rnd.file("merge"),
        {"rows": len(merged), "gained": dict(sorted(gained.items())), "duplicates": dropped},
    )
    echo(f"  {len(merged)} SFT rows: {sum(gained.values())} gained, {dropped} duplicate(s) dropped")


def _train(rnd: _Round, echo: Echo, progress: bool) -> None:
    from reasonlab.training.recipe import load_recipe
    from reasonlab.training.train import train

    native, _ = rnd.start_adapter()
    overrides = {"model": rnd.config.base, "data": str(rnd.file("sft")), "output_dir": str(rnd.file("train")),
                 "init_adapter": str(native) if native else None}  # fmt: skip
    recipe = load_recipe(rnd.config.recipe, overrides)
    train(recipe, resume=True, echo=lambda line: echo(f"  {line}"))


def _export(rnd: _Round, echo: Echo, progress: bool) -> None:
    """The scorer's layout: what vLLM loads, and what eval's HF backend merges the same way."""
    from reasonlab.submission.export import export_adapter

    native = rnd.adapter if rnd.number else rnd.config.adapter
    if native is not None:  # round 0 without a starting adapter measures the base model
        export_adapter(native, rnd.file("export"))


def _heldout(rnd: _Round, echo: Echo, progress: bool) -> None:
    from reasonlab.evaluation.evaluate import evaluate
    from reasonlab.evaluation.report import write_report

    adapter = rnd.file("export") if (rnd.file("export") / "adapter_config.json").is_file() else None
    config = _eval_config(
        rnd, data=rnd.config.heldout, output=rnd.file("heldout"), adapter=adapter,
        max_new_tokens=rnd.config.heldout_max_new_tokens,
    )  # fmt: skip
    evaluate(config, progress=progress)
    write_report(rnd.file("heldout"), rnd.config.heldout, rnd.file("report"))


_STEP_FUNCTIONS: dict[str, Callable[[_Round, Echo, bool], None]] = {
    "generate": _generate, "rationalize": _rationalize, "distill": _distill, "merge": _merge,
    "train": _train, "export": _export, "heldout": _heldout,
}  # fmt: skip


# ---------------------------------------------------------------- the table
def _summary(rnd: _Round) -> dict:
    """The round's line of the table, read back from its files (so a resumed round has one too)."""
    from reasonlab.evaluation.vote import vote_files
    from reasonlab.formats.jsonl import read_jsonl

    heldout = vote_files(rnd.file("heldout"), rnd.config.heldout)
    summary = {
        "round": rnd.number,
        "heldout_accuracy": {g.label: g.accuracy for g in heldout.groups()},
        "heldout_rows": heldout.overall.rows,
    }
    if rnd.number == 0:
        summary["sft_rows"] = len(read_jsonl(rnd.config.sft))
        return summary
    lines = read_jsonl(rnd.file("generate"))
    counts = json.loads(rnd.file("distill").read_text())
    merge = json.loads(rnd.file("merge").read_text())
    kept = read_jsonl(rnd.file("kept"))
    losses = json.loads((rnd.adapter / "training_summary.json").read_text())["losses"]
    summary.update({
        "tries": len(lines),
        "right_tries": counts["generate"].get("correct", 0),
        "kept": len(kept),
        "rationalized": sum(1 for row in kept if row.get("rationalized")),
        "duplicates": merge["duplicates"],
        "gained": merge["gained"],
        "sft_rows": merge["rows"],
        "train_loss": [losses[0], losses[-1]] if losses else [],
    })  # fmt: skip
    return summary


def gained_text(gained: dict[str, int]) -> str:
    """`{"numeral": 3, "gravity": 1}` -> "gravity +1, numeral +3"."""
    return ", ".join(f"{family} +{n}" for family, n in sorted(gained.items())) or "-"


def _write_json(path: Path, data) -> None:
    with atomic_write(path) as f:
        json.dump(data, f, indent=2)
        f.write("\n")
