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

from align.errors import UserError
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


def _show(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:12]) + (f" … ({len(keys)} in all)" if len(keys) > 12 else "") or "none"


def checkpoint_keys(path: str) -> dict:
    """The folder's weight names against the model's: ``{"missing_keys": [...], "unexpected_keys": [...]}`` (read
    from the safetensors headers; nothing loaded)."""
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
        model = AikuVLMForConditionalGeneration(AikuVLMConfig.from_pretrained(path))
    expected = set(model.state_dict())
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    return {"missing_keys": sorted(expected - found - tied), "unexpected_keys": sorted(found - expected)}


def load_checked(path: str, **kwargs):
    """``from_pretrained`` that refuses a folder whose weights do not fill the model exactly."""
    model, info = AikuVLMForConditionalGeneration.from_pretrained(path, output_loading_info=True, **kwargs)
    missing, unexpected = list(info.get("missing_keys") or []), list(info.get("unexpected_keys") or [])
    mismatched = [str(m[0]) if isinstance(m, tuple) else str(m) for m in info.get("mismatched_keys") or []]
    if missing or unexpected or mismatched:
        raise UserError(
            f"{path} does not fill the {MODEL_TYPE} model: {len(missing)} missing ({_show(missing)}), "
            f"{len(unexpected)} unexpected ({_show(unexpected)}), {len(mismatched)} of another shape "
            f"({_show(mismatched)})",
            "use a folder written by `align model compose --projector aiku` or by a workbench stage; a changed "
            "pool / resnet setting in config.json needs a new composition",
        )
    return model
