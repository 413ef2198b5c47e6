"""HyperCLOVAX-SEED-Vision for vLLM ≥ 0.32 (out of tree; registered by ``rollouts/vllm_plugin.py``).

The language model is vLLM's own Llama (paged attention, its sampler); the vision tower, C-Abstractor and AnyRes
layout are the transformers model's modules and code (``modeling.HCXVisualMixin``), so both engines compute the same
visual tokens. Weights load under the published names. vLLM expands each ``<|dummy3|>`` to the image's visual-token
count (``geometry.image_query_length``). Images only: videos go through the transformers engine.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import BatchFeature
from vllm.config import VllmConfig
from vllm.model_executor.models.interfaces import SupportsMultiModal, SupportsPP
from vllm.model_executor.models.utils import AutoWeightsLoader, init_vllm_registered_model, maybe_prefix
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

from align.models.hcx_vision.geometry import image_query_length
from align.models.hcx_vision.modeling import HCXVisualMixin, VisionTower
from align.models.hcx_vision.processing import IMAGE_TOKEN, HCXVisionProcessor
from align.models.hcx_vision.projector import CAbstractor


class HCXProcessingInfo(BaseProcessingInfo):
    def get_hf_processor(self, **kwargs) -> HCXVisionProcessor:
        return self.ctx.get_hf_processor(HCXVisionProcessor, **kwargs)

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"image": None}

    def largest_image(self) -> tuple[int, int]:
        """(width, height) of the canvas that gives the most visual tokens."""
        ip = self.get_hf_processor().image_processor
        sizes = [(w, h) for h, w in ip.possible_resolutions] or [(ip.size, ip.size)]
        return max(sizes, key=lambda s: image_query_length(s, ip))


class HCXDummyInputsBuilder(BaseDummyInputsBuilder[HCXProcessingInfo]):
    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return IMAGE_TOKEN * mm_counts.get("image", 0)

    def get_dummy_mm_data(self, seq_len, mm_counts, mm_options):
        width, height = self.info.largest_image()
        return {"image": self._get_dummy_images(width=width, height=height, num_images=mm_counts.get("image", 0),
                                                overrides=mm_options.get("image") if mm_options else None)}  # fmt: skip


def _pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    return Image.fromarray(array.astype(np.uint8))


class HCXMultiModalProcessor(BaseMultiModalProcessor[HCXProcessingInfo]):
    def _call_hf_processor(self, hf_data, hf_kwargs) -> BatchFeature:
        """The images' tensors (vLLM tokenizes the text and expands the placeholders itself)."""
        processor = self.info.get_hf_processor()
        out = {}
        images = [_pil(im).convert("RGB") for im in (hf_data.get("images") or [])]
        if images:
            ip = processor.image_processor
            grids = [torch.from_numpy(ip.image_grids(im)) for im in images]
            out["pixel_values_images"] = torch.cat(grids)
            out["num_grids"] = torch.tensor([len(g) for g in grids])
            out["image_sizes_images"] = torch.tensor([[im.width, im.height] for im in images])
            out["vision_query_lengths_images"] = torch.tensor([image_query_length(im.size, ip) for im in images])
        return BatchFeature(out)

    def _get_mm_fields_config(self, hf_inputs, hf_processor_mm_kwargs) -> Mapping[str, MultiModalFieldConfig]:
        grids = hf_inputs.get("num_grids", torch.empty(0))
        return {"pixel_values_images": MultiModalFieldConfig.flat_from_sizes("image", grids),
                "num_grids": MultiModalFieldConfig.batched("image", keep_on_cpu=True),
                "image_sizes_images": MultiModalFieldConfig.batched("image", keep_on_cpu=True),
                "vision_query_lengths_images": MultiModalFieldConfig.batched("image", keep_on_cpu=True)}  # fmt: skip

    def _get_prompt_updates(self, mm_items: MultiModalDataItems, hf_processor_mm_kwargs,
                            out_mm_kwargs: MultiModalKwargsItems) -> Sequence[PromptUpdate]:  # fmt: skip
        token = self.info.get_hf_config().image_token_id

        def replacement(item_idx: int):
            n = int(out_mm_kwargs["image"][item_idx]["vision_query_lengths_images"].data)
            return [token] * n

        return [PromptReplacement(modality="image", target=[token], replacement=replacement)]


@MULTIMODAL_REGISTRY.register_processor(HCXMultiModalProcessor, info=HCXProcessingInfo,
                                        dummy_inputs=HCXDummyInputsBuilder)  # fmt: skip
class HCXVisionForCausalLM(nn.Module, HCXVisualMixin, SupportsMultiModal, SupportsPP):
    packed_modules_mapping: ClassVar[dict] = {
        "qkv_proj": ["q_proj", "k_proj", "v_proj"],
        "gate_up_proj": ["gate_proj", "up_proj"],
    }

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("image"):
            return IMAGE_TOKEN
        raise ValueError("HyperCLOVAX-SEED-Vision on vLLM takes images only")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.config = config
        with self._mark_tower_model(vllm_config, {"image"}):
            vision = copy.deepcopy(config.vision_config)
            vision.vision_use_head = False  # SigLIP's pooling head is never used; published folders may lack it
            self.vision_model = VisionTower(vision)
            self.mm_projector = CAbstractor(config)
            hidden = config.text_config.hidden_size
            self.image_newline = nn.Parameter(torch.zeros(hidden)) if config.anyres else None
        with self._mark_language_model(vllm_config):
            self.language_model = init_vllm_registered_model(vllm_config=vllm_config, hf_config=config.text_config,
                                                             prefix=maybe_prefix(prefix, "language_model"))  # fmt: skip
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors

    def embed_multimodal(self, **kwargs) -> tuple[torch.Tensor, ...]:
        pixels = kwargs.get("pixel_values_images")
        if pixels is None:
            return ()
        sizes = kwargs["image_sizes_images"]
        sizes = sizes.tolist() if isinstance(sizes, torch.Tensor) else [s.tolist() for s in sizes]
        if isinstance(pixels, torch.Tensor):
            grids = kwargs["num_grids"]
            grids = grids.tolist() if isinstance(grids, torch.Tensor) else [int(g) for g in grids]
            pixels = torch.split(pixels, grids)
        return tuple(self.encode_images([(p, (int(s[0]), int(s[1]))) for p, s in zip(pixels, sizes)]))

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.language_model.compute_logits(hidden_states)

    def get_language_model(self) -> nn.Module:
        return self.language_model

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return AutoWeightsLoader(self, ignore_unexpected_prefixes=["vision_model.vision_model.head."]).load_weights(
            weights
        )
