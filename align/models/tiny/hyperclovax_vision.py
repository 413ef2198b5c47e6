"""The tiny HyperCLOVAX-SEED-Vision model: the native architecture (``align/models/hcx_vision``: SigLIP → C-Abstractor
→ Llama, AnyRes with unpadding and ``image_newline``, video slow/fast queries) at toy size, with the published
weight layout and the later config revision, the HyperCLOVAX chat tokens and the published chat layout
(``hcx_vision.adapter.CHAT_TEMPLATE``), built from a fixed seed. The vocabulary still holds ``<ocr>``, ``<lens>`` and
``<lens_local>`` (no template writes them): removing them would change the weights the oracle ran on.
The oracle fixtures (tests/fixtures/hcx_oracle.json) were computed on exactly this checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from align.io import atomic_dir
from align.models.tiny.korean_vlm import CHAT_TOKENS, TinySpec, already_built, build_tokenizer, text_sizes

IMAGE_TOKEN = "<|dummy3|>"
VIDEO_TOKEN = "<|_unuse_missing_100270|>"
BUILDER_VERSION = 4  # 4: the published chat layout (three turns per image)
GRID, PATCH = 32, 8  # tower image size and patch: 16 patches per grid
QUERIES, SLOW, FAST = 4, 4, 1  # visual queries per image grid, per slow and fast video grid


def tiny_hcx_config(
    vocab_size: int, pad_id: int, eos_id: int, image_id: int, video_id: int, spec: TinySpec, revision: str = "later"
) -> dict:
    """config.json of the tiny model in the published layout (``revision='first'``: the first revision's names)."""
    text = {
        "model_type": "llama",
        "vocab_size": vocab_size,
        **text_sizes(spec),
        "tie_word_embeddings": False,
        "pad_token_id": pad_id,
        "eos_token_id": eos_id,
        "rms_norm_eps": 1e-5,
    }
    vision = {
        "model_type": "siglip_vision_model",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 1,
        "image_size": GRID,
        "patch_size": PATCH,
    }
    common = {
        "model_type": "hyperclovax_vlm",
        "architectures": ["HCXVisionForCausalLM"],
        "vision_config": vision,
        "use_nth_layer": -2,
        "anyres": True,
        "unpad": True,
        "max_num_grids": 9,
        "use_1x1_grid": False,
        "mm_projector_type": "cabstractor",
        "proj_pos_emb": True,
        "proj_prenorm": False,
        "decoder_max_length": spec.max_position_embeddings,
        "tie_word_embeddings": False,
    }
    if revision == "first":
        return {**common, "language_config": text, "img_start_id": image_id, "num_queries_vis_abstractor": QUERIES}
    return {**common, "text_config": text, "image_token_id": image_id, "video_token_id": video_id,
            "num_queries_vis_abstractor_image": QUERIES, "num_queries_vis_abstractor_video_slow": SLOW,
            "num_queries_vis_abstractor_video_fast": FAST, "first_last_frames_slow": False}  # fmt: skip


def build_tiny_hcx(out_dir: str | Path, spec: TinySpec | None = None) -> Path:
    import torch
    from transformers import GenerationConfig

    from align.models.hcx_vision import (
        CHAT_TEMPLATE,
        HCXVisionConfig,
        HCXVisionForCausalLM,
        HCXVisionImageProcessor,
        HCXVisionProcessor,
    )

    spec = spec or TinySpec()
    out_dir = Path(out_dir)
    stamp = {"family": "hyperclovax_vision", "builder_version": BUILDER_VERSION, **spec.__dict__}
    if already_built(out_dir, stamp):
        return out_dir
    # the three added tokens are unused; they keep the vocabulary (and so the oracle's weights) as they were
    tok = build_tokenizer(spec, CHAT_TOKENS + [IMAGE_TOKEN, VIDEO_TOKEN], added=("<ocr>", "<lens>", "<lens_local>"),
                          image_token=None, template=CHAT_TEMPLATE)  # fmt: skip
    ids = tok.convert_tokens_to_ids
    config = HCXVisionConfig(**tiny_hcx_config(len(tok), ids("<|pad|>"), ids("<|endofturn|>"), ids(IMAGE_TOKEN),
                                               ids(VIDEO_TOKEN), spec))  # fmt: skip
    image_processor = HCXVisionImageProcessor(size=GRID, anyres=True, unpad=True, max_num_grids=9,
                                              num_queries_vis_abstractor=QUERIES,
                                              num_queries_vis_abstractor_video_slow=SLOW,
                                              num_queries_vis_abstractor_video_fast=FAST, patch_size=PATCH)  # fmt: skip
    processor = HCXVisionProcessor(image_processor=image_processor, tokenizer=tok, chat_template=CHAT_TEMPLATE)
    torch.manual_seed(spec.seed)
    model = HCXVisionForCausalLM(config).to(torch.float32)
    with torch.no_grad():  # a random model whose visual path matters: the newline and position terms are not zero
        for name, param in sorted(model.named_parameters()):
            if name.endswith((".bn.bias", "norm.bias")) or "bias" in name and "mm_projector" in name:
                param.normal_(0.0, 0.02)
    model.generation_config = GenerationConfig(eos_token_id=[ids("<|endofturn|>"), ids("<|stop|>")],
                                               pad_token_id=ids("<|pad|>"), do_sample=False, max_new_tokens=32)  # fmt: skip
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "tiny_spec.json").write_text(json.dumps(stamp, indent=2))
    return out_dir
