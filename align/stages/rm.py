"""``rm`` stage: train a (vision) reward model on preference pairs, for V-RLHF.

The current model's backbone (VLM or LM) gets a scalar head on the final token's last hidden state and is trained
with the Bradley-Terry loss ``-log σ(r(chosen) - r(rejected) - margin)``; the vision tower stays frozen by default,
LoRA or full. TRL 1.16's ``RewardTrainer`` is text-only, hence this small loop.

A checkpoint (trainable weights, head, optimizer, scheduler, RNG and data order) goes to
``checkpoints/checkpoint-N`` every ``save_steps``; ``--resume`` continues from the last complete one.

Writes ``<stage>/model`` (backbone HF folder + ``reward_head.safetensors``; see ``rewards/reward_model.py``),
``metrics.jsonl`` (loss and batch accuracy), and ``summary.json`` with the held-out pairwise accuracy overall and
per task (per error for describe pairs: ``describe/wrong_color``, …). The policy is unchanged: the next stage starts
from this stage's input model, and a later stage's reward can name this model as ``path: stage:<name>``. The stage
also scores the input policy's held-out answers with the new reward model; the pipeline adds that score to the
evaluation of the checkpoint the policy came from.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from align.console import TrainingProgress
from align.data.preferences import policy_pairs, split_pairs
from align.evaluate import builtin_metrics
from align.io import append_jsonl, atomic_write_json
from align.models import freeze_modules
from align.resume import checkpoint_step, complete_checkpoints, cut_back, mark_complete
from align.spec import RewardSpec, SampledEvalSpec, SharedPromptMode, Strict
from align.stages.base import Stage, StageContext, StageResult
from align.stages.preference import PreferenceStage, preference_rows
from align.training import lora_config, stage_lora
from rewards.reward_model import ScalarRewardModel
from rollouts.scoring import sample_and_score


class PolicyPairs(Strict):
    """Pairs from the input policy's own samples, ranked by a judge (the labeller), next to the stage's pairs."""

    prompts: int = Field(0, ge=0, description="Images of the stage's rows the policy is sampled on (0: none).")
    samples: int = Field(4, ge=2, description="Descriptions sampled per image.")
    judge: str = Field("describe_f1", description="Reward that ranks an image's samples: the labeller (describe_f1 "
                       "reads the row's ground truth, as an annotator would judge the descriptions).")  # fmt: skip
    min_gap: float = Field(0.2, gt=0, description="Pair two samples only when their judge scores differ this much.")
    per_prompt: int = Field(2, ge=1, description="At most this many pairs per image (best vs worst, 2nd vs 2nd-worst).")
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(64, ge=1)


class Config(PreferenceStage):
    type: Literal["rm"] = "rm"
    eval: bool = Field(False, description="The policy does not change in this stage: no eval hook afterwards.")
    learning_rate: float = Field(1e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(16, ge=1, description="Pairs per optimisation step.")
    use_margin: bool = Field(True, description="Subtract a row's `margin` in the loss when present.")
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(50, ge=1, description="Checkpoint every N steps (the last two kept); --resume uses them.")
    freeze: list[str] | None = Field(["vision_tower"], description="Frozen module roles or name fragments.")
    shared_prompt: SharedPromptMode = Field("auto", description="Sampling the policy for policy_pairs (transformers "
                                            "engine): prefill each prompt once for its samples (align/shared_prompt.py).")  # fmt: skip
    policy_pairs: PolicyPairs = Field(default_factory=PolicyPairs, description="On-policy pairs: the input policy's "
                                      "samples on the stage's rows, ranked by a judge reward (RLHF's labelling).")  # fmt: skip

    @model_validator(mode="after")
    def _no_args(self):
        if self.args:
            raise ValueError("the rm stage takes its settings as fields (learning_rate, epochs, batch_size, ...), "
                             "not under args")  # fmt: skip
        return self


def pairwise_accuracy(model, pairs, batch_size: int) -> tuple[dict, list[float]]:
    chosen = model.score([p["prompt"] for p in pairs], [p["chosen"] for p in pairs], [p["images"] for p in pairs],
                         batch_size)  # fmt: skip
    rejected = model.score([p["prompt"] for p in pairs], [p["rejected"] for p in pairs],
                           [p["images"] for p in pairs], batch_size)  # fmt: skip
    right = [c > r for c, r in zip(chosen, rejected)]
    per_task: dict[str, list[bool]] = {}
    for p, ok in zip(pairs, right):
        key = (p.get("task") or "default") + (f"/{p['error']}" if p.get("error") else "")  # describe: per error
        per_task.setdefault(key, []).append(ok)
    result = {"pairwise_accuracy": sum(right) / max(1, len(right)), "pairs": len(right),
              "per_task": {t: sum(v) / len(v) for t, v in sorted(per_task.items())}}  # fmt: skip
    return result, chosen + rejected


def run(ctx: StageContext) -> StageResult:
    import torch

    stage = ctx.stage
    pairs = preference_rows(ctx)
    sampled = sampled_pairs(ctx) if stage.policy_pairs.prompts else []
    held_out, train = split_pairs(pairs + sampled, stage.eval_fraction, ctx.recipe.seed)
    torch.manual_seed(ctx.recipe.seed)
    model = ScalarRewardModel.from_backbone(
        ctx.input_model, ctx.recipe.model, dtype="float32" if not ctx.on_gpu else None
    )
    frozen = freeze_modules(model.backbone, stage.freeze or [])
    lora = stage_lora(ctx)
    if lora is not None:
        from peft import get_peft_model

        model.backbone = get_peft_model(model.backbone, lora_config(lora, stage.freeze or []))
    device = "cuda" if ctx.on_gpu else "cpu"
    model.backbone.to(device)
    model.head.to(device)
    model.device = device
    before, _ = pairwise_accuracy(model, held_out, stage.batch_size)
    ctx.log(f"{len(train)} training pairs, {len(held_out)} held out; held-out pairwise accuracy before training "
            f"{before['pairwise_accuracy']:.3f}" + (f"; frozen: {', '.join(frozen)}" if frozen else ""))  # fmt: skip

    params = [p for p in model.backbone.parameters() if p.requires_grad] + list(model.head.parameters())
    optimizer = torch.optim.AdamW(params, lr=stage.learning_rate)
    steps = max(1, int(len(train) * stage.epochs / stage.batch_size))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, steps // 20)))
    order = random.Random(ctx.recipe.seed + 1)
    start = _resume(ctx, model, optimizer, scheduler, order) if ctx.resume else 0
    model.backbone.train()
    started, window = time.time(), []
    with TrainingProgress(stage.name, steps).start(start) as progress:
        for step in range(start, steps):
            batch = [train[order.randrange(len(train))] for _ in range(stage.batch_size)]
            prompts = [p["prompt"] for p in batch] * 2
            texts = [p["chosen"] for p in batch] + [p["rejected"] for p in batch]
            images = [p["images"] for p in batch] * 2
            scores = model.forward(model.encode(prompts, texts, images))
            chosen, rejected = scores[: len(batch)], scores[len(batch) :]
            margin = torch.tensor([p.get("margin", 0.0) if stage.use_margin else 0.0 for p in batch], device=device)
            loss = -torch.nn.functional.logsigmoid(chosen - rejected - margin).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            window.append((loss.item(), (chosen > rejected).float().mean().item()))
            if (step + 1) % stage.logging_steps == 0 or step + 1 == steps:
                loss_avg = sum(w[0] for w in window) / len(window)
                acc = sum(w[1] for w in window) / len(window)
                append_jsonl(ctx.stage_dir / "metrics.jsonl", [{"stage": stage.name, "step": step + 1, "loss": loss_avg,
                                                                "accuracy": acc, "learning_rate": scheduler.get_last_lr()[0]}])  # fmt: skip
                progress.log(step + 1, {"loss": loss_avg, "accuracy": acc, "learning_rate": scheduler.get_last_lr()[0]})
                window = []
            progress.advance(step + 1)
            if (step + 1) % stage.save_steps == 0 and step + 1 < steps:
                _save_checkpoint(ctx, step + 1, model, optimizer, scheduler, order)
        progress.finish(steps)
    model.backbone.eval()
    after, all_scores = pairwise_accuracy(model, held_out, stage.batch_size)
    mean = sum(all_scores) / len(all_scores)
    std = (sum((s - mean) ** 2 for s in all_scores) / len(all_scores)) ** 0.5
    out = ctx.stage_dir / "model"
    model.save(out, {"score_stats": {"mean": mean, "std": std}, "trained_from": ctx.input_model})
    summary = {"held_out": after, "before_training": before, "train_pairs": len(train), "policy_pairs": len(sampled),
               "steps": steps,
               "seconds": round(time.time() - started, 1), "model": str(out)}  # fmt: skip
    atomic_write_json(ctx.stage_dir / "summary.json", summary)
    ctx.log(f"held-out pairwise accuracy {after['pairwise_accuracy']:.3f} (before {before['pairwise_accuracy']:.3f}); "
            + ", ".join(f"{t} {a:.2f}" for t, a in after["per_task"].items()))  # fmt: skip
    result = StageResult(model=ctx.input_model, output=str(out))  # the policy is unchanged
    if ctx.recipe.eval.enabled:
        result.input_metrics = summary["policy_scores"] = score_policy(ctx, out)
        atomic_write_json(ctx.stage_dir / "summary.json", summary)
    return result


def sampled_pairs(ctx: StageContext) -> list[dict]:
    """Sample the input policy on the first ``policy_pairs.prompts`` rows of the stage and pair its descriptions by
    the judge's ranking (``policy_pairs`` in align/data/preferences.py); every sample goes to
    ``policy_samples.jsonl``. The pairs carry ``error: policy`` (their held-out accuracy is reported apart)."""
    cfg = ctx.stage.policy_pairs
    rows = ctx.train_rows(cfg.prompts)
    log = ctx.stage_dir / "policy_samples.jsonl"
    log.unlink(missing_ok=True)
    samples, _ = sample_and_score(ctx, rows, cfg.samples, cfg.temperature, cfg.max_new_tokens, log_path=log,
                                  extra_rewards=[cfg.judge])  # fmt: skip
    by_id = {r["id"]: r for r in rows}
    pairs = []
    for p in policy_pairs(samples, cfg.judge, cfg.min_gap, cfg.per_prompt):
        row = by_id[p["id"]]
        pairs.append({"id": p["id"], "task": row["task"], "prompt": row["prompt"], "images": row["images"],
                      "chosen": p["chosen"], "rejected": p["rejected"], "error": "policy"})  # fmt: skip
    judged = [s["rewards"][cfg.judge] for s in samples if s["rewards"].get(cfg.judge) is not None]
    ctx.log(f"policy pairs: {len(pairs)} from {len(rows)} images × {cfg.samples} samples ranked by {cfg.judge} "
            f"(its mean over the samples {sum(judged) / max(1, len(judged)):.3f})")  # fmt: skip
    return pairs


def _save_checkpoint(ctx, step: int, model, optimizer, scheduler, order) -> None:
    import torch

    folder = ctx.stage_dir / "checkpoints" / f"checkpoint-{step}"
    folder.mkdir(parents=True, exist_ok=True)
    trainable = {n: p.detach().cpu() for n, p in model.backbone.named_parameters() if p.requires_grad}
    torch.save({"step": step, "trainable": trainable, "head": model.head.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "order": order.getstate(), "torch_rng": torch.get_rng_state()}, folder / "state.pt")  # fmt: skip
    mark_complete(ctx, folder, step)
    for old in complete_checkpoints(folder.parent)[:-2]:
        shutil.rmtree(old, ignore_errors=True)


def _resume(ctx, model, optimizer, scheduler, order) -> int:
    """Load the last complete checkpoint of an interrupted run; the step to continue from (0: none)."""
    import torch

    done = complete_checkpoints(ctx.stage_dir / "checkpoints")
    if not done:
        cut_back(ctx, 0)
        ctx.log("resuming from the start (no complete checkpoint)")
        return 0
    state = torch.load(done[-1] / "state.pt", weights_only=False)
    params = dict(model.backbone.named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    model.head.load_state_dict(state["head"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    order.setstate(state["order"])
    torch.set_rng_state(state["torch_rng"])
    removed = cut_back(ctx, state["step"])
    ctx.log(f"resuming from {done[-1].name} (step {checkpoint_step(done[-1])}); {removed} log record(s) after it "
            "removed")  # fmt: skip
    return state["step"]


def score_policy(ctx: StageContext, rm_dir: Path) -> dict:
    """Score the input policy's greedy held-out answers with the new reward model (``align compare`` then shows the
    reward-model score before and after RL)."""
    metric = next((m for m in ctx.recipe.eval.metrics or [] if m.name == "reward_model"),
                  RewardSpec(name="reward_model"))  # fmt: skip
    metric = metric.model_copy(update={"args": {**metric.args, "path": str(rm_dir)}})
    ev = ctx.recipe.eval.model_copy(update={"metrics": [metric], "sampled": SampledEvalSpec(k=0), "hooks": []})
    metrics, _ = builtin_metrics(ctx.input_model, ctx.recipe.model_copy(update={"eval": ev}), ctx.data.eval,
                                 ctx.recipe_dir)  # fmt: skip
    scores = {k: v for k, v in metrics.items() if k.startswith("reward_model")}
    ctx.log(
        f"reward-model score of the input policy's held-out answers: {scores.get('reward_model', float('nan')):.3f}"
    )
    return scores


STAGE = Stage(
    type="rm",
    config=Config,
    run=run,
    multi_process=False,
)
