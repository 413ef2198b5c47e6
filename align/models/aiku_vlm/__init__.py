"""The AIKU-style composed VLM, native (``model_type: aiku_vlm``; ``align model compose --projector aiku``).

``configuration`` / ``modeling``: the config and model (transformers' LLaVA with the connector MLP → N×N average
pooling → residual convolution), registered here with transformers' Auto classes, so a composed folder loads with
``AutoModelForImageTextToText`` without remote code once this module is imported (the workbench's loaders import it;
a plain-transformers user writes ``import align.models.aiku_vlm`` first). The processor is transformers' own
``LlavaProcessor`` (its ``patch_size`` is the pixel side of one pooled image token: encoder patch × N), so it needs no
registration. ``vllm_model``: the same architecture for vLLM (through ``rollouts.vllm_plugin``). See docs/compose.md.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText

from align.models import checkpoints
from align.models.aiku_vlm.configuration import MODEL_TYPE, AikuVLMConfig
from align.models.aiku_vlm.modeling import (
    AikuConnector,
    AikuVLMForConditionalGeneration,
    AikuVLMModel,
    connector_features,
    connector_parameters,
)

__all__ = ["AikuConnector", "AikuVLMConfig", "AikuVLMForConditionalGeneration", "AikuVLMModel", "checkpoint_keys",
           "connector_features", "connector_parameters", "load_checked", "register"]  # fmt: skip


def register() -> None:
    """Make ``aiku_vlm`` folders load through the Auto classes (idempotent)."""
    try:
        AutoConfig.register(MODEL_TYPE, AikuVLMConfig)
    except ValueError:  # already registered
        return
    AutoModel.register(AikuVLMConfig, AikuVLMModel)
    AutoModelForImageTextToText.register(AikuVLMConfig, AikuVLMForConditionalGeneration)
    AutoModelForCausalLM.register(AikuVLMConfig, AikuVLMForConditionalGeneration)  # what TRL loads a DPO reference with


register()


def checkpoint_keys(path: str) -> dict:
    """The folder's weight names against the model's (``align.models.checkpoints.checkpoint_keys``)."""
    return checkpoints.checkpoint_keys(AikuVLMForConditionalGeneration, AikuVLMConfig, path, "lm_head.weight")


def load_checked(path: str, **kwargs):
    """``from_pretrained`` that refuses a folder whose weights do not fill the model exactly."""
    return checkpoints.load_checked(
        AikuVLMForConditionalGeneration, path, f"does not fill the {MODEL_TYPE} model",
        "use a folder written by `align model compose --projector aiku` or by a workbench stage; a changed "
        "pool / resnet setting in config.json needs a new composition", **kwargs)  # fmt: skip
