"""Every place the workbench reaches into TRL 1.16 beyond its public API, in one module.

Each override says what TRL 1.16 lacks; ``tests/test_trl_canaries.py`` fails when TRL's behaviour under one of them
changes (run it first after a TRL upgrade). What TRL offers publicly is used as it is: reward functions, callbacks
(metrics, checkpoint markers), config fields (``reward_weights``, ``use_vllm``, ``log_multimodal``).

GRPO (``grpo_trainer_class``), private methods of ``GRPOTrainer`` overridden:

* ``_get_per_token_logps_and_entropies``: (1) TRL forwards only the image inputs it knows by name (``pixel_values``,
  ``image_grid_thw``, ``image_sizes`` …). A family whose processor names them otherwise (``Family.image_inputs``:
  HyperCLOVAX-SEED-Vision's ``pixel_values_images`` & co) gets them here, or the policy would be scored without
  its images; (2) TRL runs each prompt G times: the shared-prompt path (``align/shared_prompt.py``) encodes it once
  per group, with TRL's own method as the fallback.
* ``_compute_loss``: keeps such inputs of the batch in hand for the method above.
* ``_generate_and_score_completions``: (1) TRL reads ``pixel_values`` whenever a batch has images (a KeyError for
  such families): the processor's output is aliased for the call; (2) zero-variance group filtering: the loss
  normaliser is recomputed over the informative groups; (3) every rollout is appended to ``rollouts.jsonl``
  (TRL keeps them only in ``self._logs`` for its own table).
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
from pathlib import Path

from align.io import append_jsonl
from align.shared_prompt import SharedPrompt
from rollouts import vllm_colocate
from rollouts.hf import image_token_ids
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


@functools.cache
def grpo_trainer_class():
    """``GRPOTrainer`` with family image inputs, zero-variance filtering and rollout logging (see above)."""
    import torch
    from accelerate.utils import gather_object
    from trl import GRPOTrainer
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax

    class WorkbenchGRPOTrainer(GRPOTrainer):
        rollout_log: Path | None = None
        filter_zero_variance: bool = False
        filter_stats = None
        extra_image_keys: tuple[str, ...] = ()  # Family.image_inputs
        _extra_batch: dict | None = None  # set by _compute_loss for the passes inside it
        shared_prompt: SharedPrompt | None = None  # each prompt encoded once per group

        def _extra_image_inputs(self, inputs) -> dict:
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
            extra = extra or self._extra_batch or {}
            trl_path = functools.partial(super()._get_per_token_logps_and_entropies, model, input_ids, attention_mask,
                                         logits_to_keep, batch_size, compute_entropy, compute_aux_loss, **image_inputs)  # fmt: skip
            if not extra and self.shared_prompt is not None:
                out = self.shared_prompt.logps(model, input_ids, attention_mask, logits_to_keep, batch_size,
                                               compute_entropy, image_inputs, trl_path, self.accelerator.autocast)  # fmt: skip
                if out is not None:
                    return out
            if not extra:
                return trl_path()
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
                self._extra_batch = None

        def _generate_single_turn(self, prompt_ids, images, *args, **kwargs):
            with self.shared_prompt.generation(self, images) if self.shared_prompt else contextlib.nullcontext():
                return super()._generate_single_turn(prompt_ids, images, *args, **kwargs)

        def _generate(self, prompts):
            out = list(super()._generate(prompts))
            images = out[6]
            if images is not None and any(im is None for im in images):
                out[6] = [[] if im is None else im for im in images]
            return tuple(out)

        def _generate_and_score_completions(self, inputs):
            if self.extra_image_keys:
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
            if self.filter_zero_variance and mode == "train":
                self._filter_zero_variance(output, mode)
            if mode == "train" and self.rollout_log is not None:
                self._log_rollouts(inputs, output["completion_mask"].sum(dim=1))
            return output

        def _filter_zero_variance(self, output, mode: str) -> None:
            informative = output["advantages"].abs() > 1e-8
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

    return WorkbenchGRPOTrainer


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
