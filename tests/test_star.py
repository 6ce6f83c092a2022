"""`reasonlab star`: two STaR rounds end to end on the tiny model, killed between steps and resumed.

The tiny model cannot solve a puzzle. Round 1 trains it on four rows whose answer is 7
(puzzles made for this test: "what is 3 + 4?" and identity unit conversions), so it learns
to close its thinking at once and answer `\\boxed{7}`, which is right on the row set's other
answer-7 puzzles: round 2 keeps them (rows gained), one of them twice under two ids (a
duplicate, dropped). Rows already in the SFT set are never sampled. On the held-out
set (real generated puzzles) its accuracy is what it is, about zero, and reported as such.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonlab.data.distill import merge_sft
from reasonlab.data.traces import sft_row
from reasonlab.formats.csvio import read_rows, write_rows
from reasonlab.formats.jsonl import read_jsonl, write_jsonl
from reasonlab.plans.star import FILES, STEPS, StarConfig, round_dir, run_star

pytest.importorskip("peft")

RECIPE = """\
lora: {r: 8, alpha: 16, dropout: 0.0}
learning_rate: 2.0e-2   # high: the constant answer must be learned in one round
lr_scheduler: constant
warmup_ratio: 0.0
max_steps: 30
batch_size: 4
grad_accum: 1
max_length: 256
precision: fp32
gradient_checkpointing: false
logging_steps: 1
save_steps: 6
report_to: none
"""


def _sum_row(i: int, total: int = 7) -> dict:
    return {
        "id": f"sum{total}-{i}",
        "prompt": f"In Alice's Wonderland, what is {i} + {total - i}?",
        "answer": str(total),
    }


def _unit_row(i: int) -> dict:
    examples = "\n".join(f"{x}.00 m becomes {x}.00" for x in (2 + i, 5 + i))
    prompt = (
        "In Alice's Wonderland, a secret unit conversion is applied to measurements. "
        f"For example:\n{examples}\nNow, convert the following measurement: 7.00 m"
    )
    return {"id": f"unit-{i}", "prompt": prompt, "answer": "7.00"}


@pytest.fixture(scope="module")
def star_inputs(tmp_path_factory) -> dict:
    from reasonlab.data.generate import generate_rows

    root = tmp_path_factory.mktemp("star")
    sums, units = [_sum_row(i) for i in range(5)], [_unit_row(i) for i in range(3)]
    wrong = [_sum_row(i, total=5) for i in (1, 2)]  # answer 5: the constant answer misses
    again = {**sums[4], "id": "sum7-4-again"}  # one puzzle under two ids
    write_rows(root / "rows.csv", sums + units + wrong + [again], ("id", "prompt", "answer"))
    seed_rows = sums[:3] + units[:1]  # already in the SFT set: not sampled
    write_jsonl(
        root / "sft.jsonl",
        [
            sft_row(r["id"], "seed", r["prompt"], "</think>\n\\boxed{7}", answer="7")
            for r in seed_rows
        ],
    )
    heldout = generate_rows("gravity", 2, seed=11) + generate_rows("numeral", 2, seed=11)
    write_rows(root / "heldout.csv", heldout, ("id", "prompt", "answer"))
    (root / "recipe.yaml").write_text(RECIPE)
    return {"root": root, "rows": root / "rows.csv", "sft": root / "sft.jsonl",
            "heldout": root / "heldout.csv", "recipe": root / "recipe.yaml"}  # fmt: skip


def star_config(inputs: dict, tiny: Path, out: Path, **extra) -> StarConfig:
    settings = {
        "base": str(tiny), "rows": inputs["rows"], "heldout": inputs["heldout"],
        "sft": inputs["sft"], "recipe": inputs["recipe"], "out_dir": out, "rounds": 2,
        "samples": 3, "temperature": 0.5, "max_new_tokens": 16, "heldout_max_new_tokens": 8,
        "backend": "hf", "rationalize": True,
    }  # fmt: skip
    return StarConfig(**{**settings, **extra})


class Killed(Exception):
    """Stands for a kill: raised right after a step is recorded as done."""


@pytest.fixture(scope="module")
def two_rounds(star_inputs, tiny_model) -> tuple[Path, list[tuple[int, str]], bytes]:
    """Run until round 1's merge, 'kill', resume to the end; (out, resumed steps, generate bytes)."""
    out = star_inputs["root"] / "out"
    config = star_config(star_inputs, tiny_model, out)

    def kill_after_merge(number: int, step: str) -> None:
        if (number, step) == (1, "merge"):
            raise Killed

    with pytest.raises(Killed):
        run_star(config, echo=lambda _: None, on_step=kill_after_merge)
    generated = (round_dir(out, 1) / FILES["generate"]).read_bytes()
    assert json.loads((round_dir(out, 1) / FILES["state"]).read_text())["done"] == list(STEPS[:4])
    assert not (round_dir(out, 1) / FILES["train"]).exists()
    resumed: list[tuple[int, str]] = []
    run_star(config, echo=lambda _: None, on_step=lambda n, s: resumed.append((n, s)))
    return out, resumed, generated


def test_a_killed_run_resumes_at_the_first_unfinished_step(two_rounds):
    out, resumed, generated = two_rounds
    assert resumed == [(1, "train"), (1, "export"), (1, "heldout")] + [(2, s) for s in STEPS]
    assert (round_dir(out, 1) / FILES["generate"]).read_bytes() == generated  # not sampled again


