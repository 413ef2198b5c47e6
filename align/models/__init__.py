"""Loading models and processors, freezing modules by role, and saving a stage's model.

The embedded default ``tiny-korean-vlm`` is built on demand into the cache (``$ALIGN_CACHE``, default
``~/.cache/korean-vlm-align``). Any other ``model.path`` is a local directory or a hub id.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from align.chat import set_template_kwargs
from align.chat import template_kwargs as processor_template_kwargs
from align.errors import UserError
from align.io import atomic_dir
from align.models.families import FAMILIES, apply_generation_stops, is_vision_config, resolve
from align.models.processors import load_images_only_processor, load_renamed_processor, renamed_processor
from align.models.reasoning import reasoning_format, template_kwargs
from align.models.tiny import EMBEDDED, TINY_NAME, build_embedded  # the registry only: builders load on use


def _role_patterns() -> dict[str, tuple[str, ...]]:
    """Module-name fragments by role ('vision_tower', 'connector', 'language_model'), over every family."""
    roles: dict[str, tuple[str, ...]] = {}
    for family in FAMILIES.values():
        for role, fragments in family.modules.items():
            roles[role] = roles.get(role, ()) + tuple(f for f in fragments if f not in roles.get(role, ()))
    return roles


ROLE_PATTERNS = _role_patterns()


def register_native_models() -> None:
    """Our own transformers implementations join the Auto classes (HyperCLOVAX-SEED-Vision: ``hyperclovax_vlm``; the
    AIKU-style composed VLM: ``aiku_vlm``), and HyperCLOVAX-SEED-Think-32B's ``"vlm"`` configs find transformers'
    class. Imported here, on the first config or processor load, because importing them loads transformers."""
    from transformers import CONFIG_MAPPING, HyperCLOVAXVisionV2Config

    import align.models.aiku_vlm  # registers on import
    import align.models.hcx_vision  # noqa: F401  (registers on import)

    # HyperCLOVAX-SEED-Think-32B's published config says model_type "vlm" (with remote code that no longer loads);
    # transformers' native config class reads it and remaps the type, once "vlm" names it
    CONFIG_MAPPING.register("vlm", HyperCLOVAXVisionV2Config, exist_ok=True)


def resolve_model_path(path: str, progress=print) -> str:
    """Turn ``model.path`` into something ``from_pretrained`` takes, building an embedded tiny model if named."""
    if path in EMBEDDED:
        return str(build_embedded(path, progress))
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


# model_type -> "module:function" building the processor from the folder's published processor files natively
# (the published ones name remote-code classes that transformers refuses without trust_remote_code)
NATIVE_PROCESSORS = {"hyperclovax_vlm": "align.models.hcx_vision.published:load_published"}


def _processor_files(path: str) -> str:
    """What the folder's processor files name, for an error message."""
    from transformers.utils import cached_file

    found = []
    for name in ("preprocessor_config.json", "processor_config.json"):
        file = cached_file(path, name, _raise_exceptions_for_missing_entries=False)
        if file:
            data = json.loads(Path(file).read_text(encoding="utf-8"))
            named = {k: data[k] for k in ("processor_class", "image_processor_type") if k in data}
            found.append(f"{name} names {named or 'no class'}")
    return "; ".join(found) or "it has neither preprocessor_config.json nor processor_config.json"


def load_processor(path: str, trust_remote_code: bool = False):
    """The model's processor (a tokenizer for text models). A vision model whose image processor cannot be built
    stops naming its processor files and what they name: it never degrades to a text-only tokenizer."""
    from transformers import AutoProcessor

    register_native_models()
    try:
        config = load_config(path, trust_remote_code)
    except (OSError, ValueError):  # a folder with the processor's files only (a saved processor)
        config = None
    vision = config is not None and is_vision_config(config)
    native = NATIVE_PROCESSORS.get(getattr(config, "model_type", None))
    if native:
        module, _, function = native.partition(":")
        proc = getattr(importlib.import_module(module), function)(path)
    elif renamed_processor(path):  # a published remote-code class transformers now ships under another name
        proc = load_renamed_processor(path)
    else:
        try:
            proc = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
        except (OSError, ValueError, KeyError, ImportError, AttributeError) as e:
            proc = load_images_only_processor(path, trust_remote_code)  # images work without torchvision
            if proc is None:
                if not vision:
                    raise
                raise UserError(
                    f"the image processor of the vision model {path} cannot be built ({_processor_files(path)}): "
                    f"{type(e).__name__}: {e}",
                    _vision_processor_hint(path, e),
                ) from None
    if vision and not hasattr(proc, "image_processor"):
        raise UserError(
            f"{path} is a vision model but its processor files give only a tokenizer ({_processor_files(path)})",
            "check processor_class / image_processor_type against the model's hub folder (a class transformers does "
            "not ship needs model.trust_remote_code: true), or add the missing preprocessor_config.json",
        )
    tok = getattr(proc, "tokenizer", proc)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if getattr(tok, "chat_template", None) is None and getattr(proc, "chat_template", None) is None:
        raise UserError(
            f"the processor of {path} has no chat template",
            "use an instruct/chat model, or add a chat_template.jinja to the model directory",
        )
    return proc


