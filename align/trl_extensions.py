"""Every place the workbench reaches into TRL 1.16 beyond its public API, in one module.

Each override says what TRL 1.16 lacks; ``tests/test_trl_canaries.py`` fails when TRL's behaviour under one of them
changes (run it first after a TRL upgrade). What TRL offers publicly is used as it is: reward functions, callbacks
(metrics, checkpoint markers), config fields (``reward_weights``, ``use_vllm``, ``log_multimodal``).

GRPO (``grpo_trainer_class``; its additions handed over at construction as one ``GRPOExtras``, built with the vLLM
set-up by ``grpo_trainer``), private methods of ``GRPOTrainer`` overridden:

* ``_get_per_token_logps_and_entropies``: (1) TRL forwards only the image inputs it knows by name (``pixel_values``,
  ``image_grid_thw``, ``image_sizes`` …). A family whose processor names them otherwise (``Family.image_inputs``:
  HyperCLOVAX-SEED-Vision's ``pixel_values_images`` & co) gets them here, or the policy would be scored without
  its images; (2) TRL runs each prompt G times: the shared-prompt path (``align/shared_prompt.py``) encodes it once
  per group, with TRL's own method as the fallback.
* ``_compute_loss``: keeps such inputs of the batch in hand for the method above.
* ``_generate_and_score_completions``: (1) TRL reads ``pixel_values`` whenever a batch has images (a KeyError for
  such families): the processor's output is aliased for the call; (2) zero-variance group filtering: the loss
  normaliser is recomputed over the informative groups; (3) every rollout is appended to ``rollouts.jsonl``
  (TRL keeps them only in ``self._logs`` for its own table) as the rows of ``rollouts/scoring.py``.
* ``_generate_single_turn``: transformers generation prefills each unique prompt once (``align/shared_prompt.py``)
  instead of the G copies TRL hands to ``generate``.
* ``_generate``: TRL marks the text-only rows of a mixed image/text batch with ``None`` images, which processors
  such as Idefics3's reject when the batch is re-encoded for the loss; an empty list means the same.

SFT (``own_loss_sft_trainer_class``): ``compute_loss`` (public) returns the model's own loss for families that
insert visual tokens inside ``forward`` (TRL 1.16 scores SFT with a fused LM head over hidden states that must line
up with ``input_ids``).

vLLM colocate (``vllm_engine_settings``, ``install_vllm_fixes``): TRL creates the ``vllm.LLM`` itself, with no way
to pass ``dtype`` or a CPU KV-cache size (the module global ``trl.generation.vllm_generation.LLM`` is wrapped while
the trainer is built), and syncs weights and sends prompts in ways vLLM's CPU build needs changed (instance methods
``sync_weights`` and ``generate`` of ``trainer.vllm_generation`` are wrapped; ``_iter_named_params`` is read). The
fixes themselves are in ``rollouts/vllm_colocate.py``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from align.io import append_jsonl
from rollouts import vllm_colocate
from rollouts.scoring import rollout_row, weighted_total
from rollouts.vllm_engine import on_cpu, shutdown_llm

# ------------------------------------------------------------------------------------------------------------ GRPO


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


@dataclass
class GRPOExtras:
    """What the workbench adds to TRL's ``GRPOTrainer``, handed to it at construction
    (``grpo_trainer_class()(..., extras=GRPOExtras(...))``); the counters fill while it trains."""

    extra_image_keys: tuple[str, ...] = ()  # Family.image_inputs: image inputs TRL does not forward by name
    rollout_log: Path | None = None  # rollouts.jsonl, appended with every training batch
    filter_zero_variance: bool = False  # zero-variance groups leave the loss normaliser (token-normalised losses)
    shared_prompt: SharedPrompt | None = None  # each prompt encoded once per group (None: TRL's path throughout)
    filter_stats: dict[str, int] = field(default_factory=lambda: {"groups": 0, "filtered_groups": 0})


@contextlib.contextmanager
def grpo_trainer(extras: GRPOExtras, engine_settings: dict, **kwargs):
    """The workbench's ``GRPOTrainer`` built from ``kwargs`` (TRL's arguments) and ``extras``. With vLLM: the fixes
    installed and, on leaving, the engine freed (the next stage's evaluation starts its own); colocated, TRL builds
    the engine with ``engine_settings`` and the RANK/WORLD_SIZE/MASTER_* it leaves behind are restored on leaving."""
    args = kwargs["args"]
    colocate = args.use_vllm and args.vllm_mode == "colocate"
    with contextlib.ExitStack() as stack:
        if colocate:
            stack.enter_context(colocate_dist_env())
        with vllm_engine_settings(**engine_settings) if colocate else contextlib.nullcontext():
            trainer = grpo_trainer_class()(extras=extras, **kwargs)
        if args.use_vllm:
            install_vllm_fixes(trainer)
            stack.callback(shutdown_vllm, trainer)
        yield trainer


@functools.cache
def grpo_trainer_class():
    """``GRPOTrainer`` with family image inputs, zero-variance filtering and rollout logging (see above)."""
    import torch
    from accelerate.utils import gather_object
    from trl import GRPOTrainer
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax

    class WorkbenchGRPOTrainer(GRPOTrainer):
        def __init__(self, *args, extras: GRPOExtras | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.extras = extras or GRPOExtras()
            self._extra_batch: dict | None = None  # set by _compute_loss for the passes inside it
            if self.extras.shared_prompt is not None:  # the checks that hold for the whole run
                self.extras.shared_prompt.setup(self, self.extras.extra_image_keys)

        def _extra_image_inputs(self, inputs) -> dict:
            images = [x.get("images") or [] for x in inputs]
            if not any(images):
                return {}
            texts = [apply_chat_template({"prompt": prepare_multimodal_messages(copy.deepcopy(x["prompt"]), images=im)},
                                         self.processing_class)["prompt"] for x, im in zip(inputs, images)]  # fmt: skip
            enc = self.processing_class(images=images, text=texts, padding=True, return_tensors="pt")
            return {k: enc[k].to(self.accelerator.device) for k in self.extras.extra_image_keys if k in enc}

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               **image_inputs):  # fmt: skip
            extra = {k: image_inputs.pop(k) for k in list(image_inputs) if k in self.extras.extra_image_keys}
            extra = extra or self._extra_batch or {}
            if extra:  # the family's own image inputs: its forward, scored like TRL's unfused path
                trl_path = functools.partial(self._own_inputs_logps, model, input_ids, attention_mask, logits_to_keep,
                                             batch_size, compute_entropy, extra)  # fmt: skip
            else:
                trl_path = functools.partial(super()._get_per_token_logps_and_entropies, model, input_ids,
                                             attention_mask, logits_to_keep, batch_size, compute_entropy,
                                             compute_aux_loss, **image_inputs)  # fmt: skip
            if self.extras.shared_prompt is not None:
                inputs = {**_without_alias(image_inputs, bool(extra)), **extra}
                out = self.extras.shared_prompt.logps(model, input_ids, attention_mask, logits_to_keep, batch_size,
                                                      compute_entropy, inputs, trl_path,
                                                      self.accelerator.autocast)  # fmt: skip
                if out is not None:
                    return out
            return trl_path()

        def _own_inputs_logps(self, model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy,
                              extra):  # fmt: skip
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
            self._extra_batch = {k: inputs[k] for k in self.extras.extra_image_keys if k in inputs}
            try:
                return super()._compute_loss(model, inputs)
            finally:
                self._extra_batch = None

        def _generate_single_turn(self, prompt_ids, images, *args, **kwargs):
            shared = self.extras.shared_prompt
            with shared.generation(self, images) if shared else contextlib.nullcontext():
                return super()._generate_single_turn(prompt_ids, images, *args, **kwargs)

        def _generate(self, prompts):
            out = list(super()._generate(prompts))
            images = out[6]
            if images is not None and any(im is None for im in images):
                out[6] = [[] if im is None else im for im in images]
            return tuple(out)

        def _generate_and_score_completions(self, inputs):
            if self.extras.extra_image_keys:
                real = self.processing_class
                self.processing_class = _PixelValuesAlias(real, self.extras.extra_image_keys[0])
                try:
                    output = super()._generate_and_score_completions(inputs)
                finally:
                    self.processing_class = real
                output.update(self._extra_image_inputs(inputs))  # kept with the batch for the loss step
            else:
                output = super()._generate_and_score_completions(inputs)
            mode = "train" if self.model.training else "eval"
            if self.extras.filter_zero_variance and mode == "train":
                self._filter_zero_variance(output, mode)
            if mode == "train" and self.extras.rollout_log is not None:
                self._log_rollouts(inputs, output["completion_mask"].sum(dim=1))
            return output

        def _filter_zero_variance(self, output, mode: str) -> None:
            informative = output["advantages"].abs() > 1e-8
            tokens = (output["completion_mask"] * informative[:, None]).sum()
            total = self.accelerator.gather(tokens.reshape(1)).sum()
            output["num_items_in_batch"] = total.clamp(min=1).to(output["num_items_in_batch"].dtype)
            rows = self.accelerator.gather(informative.float().reshape(-1))
            n_gen = self.num_generations
            self.extras.filter_stats["groups"] += rows.numel() // n_gen
            self.extras.filter_stats["filtered_groups"] += (
                int((rows.view(-1, n_gen).sum(1) == 0).sum().item()) if rows.numel() % n_gen == 0 else 0
            )
            self._metrics[mode]["filter/informative_frac"].append(rows.mean().item())

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
                scores = {name: (None if v[i] != v[i] else v[i]) for name, v in per_reward.items()}  # NaN: n/a
                text = completions[i]
                if isinstance(text, list):
                    text = "".join(m.get("content", "") if isinstance(m.get("content"), str) else "" for m in text)
                rows.append(rollout_row(step=self.state.global_step, prompt_id=ids[i], task=tasks[i], completion=text,
                                        tokens=int(toks[i]), rewards=scores, total=weighted_total(scores, weights),
                                        advantage=advantages[i]))  # fmt: skip
            append_jsonl(self.extras.rollout_log, rows)

    return WorkbenchGRPOTrainer


# ------------------------------------------------------------------------------------------- GRPO: shared prompts


def _without_alias(image_inputs: dict, own_inputs: bool) -> dict:
    """The image inputs for the shared path: with the family's own image inputs present, TRL's ``pixel_values`` is
    only their alias (``_PixelValuesAlias``) and is left out."""
    return {k: v for k, v in image_inputs.items() if not (own_inputs and k == "pixel_values")}


class SharedPrompt:
    """``shared_prompt: auto | on | off`` for one GRPO trainer: which path each log-prob pass and each transformers
    generation (``prefill``, the generators' common fallback) took, and why the shared path was not taken."""

    def __init__(self, mode: str = "auto", tolerance: float | None = None):
        from align import shared_prompt as sp

        self.prefill = sp.SharedPrefill(mode)  # transformers generation (checks the mode)
        self.mode = mode
        self.reason: str | None = "shared_prompt: off" if mode == "off" else None  # off for the whole run
        self.tolerance = tolerance
        self.checked = False
        self.counts: Counter = Counter()
        self.fallbacks: Counter = Counter()  # reason -> passes that went TRL's way
        self.extra_image_keys: tuple[str, ...] = ()  # the family's own image inputs (setup)

    # -- setup
    def disable(self, reason: str) -> None:
        from align import shared_prompt as sp

        if self.mode == "on":
            raise sp.refused(reason)
        self.reason = self.reason or reason

    def setup(self, trainer, extra_image_keys=()) -> str:
        """Checks that hold for the whole run; returns the stage-log line."""
        from align import shared_prompt as sp

        args = trainer.args
        self.extra_image_keys = tuple(extra_image_keys)
        if self.reason is None:
            if getattr(trainer, "aux_loss_enabled", False):
                self.disable("the MoE load-balancing loss needs the router logits of the whole sequence")
            elif getattr(trainer, "tools", None) or getattr(trainer, "environment_factories", None):
                self.disable("tool calls put tool output (and images) inside completions")
            elif self.mode == "auto" and (dropout := sp.active_dropout(trainer.model)):
                self.disable(f"dropout is on ({dropout}): TRL's path draws a mask per completion, the shared path "
                             "one per prompt; set args.disable_dropout: true (or lora.dropout: 0) to share prompts, "
                             "or shared_prompt: on to share with one mask per prompt")  # fmt: skip
            elif getattr(args, "gradient_checkpointing", False) and \
                    (args.gradient_checkpointing_kwargs or {}).get("use_reentrant"):  # fmt: skip
                self.disable("reentrant gradient checkpointing passes no gradient to the prompt cache")
        return self.describe()

    def describe(self) -> str:
        if self.reason:
            return f"shared-prompt path off: {self.reason}; TRL's path (each prompt encoded per completion)"
        return (f"shared-prompt path {self.mode}: each unique prompt and its images encoded once per group "
                "(log-prob passes and transformers generation), checked against TRL's path on the first batch")  # fmt: skip

    # -- log-prob passes
    def logps(self, model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, inputs,
              trl_path, autocast=contextlib.nullcontext):  # fmt: skip
        """Shared-prompt result of a log-prob pass, or None (then the caller takes TRL's path, ``trl_path()``)."""
        from align import shared_prompt as sp

        if self.reason:
            self.counts["trl"] += 1
            return None
        inputs = {k: v for k, v in inputs.items() if v is not None}
        num_images = inputs.pop("num_images", None)
        try:
            if inputs.pop("num_tiles", None) is not None:
                raise sp.Unsupported("tile-indexed images (num_tiles)")
            if not self.checked:
                self._self_check(model, input_ids, attention_mask, logits_to_keep, compute_entropy, inputs,
                                 num_images, trl_path, autocast)  # fmt: skip
                if self.reason:
                    self.counts["trl"] += 1
                    return None
            out = self._chunks(model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy,
                               inputs, num_images, autocast)  # fmt: skip
        except sp.Unsupported as e:
            if not e.batch:
                self.disable(str(e))
            return self._fallback(str(e))
        if out is None:
            return self._fallback("no prompt repeats in the batch")
        self.counts["shared"] += 1
        return out

    def _fallback(self, reason: str):
        self.fallbacks[reason] += 1
        self.counts["trl"] += 1

    def _chunks(self, model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, inputs,
                num_images, autocast):  # fmt: skip
        import torch

        from align import shared_prompt as sp

        n = input_ids.size(0)
        batch_size = batch_size or n
        rows = sp.split_rows(inputs, num_images, n)
        logps, entropies = [], []
        for start in range(0, n, batch_size):
            end = min(start + batch_size, n)
            chunk_rows = rows[start:end]
            chunk_inputs = sp.merge_rows(chunk_rows)
            with autocast():
                out = sp.through_ddp(model, functools.partial(
                    sp.shared_logps, input_ids=input_ids[start:end], attention_mask=attention_mask[start:end],
                    logits_to_keep=logits_to_keep, compute_entropy=compute_entropy, inputs=chunk_inputs,
                    rows=chunk_rows))  # fmt: skip
            if out is None:
                return None
            logps.append(out[0])
            entropies.append(out[1])
            self.counts["prompts_encoded"] += out[2]
            self.counts["prompts_trl_would_encode"] += end - start
        return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

    def _self_check(self, model, input_ids, attention_mask, logits_to_keep, compute_entropy, inputs, num_images,
                    trl_path, autocast):  # fmt: skip
        """Once per run: the shared path's log-probs against TRL's on the first batch (no gradients, no dropout:
        with dropout the shared path draws one mask for a prompt where TRL draws G)."""
        import torch

        from align import shared_prompt as sp

        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                mine = self._chunks(model, input_ids, attention_mask, logits_to_keep, None, False, inputs, num_images,
                                    autocast)  # fmt: skip
                if mine is None:
                    return  # nothing shared in this batch: check the next one
                ref = trl_path()[0]
        except sp.Unsupported:
            raise
        except Exception as e:  # noqa: BLE001 - auto mode takes TRL's path after any failure of the first batch
            self.disable(f"the shared path failed on the first batch: {type(e).__name__}: {e}")
            return
        finally:
            model.train(training)
        self.counts["prompts_encoded"] = self.counts["prompts_trl_would_encode"] = 0
        self.checked = True
        mask = attention_mask[:, -logits_to_keep:].bool()
        diff = (mine[0] - ref).abs()[mask].max().item() if mask.any() else 0.0
        tolerance = self.tolerance or (1e-4 if ref.dtype == torch.float32 else 5e-2)
        self.max_check_diff = diff
        if not diff <= tolerance:
            self.disable(f"the first batch's log-probs differ from TRL's by {diff:.2e} (> {tolerance:g})")

    # -- transformers generation
    def generation(self, trainer, images):
        """Context for TRL's transformers ``generate`` call: prefill each unique prompt once, decode its G samples."""
        if self.reason or trainer.use_vllm or getattr(trainer, "use_transformers_continuous_batching", False):
            return contextlib.nullcontext()
        model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
        num_images = [len(x) if x else 0 for x in images] if images is not None else None
        original = model.generate

        def generate(input_ids=None, attention_mask=None, generation_config=None, **image_inputs):
            own = any(k in image_inputs for k in self.extra_image_keys)
            out = self.prefill.generate(model, original, input_ids, attention_mask,
                                        _without_alias(image_inputs, own), num_images,
                                        generation_config=generation_config)  # fmt: skip
            if out is None:
                return original(input_ids=input_ids, attention_mask=attention_mask,
                                generation_config=generation_config, **image_inputs)  # fmt: skip
            return out

        return _patched(model, "generate", generate)

    def all_fallbacks(self) -> dict[str, int]:
        """Reason -> log-prob passes and generations that went TRL's way."""
        return {**self.fallbacks, **{f"generation: {k}": v for k, v in self.prefill.fallbacks.items()}}

    def report(self) -> str:
        """The stage-log line after training: which path ran, and why not the shared one."""
        s, fallbacks = self.summary(), self.all_fallbacks()
        if s["path"] == "trl":
            why = self.reason or "; ".join(f"{k} ({v}×)" for k, v in fallbacks.items()) or "no shared batch"
            return f"shared-prompt path not used: {why}"
        line = (f"shared-prompt path: {s['log_prob_passes']['shared']} log-prob passes encoded "
                f"{s['prompts_encoded']} prompts instead of {s['prompts_trl_would_encode']}; "
                f"{s['generations']['shared']} transformers generations prefilled each prompt once")  # fmt: skip
        if fallbacks:
            line += "; TRL's path for " + "; ".join(f"{k} ({v}×)" for k, v in fallbacks.items())
        return line

    def summary(self) -> dict:
        path = "trl" if self.reason or not self.counts["shared"] else "shared"
        generations = self.prefill.counts
        out = {"mode": self.mode, "path": path, "reason": self.reason,
               "log_prob_passes": {"shared": self.counts["shared"], "trl": self.counts["trl"]},
               "generations": {"shared": generations["shared"], "trl": generations["plain"]},
               "prompts_encoded": self.counts["prompts_encoded"],
               "prompts_trl_would_encode": self.counts["prompts_trl_would_encode"]}  # fmt: skip
        if self.mode != "off" and self.prefill.reason:  # transformers generation off the shared path
            out["generation_reason"] = self.prefill.reason
        if self.all_fallbacks():
            out["fallbacks"] = self.all_fallbacks()
        if hasattr(self, "max_check_diff"):
            out["first_batch_max_logp_diff"] = self.max_check_diff
        return out


@contextlib.contextmanager
def _patched(obj, name, value):
    had = name in obj.__dict__
    saved = obj.__dict__.get(name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had:
            setattr(obj, name, saved)
        else:
            delattr(obj, name)


# ------------------------------------------------------------------------------------------------------------- SFT


@functools.cache
def own_loss_sft_trainer_class():
    """``SFTTrainer`` whose loss is the model's own (for ``Family.sft_adapter`` families)."""
    from trl import SFTTrainer

    class OwnLossSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(**inputs)
            return (outputs.loss, outputs) if return_outputs else outputs.loss

    return OwnLossSFTTrainer


# ----------------------------------------------------------------------------------------------- vLLM colocate


@contextlib.contextmanager
def vllm_engine_settings(**overrides):
    """Add settings (``dtype``, a CPU KV-cache size) to the ``vllm.LLM(...)`` call TRL makes while building the
    trainer."""
    import trl.generation.vllm_generation as vg

    original = vg.LLM

    def make_llm(*args, **kwargs):
        return original(*args, **{**kwargs, **overrides})

    vg.LLM = make_llm
    try:
        yield
    finally:
        vg.LLM = original


DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextlib.contextmanager
def colocate_dist_env():
    """Around building a colocate-mode trainer. TRL writes RANK/WORLD_SIZE/MASTER_* into ``os.environ`` for vLLM;
    left behind in a single-process run they make the next stage's accelerate state believe it is distributed, so
    they are restored afterwards. Outside a distributed launch the rendezvous port is one the OS hands out: TRL
    tries 29500 first, and another job on the machine (torchrun's default) can take it between TRL's check and
    vLLM's bind."""
    saved = {k: os.environ.get(k) for k in DIST_ENV}
    if "WORLD_SIZE" not in os.environ and not os.environ.get("MASTER_PORT"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def install_vllm_fixes(trainer, fixes: vllm_colocate.Fixes | None = None) -> None:
    """Apply the vLLM fixes to a ``GRPOTrainer`` built with ``use_vllm=True`` (call right after construction)."""
    fixes = fixes or vllm_colocate.Fixes()
    gen = trainer.vllm_generation
    gen.workbench_fixes = fixes
    processor = trainer.processing_class
    if fixes.ban_image_tokens:
        from rollouts.hf import image_token_ids  # loads torch: not on the light import path

        banned = image_token_ids(trainer.model.config, processor)
        if banned:
            gen.generation_kwargs = {**gen.generation_kwargs, "logit_bias": {t: -100.0 for t in banned}}
    if gen.mode != "colocate":
        return
    trl_sync = gen.sync_weights

    def sync_weights():
        if on_cpu():
            vllm_colocate.sync_weights_cpu(gen.llm, gen._iter_named_params(), gen.workbench_fixes)
            gen.llm.reset_prefix_cache()
        else:
            trl_sync()
        if gen.workbench_fixes.reset_encoder_cache:
            gen.llm.llm_engine.reset_encoder_cache()

    gen.sync_weights = sync_weights
    if hasattr(processor, "image_token") and hasattr(processor, "tokenizer"):
        collapse = vllm_colocate.PlaceholderCollapser(processor)
        trl_generate = gen.generate

        def generate(prompts, images, num_generations, profiler=None):
            if images is not None and gen.workbench_fixes.collapse_placeholders:
                prompts = [collapse(ids, imgs) if imgs else ids for ids, imgs in zip(prompts, images)]
            return trl_generate(prompts, images, num_generations, profiler)

        gen.generate = generate


def shutdown_vllm(trainer) -> None:
    """Free the colocated engine (the next stage's evaluation starts its own)."""
    gen = getattr(trainer, "vllm_generation", None)
    if gen is not None and getattr(gen, "llm", None) is not None:
        shutdown_llm(gen.llm)
        gen.llm = None
