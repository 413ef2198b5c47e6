"""``HCXVisionConfig``: HyperCLOVAX-SEED-Vision-Instruct-3B's configuration (``model_type: hyperclovax_vlm``), native.

The published checkpoint went through two config revisions, both read here:

* first revision: ``language_config`` (the Llama text model), ``img_start_id`` (the image placeholder id),
  ``num_queries_vis_abstractor`` (visual queries per grid);
* later revision: ``text_config``, ``image_token_id`` / ``video_token_id``, ``num_queries_vis_abstractor_image``,
  ``num_queries_vis_abstractor_video_slow`` / ``_video_fast``, ``first_last_frames_slow``.

Whatever the revision, the attributes below carry the later revision's names; ``save_pretrained`` writes those
(``config_revision`` says which one the file came from). A config with a vision tower but neither text config is refused
naming the fields it has. An empty ``HCXVisionConfig()`` (transformers builds one to diff against) gets small
defaults.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import ClassVar

from transformers import AutoConfig, PretrainedConfig

from align.models.hcx_vision.geometry import grid_resolutions

MODEL_TYPE = "hyperclovax_vlm"


def _sub_config(value, default_type: str):
    if value is None:
        return AutoConfig.for_model(default_type)
    if isinstance(value, PretrainedConfig):
        return value
    value = dict(value)
    return AutoConfig.for_model(value.pop("model_type", default_type), **value)


class HCXVisionConfig(PretrainedConfig):
    model_type = MODEL_TYPE
    auto_map = MappingProxyType({})  # read-only and empty: native code; TRL reads it when it loads a reference model
    sub_configs: ClassVar[dict] = {"text_config": AutoConfig, "vision_config": AutoConfig}

    def __init__(
        self,
        text_config=None,
        vision_config=None,
        use_nth_layer: int = -2,
        anyres: bool = False,
        unpad: bool = False,
        max_num_grids: int = -1,
        use_1x1_grid: bool = False,
        possible_resolutions: list | None = None,
        mm_projector_type: str = "cabstractor",
        num_queries_vis_abstractor_image: int | None = None,
        num_queries_vis_abstractor_video_slow: int = 81,
        num_queries_vis_abstractor_video_fast: int = 9,
        first_last_frames_slow: bool = False,
        proj_pos_emb: bool = True,
        proj_prenorm: bool = False,
        image_token_id: int | None = None,
        video_token_id: int | None = None,
        decoder_max_length: int = 4096,
        ignore_index: int = -100,
        **kwargs,
    ):
        language_config = kwargs.pop("language_config", None)
        img_start_id = kwargs.pop("img_start_id", None)
        first_queries = kwargs.pop("num_queries_vis_abstractor", None)
        if vision_config is not None and text_config is None and language_config is None:
            found = sorted(k for k in kwargs if not k.startswith("_"))
            raise ValueError(
                "HCXVisionConfig: unknown config revision: it has a vision_config but neither 'text_config' (later "
                f"revision) nor 'language_config' (first revision); fields found: {', '.join(found) or 'none'}"
            )
        self.config_revision = kwargs.pop("config_revision", None) or (
            "first" if language_config is not None else "later"
        )
        self.text_config = _sub_config(text_config if text_config is not None else language_config, "llama")
        self.vision_config = _sub_config(vision_config, "siglip_vision_model")
        # the later revision's names win when a file has both
        image_token_id = next((v for v in (image_token_id, img_start_id) if v is not None), 128060)
        num_queries_vis_abstractor_image = next(
            (v for v in (num_queries_vis_abstractor_image, first_queries) if v is not None), 81
        )
        self.use_nth_layer = use_nth_layer
        self.anyres = anyres
        self.unpad = unpad
        self.max_num_grids = max_num_grids
        self.use_1x1_grid = use_1x1_grid
        self.possible_resolutions = [list(r) for r in possible_resolutions] if possible_resolutions else []
        self.mm_projector_type = mm_projector_type
        self.num_queries_vis_abstractor_image = num_queries_vis_abstractor_image
        self.num_queries_vis_abstractor_video_slow = num_queries_vis_abstractor_video_slow
        self.num_queries_vis_abstractor_video_fast = num_queries_vis_abstractor_video_fast
        self.first_last_frames_slow = first_last_frames_slow
        self.proj_pos_emb = proj_pos_emb
        self.proj_prenorm = proj_prenorm
        self.image_token_id = image_token_id
        self.video_token_id = video_token_id
        self.decoder_max_length = decoder_max_length
        self.ignore_index = ignore_index
        kwargs.setdefault("tie_word_embeddings", getattr(self.text_config, "tie_word_embeddings", False))
        super().__init__(**kwargs)
        if not self.possible_resolutions and self.anyres:
            self.possible_resolutions = grid_resolutions(self.max_num_grids, self.vision_config.image_size,
                                                         self.use_1x1_grid)  # fmt: skip

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    @hidden_size.setter
    def hidden_size(self, value: int) -> None:
        self.text_config.hidden_size = value

    @property
    def vocab_size(self) -> int:
        return self.text_config.vocab_size

    @vocab_size.setter
    def vocab_size(self, value: int) -> None:
        self.text_config.vocab_size = value

    def get_text_config(self, *args, **kwargs):
        return self.text_config
