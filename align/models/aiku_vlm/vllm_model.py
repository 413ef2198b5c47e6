"""The AIKU-style composed VLM for vLLM ≥ 0.32 (out of tree; registered by ``rollouts/vllm_plugin.py``).

The language model is vLLM's own (Llama for HyperCLOVAX-SEED-Text; whatever ``text_config`` names: paged attention,
its sampler); the vision tower and the connector are the transformers model's modules and code
(``modeling.connector_features``), so both engines compute the same image tokens. vLLM's LLaVA module is not used: it
imports torchvision, which does not load beside CPU torch. Weights load under the transformers names
(``model.vision_tower.*``, ``model.multi_modal_projector.*``, ``model.language_model.*``, ``lm_head.*``). vLLM expands
each ``<image>`` to (grid / N)² tokens (``AikuVLMConfig.image_tokens``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import AutoModel, BatchFeature, LlavaProcessor
from vllm.config import VllmConfig
from vllm.model_executor.models.interfaces import SupportsMultiModal, SupportsPP
from vllm.model_executor.models.utils import (
    AutoWeightsLoader,
    WeightsMapper,
    init_vllm_registered_model,
    maybe_prefix,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import MultiModalDataItems
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdate,
)

from align.models.aiku_vlm.modeling import AikuConnector, connector_features

IMAGE_TOKEN = "<image>"


class AikuProcessingInfo(BaseProcessingInfo):
    def get_hf_processor(self, **kwargs) -> LlavaProcessor:
        return self.ctx.get_hf_processor(LlavaProcessor, **kwargs)

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"image": None}

    def image_tokens(self) -> int:
        return self.get_hf_config().image_tokens  # (grid / pool)², from the encoder's geometry and the pool


class AikuDummyInputsBuilder(BaseDummyInputsBuilder[AikuProcessingInfo]):
    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return IMAGE_TOKEN * mm_counts.get("image", 0)

    def get_dummy_mm_data(self, seq_len, mm_counts, mm_options):
        side = self.info.get_hf_config().vision_config.image_size
        overrides = mm_options.get("image") if mm_options else None
        images = self._get_dummy_images(width=side, height=side, num_images=mm_counts.get("image", 0),
                                        overrides=overrides)  # fmt: skip
        return {"image": images}


def _pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    return Image.fromarray(array.astype(np.uint8))


class AikuMultiModalProcessor(BaseMultiModalProcessor[AikuProcessingInfo]):
    def _call_hf_processor(self, hf_data, hf_kwargs) -> BatchFeature:
        """The images' pixels through the model's image processor (vLLM tokenizes the text and expands the
        placeholders itself)."""
        images = [_pil(im).convert("RGB") for im in (hf_data.get("images") or [])]
        if not images:
            return BatchFeature({})
        image_processor = self.info.get_hf_processor().image_processor
        return BatchFeature({"pixel_values": image_processor(images, return_tensors="pt")["pixel_values"]})

    def _get_mm_fields_config(self, hf_inputs, hf_processor_mm_kwargs) -> Mapping[str, MultiModalFieldConfig]:
        return {"pixel_values": MultiModalFieldConfig.batched("image")}

    def _get_prompt_updates(self, mm_items: MultiModalDataItems, hf_processor_mm_kwargs,
                            out_mm_kwargs: MultiModalKwargsItems) -> Sequence[PromptUpdate]:  # fmt: skip
        token = self.info.get_hf_config().image_token_id
        return [PromptReplacement(modality="image", target=[token], replacement=[token] * self.info.image_tokens())]


@MULTIMODAL_REGISTRY.register_processor(AikuMultiModalProcessor, info=AikuProcessingInfo,
                                        dummy_inputs=AikuDummyInputsBuilder)  # fmt: skip
class AikuVLMForConditionalGeneration(nn.Module, SupportsMultiModal, SupportsPP):
    packed_modules_mapping: ClassVar[dict] = {
        "qkv_proj": ["q_proj", "k_proj", "v_proj"],
        "gate_up_proj": ["gate_proj", "up_proj"],
    }
    # transformers' names (saved folders and the GRPO weight sync) → this module's
    hf_to_vllm_mapper = WeightsMapper(
        orig_to_new_prefix={
            "model.language_model.": "language_model.model.",
            "model.vision_tower.": "vision_tower.",
            "model.multi_modal_projector.": "multi_modal_projector.",
            "lm_head.": "language_model.lm_head.",
        }
    )

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("image"):
            return IMAGE_TOKEN
        raise ValueError("the aiku_vlm model takes images only")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.config = config
        with self._mark_tower_model(vllm_config, {"image"}):
            self.vision_tower = AutoModel.from_config(config.vision_config)
            self.multi_modal_projector = AikuConnector(config)
        with self._mark_language_model(vllm_config):
            self.language_model = init_vllm_registered_model(vllm_config=vllm_config, hf_config=config.text_config,
                                                             prefix=maybe_prefix(prefix, "language_model"))  # fmt: skip
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors

    def embed_multimodal(self, **kwargs) -> tuple[torch.Tensor, ...]:
        pixels = kwargs.get("pixel_values")
        if pixels is None:
            return ()
        if not isinstance(pixels, torch.Tensor):
            pixels = torch.stack(list(pixels))
        dtype = self.multi_modal_projector.linear_1.weight.dtype
        features = connector_features(self.vision_tower, self.multi_modal_projector, pixels.to(dtype), self.config)
        return tuple(features)

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.language_model.compute_logits(hidden_states)

    def get_language_model(self) -> nn.Module:
        return self.language_model

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)
