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

from pathlib import Path
from typing import Literal

from align.data.preferences import PreferenceStage


class Config(PreferenceStage):
    type: Literal["dpo"] = "dpo"
    trl_config = "trl:DPOConfig"


DISTRIBUTED = True  # every rank trains; finish_training checks the ranks agree and saves on rank 0


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

    from align.data.loaders import content_text, open_rgb
    from align.errors import StageError

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


def run(ctx) -> Path:
    from trl import DPOConfig, DPOTrainer

    from align.data.preferences import preference_rows, split_pairs
    from align.distributed import finish_training, main_only
    from align.io import atomic_write_json
    from align.models import freeze_modules, is_vision_config, load_model_and_processor
    from align.models.families import check_stage
    from align.resume import run_trainer
    from align.training import count_params, lora_config, metrics_callback, stage_freeze, stage_lora, trl_config

    check_stage(ctx)
    stage, spec = ctx.stage, ctx.recipe.model
    held_out, train = split_pairs(preference_rows(ctx), stage.eval_fraction, ctx.recipe.seed)
    model, processor, _ = load_model_and_processor(ctx.input_model, spec, "float32" if not ctx.on_gpu else None)
    is_vlm = is_vision_config(model.config)
    frozen = freeze_modules(model, stage_freeze(ctx))
    where = f"stage '{stage.name}'"
    args = trl_config(DPOConfig, ctx, DPO_DEFAULTS)
    # The held-out "before" figures come from the trainer's own evaluation at step 0: a trainer.evaluate() before
    # train() would keep a LoRA model from being wrapped for DDP, and the ranks would train apart.
    args.eval_on_start = True
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=preference_dataset(train, is_vlm, where),
        eval_dataset=preference_dataset(held_out, is_vlm, where),
        processing_class=processor,
        peft_config=lora_config(stage_lora(ctx), stage_freeze(ctx)),
        callbacks=[metrics_callback(ctx.stage_dir / "metrics.jsonl", stage.name)],
    )
    params = count_params(trainer.model)
    ctx.log(f"{len(train)} training pairs, {len(held_out)} held out; parameters {params['trainable']:,} trainable "
            f"of {params['total']:,}" + (f"; frozen: {', '.join(frozen)}" if frozen else ""))  # fmt: skip
    run_trainer(ctx, trainer)  # resumes from the last complete checkpoint in a resumed run
    before = _held_out(next(m for m in trainer.state.log_history if "eval_rewards/accuracies" in m))
    after = _held_out(trainer.evaluate())
    out = finish_training(ctx, trainer, processor, ctx.stage_dir / "model")
    summary = {"held_out": after, "before_training": before, "train_pairs": len(train),
               "steps": trainer.state.global_step, "model": str(out)}  # fmt: skip
    main_only(lambda: atomic_write_json(ctx.stage_dir / "summary.json", summary), share=False)
    ctx.log(f"held-out preference accuracy {after['accuracy']:.3f} (before {before['accuracy']:.3f}), "
            f"reward margin {after['margin']:.3f} (before {before['margin']:.3f})")  # fmt: skip
    return out


def _held_out(metrics: dict) -> dict:
    """TRL's eval metrics → held-out preference accuracy and implicit-reward margin."""
    return {"accuracy": metrics.get("eval_rewards/accuracies", float("nan")),
            "margin": metrics.get("eval_rewards/margins", float("nan")), "loss": metrics.get("eval_loss")}  # fmt: skip
