"""Score predictions against gold answers the way the competition does, per family.

Predictions carry either an already extracted `answer` or the raw model `output`
(extracted here with the metric). Ids missing from the predictions count as wrong;
ids that the gold file does not know are an error, since they mean the wrong file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from reasonlab.formats.csvio import DataError, read_rows, write_rows
from reasonlab.metric import extract_answer, is_correct
from reasonlab.puzzles.registry import classify

__all__ = [
    "GroupScore",
    "RowScore",
    "ScoreReport",
    "check_known_ids",
    "group_label",
    "group_labels",
    "score_files",
    "score_predictions",
]


@dataclass(frozen=True)
class RowScore:
    id: str
    family: str
    subtype: str
    extracted: str
    gold: str
    correct: bool
    missing: bool = False  # the id had no prediction


@dataclass(frozen=True)
class GroupScore:
    label: str
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


@dataclass(frozen=True)
class ScoreReport:
    rows: tuple[RowScore, ...]

    @property
    def accuracy(self) -> float:
        return sum(r.correct for r in self.rows) / len(self.rows) if self.rows else 0.0

    @property
    def missing_ids(self) -> list[str]:
        return [r.id for r in self.rows if r.missing]

    def groups(self) -> list[GroupScore]:
        """Accuracy per family, and per family/subtype where a family has subtypes."""
        return summarize(self.rows)


def group_label(family: str, subtype: str = "") -> str:
    return f"{family}/{subtype}" if subtype else family


def group_labels(family: str, subtype: str = "") -> tuple[str, ...]:
    """Every table row a result counts in: its family, and family/subtype when it has one."""
    return (family, group_label(family, subtype)) if subtype else (family,)


def check_known_ids(ids: Iterable[str], gold_ids: set[str], source: str) -> None:
    """Ids the gold file does not know mean the wrong file: an error naming them."""
    unknown = [row_id for row_id in ids if row_id not in gold_ids]
    if unknown:
        shown = ", ".join(unknown[:10]) + (
            f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        )
        raise DataError(f"{source}: {len(unknown)} id(s) not in the gold file: {shown}")


def summarize(rows: Iterable[RowScore]) -> list[GroupScore]:
    counts: dict[str, list[int]] = {}
    for row in rows:
        for label in group_labels(row.family, row.subtype):
            tally = counts.setdefault(label, [0, 0])
            tally[0] += row.correct
            tally[1] += 1
    return [GroupScore(label, c, t) for label, (c, t) in sorted(counts.items())]


def score_predictions(
    predictions: Sequence[dict[str, str]],
    gold: Sequence[dict[str, str]],
    source: str = "predictions",
) -> ScoreReport:
    """Score prediction rows (`id` + `answer` or `output`) against gold rows (`id,prompt,answer`)."""
    check_known_ids((row["id"] for row in predictions), {row["id"] for row in gold}, source)
    by_id = {row["id"]: row for row in predictions}
    scored = []
    for row in gold:
        kind = classify(row.get("prompt", ""))
        pred = by_id.get(row["id"])
        if pred is None:
            scored.append(
                RowScore(
                    row["id"], kind.family, kind.subtype, "", row["answer"], False, missing=True
                )
            )
            continue
        extracted = pred["answer"] if "answer" in pred else extract_answer(pred["output"])
        scored.append(
            RowScore(
                row["id"],
                kind.family,
                kind.subtype,
                extracted,
                row["answer"],
                is_correct(row["answer"], extracted),
            )
        )
    return ScoreReport(tuple(scored))


def score_files(pred_path: Path, gold_path: Path, per_row_path: Path | None = None) -> ScoreReport:
    """Read both CSVs, score, and optionally write `id,family,extracted,gold,correct` per row."""
    predictions = read_rows(pred_path, required=("id",))
    columns = set(predictions[0])
    if "answer" not in columns and "output" not in columns:
        raise DataError(
            f"{pred_path}: needs an 'answer' column (extracted) or an 'output' column (raw text)"
        )
    gold = read_rows(gold_path, required=("id", "prompt", "answer"))
    report = score_predictions(predictions, gold, source=str(pred_path))
    if per_row_path is not None:
        write_rows(
            per_row_path,
            ({**asdict(r), "correct": int(r.correct)} for r in report.rows),
            ("id", "family", "subtype", "extracted", "gold", "correct"),
        )
    return report
