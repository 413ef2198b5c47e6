"""Compose a small VLM from a vision encoder and a causal language model (the AIKU / LLaVA recipe).

    align model compose --vision openai/clip-vit-large-patch14-336 \\
        --language naver-hyperclovax/HyperCLOVAX-SEED-Text-Instruct-0.5B --projector mlp2x_gelu --out my-vlm

writes a standard ``LlavaForConditionalGeneration`` directory (weights, ``LlavaProcessor``, chat template,
generation config) that transformers and vLLM load without custom code:

* vision tower: the encoder's weights (CLIP or SigLIP, from a vision-only or a full CLIP/SigLIP checkpoint), features
  from its second-to-last layer as LLaVA does; CLIP drops its CLS token ('default'), SigLIP keeps every patch ('full');
* projector ``mlp2x_gelu``: linear → GELU → linear, freshly initialised from ``seed`` (the ``align`` stage trains it);
* language model: its weights, tokenizer and generation config (stop tokens), plus a registered ``<image>`` token;
* chat template: the language model's own, behind a prefix that turns multimodal content (lists of image and text
  parts, as TRL passes them) into strings with ``<image>`` where each image goes.

Weight names follow the original LLaVA layout (``vision_tower.vision_model.…``, ``language_model.model.…``,
``multi_modal_projector.…``): transformers 5.19 writes the tower as ``vision_tower.embeddings…``, which vLLM's LLaVA
loader does not map. ``--pool N`` (N×N patch merging) is refused: transformers' LLaVA has no token pooling, see
``POOL_HINT``.
"""

from __future__ import annotations

import json
from pathlib import Path

from align.errors import UserError
from align.io import atomic_dir
from align.models import resolve_model_path, vllm_weight_names
from align.models.families import is_vision_config

PROJECTORS = ("mlp2x_gelu",)
IMAGE_TOKEN = "<image>"
POOL_HINT = (
    "LlavaForConditionalGeneration (what transformers and vLLM load for a composed model) has no image-token pooling; "
    "use an encoder with fewer patches (e.g. 224 px instead of 336 px: 256 instead of 576 tokens per image), or an "
    "architecture that pools natively (Idefics3's pixel shuffle, Qwen2.5-VL's patch merger)"
)

# Turns content lists into strings before the language model's own template runs: {"type": "image"} -> "<image>\n".
FLATTEN_CONTENT = (
    "{%- set flat = namespace(messages=[]) -%}"
    "{%- for m in messages -%}"
    "{%- if m['content'] is string -%}{%- set flat.messages = flat.messages + [m] -%}"
    "{%- else -%}{%- set text = namespace(v='') -%}"
    "{%- for part in m['content'] -%}"
    "{%- if part['type'] == 'image' -%}{%- set text.v = text.v + '<image>\\n' -%}"
    "{%- elif part['type'] == 'text' -%}{%- set text.v = text.v + part['text'] -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- set flat.messages = flat.messages + [{'role': m['role'], 'content': text.v}] -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- set messages = flat.messages -%}"
)


def _vision_encoder(path: str):
    """(vision model, vision config, kind) from a CLIP/SigLIP vision or full checkpoint."""
    from transformers import AutoConfig, CLIPVisionModel, SiglipVisionModel

    path = resolve_model_path(path, progress=None)
    config = AutoConfig.from_pretrained(path)
    kind = {"clip": "clip", "clip_vision_model": "clip", "siglip": "siglip", "siglip_vision_model": "siglip"}.get(
        config.model_type
    )
    if kind is None:
        raise UserError(
            f"--vision {path}: a {config.model_type!r} model is not a CLIP or SigLIP vision encoder",
            "use a CLIP (openai/clip-vit-large-patch14-336) or SigLIP (google/siglip-so400m-patch14-384) checkpoint",
        )
    cls = CLIPVisionModel if kind == "clip" else SiglipVisionModel
    model = cls.from_pretrained(path)  # from a full CLIP/SigLIP checkpoint this keeps the vision half
    return path, model, model.config, kind


def _language_model(path: str):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(path, progress=None)
    if is_vision_config(AutoConfig.from_pretrained(path)):
        raise UserError(f"--language {path} is already a vision-language model", "give a text-only causal LM")
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.chat_template:
        raise UserError(
            f"--language {path}: its tokenizer has no chat template",
            "compose from an instruct/chat model (e.g. HyperCLOVAX-SEED-Text-Instruct-0.5B), or add a "
            "chat_template to its tokenizer_config.json",
        )
    return path, AutoModelForCausalLM.from_pretrained(path), tokenizer


def compose(vision: str, language: str, out_dir: str | Path, projector: str = "mlp2x_gelu", pool: int = 1,
            seed: int = 0, progress=print) -> Path:  # fmt: skip
    import torch
    from transformers import AutoImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    if projector not in PROJECTORS:
        raise UserError(f"--projector {projector!r} is not supported", f"use one of {', '.join(PROJECTORS)}")
    if pool != 1:
        raise UserError(f"--pool {pool}: composed models cannot pool image tokens", POOL_HINT)
    vision_path, encoder, vision_config, kind = _vision_encoder(vision)
    language_path, lm, tokenizer = _language_model(language)
    progress(f"composing {kind} encoder {vision_path} + {type(lm).__name__} {language_path} ({projector})")
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if image_token_id >= lm.get_input_embeddings().weight.shape[0]:
        lm.resize_token_embeddings(len(tokenizer))
    strategy = "default" if kind == "clip" else "full"  # CLIP's CLS token is dropped, SigLIP has none
    patches = (vision_config.image_size // vision_config.patch_size) ** 2
    config = LlavaConfig(
        vision_config=vision_config.to_dict(),
        text_config=lm.config.to_dict(),
        image_token_id=image_token_id,
        projector_hidden_act="gelu",
        vision_feature_select_strategy=strategy,
        vision_feature_layer=-2,
        image_seq_length=patches,
        tie_word_embeddings=bool(getattr(lm.config, "tie_word_embeddings", False)),
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).to(lm.dtype)
    model.model.vision_tower.load_state_dict(encoder.state_dict())
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    model.generation_config = lm.generation_config
    image_processor = AutoImageProcessor.from_pretrained(vision_path)
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1 if kind == "clip" else 0,
        image_token=IMAGE_TOKEN,
        chat_template=FLATTEN_CONTENT + tokenizer.chat_template,
    )
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        vllm_weight_names(tmp)
        (tmp / "composed_from.json").write_text(json.dumps(
            {"vision": vision_path, "language": language_path, "projector": projector, "seed": seed,
             "image_tokens_per_image": patches}, indent=2))  # fmt: skip
    return Path(out_dir)
