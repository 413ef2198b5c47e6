"""Pieces every training stage shares: TRL config from recipe ``args``, LoRA, freezing, metrics logging."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from align.io import append_jsonl


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
    import re

    from peft import LoraConfig

    from align.models import ROLE_PATTERNS

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
