"""``AikuVLMConfig`` (``model_type: aiku_vlm``): a composed VLM with the AIKU-style connector.

LLaVA's configuration (vision and text sub-configs, ``image_token_id``, ``vision_feature_layer``,
``vision_feature_select_strategy``, ``image_seq_length``) plus the connector's sizes:

* ``projector_hidden_size``: width of the MLP projection's hidden layer (None: the language model's hidden size);
* ``pool``: N, the N×N average pooling over the patch grid (must divide it; image tokens per image = (grid / N)²);
* ``resnet_blocks`` / ``resnet_kernel``: residual depthwise-convolution blocks on the pooled grid and their kernel.
"""

from __future__ import annotations

from types import MappingProxyType

from huggingface_hub.dataclasses import strict
from transformers import LlavaConfig

MODEL_TYPE = "aiku_vlm"


@strict
class AikuVLMConfig(LlavaConfig):
    model_type = MODEL_TYPE
    # read-only and empty: native code. TRL reads it when it loads a reference model whose class transformers does not
    # export (DPO), and then falls back to AutoModelForCausalLM, which __init__.py registers too.
    auto_map = MappingProxyType({})

    projector_hidden_size: int | None = None
    pool: int = 2
    resnet_blocks: int = 1
    resnet_kernel: int = 3

    def grid(self) -> int:
        """Patches per side of the encoder's grid."""
        return self.vision_config.image_size // self.vision_config.patch_size

    def validate_connector(self):
        """Strict-dataclass validator: sizes that give no model are refused when the config is built or loaded."""
        grid = self.grid()
        if self.pool < 1 or grid % self.pool:
            raise ValueError(f"pool {self.pool} does not divide the encoder's {grid}×{grid} patch grid "
                             f"(divisors: {', '.join(str(d) for d in range(1, grid + 1) if grid % d == 0)})")  # fmt: skip
        if self.resnet_blocks < 0 or self.resnet_kernel < 1 or self.resnet_kernel % 2 == 0:
            raise ValueError(f"resnet_blocks must be ≥ 0 and resnet_kernel odd and ≥ 1 (got {self.resnet_blocks}, "
                             f"{self.resnet_kernel})")  # fmt: skip
        if not isinstance(self.vision_feature_layer, int):
            raise TypeError(f"vision_feature_layer must be one layer (got {self.vision_feature_layer})")
        if self.projector_hidden_size is not None and self.projector_hidden_size < 1:
            raise ValueError(f"projector_hidden_size must be ≥ 1 (got {self.projector_hidden_size})")

    @property
    def image_tokens(self) -> int:
        """Image tokens per image after pooling."""
        return (self.grid() // self.pool) ** 2
