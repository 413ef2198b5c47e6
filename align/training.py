"""How every TRL-based stage trains::

    policy = load_policy(ctx)                                   # input model + processor + family, modules frozen
    args = trl_config(SFTConfig, ctx, STAGE_DEFAULTS)           # workbench defaults < stage defaults < recipe args
    trainer = SFTTrainer(args=args, train_dataset=rows, **trainer_parts(ctx, policy))   # model, LoRA, metrics log
    fit(ctx, trainer, policy, "2000 rows")                      # train (resuming from a checkpoint if asked)
    return StageResult(model=str(save_policy(ctx, trainer, policy)))

``save_policy`` checks that the ranks of a multi-process run trained one model and writes it (LoRA merged) as a
folder transformers and vLLM load.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from align.console import TrainingProgress
from align.distributed import finish_training
from align.io import append_jsonl
from align.models import ROLE_PATTERNS, freeze_modules, load_model_and_processor, model_reasoning_format
from align.models.families import Family, is_vision_config
from align.resume import run_trainer


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def trl_config(config_cls, ctx, defaults: dict[str, Any] | None = None):
    """Build a TRL config: workbench defaults < stage defaults < the recipe's ``args``.

    The workbench sets the output folder, seed, trackers and (on a machine without GPUs) ``use_cpu=True`` and
    ``bf16=False``, which TRL would otherwise get wrong on CPU."""
    stage, recipe = ctx.stage, ctx.recipe
    args: dict[str, Any] = {
        "output_dir": str(ctx.stage_dir / "checkpoints"),
        "seed": recipe.seed,
        "data_seed": recipe.seed,
        "report_to": [r for r in recipe.report_to if r != "none"] or "none",
        "logging_steps": 10,
        # checkpoints (weights, optimizer, scheduler, RNG) every 50 steps, the last two kept: what --resume uses
        "save_strategy": "steps",
        "save_steps": 50,
        "save_total_limit": 2,
        "run_name": f"{recipe.name}/{stage.name}",
        "dataloader_num_workers": 0,
    }
    if not on_gpu():
        args.update(use_cpu=True, bf16=False, fp16=False)
    args.update(defaults or {})
    args.update(stage.args)
    trackers = args.get("report_to") or []
    if "tensorboard" in trackers:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(ctx.stage_dir / "tensorboard")
    if "wandb" in trackers:
        os.environ.setdefault("WANDB_MODE", "offline")  # works without an account; `wandb sync` uploads later
        os.environ["WANDB_DIR"] = str(ctx.stage_dir)
    if "trackio" in trackers:
        os.environ.setdefault("TRACKIO_DIR", str(ctx.run.path / "trackio"))
    return config_cls(**args)


def lora_config(lora, frozen: list[str] = (), task_type: str = "CAUSAL_LM"):
    """PEFT LoraConfig; modules that are frozen get no adapters either (else LoRA would still train them)."""
    if lora is None:
        return None
    from peft import LoraConfig

    parts = []
    if isinstance(lora.exclude_modules, str):
        parts.append(lora.exclude_modules)
    elif lora.exclude_modules:
        parts += [rf"(.*\.)?{re.escape(m)}" for m in lora.exclude_modules]
    for role in frozen:
        parts += [rf".*{re.escape(f)}.*" for f in ROLE_PATTERNS.get(role, (role,))]
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        exclude_modules="|".join(f"(?:{p})" for p in parts) if parts else None,
        modules_to_save=lora.modules_to_save,
        task_type=task_type,
    )


def stage_lora(ctx):
    return ctx.stage.lora if ctx.stage.lora is not None else ctx.recipe.model.lora


def stage_freeze(ctx) -> list[str]:
    return ctx.stage.freeze if ctx.stage.freeze is not None else ctx.recipe.model.freeze


def count_params(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


def metrics_callback(path: Path, stage: str):
    """A TrainerCallback appending every log record to ``metrics.jsonl`` (one JSON object per line)."""
    from transformers import TrainerCallback

    class MetricsToJsonl(TrainerCallback):
        def __init__(self):
            self.t0 = time.time()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or not state.is_world_process_zero:
                return
            clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in logs.items()}
            record = {"stage": stage, "step": state.global_step, "epoch": state.epoch,
                      "elapsed_s": round(time.time() - self.t0, 2), **clean}  # fmt: skip
            append_jsonl(path, [record])

    return MetricsToJsonl()


def console_callback(stage: str):
    """A TrainerCallback showing training on the console (``align.console.TrainingProgress``): a line per logging
    step, a progress bar with ETA on a terminal, and the stage's time and mean loss at the end."""
    from transformers import TrainerCallback

    class ConsoleProgress(TrainerCallback):
        progress: TrainingProgress | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.progress = TrainingProgress(stage, state.max_steps).start(state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.advance(state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.progress is None or not logs or "train_runtime" in logs:  # the end-of-training summary: below
                return
            self.progress.log(state.global_step, logs)

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is None:
                return
            progress, self.progress = self.progress, None
            losses = [r["loss"] for r in state.log_history if isinstance(r.get("loss"), (int, float))]
            mean = f"; mean logged loss {sum(losses) / len(losses):.4f}" if losses else ""
            progress.finish(state.global_step, mean)

    return ConsoleProgress()


def show_progress(trainer, stage: str):
    """Put the workbench's console callback in place of transformers' printers (tqdm bar or ``PrinterCallback``),
    which print each log as a raw dict."""
    from transformers.trainer import DEFAULT_PROGRESS_CALLBACK
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for printer in {DEFAULT_PROGRESS_CALLBACK, ProgressCallback, PrinterCallback}:
        trainer.remove_callback(printer)
    callback = console_callback(stage)
    trainer.add_callback(callback)
    return callback


@dataclass
class Policy:
    """The model a training stage starts from, loaded for training."""

    model: Any
    processor: Any
    family: Family
    frozen: dict[str, int]  # frozen role or name fragment -> parameters frozen

    @property
    def is_vlm(self) -> bool:
        return is_vision_config(self.model.config)


def load_policy(ctx) -> Policy:
    """The stage's input model for training (float32 on CPU), generation stopping on its family's stop tokens, the
    stage's ``freeze`` applied."""
    model, processor, family = load_model_and_processor(ctx.input_model, ctx.recipe.model,
                                                        None if ctx.on_gpu else "float32")  # fmt: skip
    # reasoning models: the stage's rewards read each completion's answer after its reasoning, found from the ids
    # with the model's own markers (align/models/reasoning.py)
    fmt = model_reasoning_format(processor, family)
    for reward in ctx.rewards or ():
        reward.reasoning = fmt
    return Policy(model, processor, family, freeze_modules(model, stage_freeze(ctx)))


def trainer_parts(ctx, policy: Policy, lora: bool = True) -> dict:
    """What every TRL trainer gets from the workbench: the model, its processor, the LoRA config (unless the stage
    trains fully) and the callback writing ``metrics.jsonl``."""
    return {
        "model": policy.model,
        "processing_class": policy.processor,
        "peft_config": lora_config(stage_lora(ctx), stage_freeze(ctx)) if lora else None,
        "callbacks": [metrics_callback(ctx.stage_dir / "metrics.jsonl", ctx.stage.name)],
    }


def fit(ctx, trainer, policy: Policy, what: str, rollout_log: Path | None = None) -> None:
    """Log what trains, then ``trainer.train()`` (from the last complete checkpoint in a resumed run)."""
    params = count_params(trainer.model)
    frozen = f"; frozen: {', '.join(policy.frozen)}" if policy.frozen else ""
    ctx.log(f"{policy.family.name} model; {what}; parameters {params['trainable']:,} trainable of "
            f"{params['total']:,}{frozen}")  # fmt: skip
    shown = show_progress(trainer, ctx.stage.name)
    try:
        run_trainer(ctx, trainer, rollout_log=rollout_log)
    finally:  # a failed step: take the bar down before the error is shown
        if shown.progress is not None:
            shown.progress.close()


def save_policy(ctx, trainer, policy: Policy) -> Path:
    """The trained model as ``<stage>/model`` (see ``align.distributed.finish_training``)."""
    return finish_training(ctx, trainer, policy.processor, ctx.stage_dir / "model")
