"""One self-contained HTML page about an evaluation run: scores, lengths, missing boxes, failures.

Everything is inside the file (inline CSS, matplotlib PNGs as base64 data URIs), so the
page can be mailed, attached to a CI run or opened offline. What it shows, and why:
- per-family accuracy (and vote / pass@K with K > 1): where the points are lost;
- output-length histograms against the new-token limit: a family piling up at 7,680 is
  being cut off before it can write its box, which the metric then scores as wrong;
- the share of outputs with no `\\boxed{}`: the metric falls back to the last number, which
  is rarely the answer;
- the worst examples of each family, with the tail of the output, to read why.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from reasonlab.competition import MAX_NEW_TOKENS
from reasonlab.evaluation.vote import (
    GroupResult,
    RowResult,
    VoteReport,
    group_outputs,
    score_outputs,
)
from reasonlab.formats.csvio import read_rows
from reasonlab.formats.files import atomic_write
from reasonlab.formats.jsonl import read_jsonl

__all__ = ["build_report", "write_report"]

_TAIL_CHARS = 1500  # of each shown output: the end is where the answer (or the cut) is
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}tr.all td{font-weight:bold}
pre{white-space:pre-wrap;background:#f8f8f8;padding:.6em;font-size:12px;max-height:30em;overflow:auto}
.bad{color:#b00}.ok{color:#070}img{max-width:100%}details{margin:.3em 0 1em 0}
"""


