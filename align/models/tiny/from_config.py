"""Tiny models of the families transformers builds natively from a config: the writer they all go through
(``write_from_config``: seeded, float32, the family's stop tokens in ``generation_config.json``, a ``tiny_spec.json``
stamp) and the Qwen2.5-VL and VARCO-VISION (1.0, 2.0) builders. The reasoning families' builders are in
``reasoning_families.py``; the registry is ``align/models/tiny/__init__.py``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from align.io import atomic_dir
from align.models.processors import images_only_processor
from align.models.tiny.korean_vlm import (
    QWEN_TOKENS,
    VARCO_MARKUP,
    VARCO_TOKENS,
    TinySpec,
    already_built,
    build_tokenizer,
    qwen_template,
)
from align.models.tiny.korean_vlm import text_config as _text_config


def dynamic_image_processor():
    """The image processor of the Qwen2.5-VL-style towers (Qwen2.5-VL, HyperCLOVAX-SEED-Think-32B, EXAONE 4.5) at
    tiny sizes: 14-px patches merged 2×2, 4 to 16 visual tokens per image."""
    from transformers import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(
        min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, patch_size=14, merge_size=2, temporal_patch_size=2
    )


def dynamic_vision_config(out_hidden: int, **changes) -> dict:
    """A 2-block Qwen2.5-VL-style vision tower (window attention, the last block full) projecting to ``out_hidden``."""
    return {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 1,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": out_hidden,
        "window_size": 56,
        "fullatt_block_indexes": [1],
        **changes,
    }


def build_qwen2_5_vl(spec: TinySpec):
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
    )

    template = qwen_template("<|vision_start|><|image_pad|><|vision_end|>")
    tok = build_tokenizer(spec, QWEN_TOKENS, added=(), eos="<|im_end|>", image_token="<|image_pad|>",
                          template=template)  # fmt: skip
    ids = tok.convert_tokens_to_ids
    # 14-px patches merged 2×2: a 64-px image becomes a 56×56 grid of 4×4 patches -> 4 image tokens
    image_processor = dynamic_image_processor()
    processor = images_only_processor(Qwen2_5_VLProcessor, image_processor=image_processor, tokenizer=tok,
                                      chat_template=template)  # fmt: skip
    head_dim = spec.text_hidden // spec.text_heads
    config = Qwen2_5_VLConfig(
        vision_config=dynamic_vision_config(spec.text_hidden),
        text_config=_text_config(
            spec,
            tok,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 1e6,
                "mrope_section": [head_dim // 8, head_dim * 3 // 16, head_dim * 3 // 16],
            },
        ),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    return Qwen2_5_VLForConditionalGeneration(config), processor, ["<|im_end|>", "<|endoftext|>"]


def build_varco_vision(spec: TinySpec, text_model: str = "qwen2"):
    """VARCO-VISION: LLaVA-OneVision (SigLIP tower, AnyRes tiles) with a Qwen2 language model; VARCO-VISION-2.0 takes
    a Qwen3 one (q/k norms; its fixed-resolution SigLIP2 checkpoints use SigLIP's architecture)."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
        LlavaOnevisionProcessor,
    )

    side = 32  # SigLIP tile side; AnyRes splits a 64-px image into up to 2×2 tiles plus the whole image
    template = qwen_template("<image>\n")
    tok = build_tokenizer(spec, VARCO_TOKENS, added=VARCO_MARKUP, eos="<|im_end|>", image_token="<image>",
                          template=template)  # fmt: skip
    pinpoints = [[side, side], [side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
    image_processor = LlavaOnevisionImageProcessorPil(size={"height": side, "width": side},
                                                      image_grid_pinpoints=pinpoints)  # fmt: skip
    processor = images_only_processor(
        LlavaOnevisionProcessor,
        image_processor=image_processor,
        tokenizer=tok,
        chat_template=template,
        num_image_tokens=(side // 16) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
    )
    qk_heads = {"head_dim": spec.text_hidden // spec.text_heads} if text_model == "qwen3" else {}
    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 1,
            "image_size": side,
            "patch_size": 16,
        },
        text_config={"model_type": text_model, **_text_config(spec, tok, **qk_heads)},
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
        tie_word_embeddings=True,
    )
    return LlavaOnevisionForConditionalGeneration(config), processor, ["<|im_end|>", "<|endoftext|>"]


def write_from_config(family: str, build, out_dir: Path, spec: TinySpec | None = None) -> Path:
    """Build the tiny model ``family`` with ``build(spec) -> (model, processor or tokenizer, stop tokens)`` into
    ``out_dir`` (reused when already built with the same spec)."""
    import torch
    from transformers import GenerationConfig

    spec = spec or TinySpec()
    stamp = {"family": family, "builder_version": 2, **spec.__dict__}  # 2: published layouts
    if already_built(out_dir, stamp):
        return out_dir
    torch.manual_seed(spec.seed)
    model, processor, stops = build(spec)
    tok = getattr(processor, "tokenizer", processor)  # text models: the tokenizer itself
    model.generation_config = GenerationConfig(
        eos_token_id=tok.convert_tokens_to_ids(stops), pad_token_id=tok.pad_token_id, do_sample=False,
        max_new_tokens=32,
    )  # fmt: skip
    with atomic_dir(out_dir) as tmp:
        model.to(torch.float32).save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "tiny_spec.json").write_text(json.dumps(stamp, indent=2))
    return out_dir


# the registry's builders: (out_dir) -> out_dir
qwen2_5_vl = functools.partial(write_from_config, "qwen2_5_vl", build_qwen2_5_vl)
varco_vision = functools.partial(write_from_config, "varco_vision", build_varco_vision)
varco_vision_2 = functools.partial(
    write_from_config, "varco_vision_2", functools.partial(build_varco_vision, text_model="qwen3")
)
