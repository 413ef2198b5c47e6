"""Test models the project builds itself, offline, from configs and a fixed seed (as TRL's own tests do), kept apart
from the runtime code of ``align/models/``. Their weights are random: they test the workbench's code paths (SFT,
GRPO, generation, the batch guards) on CPU, not the models.

One registry, ``TINY_MODELS``: name -> ``"module:function"``, a builder taking the folder to build into and returning
it (reused when already built with the same spec), imported on first use. The names:

* the embedded models a recipe may name as ``model.path`` (``EMBEDDED``, built into ``$ALIGN_CACHE/models/<name>``):
  ``tiny-korean-vlm`` (the default) and ``tiny-korean-lm`` (its language model alone), ``demo-korean-vlm`` (the
  quickstart's: the same with 16 visual tokens per image), tiny CLIP and SigLIP encoders for ``align model compose``;
* one model per family of ``align/models/families.py``, each with the family's architecture class, processor class
  and layout, special tokens and a chat template laid out like the published one (``SAME_AS``: families whose tiny
  model is an embedded one);
* other members of a family: ``exaone_text`` (EXAONE 4.0), ``varco_vision_2`` (VARCO-VISION-2.0).

    align model build-tiny --family qwen2_5_vl --out /tmp/tiny-qwen   # any family of align/models/families.py

The files: ``korean_vlm.py`` (``TinySpec``, the tokenizer every builder trains on the Korean corpus, the embedded VLM
and LM), ``from_config.py`` (the writer of models transformers builds from a config; Qwen2.5-VL, VARCO-VISION),
``reasoning_families.py`` (HyperCLOVAX-SEED-Think 14B / 32B, EXAONE 4.0 / 4.5), ``hyperclovax_vision.py`` (the native
HyperCLOVAX-SEED-Vision at toy size), ``kanana_v.py`` (Kanana-1.5-v with its remote code), ``composed.py`` (the
encoders, and the AIKU-style VLM composed from one).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from align.io import cache_dir

TINY_NAME = "tiny-korean-vlm"
TINY_TEXT_NAME = "tiny-korean-lm"
DEMO_NAME = "demo-korean-vlm"

_T = "align.models.tiny."
TINY_MODELS: dict[str, str] = {
    # the embedded models (model.path)
    TINY_NAME: _T + "korean_vlm:build_tiny",
    TINY_TEXT_NAME: _T + "korean_vlm:build_tiny_lm",
    DEMO_NAME: _T + "korean_vlm:build_demo",
    "tiny-clip-vision": _T + "composed:build_clip",
    "tiny-siglip-vision": _T + "composed:build_siglip",
    # one per family
    "hyperclovax_vision": _T + "hyperclovax_vision:build_tiny_hcx",
    "varco_vision": _T + "from_config:varco_vision",
    "qwen2_5_vl": _T + "from_config:qwen2_5_vl",
    "hyperclovax_think": _T + "reasoning_families:hyperclovax_think",
    "hyperclovax_vision_v2": _T + "reasoning_families:hyperclovax_vision_v2",
    "exaone": _T + "reasoning_families:exaone",
    "kanana_v": _T + "kanana_v:build_tiny_kanana_v",
    "aiku_vlm": _T + "composed:build_tiny_aiku",
    # other members of a family
    "exaone_text": _T + "reasoning_families:exaone_text",
    "varco_vision_2": _T + "from_config:varco_vision_2",
}
EMBEDDED = (TINY_NAME, TINY_TEXT_NAME, DEMO_NAME, "tiny-clip-vision", "tiny-siglip-vision")
SAME_AS = {"hyperclovax_text": TINY_TEXT_NAME, "generic": TINY_NAME}  # the embedded LM is HyperCLOVAX-format Llama


def builder(name: str) -> Callable[[Path], Path]:
    """The builder of the tiny model ``name`` (imported now)."""
    if name not in TINY_MODELS:
        raise ValueError(f"no tiny model {name!r}; choose from {', '.join(TINY_MODELS)}")
    module, _, function = TINY_MODELS[name].partition(":")
    return getattr(importlib.import_module(module), function)


def build_embedded(name: str, progress=None) -> Path:
    """The embedded model ``name`` in the cache, built on first use (reused while its builder and spec match)."""
    out = cache_dir() / "models" / name
    if not (out / "config.json").exists() and progress:
        progress(f"building the embedded model {name} into {out}")
    return Path(builder(name)(out))


def family_models() -> tuple[str, ...]:
    """The families and family members that have a tiny model."""
    return (*SAME_AS, *(name for name in TINY_MODELS if name not in EMBEDDED))


def build_tiny_family(family: str, out_dir: str | Path) -> Path:
    """Build the tiny model of ``family`` (or of another member of one) into ``out_dir`` (reused when already built
    with the same spec); a family whose tiny model is an embedded one gets it from the cache."""
    if family in SAME_AS:
        return build_embedded(SAME_AS[family])
    if family not in family_models():
        raise ValueError(f"no tiny model for family {family!r}; choose from {', '.join(family_models())}")
    return Path(builder(family)(Path(out_dir)))
