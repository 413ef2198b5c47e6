"""GRPO stage on TRL's ``GRPOTrainer``, with the recipe's rewards and weights.

Everything TRL offers is reachable under ``args:`` (``loss_type``, ``beta``, ``num_generations``, ``epsilon`` /
``epsilon_high``, ``importance_sampling_level: sequence`` for GSPO, ``scale_rewards``, ``mask_truncated_completions``,
``use_vllm`` …). What this stage adds:

* every rollout batch appended to ``rollouts.jsonl`` (step, prompt id, task, completion, token count, each reward,
  weighted total, advantage), readable while training runs;
* prompt selection by difficulty (``select_prompts``): prompts whose pass rate is 0 or 1 give every completion the
  same reward, hence zero advantage; they are dropped before training. Pass rates come from an earlier RFT stage
  of the same run, or from a pre-pass that samples ``samples`` answers per prompt;
* each prompt and its images encoded once per group (``shared_prompt``, ``align/shared_prompt.py``) in the
  log-prob passes and transformers generation, where TRL repeats them G times: the same log-probs and gradients;
* dynamic filtering of zero-variance groups (``filter_zero_variance``): TRL cannot re-sample inside a step, but
  for token-normalised losses (dapo, cispo, vespo) the loss normaliser is recomputed over the informative groups
  only, so groups whose completions all scored the same no longer dilute the update (DAPO's dynamic sampling
  without the re-sampling). With ``beta > 0`` their KL term still applies.
Dropped prompts and filtered groups are counted in ``summary.json``.

The TRL methods overridden for these (and for families whose image inputs TRL does not forward) are in
``align/trl_extensions.py``.

Runs on every rank of a multi-process launch; the prompt-selection pre-pass samples on rank 0 only and shares the
pass rates.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from align import trl_extensions as trl_ext
from align.distributed import main_only, world_size
from align.errors import StageError
from align.io import atomic_write_json
from align.models import chat_template_kwargs
from align.models.guards import check_prompts
from align.spec import SharedPromptMode, StageSpec, Strict
from align.stages.base import Stage, StageContext, StageResult
from align.training import fit, load_policy, save_policy, trainer_parts, trl_config
from rollouts import resolve_engine, vllm_colocate
from rollouts.scoring import sample_and_score
from rollouts.vllm_engine import prepare_process

TOKEN_NORMALISED_LOSSES = ("dapo", "cispo", "vespo")


class SelectPrompts(Strict):
    enabled: bool = Field(False, description="Drop prompts the model always or never solves.")
    source: Literal["auto", "rft", "prepass"] = Field(
        "auto", description="Pass rates from an earlier RFT stage ('auto' uses them when present) or a pre-pass."
    )
    samples: int = Field(4, ge=2, description="Pre-pass: answers sampled per prompt.")
    reward: str = Field("accuracy", description="Reward whose score ≥ threshold counts as a pass.")
    threshold: float = Field(1.0, description="Score that counts as solved.")
    max_prompts: int | None = Field(None, ge=1, description="Keep at most this many prompts after selection.")


class Config(StageSpec):
    type: Literal["grpo"] = "grpo"
    trl_config = "trl:GRPOConfig"
    select_prompts: SelectPrompts = Field(default_factory=SelectPrompts)
    filter_zero_variance: bool = Field(False, description="Drop zero-variance groups from the loss normaliser.")
    prompts: int | None = Field(None, ge=1, description="Use at most this many training prompts.")
    shared_prompt: SharedPromptMode = Field(
        "auto",
        description="Encode each prompt and its images once per group in the log-prob passes and transformers "
        "generation, the pre-pass's included (align/shared_prompt.py); auto falls back to TRL's path where "
        "unsupported, on stops instead.",
    )

    @model_validator(mode="after")
    def _check(self):
        loss = self.args.get("loss_type", "dapo")
        if self.filter_zero_variance and loss not in TOKEN_NORMALISED_LOSSES:
            raise ValueError(
                f"filter_zero_variance works with loss_type {', '.join(TOKEN_NORMALISED_LOSSES)} "
                f"(token-normalised losses), not '{loss}'"
            )
        return self


GRPO_DEFAULTS = {
    "num_generations": 8,
    "per_device_train_batch_size": 16,
    "max_completion_length": 48,
    "logging_steps": 5,
    "temperature": 1.0,
    "gradient_checkpointing": False,
}


def pass_rates_prepass(ctx, dataset, sel) -> dict[str, float]:
    """Sample ``sel.samples`` answers per prompt with the rollout engine and score them."""
    rows, _ = sample_and_score(ctx, dataset, n=sel.samples, temperature=1.0, max_new_tokens=_max_tokens(ctx))
    rates: dict[str, list[float]] = {}
    for r in rows:
        score = r["rewards"].get(sel.reward)
        rates.setdefault(r["id"], []).append(float(score is not None and score >= sel.threshold))
    return {k: sum(v) / len(v) for k, v in rates.items()}


def _max_tokens(ctx) -> int:
    return int(ctx.stage.args.get("max_completion_length", GRPO_DEFAULTS["max_completion_length"]))


def select_prompts(ctx: StageContext[Config], dataset) -> tuple[object, dict]:
    sel = ctx.stage.select_prompts
    info = {"prompts_before": len(dataset)}
    if not sel.enabled:
        return dataset, info
    measured = ctx.state.pass_rates if sel.source in ("auto", "rft") else None  # from an earlier RFT stage
    rates = measured.rates if measured is not None and measured.reward == sel.reward else None
    if sel.source == "rft" and rates is None:
        raise StageError("select_prompts.source is 'rft' but no earlier RFT stage recorded pass rates")
    origin = "rft"
    if rates is None or not any(i in rates for i in dataset["id"]):
        origin = "prepass"
        ctx.log(f"pre-pass: sampling {sel.samples} answers for each of {len(dataset)} prompts")
        rates = main_only(lambda: pass_rates_prepass(ctx, dataset, sel))  # one sampler; every rank gets its rates
    keep, dropped = [], {"never_solved": 0, "always_solved": 0, "unknown": 0}
    for i, pid in enumerate(dataset["id"]):
        rate = rates.get(pid)
        if rate is None:
            dropped["unknown"] += 1 if origin == "rft" else 0
            if origin == "prepass":
                keep.append(i)
            continue
        if rate <= 0.0:
            dropped["never_solved"] += 1
        elif rate >= 1.0:
            dropped["always_solved"] += 1
        else:
            keep.append(i)
    if sel.max_prompts is not None:
        keep = keep[: sel.max_prompts]
    info.update(pass_rates_from=origin, dropped=dropped, prompts_after=len(keep))
    reasons = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in dropped.items() if n) or "none"
    ctx.log(f"prompt selection ({origin}): kept {len(keep)} of {len(dataset)}; dropped {reasons}")
    if not keep:
        raise StageError(
            "prompt selection left no prompt with a pass rate strictly between 0 and 1",
            "train the model further first, or disable select_prompts",
        )
    return dataset.select(keep), info


def vllm_args(rollout, use_vllm: bool) -> dict:
    """GRPOConfig settings from the recipe's ``rollout:`` block (a stage's own ``args`` still win)."""
    if not use_vllm:
        return {"use_vllm": False}
    prepare_process()
    out = {"use_vllm": True, "vllm_mode": rollout.vllm_mode, "vllm_tensor_parallel_size": rollout.tensor_parallel_size,
           "vllm_server_host": rollout.server_host, "vllm_server_port": rollout.server_port,
           "vllm_server_timeout": rollout.server_timeout}  # fmt: skip
    if rollout.max_model_len:
        out["vllm_max_model_length"] = rollout.max_model_len
    if rollout.gpu_memory_utilization:
        out["vllm_gpu_memory_utilization"] = rollout.gpu_memory_utilization
    return out


def grpo_rows(dataset, is_vlm: bool):
    drop = [c for c in ("completion",) if c in dataset.column_names]
    dataset = dataset.remove_columns(drop)
    if not is_vlm and "images" in dataset.column_names:
        dataset = dataset.remove_columns("images")
    return dataset


def grpo_config(ctx: StageContext[Config], family):
    """TRL's GRPOConfig: the workbench's defaults, the recipe's rewards' weights and rollout engine, ``model.thinking``
    as the policy's ``family`` names it in its template (GRPO renders its own prompts), the stage's args."""
    from trl import GRPOConfig

    use_vllm = ctx.stage.args.get("use_vllm")
    if use_vllm is None:
        use_vllm = resolve_engine(ctx.recipe.rollout, ctx.input_model, ctx.recipe.model, ctx.log) == "vllm"
    defaults = {**GRPO_DEFAULTS, "reward_weights": [r.weight for r in ctx.rewards],
                **vllm_args(ctx.recipe.rollout, use_vllm)}  # fmt: skip
    if world_size() > 1:
        # TRL 1.16 gathers logged images only on ranks whose batch has images: a rank with a text-only batch (mixed
        # image/text data) skips that collective and the run hangs.
        defaults["log_multimodal"] = False
    switch = chat_template_kwargs(family, ctx.recipe.model)
    if switch:
        defaults["chat_template_kwargs"] = switch
    return trl_config(GRPOConfig, ctx, defaults)


def write_summary(ctx: StageContext[Config], trainer, extras: trl_ext.GRPOExtras, selection: dict) -> None:
    """``summary.json``: prompt selection, engine, filtered groups, reward errors, the shared-prompt path's record."""
    args, stats = trainer.args, extras.filter_stats
    summary = {**selection, "rollout_engine": f"vllm ({args.vllm_mode})" if args.use_vllm else "hf",
               "filter_zero_variance": extras.filter_zero_variance, **stats,
               "reward_errors": {r.name: r.stats() for r in ctx.rewards}, "steps": trainer.state.global_step,
               "shared_prompt": extras.shared_prompt.summary()}  # fmt: skip
    ctx.log(extras.shared_prompt.report())
    if trainer.accelerator.is_main_process:
        atomic_write_json(ctx.stage_dir / "summary.json", summary)
    if extras.filter_zero_variance:
        ctx.log(f"zero-variance groups filtered: {stats['filtered_groups']} of {stats['groups']}")