def _png(fig) -> str:
    """A matplotlib figure as an <img> with a base64 PNG inside."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _accuracy_figure(groups: Sequence[GroupResult]) -> str:
    import matplotlib

    matplotlib.use("Agg")  # no display in CI or over ssh
    import matplotlib.pyplot as plt

    families = [g for g in groups if "/" not in g.label]
    k = groups[0].samples
    series = [("accuracy (sample 0)", [g.accuracy for g in families])]
    if k > 1:
        series += [
            ("majority vote", [g.majority for g in families]),
            (f"pass@{k}", [g.pass_at_k for g in families]),
        ]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(families)), 3.6))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(families))]
        ax.bar(xs, values, width, label=name)
    ax.set_xticks(range(len(families)), [g.label for g in families], rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of rows")
    ax.set_title("Accuracy per family")
    ax.legend(fontsize=8)
    return _png(fig)


def _length_figure(tokens_by_family: Mapping[str, list[int]], limit: int) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(tokens_by_family)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        values = tokens_by_family[name]
        ax.hist(values, bins=30, range=(0, max(limit, max(values, default=0))), color="#4a78b0")
        ax.axvline(limit, color="#b00", linestyle="--", linewidth=1)
        ax.set_title(f"{name} (n={len(values)})", fontsize=9)
        ax.set_xlabel("output tokens", fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"Output lengths; dashed line: the {limit:,}-token limit", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _summary_table(report: VoteReport, rows_by_family: Mapping[str, list[RowResult]]) -> str:
    groups = report.groups()
    k = groups[0].samples
    head = ["group", "rows", "K", "accuracy"]
    if k > 1:
        head += ["pass@1", "majority", f"pass@{k}", "margin"]
    head += ["no \\boxed{}", "truncated", "median tokens"]
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for g in groups:
        rows = rows_by_family.get(g.label, [])
        flags = [
            (b, t, n)
            for r in rows
            for b, t, n in zip(r.boxed, r.truncated, r.output_tokens, strict=True)
        ]
        lengths = sorted(n for _, _, n in flags)
        cells = [html.escape(g.label), str(g.rows), str(g.samples), _pct(g.accuracy)]
        if k > 1:
            cells += [_pct(g.pass_at_1), _pct(g.majority), _pct(g.pass_at_k), f"{g.margin:.2f}"]
        cells += [
            _pct(sum(not b for b, _, _ in flags) / len(flags)) if flags else "-",
            _pct(sum(t for _, t, _ in flags) / len(flags)) if flags else "-",
            str(lengths[len(lengths) // 2]) if lengths else "-",
        ]
        css = ' class="all"' if g.label == "all" else ""
        out.append(f"<tr{css}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(out) + "</table>"


def _badness(row: RowResult) -> tuple:
    """Sort key, worst first: fewest right samples, wrong vote, cut off, no box, longest."""
    return (
        sum(row.correct) / row.samples,
        row.vote_correct,
        -sum(row.truncated),
        sum(row.boxed),
        -max(row.output_tokens, default=0),
    )


def _example(row: RowResult, prompt: str, texts: Sequence[str]) -> str:
    verdict = "ok" if row.first_correct else "bad"
    answers = ", ".join(
        f'<span class="{"ok" if c else "bad"}">{html.escape(a)}</span>'
        for a, c in zip(row.answers, row.correct, strict=True)
    )
    tail = texts[0][-_TAIL_CHARS:]
    cut = "…" if len(texts[0]) > _TAIL_CHARS else ""
    return (
        f'<h4 class="{verdict}">{html.escape(row.id)}</h4>'
        f"<p>gold <b>{html.escape(row.gold)}</b>; extracted: {answers}; "
        f"vote <b>{html.escape(row.vote.answer)}</b> ({row.vote.votes}/{row.samples}); "
        f"tokens {', '.join(map(str, row.output_tokens))}; "
        f"{'truncated' if row.truncated[0] else 'finished'}, {'boxed' if row.boxed[0] else 'no box'}</p>"
        f"<details><summary>prompt</summary><pre>{html.escape(prompt)}</pre></details>"
        f"<details><summary>output of sample 0 (last {_TAIL_CHARS} characters)</summary>"
        f"<pre>{cut}{html.escape(tail)}</pre></details>"
    )


def build_report(
    outputs: Sequence[Mapping],
    gold: Sequence[Mapping[str, str]],
    config: Mapping | None = None,
    worst: int = 3,
    title: str = "reasonlab evaluation",
) -> str:
    """The whole HTML page as a string."""
    report = score_outputs(outputs, gold)
    if not report.rows:
        raise ValueError("no output matches a gold row: nothing to report")
    texts = {
        row_id: [str(x["output"] or "") for x in lines]
        for row_id, lines in group_outputs(outputs).items()
    }
    prompts = {row["id"]: row.get("prompt", "") for row in gold}
    limit = int((config or {}).get("max_new_tokens") or MAX_NEW_TOKENS)

    rows_by_family: dict[str, list[RowResult]] = {"all": list(report.rows)}
    for row in report.rows:
        rows_by_family.setdefault(row.family, []).append(row)
        if row.subtype:
            rows_by_family.setdefault(f"{row.family}/{row.subtype}", []).append(row)
    tokens = {
        family: [n for r in rows for n in r.output_tokens if n >= 0]
        for family, rows in rows_by_family.items()
        if family != "all" and "/" not in family
    }

    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    if config:
        shown = {
            k: config.get(k)
            for k in (
                "base",
                "adapter",
                "backend",
                "samples",
                "temperature",
                "max_new_tokens",
                "max_model_len",
            )
        }
        parts.append(
            "<p>"
            + "; ".join(f"{k}: <code>{html.escape(str(v))}</code>" for k, v in shown.items())
            + "</p>"
        )
    if report.missing:
        parts.append(
            f"<p>{len(report.missing)} gold row(s) have no output and are not counted.</p>"
        )
    parts += [
        "<h2>Scores</h2>",
        _summary_table(report, rows_by_family),
        _accuracy_figure(report.groups()),
        "<h2>Output lengths</h2>",
        _length_figure(tokens, limit),
        f"<h2>Worst examples ({worst} per family)</h2>",
    ]
    for family in sorted(f for f in rows_by_family if f != "all" and "/" not in f):
        parts.append(f"<h3>{html.escape(family)}</h3>")
        for row in sorted(rows_by_family[family], key=_badness)[:worst]:
            parts.append(_example(row, prompts.get(row.id, ""), texts[row.id]))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    outputs_path: str | Path, gold_path: str | Path, out_path: str | Path, worst: int = 3
) -> Path:
    """Read the outputs JSONL (and its config beside it, if any) and the gold CSV; write the page."""
    from reasonlab.evaluation.evaluate import config_path_for

    outputs_path, out_path = Path(outputs_path), Path(out_path)
    gold = read_rows(gold_path, required=("id", "prompt", "answer"))
    outputs = read_jsonl(outputs_path)
    config_path = config_path_for(outputs_path)
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else None
    page = build_report(
        outputs, gold, config, worst=worst, title=f"reasonlab evaluation: {outputs_path.name}"
    )
    with atomic_write(out_path) as f:
        f.write(page)
    return out_path