def _vision_processor_hint(path: str, error: Exception) -> str:
    from transformers.utils import is_torchvision_available

    if _processor_files(path).startswith("it has neither"):
        return "copy the model's preprocessor_config.json (and processor_config.json, if its hub folder has one)"
    if isinstance(error, (ImportError, AttributeError)) and not is_torchvision_available():
        return "this processor needs torchvision, which is not installed"
    if "trust_remote_code" in str(error) or "custom code" in str(error):
        return "the processor class is the model's own code: set model.trust_remote_code: true"
    return "check the class names in the processor files against the model's hub folder"


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


def model_family(path: str, spec=None, tokenizer=None):
    """The family of the model at ``path`` (``spec.family`` checked against its config, or detected), for a loader
    of its own; whoever loaded the model passes its family on (``Policy.family``, ``Engine.family``)."""
    trust = bool(spec and spec.trust_remote_code)
    return resolve(spec.family if spec else "auto", load_config(path, trust), tokenizer, path)


def load_model(path: str, spec=None, dtype: str | None = None, family=None):
    """Load a model for training or generation with its family's class (``Family.loader_for``) or its family's own
    loader (``Family.load``). ``family``: already resolved (else read from the config)."""
    import transformers

    trust = bool(spec and spec.trust_remote_code)
    kwargs = {"dtype": torch_dtype(dtype or (spec.dtype if spec else "auto")), "trust_remote_code": trust}
    if spec and spec.attn_implementation:
        kwargs["attn_implementation"] = spec.attn_implementation
    config = load_config(path, trust)
    family = family or resolve(spec.family if spec else "auto", config, None, path)
    if family.load:  # a native implementation that refuses missing or unexpected weights
        return family.hook("load")(path, **{k: v for k, v in kwargs.items() if k != "trust_remote_code"})
    try:
        return getattr(transformers, family.loader_for(config)).from_pretrained(path, **kwargs)
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
    trust = bool(spec and spec.trust_remote_code)
    processor = load_processor(path, trust)
    tok = getattr(processor, "tokenizer", processor)
    family = resolve(spec.family if spec else "auto", load_config(path, trust), tok, path)
    model = load_model(path, spec, dtype, family)
    apply_generation_stops(model, family, tok)
    configure_chat(processor, family, spec)
    return model, processor, family


def configure_chat(processor, family, spec=None):
    """Apply the recipe's ``model.thinking`` switch, as the family's template names it, to the processor."""
    set_template_kwargs(processor, template_kwargs(family, spec.thinking if spec else "auto"))
    return processor


def chat_template_kwargs(family, spec=None) -> dict:
    """The chat template's switches for ``model.thinking`` (``{}`` for ``auto``), e.g. for TRL's
    ``chat_template_kwargs``."""
    if spec is None or spec.thinking == "auto":
        return {}
    return template_kwargs(family, spec.thinking)


def model_reasoning_format(processor, family):
    """How completions of this model split into reasoning and answer, with the processor's template switches
    (None: not a reasoning model)."""
    tok = getattr(processor, "tokenizer", processor)
    return reasoning_format(family, tok, processor_template_kwargs(processor))


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


def llava_key(name: str) -> str:
    """transformers 5.19's saved name -> the original LLaVA layout vLLM's loader maps (vision_tower.vision_model.…)."""
    if name.startswith("vision_tower.") and not name.startswith("vision_tower.vision_model."):
        return "vision_tower.vision_model." + name[len("vision_tower.") :]
    return name


def vllm_weight_names(folder: Path) -> None:
    """Rename a saved LLaVA model's tower weights to the original layout vLLM loads (transformers still loads it).
    Called on every save of a LLaVA model (compose and each stage's output)."""
    from safetensors.torch import load_file, save_file

    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "llava":
        return
    for shard in sorted(folder.glob("*.safetensors")):
        weights = load_file(str(shard))
        if any(llava_key(k) != k for k in weights):
            save_file({llava_key(k): v for k, v in weights.items()}, str(shard), metadata={"format": "pt"})
    index = folder / "model.safetensors.index.json"
    if index.exists():
        data = json.loads(index.read_text())
        data["weight_map"] = {llava_key(k): v for k, v in data["weight_map"].items()}
        index.write_text(json.dumps(data, indent=2))


def save_model(model, processor, out_dir: str | Path, extra=None) -> Path:
    """Save a full HF model directory (LoRA adapters merged) atomically; ``extra(folder)`` adds files to it before
    it is renamed into place."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        vllm_weight_names(tmp)  # LLaVA: the tower under the names vLLM loads
        if extra is not None:
            extra(tmp)
    return Path(out_dir)
