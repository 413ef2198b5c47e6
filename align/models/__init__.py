"""Loading models and processors, freezing modules by role, and saving a stage's model.

The embedded default ``tiny-korean-vlm`` is built on demand into the cache (``$ALIGN_CACHE``, default
``~/.cache/korean-vlm-align``). Any other ``model.path`` is a local directory or a hub id.
"""

from __future__ import annotations

import os
from pathlib import Path

from align.errors import UserError

TINY_NAME = "tiny-korean-vlm"
TINY_TEXT_NAME = "tiny-korean-lm"  # its language model alone, as a LlamaForCausalLM (text-only recipes and tests)

# Module-name fragments by role, across the architectures we support (Idefics3, LLaVA, Qwen2.5-VL, ...).
ROLE_PATTERNS = {
    "vision_tower": ("vision_model", "vision_tower", "visual.blocks", "visual.patch_embed", "vision_encoder"),
    "connector": ("connector", "multi_modal_projector", "mm_projector", "visual.merger", "image_newline"),
    "language_model": ("text_model", "language_model", "lm_head", "embed_tokens"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("ALIGN_CACHE", Path.home() / ".cache" / "korean-vlm-align"))


def resolve_model_path(path: str, progress=print) -> str:
    """Turn ``model.path`` into something ``from_pretrained`` takes, building the tiny model if named."""
    if path == TINY_NAME:
        from align.models.tiny import build_tiny

        out = cache_dir() / "models" / TINY_NAME
        if not (out / "tiny_spec.json").exists() and progress:
            progress(f"building the embedded model {TINY_NAME} into {out}")
        return str(build_tiny(out))
    if path == TINY_TEXT_NAME:
        from align.models.tiny import TinySpec, build_tiny

        out = cache_dir() / "models" / TINY_TEXT_NAME
        if not (out / "tiny_spec.json").exists() and progress:
            progress(f"building the embedded text model {TINY_TEXT_NAME} into {out}")
        return str(build_tiny(out, TinySpec(text_only=True)))
    p = Path(path).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise UserError(
                f"model directory {p} has no config.json",
                "point model.path at a directory written by save_pretrained, or at a hub id",
            )
        return str(p.resolve())
    if path.startswith((".", "/", "~")) or path.count("/") > 1:
        raise UserError(f"model path {path} does not exist", f"check model.path, or use '{TINY_NAME}'")
    return path  # a hub id


def is_vision_config(config) -> bool:
    return hasattr(config, "vision_config") or "vision" in type(config).__name__.lower()


def load_processor(path: str, trust_remote_code: bool = False):
    from transformers import AutoProcessor, AutoTokenizer

    try:
        proc = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError):
        proc = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (ImportError, AttributeError) as e:
        from transformers.utils import is_torchvision_available

        if is_torchvision_available():
            raise
        # e.g. Qwen2.5-VL's processor needs torchvision (absent beside CPU torch): text still works, images cannot
        proc = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        proc.image_error = f"the processor of {path} needs torchvision, which is not installed ({type(e).__name__})"
    tok = getattr(proc, "tokenizer", proc)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if getattr(tok, "chat_template", None) is None and getattr(proc, "chat_template", None) is None:
        raise UserError(
            f"the processor of {path} has no chat template",
            "use an instruct/chat model, or add a chat_template.jinja to the model directory",
        )
    return proc


def torch_dtype(name: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, name)


def load_model(path: str, spec=None, dtype: str | None = None):
    """Load a model for training or generation: image-text-to-text for VLMs, causal LM for text models."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    trust = bool(spec and spec.trust_remote_code)
    kwargs = {"dtype": torch_dtype(dtype or (spec.dtype if spec else "auto")), "trust_remote_code": trust}
    if spec and spec.attn_implementation:
        kwargs["attn_implementation"] = spec.attn_implementation
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise UserError(f"{path} needs its own model code", "set model.trust_remote_code: true") from None
        raise
    auto = AutoModelForImageTextToText if is_vision_config(config) else AutoModelForCausalLM
    return auto.from_pretrained(path, **kwargs)


def module_matches(name: str, pattern: str) -> bool:
    fragments = ROLE_PATTERNS.get(pattern, (pattern,))
    return any(f in name for f in fragments)


def freeze_modules(model, patterns: list[str]) -> dict[str, int]:
    """Set requires_grad=False on parameters whose name matches a role or a substring. Returns counts."""
    counts = {}
    for pattern in patterns:
        n = 0
        for name, param in model.named_parameters():
            if module_matches(name, pattern):
                param.requires_grad_(False)
                n += param.numel()
        if n == 0:
            raise UserError(
                f"freeze: '{pattern}' matches no parameter of {type(model).__name__}",
                f"use one of {', '.join(ROLE_PATTERNS)} or a substring of a parameter name",
            )
        counts[pattern] = n
    return counts


def save_model(model, processor, out_dir: str | Path) -> Path:
    """Save a full HF model directory (LoRA adapters merged) atomically."""
    from align.io import atomic_dir

    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return Path(out_dir)
