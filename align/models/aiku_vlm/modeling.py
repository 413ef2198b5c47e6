"""``AikuVLMForConditionalGeneration``: a vision encoder and a language model joined by the AIKU-style connector.

    CLIP/SigLIP tower (features of layer ``vision_feature_layer``, −2; CLIP's CLS token dropped)
      → MLP projection      linear_1 (vision hidden → projector hidden) → GELU → linear_2 (→ language-model hidden)
      → average pooling     N×N windows over the patch grid (``pool``): grid² → (grid / N)² image tokens
      → ResNet block(s)     x + depthwise k×k conv(x), on the pooled grid (``resnet_blocks``, ``resnet_kernel``)
      → language model      the image tokens' embeddings replaced by the connector's output, in order

This is the connector of AIKU's Small Korean VLM (MobileVLM V2's "LDP v2": an MLP, a 2-D average pool to 12×12 and a
residual depthwise convolution that re-injects position), written here from that description. Everything but the
connector is transformers' LLaVA (``LlavaModel``: the tower call, the merge of image features at the ``<image>``
tokens, generation), so the model trains, generates and saves the way LLaVA does. Weight names, as saved:
``model.vision_tower.*`` (transformers' CLIP/SigLIP vision model), ``model.multi_modal_projector.linear_1|linear_2.*``,
``model.multi_modal_projector.resnet.{i}.conv.*``, ``model.language_model.*``, ``lm_head.weight`` (absent when tied).
``connector_features`` is the connector's forward pass as a function, shared with the vLLM model (``vllm_model.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, LlavaForConditionalGeneration, LlavaModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.llava.modeling_llava import LlavaPreTrainedModel

from align.models.aiku_vlm.configuration import AikuVLMConfig


class ResidualConvBlock(nn.Module):
    """x + depthwise k×k convolution of x, on [batch, channels, h, w]: enriches each token with its neighbours."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class AikuConnector(nn.Module):
    """[images, grid², vision hidden] → [images, (grid / pool)², text hidden]."""

    def __init__(self, config: AikuVLMConfig):
        super().__init__()
        hidden = config.text_config.hidden_size
        width = config.projector_hidden_size or hidden
        self.linear_1 = nn.Linear(config.vision_config.hidden_size, width)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(width, hidden)
        self.pool = config.pool
        self.resnet = nn.ModuleList(
            ResidualConvBlock(hidden, config.resnet_kernel) for _ in range(config.resnet_blocks)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.linear_2(self.act(self.linear_1(features)))
        images, tokens, hidden = x.shape
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ValueError(f"AikuConnector: {tokens} patch features per image do not form a square grid")
        x = x.transpose(1, 2).reshape(images, hidden, side, side)  # row-major patches → [images, hidden, h, w]
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)
        for block in self.resnet:
            x = block(x)
        return x.flatten(2).transpose(1, 2)


def select_features(hidden_states, config) -> torch.Tensor:
    """The tower's features LLaVA uses: layer ``vision_feature_layer``, without CLS for the 'default' strategy."""
    features = hidden_states[config.vision_feature_layer]
    return features[:, 1:] if config.vision_feature_select_strategy == "default" else features


def connector_features(vision_tower, connector, pixel_values: torch.Tensor, config) -> torch.Tensor:
    """Pixels [images, 3, S, S] → image tokens [images, (grid / pool)², text hidden] (transformers and vLLM)."""
    out = vision_tower(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
    return connector(select_features(out.hidden_states, config))


class AikuVLMModel(LlavaModel):
    config_class = AikuVLMConfig
    config: AikuVLMConfig

    def __init__(self, config: AikuVLMConfig):
        LlavaPreTrainedModel.__init__(self, config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = AikuConnector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_image_features(self, pixel_values, vision_feature_layer=None, vision_feature_select_strategy=None,
                           **kwargs):  # fmt: skip
        """LLaVA's interface (``pooler_output``: one [tokens, hidden] tensor per image); the config's feature layer
        and strategy only (the connector's pooling assumes them)."""
        dtype = self.multi_modal_projector.linear_1.weight.dtype
        features = connector_features(self.vision_tower, self.multi_modal_projector, pixel_values.to(dtype),
                                      self.config)  # fmt: skip
        return BaseModelOutputWithPooling(last_hidden_state=features, pooler_output=list(features))


class AikuVLMForConditionalGeneration(LlavaForConditionalGeneration):
    config_class = AikuVLMConfig
    config: AikuVLMConfig

    def __init__(self, config: AikuVLMConfig):
        LlavaPreTrainedModel.__init__(self, config)
        self.model = AikuVLMModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()


def connector_parameters(model) -> int:
    return sum(p.numel() for p in model.model.multi_modal_projector.parameters())
