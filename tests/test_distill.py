"""distill: only a teacher's right, complete, in-budget outputs become SFT rows."""

from __future__ import annotations

from reasonlab.data.distill import distill
from reasonlab.formats.jsonl import read_jsonl, write_jsonl

GOLD = [
    {"id": "a", "prompt": "puzzle a", "answer": "12.50"},
    {"id": "b", "prompt": "puzzle b", "answer": "XIV"},
    {"id": "c", "prompt": "puzzle c", "answer": "00011011"},
]
# (id, sample, output, output_tokens, truncated)
OUTPUTS = [
    ("a", 0, "long way ... \\boxed{12.5}", 90, False),  # right (numeric tolerance)
    ("a", 1, "short \\boxed{12.5}", 40, False),  # right and shorter: kept with keep=shortest
    ("a", 2, "\\boxed{13}", 10, False),  # wrong
    ("b", 0, "thinking \\boxed{XIV", 7680, True),  # right but cut off
    ("b", 1, "The final answer is: xiv", 20, False),  # right, but no box to repeat after </think>
    ("c", 0, "\\boxed{11011}", 5, False),  # leading zeros lost: wrong
]


def _lines() -> list[dict]:
    return [
        {"id": i, "sample": s, "family": "f", "output": o, "output_tokens": t, "truncated": c}
        for i, s, o, t, c in OUTPUTS
    ]


def test_keeps_the_shortest_right_complete_output() -> None:
    result = distill(_lines(), GOLD)
    assert [(r["id"], r["sample"]) for r in result.rows] == [("a", 1)]
    user, assistant = result.rows[0]["messages"]
    assert (
        user["content"].startswith("puzzle a\n") and assistant["content"] == "short \\boxed{12.5}"
    )
    counts = result.counts
    assert (counts["outputs"], counts["correct"], counts["truncated"], counts["no_box"]) == (
        6,
        4,
        1,
        1,
    )


def test_keep_all_and_budget(real_tokenizer) -> None:
    """Lengths are the base model's tokens of what the student generates, not the teacher's count."""
    from reasonlab.formats.chat import completion_text

    kept = {row["sample"]: row for row in distill(_lines(), GOLD, keep="all").rows}
    assert sorted(kept) == [0, 1]
    for row in kept.values():
        generated = completion_text(row["messages"][1]["content"]).removesuffix("\n")
        assert row["tokens"] == len(
            real_tokenizer(generated, add_special_tokens=False)["input_ids"]
        )
    assert kept[1]["tokens"] < 40  # the teacher said 40
    tight = distill(_lines(), GOLD, keep="all", max_new_tokens=kept[1]["tokens"])
    assert tight.counts["too_long"] == 1 and [r["sample"] for r in tight.rows] == [1]
    assert distill(_lines(), GOLD, max_new_tokens=kept[1]["tokens"] - 1).rows == []


def test_distill_command(cli, write_csv, tmp_path) -> None:
    outputs, sft = tmp_path / "teacher.jsonl", tmp_path / "sft.jsonl"
    write_jsonl(outputs, _lines())
    out = cli("distill", outputs, "--gold", write_csv("gold.csv", GOLD), "-o", sft).output
    assert "wrote 1 SFT rows" in out
    assert read_jsonl(sft)[0]["id"] == "a"
