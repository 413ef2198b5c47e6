"""Tiny vision encoders (CLIP, SigLIP) for ``align model compose`` and its tests, and the AIKU-style VLM composed
from the CLIP one and the embedded language model."""

from __future__ import annotations

import functools
from pathlib import Path

from align.io import atomic_dir
from align.models.compose import compose
from align.models.tiny import TINY_TEXT_NAME


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


build_clip = functools.partial(build_tiny_encoder, "clip")  # the registry's builders: (out_dir) -> out_dir
build_siglip = functools.partial(build_tiny_encoder, "siglip")


def build_tiny_aiku(out_dir: Path, pool: int = 2) -> Path:
    """The tiny CLIP encoder (32 px, 8-px patches: a 4×4 grid) + the tiny HyperCLOVAX-format language model through
    the AIKU connector with ``pool`` (2: 4 image tokens per image); seed 0. Reused when already composed."""
    if (out_dir / "config.json").exists():
        return out_dir
    return compose("tiny-clip-vision", TINY_TEXT_NAME, out_dir, "aiku", pool, seed=0, progress=lambda m: None)
