"""`dataset build`: real rows plus generated puzzles -> one shuffled, deduplicated SFT file.

Real rows come first when deduplicating by prompt, so a generated puzzle never
displaces a real one. A manifest beside the output records the resolved recipe, the
counts per source and family, and the SHA-256 of every input file.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from reasonlab import __version__
from reasonlab.data.dataset_recipe import DatasetRecipe
from reasonlab.data.generate import generate_rows
from reasonlab.data.traces import DROP_REASONS, TraceResult, build_traces
from reasonlab.formats.csvio import read_rows
from reasonlab.formats.files import atomic_write, sha256_file
from reasonlab.formats.jsonl import write_jsonl
from reasonlab.formats.token_counts import TokenCounter

__all__ = ["build_dataset", "manifest_path"]


def manifest_path(output: Path) -> Path:
    return output.with_name(output.name + ".manifest.json")


def build_dataset(
    recipe: DatasetRecipe,
    output: Path,
    workers: int = 1,
    on_progress: Callable[[int], None] | None = None,
    on_stage: Callable[[str, int], None] | None = None,
) -> TraceResult:
    """Gather, deduplicate, trace, shuffle and write; returns the trace statistics.

    `on_stage(description, total)` announces each long stage (generating, then tracing)
    and how many rows it has; `on_progress(n)` then counts rows done in it.
    """
    counter = TokenCounter.load(recipe.tokenizer)  # a bad tokenizer path fails before any work
    rows: list[dict[str, str]] = []
    sources: Counter = Counter()
    for path in recipe.real:
        for row in read_rows(path, required=("id", "prompt", "answer")):
            rows.append(
                {
                    "id": row["id"],
                    "prompt": row["prompt"],
                    "answer": row["answer"],
                    "source": str(path),
                }
            )
    counts = recipe.generated.counts()
    if on_stage:
        on_stage("generating puzzles", sum(counts.values()))
    for family, count in counts.items():
        if count:
            for row in generate_rows(family, count, recipe.generated.seed, on_progress=on_progress):
                rows.append({**row, "source": "generated"})
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row["prompt"] not in seen:
            seen.add(row["prompt"])
            unique.append(row)
            sources[row["source"]] += 1
    if on_stage:
        on_stage("solving and tracing", len(unique))
    result = build_traces(
        unique,
        counter=counter,
        max_new_tokens=recipe.max_new_tokens,
        workers=workers,
        allow_incomplete=recipe.allow_incomplete_traces,
        on_progress=on_progress,
        styles=recipe.trace_styles,
    )
    source_of = {row["id"]: row["source"] for row in unique}
    examples = [{**example, "source": source_of[example["id"]]} for example in result.rows]
    random.Random(recipe.seed).shuffle(examples)
    write_jsonl(output, examples)
    manifest = {
        "reasonlab_version": __version__,
        "recipe": json.loads(recipe.model_dump_json()),
        "output": output.name,
        "rows_in": len(rows),
        "duplicates_dropped": len(rows) - len(unique),
        "rows_by_source": dict(sources),
        "kept": len(examples),
        "kept_by_family": dict(Counter(e["family"] for e in examples)),
        "kept_by_source": dict(Counter(e["source"] for e in examples)),
        "traces_by_family": {family: s.summary() for family, s in sorted(result.stats.items())},
        "drop_reasons": DROP_REASONS,
        "tokens_exact": result.exact_tokens,
        "token_counting": result.counting,
        "source_sha256": {str(p): sha256_file(p) for p in recipe.real},
        "output_sha256": sha256_file(output),
    }
    with atomic_write(manifest_path(output)) as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    return result