def run(ctx: StageContext[Config]) -> StageResult:
    stage, rewards = ctx.stage, ctx.rewards
    if not rewards:
        raise StageError("the grpo stage needs at least one reward", "add a `rewards:` list to the recipe")
    dataset, selection = select_prompts(ctx, ctx.train_rows(stage.prompts))
    policy = load_policy(ctx)
    args = grpo_config(ctx, policy.family)
    rows = grpo_rows(dataset, policy.is_vlm)
    check_prompts(policy.model, policy.processor, rows, args.max_completion_length, f"stage '{stage.name}'")
    extras = trl_ext.GRPOExtras(extra_image_keys=policy.family.image_inputs,
                                rollout_log=ctx.stage_dir / "rollouts.jsonl",
                                filter_zero_variance=stage.filter_zero_variance,
                                shared_prompt=trl_ext.SharedPrompt(stage.shared_prompt))  # fmt: skip
    engine = vllm_colocate.colocate_settings(ctx.recipe.rollout, str(policy.model.dtype).removeprefix("torch."))
    with trl_ext.grpo_trainer(extras, engine, reward_funcs=rewards, args=args, train_dataset=rows,
                              **trainer_parts(ctx, policy)) as trainer:  # fmt: skip
        ctx.log(extras.shared_prompt.describe())
        fit(ctx, trainer, policy, f"first prompts checked (image tokens, context); {len(dataset)} prompts × "
            f"{args.num_generations} completions; rewards " + ", ".join(f"{r.name}×{r.weight:g}" for r in rewards),
            rollout_log=extras.rollout_log)  # fmt: skip
    write_summary(ctx, trainer, extras, selection)
    return StageResult(model=str(save_policy(ctx, trainer, policy)))


