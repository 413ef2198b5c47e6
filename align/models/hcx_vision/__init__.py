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

from align.errors import UserError
from align.models.hcx_vision.adapter import HCXCollator, sft_adapter, vlm_chat
from align.models.hcx_vision.configuration import MODEL_TYPE, HCXVisionConfig
from align.models.hcx_vision.modeling import HCXVisionForCausalLM
from align.models.hcx_vision.processing import HCXVisionImageProcessor, HCXVisionProcessor

__all__ = ["HCXCollator", "HCXVisionConfig", "HCXVisionForCausalLM", "HCXVisionImageProcessor", "HCXVisionProcessor",
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


def checkpoint_keys(path: str) -> dict:
    """The checkpoint's weight names against the model's: ``{"missing_keys": [...], "unexpected_keys": [...]}``
    (read from the safetensors headers; no weights loaded)."""
    import json
    from pathlib import Path

    import torch
    from safetensors import safe_open

    folder = Path(path)
    index = folder / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    )
    found = set()
    for name in files:
        with safe_open(str(folder / name), "pt") as f:
            found |= set(f.keys())
    with torch.device("meta"):
        model = HCXVisionForCausalLM(HCXVisionConfig.from_pretrained(path))
    expected = set(model.state_dict())
    tied = {"language_model.lm_head.weight"} if model.config.tie_word_embeddings else set()
    return {"missing_keys": sorted(expected - found - tied), "unexpected_keys": sorted(found - expected)}


def load_checked(path: str, **kwargs):
    """``from_pretrained`` that refuses a checkpoint whose weight names differ from the published layout."""

    model, info = HCXVisionForCausalLM.from_pretrained(path, output_loading_info=True, **kwargs)
    missing, unexpected = list(info.get("missing_keys") or []), list(info.get("unexpected_keys") or [])
    if missing or unexpected:

        def show(keys):
            return ", ".join(sorted(keys)[:12]) + (f" … ({len(keys)} in all)" if len(keys) > 12 else "")

        raise UserError(
            f"{path} does not have HyperCLOVAX-SEED-Vision's weight layout: {len(missing)} missing "
            f"({show(missing) or 'none'}), {len(unexpected)} unexpected ({show(unexpected) or 'none'})",
            "use the published checkpoint (vision_model.vision_model.*, mm_projector.*, image_newline, "
            "language_model.*) or a folder this workbench saved",
        )
    return model
