"""Loading models and processors, freezing modules by role, and saving a stage's model.

The embedded default ``tiny-korean-vlm`` is built on demand into the cache (``$ALIGN_CACHE``, default
``~/.cache/korean-vlm-align``). Any other ``model.path`` is a local directory or a hub id.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

from align.errors import UserError
from align.models.families import FAMILIES

TINY_NAME = "tiny-korean-vlm"
TINY_TEXT_NAME = "tiny-korean-lm"  # its language model alone, as a LlamaForCausalLM (text-only recipes and tests)
TINY_ENCODERS = {"tiny-clip-vision": "clip", "tiny-siglip-vision": "siglip"}  # for composing tiny VLMs



def _role_patterns() -> dict[str, tuple[str, ...]]:
    """Module-name fragments by role ('vision_tower', 'connector', 'language_model'), over every family."""
    roles: dict[str, tuple[str, ...]] = {}
    for family in FAMILIES.values():
        for role, fragments in family.modules.items():
            roles[role] = roles.get(role, ()) + tuple(f for f in fragments if f not in roles.get(role, ()))
    return roles


ROLE_PATTERNS = _role_patterns()


def register_native_models() -> None:
    """Our own transformers implementations (HyperCLOVAX-SEED-Vision: ``hyperclovax_vlm``) join the Auto classes."""
    import align.models.hcx_vision  # noqa: F401  (registers on import)


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
    if path in TINY_ENCODERS:
        from align.models.tiny_families import build_tiny_encoder

        return str(build_tiny_encoder(TINY_ENCODERS[path], cache_dir() / "models" / path))
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


def images_only_processor(cls, **kwargs):
    """Build processor ``cls`` with ``video_processor=None``. Without torchvision, transformers 5.19 cannot build
    Qwen2.5-VL's or LLaVA-OneVision's video processors (their image processors have PIL backends and work); its
    class check refuses ``None`` and ``save_pretrained`` (also called by the Trainer's checkpoints) trips on it.
    Images-only training needs no video processor."""
    from transformers.processing_utils import ProcessorMixin

    original = ProcessorMixin.check_argument_for_proper_class

    def check(self, name, arg):
        return None if name == "video_processor" and arg is None else original(self, name, arg)

    ProcessorMixin.check_argument_for_proper_class = check
    try:
        processor = cls(video_processor=None, **kwargs)
    finally:
        ProcessorMixin.check_argument_for_proper_class = original
    names = [a for a in cls.get_attributes() if a != "video_processor"]
    processor.get_attributes = lambda: names  # the instance's save loop skips the missing video processor
    return processor


def _load_images_only_processor(path: str, trust_remote_code: bool):
    """Qwen2.5-VL / LLaVA-OneVision (VARCO) processor without its video processor, which needs torchvision."""
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers.utils import cached_file, is_torchvision_available

    if is_torchvision_available():
        return None
    config = {}
    for name in ("processor_config.json", "preprocessor_config.json"):
        file = cached_file(path, name, _raise_exceptions_for_missing_entries=False)
        if file:
            config = {**json.loads(Path(file).read_text(encoding="utf-8")), **config}
    cls = getattr(transformers, str(config.get("processor_class")), None)
    if cls is None or "video_processor" not in cls.get_attributes():
        return None
    init = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in config.items() if k in init and k not in cls.get_attributes()}
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    image_processor = AutoImageProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    return images_only_processor(cls, image_processor=image_processor, tokenizer=tokenizer,
                                 chat_template=tokenizer.chat_template, **kwargs)  # fmt: skip


def load_processor(path: str, trust_remote_code: bool = False):
    from transformers import AutoProcessor, AutoTokenizer

    register_native_models()
    try:
        proc = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, ImportError, AttributeError) as e:
        proc = _load_images_only_processor(path, trust_remote_code)  # images work without torchvision; videos do not
        if proc is None and isinstance(e, (ImportError, AttributeError)):
            from transformers.utils import is_torchvision_available

            if is_torchvision_available():
                raise
            # a processor that needs torchvision for images too: text still works, images cannot
            proc = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            proc.image_error = f"the processor of {path} needs torchvision, which is not installed ({type(e).__name__})"
        elif proc is None:
            proc = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
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


def load_config(path: str, trust_remote_code: bool = False):
    from transformers import AutoConfig

    register_native_models()
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise UserError(f"{path} needs its own model code (remote code)",
                            "set model.trust_remote_code: true in the recipe") from None  # fmt: skip
        raise


def load_model(path: str, spec=None, dtype: str | None = None, family=None):
    """Load a model for training or generation with its family's class: image-text-to-text for VLMs, causal LM for
    text models and for remote-code VLMs that register as causal LMs (HyperCLOVAX-SEED-Vision). ``family``: already
    resolved (else read from the config)."""
    import transformers

    from align.models.families import resolve

    trust = bool(spec and spec.trust_remote_code)
    kwargs = {"dtype": torch_dtype(dtype or (spec.dtype if spec else "auto")), "trust_remote_code": trust}
    if spec and spec.attn_implementation:
        kwargs["attn_implementation"] = spec.attn_implementation
    config = load_config(path, trust)
    family = family or resolve(spec.family if spec else "auto", config, None, path)
    if family.name == "generic":
        loader = "AutoModelForImageTextToText" if is_vision_config(config) else "AutoModelForCausalLM"
    else:
        loader = family.loader
    if family.name == "hyperclovax_vision" and getattr(config, "model_type", None) == "hyperclovax_vlm":
        from align.models.hcx_vision import load_checked  # native: refuses missing or unexpected weights

        return load_checked(path, **{k: v for k, v in kwargs.items() if k != "trust_remote_code"})
    try:
        return getattr(transformers, loader).from_pretrained(path, **kwargs)
    except (ImportError, AttributeError, TypeError, ValueError) as e:
        if not (family.remote_code or trust):
            raise
        raise UserError(
            f"the {family.name} model's own code failed to load {path} under transformers {transformers.__version__}: "
            f"{type(e).__name__}: {e}",
            "published remote code often pins an older transformers; for HyperCLOVAX-SEED-Vision-Instruct-3B (whose "
            "code needs 4.52-4.57.1) set config.json's model_type to hyperclovax_vlm and model.trust_remote_code: "
            "false to use the workbench's native implementation (docs/hyperclovax_vision.md)",
        ) from e


def load_model_and_processor(path: str, spec=None, dtype: str | None = None):
    """Model, processor and family; generation stops on the family's stop tokens (TRL and our engines read the
    model's generation_config)."""
    from align.models.families import apply_generation_stops, resolve

    trust = bool(spec and spec.trust_remote_code)
    processor = load_processor(path, trust)
    tok = getattr(processor, "tokenizer", processor)
    family = resolve(spec.family if spec else "auto", load_config(path, trust), tok, path)
    model = load_model(path, spec, dtype, family)
    apply_generation_stops(model, family, tok)
    return model, processor, family


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
    from align.models.compose import vllm_weight_names

    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        vllm_weight_names(tmp)  # LLaVA: the tower under the names vLLM loads
    return Path(out_dir)
