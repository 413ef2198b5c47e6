"""What the stages that read preference pairs (``rm``, ``dpo``) share: their recipe fields and their pairs."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from align.data.preferences import load_pairs, synthetic_pairs
from align.spec import StageSpec
from align.stages.base import StageContext


class PreferenceStage(StageSpec):
    """Recipe fields of the stages that read preference pairs (``rm``, ``dpo``)."""

    preferences: str = Field("synthetic", description="'synthetic' (from the synthetic tasks), a JSONL/Parquet "
                             "file, a folder of them, or a hub dataset id (owner/name[:split]).")  # fmt: skip
    image_folder: str | None = Field(None, description="Where relative image paths in the preference file point.")
    pairs: int | None = Field(None, ge=2, description="Use at most this many pairs (before the held-out split).")
    eval_fraction: float = Field(0.1, gt=0, lt=1, description="Pairs held out for pairwise accuracy.")


def preference_rows(ctx: StageContext) -> list[dict]:
    """The stage's preference pairs: synthetic ones from its training rows, or loaded (bad rows reported)."""
    stage = ctx.stage
    if stage.preferences == "synthetic":
        pairs = synthetic_pairs(ctx.train_rows(), seed=ctx.recipe.seed)
    else:
        source = Path(stage.preferences)
        if not source.is_absolute() and ctx.recipe_dir is not None and (ctx.recipe_dir / source).exists():
            source = ctx.recipe_dir / source
        skipped: list[str] = []
        pairs = load_pairs(source if source.exists() else stage.preferences, stage.image_folder, skipped)
        for msg in skipped[:5]:
            ctx.log(f"skipped {msg}")
        if skipped:
            ctx.log(f"{len(skipped)} preference rows skipped")
    return pairs[: stage.pairs] if stage.pairs else pairs
