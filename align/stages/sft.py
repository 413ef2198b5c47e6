"""SFT stage: supervised fine-tuning on the prompt/completion rows with TRL's ``SFTTrainer``.

Loss is on the assistant's tokens only (TRL's completion-only loss on prompt-completion data; the chat template
puts the end-of-turn tokens inside the completion, so the model learns to stop). Full fine-tuning or LoRA
(``model.lora`` / stage ``lora``); modules listed in ``freeze`` stay fixed. The stage saves a full model directory
(LoRA merged) that the next stage, transformers and vLLM load directly. ``train_sft`` also serves the RFT stage's
fine-tuning and the connector ``align`` stage.

Runs on every rank of a multi-process launch (DDP, DeepSpeed ZeRO-2/3).
"""

from __future__ import annotations

from typing import Literal

from align.errors import StageError
from align.models.guards import check_sft_batch
from align.spec import StageSpec
from align.stages.base import Stage, StageContext, StageResult
from align.training import fit, load_policy, save_policy, trainer_parts, trl_config
from align.trl_extensions import own_loss_sft_trainer_class


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


def train_sft(ctx: StageContext, dataset, defaults: dict | None = None, lora: bool = True) -> StageResult:
    """Fine-tune ``ctx.input_model`` on prompt/completion ``dataset``; the model goes to ``<stage>/model``."""
    from trl import SFTConfig, SFTTrainer

    where = f"stage '{ctx.stage.name}'"
    policy = load_policy(ctx)
    dataset = training_rows(dataset, policy.is_vlm, where)
    trainer_cls, collator, adapter = SFTTrainer, None, {}
    if policy.family.sft_adapter:  # the family builds its own batches (HyperCLOVAX: OCR / lens text per image)
        collator, adapter = policy.family.hook("sft_adapter")(policy.model, policy.processor)
        trainer_cls = own_loss_sft_trainer_class()
    args = trl_config(SFTConfig, ctx, {**SFT_DEFAULTS, **(defaults or {}), **adapter})
    trainer = trainer_cls(args=args, train_dataset=dataset, data_collator=collator, **trainer_parts(ctx, policy, lora))
    batch = check_sft_batch(trainer, policy.family, where)  # before any step: a clear error, not a crash
    fit(ctx, trainer, policy, f"{len(dataset)} rows (first batch checked: {batch['rows']} rows, {batch['tokens']} "
                              "tokens)")  # fmt: skip
    return StageResult(model=str(save_policy(ctx, trainer, policy)))


def run(ctx: StageContext[Config]) -> StageResult:
    return train_sft(ctx, ctx.train_rows())


STAGE = Stage(
    type="sft",
    config=Config,
    run=run,
)
