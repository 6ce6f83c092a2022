"""Dataset recipes: which real CSVs and how many generated puzzles make one SFT file.

A recipe is YAML validated with pydantic, so a typo in a family name or a negative
count is an error naming the field before any work starts.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reasonlab.competition import MAX_NEW_TOKENS
from reasonlab.data.solve import offered_styles
from reasonlab.formats.csvio import DataError, read_text
from reasonlab.puzzles.registry import FAMILIES

__all__ = ["DatasetRecipe", "GeneratedMix", "load_recipe"]


def _refuse_unknown_families(by_family: dict) -> None:
    unknown = sorted(set(by_family) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown family {', '.join(unknown)}; known: {', '.join(FAMILIES)}")


class GeneratedMix(BaseModel):
    """`n` generated puzzles per family, scaled by the family's weight (default 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    n: int = Field(0, ge=0, description="puzzles per family at weight 1")
    weights: dict[str, float] = Field(default_factory=dict)
    seed: int = 0

    @field_validator("weights")
    @classmethod
    def _known_families(cls, weights: dict[str, float]) -> dict[str, float]:
        _refuse_unknown_families(weights)
        if any(w < 0 for w in weights.values()):
            raise ValueError("weights must be >= 0")
        return weights

    def counts(self) -> dict[str, int]:
        return {family: round(self.n * self.weights.get(family, 1.0)) for family in FAMILIES}


class DatasetRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int = 0  # shuffles the final mix
    real: list[Path] = Field(
        default_factory=list, description="competition CSVs with id,prompt,answer"
    )
    generated: GeneratedMix = GeneratedMix()
    max_new_tokens: int = Field(MAX_NEW_TOKENS, gt=0, le=MAX_NEW_TOKENS)
    tokenizer: Path | None = None  # exact token counts; otherwise an estimate
    allow_incomplete_traces: bool = False
    # family -> trace style, e.g. {bit_manipulation: explicit}; unnamed families: compact
    trace_styles: dict[str, str] = Field(default_factory=dict)

    @field_validator("trace_styles")
    @classmethod
    def _offered_styles(cls, styles: dict[str, str]) -> dict[str, str]:
        _refuse_unknown_families(styles)
        for family, style in styles.items():
            if style not in (offered := offered_styles(family)):
                raise ValueError(
                    f"{family} offers trace styles {', '.join(offered)}, not {style!r}"
                )
        return styles


def load_recipe(path: str | Path) -> DatasetRecipe:
    """Read and validate a recipe; relative paths inside it are relative to the recipe's folder."""
    path = Path(path)
    try:
        raw = yaml.safe_load(read_text(path, "recipe YAML file")) or {}
    except yaml.YAMLError as err:
        raise DataError(f"{path}: not valid YAML: {err}") from None
    try:
        recipe = DatasetRecipe.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise DataError(f"{path}: {problems}") from None

    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else path.parent / p

    return recipe.model_copy(
        update={
            "real": [resolve(p) for p in recipe.real],
            "tokenizer": recipe.tokenizer and resolve(recipe.tokenizer),
        }
    )
