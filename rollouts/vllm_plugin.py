"""The workbench's vLLM plugin: architectures vLLM does not serve itself, registered as out-of-tree models.

vLLM calls ``register()`` in every process it starts (entry point ``vllm.general_plugins`` in pyproject.toml), so
``rollout.engine: vllm`` and GRPO colocate see these architectures without any other set-up. One line per
architecture in ``ARCHITECTURES``: the ``architectures`` name in config.json → ``module:class`` of the vLLM model,
imported only when a checkpoint of that architecture is loaded. ``NATIVE_CONFIGS`` names the modules that register
the matching transformers config/processor classes (vLLM reads the config through transformers' Auto classes).
HyperCLOVAX-SEED-Vision's processor is loaded by vLLM through ``HCXVisionProcessor.from_pretrained``, which reads a
published folder's processor files (remote-code class names and ``auto_map``) natively: no remote code is run and vLLM
never asks whether to run it (``align/models/hcx_vision/published.py``).
"""

from __future__ import annotations

import importlib

ARCHITECTURES = {
    # HyperCLOVAX-SEED-Vision-Instruct-3B (vLLM's own module was removed in 0.28)
    "HCXVisionForCausalLM": "align.models.hcx_vision.vllm_model:HCXVisionForCausalLM",
    # the AIKU-style composed VLM (`align model compose --projector aiku`)
    "AikuVLMForConditionalGeneration": "align.models.aiku_vlm.vllm_model:AikuVLMForConditionalGeneration",
}
NATIVE_CONFIGS = ("align.models.hcx_vision", "align.models.aiku_vlm")


def register() -> None:
    """Called by vLLM (possibly several times, in several processes): idempotent."""
    from vllm import ModelRegistry

    for module in NATIVE_CONFIGS:
        importlib.import_module(module)
    for arch, target in ARCHITECTURES.items():
        if ModelRegistry.models.get(arch) is None or getattr(ModelRegistry.models[arch], "module_name", "") != \
                target.split(":")[0]:  # fmt: skip
            ModelRegistry.register_model(arch, target)
