"""HyperCLOVAX-SEED-Vision-Instruct-3B, native (family ``hyperclovax_vision``; see docs/hyperclovax_vision.md).

``configuration`` / ``modeling`` / ``processing`` / ``geometry``: the model and its processor, registered here with
transformers' Auto classes for ``model_type: hyperclovax_vlm`` (no remote code). ``adapter``: the workbench's rows →
the published chat format and the SFT collator. ``vllm_model``: the same architecture for vLLM (through
``rollouts.vllm_plugin``).
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from align.models import checkpoints
from align.models.hcx_vision.adapter import CHAT_TEMPLATE, HCXCollator, sft_adapter, vlm_chat
from align.models.hcx_vision.configuration import MODEL_TYPE, HCXVisionConfig
from align.models.hcx_vision.modeling import HCXVisionForCausalLM
from align.models.hcx_vision.processing import HCXVisionImageProcessor, HCXVisionProcessor

__all__ = ["CHAT_TEMPLATE", "HCXCollator", "HCXVisionConfig", "HCXVisionForCausalLM", "HCXVisionImageProcessor", "HCXVisionProcessor",
           "register", "sft_adapter", "vlm_chat"]  # fmt: skip


def register() -> None:
    """Make ``hyperclovax_vlm`` checkpoints load through the Auto classes (idempotent)."""
    try:
        AutoConfig.register(MODEL_TYPE, HCXVisionConfig)
    except ValueError:  # already registered
        return
    AutoModelForCausalLM.register(HCXVisionConfig, HCXVisionForCausalLM)
    AutoModelForImageTextToText.register(HCXVisionConfig, HCXVisionForCausalLM)
    AutoImageProcessor.register(HCXVisionConfig, slow_image_processor_class=HCXVisionImageProcessor)
    AutoProcessor.register(HCXVisionConfig, HCXVisionProcessor)


register()


POOLING_HEAD = "vision_model.vision_model.head."  # SigLIP's attention-pooling head: unused (a hidden layer is read)


def folder_config(path: str) -> HCXVisionConfig:
    """The folder's config; a folder whose tower comes without SigLIP's pooling head builds the tower without it (the
    model reads a hidden layer, never the pooled output), so the strict weight check still holds."""
    config = HCXVisionConfig.from_pretrained(path)
    if getattr(config.vision_config, "model_type", "").startswith("siglip") and not any(
        k.startswith(POOLING_HEAD) for k in checkpoints.folder_keys(path)
    ):
        config.vision_config.vision_use_head = False
    return config


def checkpoint_keys(path: str) -> dict:
    """The checkpoint's weight names against the model's (``align.models.checkpoints.checkpoint_keys``)."""
    return checkpoints.checkpoint_keys(HCXVisionForCausalLM, HCXVisionConfig, path, "language_model.lm_head.weight",
                                       config=folder_config(path))  # fmt: skip


def load_checked(path: str, **kwargs):
    """``from_pretrained`` that refuses a checkpoint whose weight names differ from the published layout."""
    return checkpoints.load_checked(
        HCXVisionForCausalLM, path, "does not have HyperCLOVAX-SEED-Vision's weight layout",
        "use the published checkpoint (vision_model.vision_model.*, mm_projector.*, image_newline, language_model.*) "
        "or a folder this workbench saved", config=folder_config(path), **kwargs)  # fmt: skip
