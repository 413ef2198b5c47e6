"""SFT stage: supervised fine-tuning on the prompt/completion rows with TRL's ``SFTTrainer``.

Loss is on the assistant's tokens only (TRL's completion-only loss on prompt-completion data; the chat template
puts the end-of-turn tokens inside the completion, so the model learns to stop). Full fine-tuning or LoRA
(``model.lora`` / stage ``lora``); modules listed in ``freeze`` stay fixed. The stage saves a full model directory
(LoRA merged) that the next stage, transformers and vLLM load directly.

Runs on every rank of a multi-process launch (DDP, DeepSpeed ZeRO-2/3); ``align.distributed.finish_training``
checks that the ranks trained one model and saves it from rank 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from align.recipe import StageSpec

DISTRIBUTED = True  # runs under accelerate launch with several processes


class Config(StageSpec):
    type: Literal["sft"] = "sft"
    trl_config = "trl:SFTConfig"


# Defaults the workbench chooses for SFT; any of them can be overridden under `args:`.
SFT_DEFAULTS = {
    "completion_only_loss": True,
    "max_length": None,  # truncation could cut image tokens out of the prompt
    "gradient_checkpointing": False,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.05,
}


def training_rows(dataset, is_vlm: bool, where: str):
    """Keep the columns SFT reads; drop the image column for a text-only model (and refuse image rows)."""
    from align.errors import StageError

    keep = [c for c in ("prompt", "completion", "images", "image_info") if c in dataset.column_names]
    dataset = dataset.select_columns(keep)
    if not is_vlm and "images" in keep:
        with_images = sum(1 for imgs in dataset["images"] if imgs)
        if with_images:
            raise StageError(
                f"{where}: {with_images} training rows have images but the model is text-only",
                "use a vision-language model, or data without images",
            )
        dataset = dataset.remove_columns("images")
    empty = [i for i, c in enumerate(dataset["completion"]) if not c]
    if empty:
        raise StageError(f"{where}: {len(empty)} rows have no assistant answer to train on (first: row {empty[0] + 1})")
    return dataset


def train_sft(ctx, dataset, out_dir: Path, extra_defaults: dict | None = None, use_lora: bool = True) -> Path:
    """Fine-tune ``ctx.input_model`` on prompt/completion ``dataset``; save the merged model to ``out_dir``.
    Shared by the SFT, RFT and align (connector) stages."""
    from trl import SFTConfig, SFTTrainer

    from align.distributed import finish_training
    from align.models import freeze_modules, is_vision_config, load_model_and_processor
    from align.models.guards import check_sft_batch
    from align.resume import run_trainer
    from align.training import count_params, lora_config, metrics_callback, stage_freeze, stage_lora, trl_config

    spec = ctx.recipe.model
    model, processor, family = load_model_and_processor(ctx.input_model, spec, "float32" if not ctx.on_gpu else None)
    is_vlm = is_vision_config(model.config)
    frozen = freeze_modules(model, stage_freeze(ctx))
    dataset = training_rows(dataset, is_vlm, f"stage '{ctx.stage.name}'")
    trainer_cls, collator, adapter = SFTTrainer, None, {}
    if family.name == "hyperclovax_vision":  # its chat format carries OCR / lens text per image (hcx_vision.adapter)
        from align.models.hcx_vision import HCXCollator, sft_trainer_class

        trainer_cls, collator = sft_trainer_class(), HCXCollator(processor, model.config.image_token_id)
        adapter = {"dataset_kwargs": {"skip_prepare_dataset": True}, "remove_unused_columns": False}
    args = trl_config(SFTConfig, ctx, {**SFT_DEFAULTS, **(extra_defaults or {}), **adapter})
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=processor,
        peft_config=lora_config(stage_lora(ctx), stage_freeze(ctx)) if use_lora else None,
        callbacks=[metrics_callback(ctx.stage_dir / "metrics.jsonl", ctx.stage.name)],
    )
    batch = check_sft_batch(trainer, family, f"stage '{ctx.stage.name}'")  # before any step: a clear error, not a crash
    params = count_params(trainer.model)
    ctx.log(f"{family.name} model; {len(dataset)} rows (first batch checked: {batch['rows']} rows, {batch['tokens']} "
            f"tokens); parameters {params['trainable']:,} trainable of {params['total']:,}"
            + (f"; frozen: {', '.join(frozen)}" if frozen else ""))  # fmt: skip
    run_trainer(ctx, trainer)  # resumes from the last complete checkpoint in a resumed run
    return finish_training(ctx, trainer, processor, out_dir)


def run(ctx) -> Path:
    return train_sft(ctx, ctx.train_rows(), ctx.stage_dir / "model")
