"""``dpo`` stage: direct preference optimisation with images on TRL's ``DPOTrainer`` (VARCO-VISION's last stage).

Reads the same preference pairs as the ``rm`` stage (synthetic Korean pairs, a JSONL/Parquet file or folder, or a
hub dataset id; ``align/data/preferences.py``), holds ``eval_fraction`` of them out, and trains the current
policy with TRL's DPO loss (any ``loss_type``, ``beta``, … under ``args:``), full or LoRA (the reference model is
then the base with adapters disabled, as TRL does). Images go in the dataset's ``images`` column; TRL's vision
collator inserts them into the prompt.

Writes ``<stage>/model`` (merged HF folder), ``metrics.jsonl`` (TRL's ``rewards/margins``, ``rewards/accuracies``
…) and ``summary.json`` with the held-out preference accuracy (implicit reward of chosen > rejected) and margin
before and after training.
"""

from __future__ import annotations

from typing import Literal

from align.chat import content_text
from align.data.loaders import open_rgb
from align.data.preferences import split_pairs
from align.distributed import main_only
from align.errors import StageError
from align.io import atomic_write_json
from align.stages.base import Stage, StageContext, StageResult
from align.stages.preference import PreferenceStage, preference_rows
from align.training import fit, load_policy, save_policy, trainer_parts, trl_config


class Config(PreferenceStage):
    type: Literal["dpo"] = "dpo"
    trl_config = "trl:DPOConfig"


DPO_DEFAULTS = {
    "max_length": None,  # truncation could cut image tokens out of the prompt
    "gradient_checkpointing": False,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.05,
    "beta": 0.1,
}


def preference_dataset(pairs: list[dict], is_vlm: bool, where: str):
    """TRL's conversational preference format: prompt messages, chosen/rejected assistant turns, ``images``."""
    from datasets import Dataset

    with_images = sum(1 for p in pairs if p.get("images"))
    if with_images and not is_vlm:
        raise StageError(f"{where}: {with_images} preference pairs have images but the model is text-only",
                         "use a vision-language model, or pairs without images")  # fmt: skip
    rows = []
    for p in pairs:
        row = {"prompt": [{"role": m["role"], "content": content_text(m["content"])} for m in p["prompt"]],
               "chosen": [{"role": "assistant", "content": p["chosen"]}],
               "rejected": [{"role": "assistant", "content": p["rejected"]}]}  # fmt: skip
        if is_vlm:
            row["images"] = [open_rgb(i) for i in p.get("images") or []]
        rows.append(row)
    return Dataset.from_list(rows)


def run(ctx: StageContext[Config]) -> StageResult:
    from trl import DPOConfig, DPOTrainer

    stage = ctx.stage
    where = f"stage '{stage.name}'"
    policy = load_policy(ctx)
    held_out, train = split_pairs(preference_rows(ctx), stage.eval_fraction, ctx.recipe.seed)
    args = trl_config(DPOConfig, ctx, DPO_DEFAULTS)
    # The held-out "before" figures come from the trainer's own evaluation at step 0: a trainer.evaluate() before
    # train() would keep a LoRA model from being wrapped for DDP, and the ranks would train apart.
    args.eval_on_start = True
    trainer = DPOTrainer(args=args, train_dataset=preference_dataset(train, policy.is_vlm, where),
                         eval_dataset=preference_dataset(held_out, policy.is_vlm, where),
                         **trainer_parts(ctx, policy))  # fmt: skip
    fit(ctx, trainer, policy, f"{len(train)} training pairs, {len(held_out)} held out")
    before = _held_out(next(m for m in trainer.state.log_history if "eval_rewards/accuracies" in m))
    after = _held_out(trainer.evaluate())
    out = save_policy(ctx, trainer, policy)
    summary = {"held_out": after, "before_training": before, "train_pairs": len(train),
               "steps": trainer.state.global_step, "model": str(out)}  # fmt: skip
    main_only(lambda: atomic_write_json(ctx.stage_dir / "summary.json", summary), share=False)
    ctx.log(f"held-out preference accuracy {after['accuracy']:.3f} (before {before['accuracy']:.3f}), "
            f"reward margin {after['margin']:.3f} (before {before['margin']:.3f})")  # fmt: skip
    return StageResult(model=str(out))


def _held_out(metrics: dict) -> dict:
    """TRL's eval metrics → held-out preference accuracy and implicit-reward margin."""
    return {"accuracy": metrics.get("eval_rewards/accuracies", float("nan")),
            "margin": metrics.get("eval_rewards/margins", float("nan")), "loss": metrics.get("eval_loss")}  # fmt: skip


STAGE = Stage(
    type="dpo",
    config=Config,
    run=run,
)