def launch_rules(recipe, stage: Config, world: int) -> list[tuple[str, str]]:
    """Settings of this stage that fail or hang on ``world`` > 1 processes: (message, hint) pairs."""
    where, a, problems = f"stage '{stage.name}'", stage.args, []
    if a.get("log_multimodal"):
        message = (f"{where}: args.log_multimodal: true hangs TRL 1.16 on {world} processes when a rank's batch has "
                   "no image (it gathers images only on ranks that have them)")  # fmt: skip
        problems.append((message, "remove log_multimodal (the workbench turns it off on several processes)"))
    # TRL's rule: per-device batch × processes × steps per generation must hold whole groups of num_generations
    per_device = a.get("per_device_train_batch_size", GRPO_DEFAULTS["per_device_train_batch_size"])
    n_gen = a.get("num_generations", GRPO_DEFAULTS["num_generations"])
    if a.get("generation_batch_size"):
        batch, how = a["generation_batch_size"], "generation_batch_size"
    else:
        steps = a.get("steps_per_generation") or a.get("gradient_accumulation_steps", 1)
        batch = per_device * world * steps
        how = f"per_device_train_batch_size {per_device} × {world} process(es) × {steps} step(s) per generation"
    if batch % n_gen:
        message = f"{where}: the GRPO generation batch ({how} = {batch}) is not divisible by num_generations {n_gen}"
        problems.append((message, "change per_device_train_batch_size, num_generations or launch.processes"))
    return problems


STAGE = Stage(
    type="grpo",
    config=Config,
    run=run,
    launch_rules=launch_rules,
    rollout_server=True,
)
