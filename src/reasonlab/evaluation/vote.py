"""Score saved generations: per-family accuracy, pass@1, majority vote, pass@K, vote margin.

Works on the JSONL that `evaluate` writes (one line per (id, sample)), without
generating anything, so a run can be re-scored after the metric or the gold file
changes. Answers are extracted again from the raw `output` with the competition's
metric rather than trusted from the saved `extracted` field.

Voting: two answers are one answer when the metric calls them equal
(`is_correct(first, other)`, so `12.5` and `12.50` vote together). An output with no
answer at all (`NOT_FOUND`, or an empty box) abstains. The biggest group wins; a tie goes to the group
whose first member came from the lowest sample index (sample 0 is the greedy one when
a run mixes greedy and sampled outputs). Margin = (winner's votes - runner-up's) / K.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reasonlab.data.score import check_known_ids, group_labels
from reasonlab.formats.csvio import DataError, read_rows
from reasonlab.formats.jsonl import read_jsonl
from reasonlab.metric import NOT_FOUND, extract_answer, is_correct
from reasonlab.puzzles.registry import classify

__all__ = [
    "GroupResult",
    "RowResult",
    "Vote",
    "VoteReport",
    "group_outputs",
    "majority_vote",
    "score_outputs",
    "vote_files",
]

ALL = "all"  # label of the group holding every row


@dataclass(frozen=True)
class Vote:
    answer: str  # the winning group's first answer (NOT_FOUND when every sample abstained)
    votes: int  # samples in the winning group
    margin: float  # (votes - runner-up's votes) / samples, in [0, 1]


def majority_vote(answers: Sequence[str]) -> Vote:
    """The answer most samples agree on, where agreement is the metric's equality."""
    groups: list[list[str]] = []  # in order of first appearance; groups[i][0] represents it
    for answer in answers:
        if answer.strip() in ("", NOT_FOUND):
            continue
        for group in groups:
            if is_correct(group[0], answer):
                group.append(answer)
                break
        else:
            groups.append([answer])
    if not groups:
        return Vote(NOT_FOUND, 0, 0.0)
    # sorted() is stable, so among equal sizes the earliest-seen group stays first.
    ranked = sorted(groups, key=len, reverse=True)
    runner_up = len(ranked[1]) if len(ranked) > 1 else 0
    return Vote(ranked[0][0], len(ranked[0]), (len(ranked[0]) - runner_up) / len(answers))


@dataclass(frozen=True)
class RowResult:
    """One gold row's samples, scored."""

    id: str
    family: str
    subtype: str
    gold: str
    answers: tuple[str, ...]  # extracted, in sample order
    correct: tuple[bool, ...]
    vote: Vote
    output_tokens: tuple[int, ...] = ()
    truncated: tuple[bool, ...] = ()
    boxed: tuple[bool, ...] = ()  # whether each output holds a `\boxed{`

    @property
    def samples(self) -> int:
        return len(self.answers)

    @property
    def first_correct(self) -> bool:
        """Sample 0 scored alone: what one scorer run reports for this row."""
        return self.correct[0]

    @property
    def pass_at_1(self) -> float:
        return sum(self.correct) / len(self.correct)

    @property
    def pass_at_k(self) -> bool:
        return any(self.correct)

    @property
    def vote_correct(self) -> bool:
        return self.vote.votes > 0 and is_correct(self.gold, self.vote.answer)


@dataclass(frozen=True)
class GroupResult:
    """Means over the rows of one family (or family/subtype, or all rows)."""

    label: str
    rows: int
    samples: int  # the most samples any row of the group has (K)
    accuracy: float  # sample 0 only
    pass_at_1: float
    majority: float
    pass_at_k: float
    margin: float

    @classmethod
    def of(cls, label: str, rows: Sequence[RowResult]) -> GroupResult:
        n = len(rows)
        return cls(
            label=label,
            rows=n,
            samples=max(r.samples for r in rows),
            accuracy=sum(r.first_correct for r in rows) / n,
            pass_at_1=sum(r.pass_at_1 for r in rows) / n,
            majority=sum(r.vote_correct for r in rows) / n,
            pass_at_k=sum(r.pass_at_k for r in rows) / n,
            margin=sum(r.vote.margin for r in rows) / n,
        )


@dataclass(frozen=True)
class VoteReport:
    rows: tuple[RowResult, ...]  # gold rows that have at least one output, in gold order
    missing: tuple[str, ...]  # gold ids with no output (a partial run, or --limit)

    def groups(self) -> list[GroupResult]:
        """All rows first, then each family, then family/subtype where there is one."""
        if not self.rows:
            return []
        by_label: dict[str, list[RowResult]] = {}
        for row in self.rows:
            for label in group_labels(row.family, row.subtype):
                by_label.setdefault(label, []).append(row)
        return [GroupResult.of(ALL, self.rows)] + [
            GroupResult.of(label, rows) for label, rows in sorted(by_label.items())
        ]

    @property
    def overall(self) -> GroupResult | None:
        return GroupResult.of(ALL, self.rows) if self.rows else None


def group_outputs(outputs: Iterable[Mapping], source: str = "outputs") -> dict[str, list[Mapping]]:
    """Output lines grouped by id, each list in sample order; a repeated (id, sample) is an error."""
    by_id: dict[str, dict[int, Mapping]] = {}
    for n, line in enumerate(outputs, start=1):
        for key in ("id", "sample", "output"):
            if key not in line:
                raise DataError(f"{source}: line {n} has no {key!r} field")
        row_id, sample = str(line["id"]), int(line["sample"])
        samples = by_id.setdefault(row_id, {})
        if sample in samples:
            raise DataError(
                f"{source}: id {row_id!r} sample {sample} appears twice (again at line {n})"
            )
        samples[sample] = line
    return {row_id: [s[k] for k in sorted(s)] for row_id, s in by_id.items()}


def score_outputs(
    outputs: Iterable[Mapping], gold: Sequence[Mapping[str, str]], source: str = "outputs"
) -> VoteReport:
    """Score output lines against gold rows (`id,prompt,answer`); unknown ids are an error."""
    by_id = group_outputs(outputs, source)
    check_known_ids(by_id, {row["id"] for row in gold}, source)
    results, missing = [], []
    for row in gold:
        lines = by_id.get(row["id"])
        if not lines:
            missing.append(row["id"])
            continue
        kind = classify(row.get("prompt", ""))
        texts = [str(line["output"] or "") for line in lines]
        answers = tuple(extract_answer(text) for text in texts)
        results.append(
            RowResult(
                id=row["id"],
                family=kind.family,
                subtype=kind.subtype,
                gold=row["answer"],
                answers=answers,
                correct=tuple(is_correct(row["answer"], a) for a in answers),
                vote=majority_vote(answers),
                output_tokens=tuple(int(line.get("output_tokens") or 0) for line in lines),
                truncated=tuple(bool(line.get("truncated")) for line in lines),
                boxed=tuple("\\boxed{" in text for text in texts),
            )
        )
    return VoteReport(tuple(results), tuple(missing))


def vote_files(outputs_path: str | Path, gold_path: str | Path) -> VoteReport:
    """Read an outputs JSONL and a gold CSV, and score them."""
    gold = read_rows(gold_path, required=("id", "prompt", "answer"))
    return score_outputs(read_jsonl(outputs_path), gold, source=str(outputs_path))
