"""Kanana-1.5-v configuration for the workbench's tiny test checkpoint (written by korean-vlm-align, not Kakao's code).

Fields as vLLM 0.32's ``kanana_v`` module reads them: ``vision_config`` (a Qwen2-VL vision transformer),
``projector_config`` (the dynamic C-Abstractor: ``merge_size``, ``pos_emb``, ``pos_emb_size``, ``encoder_hidden_size``,
``hidden_size``, ``output_hidden_size``, ``depth``, ``mlp_depth``, ``feature_layer_index``) and ``text_config`` (the
Llama-architecture Kanana LM). The image placeholder is the token after the LM's end-of-text token.
"""

from typing import ClassVar

from transformers import AutoConfig, LlamaConfig, PretrainedConfig
from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig


class KananaVProjectorConfig(PretrainedConfig):
    model_type = "kanana_v_projector"

    def __init__(
        self,
        merge_size=2,
        pos_emb=True,
        pos_emb_size=576,
        encoder_hidden_size=1280,
        hidden_size=1024,
        output_hidden_size=2048,
        depth=3,
        mlp_depth=2,
        feature_layer_index=-1,
        **kwargs,
    ):
        self.merge_size, self.pos_emb, self.pos_emb_size = merge_size, pos_emb, pos_emb_size
        self.encoder_hidden_size, self.hidden_size, self.output_hidden_size = (
            encoder_hidden_size,
            hidden_size,
            output_hidden_size,
        )
        self.depth, self.mlp_depth, self.feature_layer_index = depth, mlp_depth, feature_layer_index
        super().__init__(**kwargs)


class KananaTextConfig(LlamaConfig):
    """Kanana-1.5's Llama LM, whose heads are not the width divided by their number (the 2.1B: 24 heads of 128 on a
    1792-wide model, ``head_dim`` given). transformers 5's ``LlamaConfig`` refuses such sizes ("hidden size is not a
    multiple of the number of attention heads") although its Llama layers take ``head_dim`` as given; this subclass
    keeps ``model_type: llama`` and the same fields without that check."""


class KananaVConfig(PretrainedConfig):
    model_type = "kanana-1.5-v"
    sub_configs: ClassVar[dict] = {
        "vision_config": AutoConfig,
        "projector_config": AutoConfig,
        "text_config": AutoConfig,
    }

    def __init__(self, vision_config=None, projector_config=None, text_config=None, image_token_id=None, **kwargs):
        self.vision_config = (
            vision_config
            if isinstance(vision_config, PretrainedConfig)
            else Qwen2VLVisionConfig(**(vision_config or {}))
        )
        self.projector_config = (
            projector_config
            if isinstance(projector_config, PretrainedConfig)
            else KananaVProjectorConfig(**(projector_config or {}))
        )
        self.text_config = (
            text_config if isinstance(text_config, PretrainedConfig) else KananaTextConfig(**(text_config or {}))
        )
        if image_token_id is None:  # the token after the LM's end-of-text token (fixed here: trainers may change eos)
            eos = self.text_config.eos_token_id
            image_token_id = (eos[0] if isinstance(eos, list) else eos) + 1
        self.image_token_id = image_token_id
        super().__init__(**kwargs)
