"""Tiny models the project builds itself, offline, from configs (as TRL's own tests do).

* The embedded models a recipe may name as ``model.path`` (``EMBEDDED``): ``tiny-korean-vlm`` (the default,
  ``align/models/tiny.py``), ``tiny-korean-lm`` (its language model alone, as a LlamaForCausalLM), and tiny CLIP and
  SigLIP encoders for ``align model compose``. Built on first use into ``$ALIGN_CACHE/models/<name>``.
* One tiny model per model family (``FAMILY_BUILDERS``), with the family's real architecture class, processor class
  and processor layout, its special tokens and a chat template laid out like the real one, and a tokenizer trained
  on the Korean corpus. They test each family's code paths (SFT, GRPO, generation, the batch guards) on CPU; their
  weights are random.

    align model build-tiny --family qwen2_5_vl --out /tmp/tiny-qwen   # any family of align/models/families.py

``hyperclovax_text`` is the embedded text model itself (``tiny-korean-lm``: Llama + the HyperCLOVAX chat format).
``hyperclovax_vision`` is the native HyperCLOVAX-SEED-Vision architecture at toy size (``tiny_hcx.py``).
``aiku_vlm`` is ``align model compose --projector aiku`` of the tiny CLIP encoder and ``tiny-korean-lm``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

from align.io import atomic_dir, cache_dir
from align.models.processors import images_only_processor
from align.models.tiny import (
    QWEN_TOKENS,
    VARCO_MARKUP,
    VARCO_TOKENS,
    TinySpec,
    already_built,
    build_tiny,
    build_tokenizer,
    qwen_template,
)
from align.models.tiny import text_config as _text_config
from align.models.tiny_families_2026 import ARCHITECTURES_2026
from align.models.tiny_hcx import build_tiny_hcx
from align.models.tiny_kanana import build_tiny_kanana_v

TINY_NAME = "tiny-korean-vlm"
TINY_TEXT_NAME = "tiny-korean-lm"


def build_qwen2_5_vl(spec: TinySpec):
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessorPil,
    )

    template = qwen_template("<|vision_start|><|image_pad|><|vision_end|>")
    tok = build_tokenizer(spec, QWEN_TOKENS, added=(), eos="<|im_end|>", image_token="<|image_pad|>",
                          template=template)  # fmt: skip
    ids = tok.convert_tokens_to_ids
    # 14-px patches merged 2×2: a 64-px image becomes a 56×56 grid of 4×4 patches -> 4 image tokens
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, patch_size=14,
                                               merge_size=2, temporal_patch_size=2)  # fmt: skip
    processor = images_only_processor(Qwen2_5_VLProcessor, image_processor=image_processor, tokenizer=tok,
                                      chat_template=template)  # fmt: skip
    head_dim = spec.text_hidden // spec.text_heads
    config = Qwen2_5_VLConfig(
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 1,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": spec.text_hidden,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
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


ARCHITECTURES = {
    "qwen2_5_vl": build_qwen2_5_vl,
    "varco_vision": build_varco_vision,
    "varco_vision_2": functools.partial(build_varco_vision, text_model="qwen3"),
    **ARCHITECTURES_2026,
}


def _build_from_config(family: str, out_dir: Path, spec: TinySpec | None = None) -> Path:
    """Build the tiny model of a family that transformers has natively (``ARCHITECTURES``) into ``out_dir``."""
    import torch
    from transformers import GenerationConfig

    spec = spec or TinySpec()
    stamp = {"family": family, "builder_version": 2, **spec.__dict__}  # 2: published layouts
    if already_built(out_dir, stamp):
        return out_dir
    torch.manual_seed(spec.seed)
    model, processor, stops = ARCHITECTURES[family](spec)
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


def build_tiny_encoder(kind: str, out_dir: str | Path, image_size: int = 32, patch_size: int = 8) -> Path:
    """A tiny CLIP or SigLIP vision encoder with its image processor (for ``align model compose`` tests and the
    tiny compose recipe). 32-px images in 8-px patches: 16 image tokens."""
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        CLIPVisionModel,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 1,
                 "image_size": image_size, "patch_size": patch_size}  # fmt: skip
    torch.manual_seed(0)
    if kind == "clip":
        model = CLIPVisionModel(CLIPVisionConfig(**sizes))
        processor = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                          crop_size={"height": image_size, "width": image_size})  # fmt: skip
    elif kind == "siglip":
        model = SiglipVisionModel(SiglipVisionConfig(**sizes))
        processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    else:
        raise ValueError(f"kind must be clip or siglip, not {kind!r}")
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return out_dir


# names a recipe may use as model.path -> builder of that model into a folder
EMBEDDED: dict[str, Callable[[Path], Path]] = {
    TINY_NAME: lambda out: build_tiny(out),
    TINY_TEXT_NAME: lambda out: build_tiny(out, TinySpec(text_only=True)),
    "tiny-clip-vision": lambda out: build_tiny_encoder("clip", out),
    "tiny-siglip-vision": lambda out: build_tiny_encoder("siglip", out),
}


def build_embedded(name: str, progress=None) -> Path:
    """The embedded model ``name`` in the cache, built on first use (reused while its builder and spec match)."""
    out = cache_dir() / "models" / name
    if not (out / "config.json").exists() and progress:
        progress(f"building the embedded model {name} into {out}")
    return EMBEDDED[name](out)


def build_tiny_aiku(out_dir: Path, pool: int = 2) -> Path:
    """The tiny CLIP encoder (32 px, 8-px patches: a 4×4 grid) + the tiny HyperCLOVAX-format language model through
    the AIKU connector with ``pool`` (2: 4 image tokens per image); seed 0. Reused when already composed."""
    from align.models.compose import compose  # compose reads models through align.models' loaders

    if (out_dir / "config.json").exists():
        return out_dir
    return compose("tiny-clip-vision", TINY_TEXT_NAME, out_dir, "aiku", pool, seed=0, progress=lambda m: None)


# family (align/models/families.py) -> builder of its tiny model into a folder
FAMILY_BUILDERS: dict[str, Callable[[Path], Path]] = {
    "hyperclovax_text": lambda out: build_embedded(TINY_TEXT_NAME),  # the embedded text model is one
    "hyperclovax_vision": build_tiny_hcx,
    "varco_vision": lambda out: _build_from_config("varco_vision", out),
    "qwen2_5_vl": lambda out: _build_from_config("qwen2_5_vl", out),
    "hyperclovax_think": lambda out: _build_from_config("hyperclovax_think", out),
    "hyperclovax_vision_v2": lambda out: _build_from_config("hyperclovax_vision_v2", out),
    "exaone": lambda out: _build_from_config("exaone", out),
    "kanana_v": build_tiny_kanana_v,
    "aiku_vlm": build_tiny_aiku,
    "generic": lambda out: build_embedded(TINY_NAME),  # the embedded model (Idefics3) is a generic one
}


# more tiny models of a family's other members: EXAONE 4.0 (text), VARCO-VISION-2.0 (Qwen3 + SigLIP2)
VARIANT_BUILDERS: dict[str, Callable[[Path], Path]] = {
    "exaone_text": lambda out: _build_from_config("exaone_text", out),
    "varco_vision_2": lambda out: _build_from_config("varco_vision_2", out),
}


def build_tiny_family(family: str, out_dir: str | Path) -> Path:
    """Build the tiny model of ``family`` (or of a variant, ``VARIANT_BUILDERS``) into ``out_dir`` (reused when
    already built with the same spec)."""
    builders = {**FAMILY_BUILDERS, **VARIANT_BUILDERS}
    if family not in builders:
        raise ValueError(f"no tiny model for family {family!r}; choose from {', '.join(builders)}")
    return Path(builders[family](Path(out_dir)))