def test_every_round_writes_its_folder(two_rounds):
    out, _, _ = two_rounds
    for number in (1, 2):
        folder = round_dir(out, number)
        for name in FILES.values():
            assert (folder / name).exists(), folder / name
        assert (folder / "train" / "adapter" / "adapter_model.safetensors").is_file()
        assert (folder / "export" / "adapter_config.json").is_file()
        summary = json.loads((folder / FILES["summary"]).read_text())
        assert summary["tries"] == 7 * 3 and summary["heldout_rows"] == 4  # 11 rows, 4 covered
        sampled = {row["id"] for row in read_rows(folder / FILES["rows"])}
        assert not sampled & {"sum7-0", "sum7-1", "sum7-2", "unit-0"}
    assert (round_dir(out, 0) / FILES["heldout"]).is_file()  # the base model, measured first
    assert len(json.loads((out / "rounds.json").read_text())) == 3


def test_right_tries_are_gained_and_duplicates_dropped(two_rounds):
    out, _, _ = two_rounds
    first, second = (json.loads((round_dir(out, n) / FILES["summary"]).read_text()) for n in (1, 2))
    assert first["kept"] == 0 and first["sft_rows"] == 4  # the random model: nothing right
    # Round 2: the trained adapter answers 7 on answer-7 puzzles: gained, one puzzle once.
    assert second["kept"] > 0 and sum(second["gained"].values()) > 0
    assert second["duplicates"] == 1  # sum7-4 and sum7-4-again are one puzzle
    assert second["kept"] == sum(second["gained"].values()) + second["duplicates"]
    merged = read_jsonl(round_dir(out, 2) / FILES["sft"])
    puzzles = [row["messages"][0]["content"] for row in merged]
    assert (
        len(puzzles)
        == len(set(puzzles))
        == second["sft_rows"]
        == 4 + sum(second["gained"].values())
    )
    assert set(second["gained"]) <= {"unknown", "unit_conversion"}
    # Continued from round 1's adapter: round 2 starts where round 1 ended, not at random.
    assert second["train_loss"][0] < first["train_loss"][0] - 1.0


def test_the_command_prints_the_table_honestly(cli, two_rounds, star_inputs, tiny_model):
    """Rerun through the CLI: every step is done, so it only prints the per-round table."""
    out, _, _ = two_rounds
    flags = [
        "--base", tiny_model, "--rows", star_inputs["rows"], "--heldout", star_inputs["heldout"],
        "--sft", star_inputs["sft"], "--recipe", star_inputs["recipe"], "-o", out, "-k", "3",
        "--temperature", "0.5", "--max-new-tokens", "16", "--heldout-max-new-tokens", "8",
        "--backend", "hf", "--rationalize",
    ]  # fmt: skip
    text = " ".join(cli("star", *flags).output.split())
    assert "STaR rounds" in text and "held-out all" in text and "round 1: generate" not in text
    summaries = json.loads((out / "rounds.json").read_text())
    for s in summaries:  # the tiny model's real held-out accuracy, whatever it is
        assert f"{s['heldout_accuracy']['all']:.1%}" in text
    changed = cli("star", *flags[:-1], "--samples", "4", expect=1).output  # no --rationalize
    assert "other settings" in changed and "rationalize" in changed


# ---------------------------------------------------------------- pieces
def test_merge_keeps_one_row_per_puzzle_and_counts_gains_per_family():
    def row(puzzle: str, family: str) -> dict:
        return sft_row(puzzle, family, puzzle, "\\boxed{1}")

    previous = [row("p1", "gravity"), row("p2", "numeral"), row("p2", "numeral")]
    kept = [row("p2", "numeral"), row("p3", "numeral"), row("p4", "gravity"), row("p5", "")]
    merged, gained, dropped = merge_sft(previous, kept)
    assert [r["id"] for r in merged] == ["p1", "p2", "p3", "p4", "p5"]
    assert gained == {"numeral": 1, "gravity": 1, "unknown": 1} and dropped == 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"rounds": 0}, "rounds must be at least 1"),
        ({"hint_template": "{prompt} no answer"}, "must contain {prompt} and {answer}"),
        ({"sft": "/nonexistent.jsonl"}, "sft: /nonexistent.jsonl: no such file"),
    ],
)
def test_bad_star_settings(star_inputs, tiny_model, tmp_path, settings, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        star_config(star_inputs, tiny_model, tmp_path, **settings)


def test_hinted_traces_that_mention_the_hint_are_not_kept():
    from reasonlab.data.distill import distill

    gold = [{"id": "a", "prompt": "p", "answer": "7"}, {"id": "b", "prompt": "q", "answer": "7"}]
    lines = [
        {"id": "a", "sample": 0, "output": "As the hint says, \\boxed{7}", "output_tokens": 9},
        {"id": "b", "sample": 0, "output": "3 + 4 = 7, so \\boxed{7}", "output_tokens": 9},
    ]
    result = distill(lines, gold, forbidden=("hint",))
    assert [r["id"] for r in result.rows] == ["b"] and result.counts["mentions"] == 1
    assert result.rows[0]["messages"][0]["content"].startswith("q\n")  # the scorer's prompt
