"""GRPO stage on TRL's ``GRPOTrainer``, with the recipe's rewards and weights.

Everything TRL offers is reachable under ``args:`` (``loss_type``, ``beta``, ``num_generations``, ``epsilon`` /
``epsilon_high``, ``importance_sampling_level: sequence`` for GSPO, ``scale_rewards``, ``mask_truncated_completions``,
``use_vllm`` …). What this stage adds:

* every rollout batch appended to ``rollouts.jsonl`` (step, prompt id, task, completion, token count, each reward,
  weighted total, advantage), readable while training runs;
* prompt selection by difficulty (``select_prompts``): prompts whose pass rate is 0 or 1 give every completion the
  same reward, hence zero advantage; they are dropped before training. Pass rates come from an earlier RFT stage
  of the same run, or from a pre-pass that samples ``samples`` answers per prompt;
* dynamic filtering of zero-variance groups (``filter_zero_variance``): TRL cannot re-sample inside a step, but
  for token-normalised losses (dapo, cispo, vespo) the loss normaliser is recomputed over the informative groups
  only, so groups whose completions all scored the same no longer dilute the update (DAPO's dynamic sampling
  without the re-sampling). With ``beta > 0`` their KL term still applies.
Dropped prompts and filtered groups are counted in ``summary.json``.

Runs on every rank of a multi-process launch; the prompt-selection pre-pass samples on rank 0 only and shares the
pass rates, and ``align.distributed.finish_training`` checks that the ranks trained one model and saves it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from align.io import append_jsonl, atomic_write_json
from align.recipe import StageSpec, Strict

TOKEN_NORMALISED_LOSSES = ("dapo", "cispo", "vespo")
DISTRIBUTED = True  # runs under accelerate launch with several processes


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
    from align.stages.rft import sample_and_score

    rows = sample_and_score(ctx, dataset, n=sel.samples, temperature=1.0, max_new_tokens=_max_tokens(ctx))
    rates: dict[str, list[float]] = {}
    for r in rows:
        score = r["rewards"].get(sel.reward)
        rates.setdefault(r["id"], []).append(float(score is not None and score >= sel.threshold))
    return {k: sum(v) / len(v) for k, v in rates.items()}


def _max_tokens(ctx) -> int:
    return int(ctx.stage.args.get("max_completion_length", GRPO_DEFAULTS["max_completion_length"]))


def _rates_from_run(ctx) -> dict | None:
    """Pass rates an earlier RFT stage of this run wrote (when the run was resumed after it)."""
    import json

    for stage in ctx.recipe.stages:
        if stage.name == ctx.stage.name:
            break
        path = ctx.run.path / stage.name / "pass_rates.json"
        if stage.type == "rft" and path.exists():
            ctx.state["pass_rates_reward"] = stage.accept.reward
            return json.loads(path.read_text())
    return None


def select_prompts(ctx, dataset) -> tuple[object, dict]:
    from align.distributed import main_only

    sel = ctx.stage.select_prompts
    info = {"prompts_before": len(dataset)}
    if not sel.enabled:
        return dataset, info
    rates = ctx.state.get("pass_rates") if sel.source in ("auto", "rft") else None
    if rates is None and sel.source in ("auto", "rft"):
        rates = _rates_from_run(ctx)
    if rates is not None and sel.reward != ctx.state.get("pass_rates_reward", sel.reward):
        rates = None
    if sel.source == "rft" and rates is None:
        from align.errors import StageError

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
    ctx.log(f"prompt selection ({origin}): kept {len(keep)} of {len(dataset)}; dropped {dropped}")
    if not keep:
        from align.errors import StageError

        raise StageError(
            "prompt selection left no prompt with a pass rate strictly between 0 and 1",
            "train the model further first, or disable select_prompts",
        )
    return dataset.select(keep), info


class _PixelValuesAlias:
    """A processor whose outputs also carry ``pixel_values`` (= its own image tensor under another name)."""

    def __init__(self, processor, key: str):
        self._processor, self._key = processor, key

    def __getattr__(self, name):
        return getattr(self._processor, name)

    def __call__(self, *args, **kwargs):
        out = self._processor(*args, **kwargs)
        if "pixel_values" not in out and self._key in out:
            out["pixel_values"] = out[self._key]
        return out


def make_trainer_class():
    """GRPOTrainer with rollout logging and zero-variance filtering."""
    import torch
    from accelerate.utils import gather_object
    from trl import GRPOTrainer

    class WorkbenchGRPOTrainer(GRPOTrainer):
        rollout_log: Path | None = None
        filter_zero_variance: bool = False
        filter_stats = None
        # Processor outputs the model takes that TRL does not forward to the policy (it passes pixel_values,
        # image_grid_thw, image_sizes … by name): HyperCLOVAX-SEED-Vision's pixel_values_images & co. Without this the
        # policy's log-probs would be computed without the images.
        extra_image_keys: tuple[str, ...] = ()
        _extra_batch: dict = {}

        def _extra_image_inputs(self, inputs) -> dict:
            import copy

            from trl.data_utils import apply_chat_template, prepare_multimodal_messages

            images = [x.get("images") or [] for x in inputs]
            if not any(images):
                return {}
            texts = [apply_chat_template({"prompt": prepare_multimodal_messages(copy.deepcopy(x["prompt"]), images=im)},
                                         self.processing_class)["prompt"] for x, im in zip(inputs, images)]  # fmt: skip
            enc = self.processing_class(images=images, text=texts, padding=True, return_tensors="pt")
            return {k: enc[k].to(self.accelerator.device) for k in self.extra_image_keys if k in enc}

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               **image_inputs):  # fmt: skip
            extra = {k: image_inputs.pop(k) for k in list(image_inputs) if k in self.extra_image_keys}
            extra = extra or self._extra_batch
            if not extra:
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss,
                    **image_inputs)  # fmt: skip
            from trl.trainer.utils import entropy_from_logits, selective_log_softmax

            # the model's own forward with its image inputs, scored like TRL's unfused path
            batch_size = batch_size or input_ids.size(0)
            logps, entropies = [], []
            for start in range(0, input_ids.size(0), batch_size):
                end = min(start + batch_size, input_ids.size(0))
                with self.accelerator.autocast():
                    logits = model(input_ids=input_ids[start:end], attention_mask=attention_mask[start:end],
                                   logits_to_keep=logits_to_keep + 1,
                                   **{k: v[start:end] for k, v in extra.items()}).logits  # fmt: skip
                logits = logits[:, :-1, :] / self.temperature
                logps.append(selective_log_softmax(logits, input_ids[start:end, -logits_to_keep:]))
                if compute_entropy:
                    entropies.append(entropy_from_logits(logits))
            return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

        def _compute_loss(self, model, inputs):
            self._extra_batch = {k: inputs[k] for k in self.extra_image_keys if k in inputs}
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self._extra_batch = {}

        def _generate(self, prompts):
            # TRL marks the text-only prompts of a mixed image/text batch with None, which processors such as
            # Idefics3's reject when the batch is re-encoded for the loss; an empty image list means the same.
            out = list(super()._generate(prompts))
            images = out[6]
            if images is not None and any(im is None for im in images):
                out[6] = [[] if im is None else im for im in images]
            return tuple(out)

        def _generate_and_score_completions(self, inputs):
            if self.extra_image_keys:
                # TRL reads `pixel_values` from the processor's output whenever a batch has images: alias it for
                # the duration of this call (the model never receives it: see _get_per_token_logps_and_entropies)
                real = self.processing_class
                self.processing_class = _PixelValuesAlias(real, self.extra_image_keys[0])
                try:
                    output = super()._generate_and_score_completions(inputs)
                finally:
                    self.processing_class = real
                output.update(self._extra_image_inputs(inputs))  # kept with the batch for the loss step
            else:
                output = super()._generate_and_score_completions(inputs)
            mode = "train" if self.model.training else "eval"
            advantages = output["advantages"]
            informative = advantages.abs() > 1e-8
            lengths = output["completion_mask"].sum(dim=1)
            if self.filter_zero_variance and mode == "train":
                tokens = (output["completion_mask"] * informative[:, None]).sum()
                total = self.accelerator.gather(tokens.reshape(1)).sum()
                output["num_items_in_batch"] = total.clamp(min=1).to(output["num_items_in_batch"].dtype)
                rows = self.accelerator.gather(informative.float().reshape(-1))
                n_gen = self.num_generations
                self.filter_stats["groups"] += rows.numel() // n_gen
                self.filter_stats["filtered_groups"] += (
                    int((rows.view(-1, n_gen).sum(1) == 0).sum().item()) if rows.numel() % n_gen == 0 else 0
                )
                self._metrics[mode]["filter/informative_frac"].append(rows.mean().item())
            if mode == "train" and self.rollout_log is not None:
                self._log_rollouts(inputs, lengths)
            return output

        def _log_rollouts(self, inputs, lengths):
            ids = gather_object([x.get("id") for x in inputs])
            tasks = gather_object([x.get("task") for x in inputs])
            toks = gather_object(lengths.tolist())
            n = len(ids)
            if not self.accelerator.is_main_process:
                return
            completions = list(self._logs["completion"])[-n:]
            advantages = list(self._logs["advantages"])[-n:]
            per_reward = {name: list(vals)[-n:] for name, vals in self._logs["rewards"].items()}
            weights = self.reward_weights.tolist()
            rows = []
            for i in range(n):
                scores = {name: (None if v[i] != v[i] else v[i]) for name, v in per_reward.items()}
                total = sum(w * s for w, s in zip(weights, scores.values()) if s is not None)
                text = completions[i]
                if isinstance(text, list):
                    text = "".join(m.get("content", "") if isinstance(m.get("content"), str) else "" for m in text)
                rows.append({"step": self.state.global_step, "prompt_id": ids[i], "task": tasks[i],
                             "completion": text, "tokens": int(toks[i]), "rewards": scores,
                             "total": total, "advantage": advantages[i]})  # fmt: skip
            append_jsonl(self.rollout_log, rows)

    return WorkbenchGRPOTrainer, torch


def vllm_args(rollout, use_vllm: bool) -> dict:
    """GRPOConfig settings from the recipe's ``rollout:`` block (a stage's own ``args`` still win)."""
    if not use_vllm:
        return {"use_vllm": False}
    from rollouts.vllm_engine import prepare_process

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


def run(ctx) -> Path:
    from trl import GRPOConfig

    from align.distributed import world_size
    from align.models import freeze_modules, is_vision_config, load_model_and_processor
    from align.models.guards import check_prompts
    from align.training import lora_config, metrics_callback, stage_freeze, stage_lora, trl_config
    from rollouts import resolve_engine, vllm_colocate

    stage = ctx.stage
    dataset = ctx.train_rows(stage.prompts)
    dataset, selection = select_prompts(ctx, dataset)

    spec = ctx.recipe.model
    model, processor, family = load_model_and_processor(ctx.input_model, spec, "float32" if not ctx.on_gpu else None)
    is_vlm = is_vision_config(model.config)
    frozen = freeze_modules(model, stage_freeze(ctx))
    rewards = ctx.rewards
    if not rewards:
        from align.errors import StageError

        raise StageError("the grpo stage needs at least one reward", "add a `rewards:` list to the recipe")
    use_vllm = stage.args.get("use_vllm")
    if use_vllm is None:
        use_vllm = resolve_engine(ctx.recipe.rollout, ctx.input_model, spec, ctx.log) == "vllm"
    defaults = {
        **GRPO_DEFAULTS,
        "reward_weights": [r.weight for r in rewards],
        **vllm_args(ctx.recipe.rollout, use_vllm),
    }
    if world_size() > 1:
        # TRL 1.16 gathers logged images only on ranks whose batch has images: a rank with a text-only batch (mixed
        # image/text data) skips that collective and the run hangs.
        defaults["log_multimodal"] = False
    args = trl_config(GRPOConfig, ctx, defaults)
    train_rows = grpo_rows(dataset, is_vlm)
    check_prompts(model, processor, train_rows, args.max_completion_length, f"stage '{stage.name}'")
    ctx.log(f"{family.name} model; first prompts checked (image tokens, context)")
    trainer_cls, _ = make_trainer_class()
    colocate = args.use_vllm and args.vllm_mode == "colocate"
    with vllm_colocate.restore_dist_env() if colocate else contextlib.nullcontext():
        dtype = str(model.dtype).removeprefix("torch.")
        with vllm_colocate.engine_settings(**vllm_colocate.colocate_settings(ctx.recipe.rollout, dtype)) \
                if colocate else contextlib.nullcontext():  # fmt: skip
            trainer = trainer_cls(
                model=model,
                reward_funcs=rewards,
                args=args,
                train_dataset=train_rows,
                processing_class=processor,
                peft_config=lora_config(stage_lora(ctx), stage_freeze(ctx)),
                callbacks=[metrics_callback(ctx.stage_dir / "metrics.jsonl", stage.name)],
            )
        trainer.extra_image_keys = family.image_inputs
        if args.use_vllm:
            vllm_colocate.install(trainer)
        return _train(ctx, trainer, args, len(dataset), selection, frozen)


def _train(ctx, trainer, args, n_prompts: int, selection: dict, frozen) -> Path:
    from align.distributed import finish_training
    from align.resume import run_trainer
    from align.training import count_params
    from rollouts import vllm_colocate

    stage, rewards, processor = ctx.stage, ctx.rewards, trainer.processing_class
    trainer.rollout_log = ctx.stage_dir / "rollouts.jsonl"
    trainer.filter_zero_variance = stage.filter_zero_variance
    trainer.filter_stats = {"groups": 0, "filtered_groups": 0}
    params = count_params(trainer.model)
    ctx.log(
        f"{n_prompts} prompts × {args.num_generations} completions; rewards "
        + ", ".join(f"{r.name}×{r.weight:g}" for r in rewards)
        + f"; parameters {params['trainable']:,} trainable"
        + (f"; frozen: {', '.join(frozen)}" if frozen else "")
    )
    try:
        run_trainer(ctx, trainer, rollout_log=trainer.rollout_log)  # resumes from a checkpoint in a resumed run
    finally:
        if args.use_vllm:
            vllm_colocate.shutdown(trainer)
    summary = {**selection, "rollout_engine": f"vllm ({args.vllm_mode})" if args.use_vllm else "hf",
               "filter_zero_variance": stage.filter_zero_variance, **trainer.filter_stats,
               "reward_errors": {r.name: r.stats() for r in rewards}, "steps": trainer.state.global_step}  # fmt: skip
    if trainer.accelerator.is_main_process:
        atomic_write_json(ctx.stage_dir / "summary.json", summary)
    if stage.filter_zero_variance:
        ctx.log(f"zero-variance groups filtered: {trainer.filter_stats['filtered_groups']} of "
                f"{trainer.filter_stats['groups']}")  # fmt: skip
    return finish_training(ctx, trainer, processor, ctx.stage_dir / "model")
