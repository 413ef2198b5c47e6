"""Configuration of the tiny HyperCLOVAX-SEED-Vision stand-in (remote code, loaded with trust_remote_code=True).

Field names follow the published HCXVisionForCausalLM config as vLLM 0.27 reads it (text_config, vision_config,
image_token_id, mm_projector_type, anyres, num_queries_vis_abstractor_image); this stand-in implements only
mm_projector_type "linear" without AnyRes."""

from transformers import CONFIG_MAPPING, PretrainedConfig


class HCXVisionConfig(PretrainedConfig):
    model_type = "hyperclovax_vlm"

    def __init__(self, text_config=None, vision_config=None, image_token_id=None, video_token_id=None,
                 mm_projector_type="linear", anyres=False, num_queries_vis_abstractor_image=0, **kwargs):
        if isinstance(text_config, dict):
            text_config = CONFIG_MAPPING[text_config.get("model_type", "llama")](**text_config)
        if isinstance(vision_config, dict):
            vision_config = CONFIG_MAPPING[vision_config.get("model_type", "siglip_vision_model")](**vision_config)
        self.text_config = text_config
        self.vision_config = vision_config
        self.image_token_id = image_token_id
        self.video_token_id = video_token_id
        self.mm_projector_type = mm_projector_type
        self.anyres = anyres
        self.num_queries_vis_abstractor_image = num_queries_vis_abstractor_image
        super().__init__(**kwargs)

    def get_text_config(self, *args, **kwargs):
        return self.text_config

    def to_dict(self):
        out = super().to_dict()
        for key in ("text_config", "vision_config"):
            value = getattr(self, key)
            out[key] = value.to_dict() if hasattr(value, "to_dict") else value
        return out
