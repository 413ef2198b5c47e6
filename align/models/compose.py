"""Compose a small VLM from a vision encoder and a causal language model (the LLaVA and AIKU recipes).

    align model compose --vision openai/clip-vit-large-patch14-336 \\
        --language naver-hyperclovax/HyperCLOVAX-SEED-Text-Instruct-0.5B --projector aiku --pool 2 --out my-vlm

writes a model directory (weights, ``LlavaProcessor``, chat template, generation config) that transformers and vLLM
load:

* vision tower: the encoder's weights (CLIP or SigLIP, from a vision-only or a full CLIP/SigLIP checkpoint), features
  from its second-to-last layer as LLaVA does; CLIP drops its CLS token ('default'), SigLIP keeps every patch ('full');
* connector, freshly initialised from ``seed`` (the ``align`` stage trains it):
  ``mlp2x_gelu``: linear → GELU → linear, a standard ``LlavaForConditionalGeneration`` (one image token per patch);
  ``aiku``: the same MLP → N×N average pooling over the patch grid (``pool``) → residual depthwise convolution(s)
  (``resnet_blocks``, ``resnet_kernel``), our ``AikuVLMForConditionalGeneration`` (``model_type: aiku_vlm``,
  ``align/models/aiku_vlm``), (grid / N)² image tokens per image;
* language model: its weights, tokenizer and generation config (plus the stop tokens of its family, when the
  workbench knows it), and a registered ``<image>`` token;
* chat template: the language model's own, behind a prefix that turns multimodal content (lists of image and text
  parts, as TRL passes them) into strings with ``<image>`` where each image goes.

Every argument is checked before anything is written. LLaVA weights follow the original LLaVA layout
(``vision_tower.vision_model.…``, ``language_model.model.…``, ``multi_modal_projector.…``): transformers 5.19 writes
the tower as ``vision_tower.embeddings…``, which vLLM's LLaVA loader does not map. ``--pool`` needs ``aiku``:
transformers' LLaVA has no token pooling (``POOL_HINT``).
"""

from __future__ import annotations

import json
from pathlib import Path

from align.errors import UserError
from align.io import atomic_dir
from align.models import resolve_model_path, vllm_weight_names
from align.models.families import apply_generation_stops, detect, is_vision_config

PROJECTORS = ("mlp2x_gelu", "aiku")
IMAGE_TOKEN = "<image>"
POOL_HINT = (
    "LlavaForConditionalGeneration (what --projector mlp2x_gelu writes) has no image-token pooling; use --projector "
    "aiku (MLP → N×N average pooling → ResNet block: (grid / N)² image tokens per image)"
)
DEFAULT_POOL = {"mlp2x_gelu": 1, "aiku": 2}  # AIKU: CLIP-L/14-336's 24×24 patches → 12×12 = 144 image tokens

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


TEXT_HALVES = {"clip_text_model": "CLIP", "siglip_text_model": "SigLIP"}


def _vision_config(path: str):
    """(resolved path, vision config, kind) of a CLIP/SigLIP vision or full checkpoint; no weights loaded."""
    from transformers import AutoConfig

    path = resolve_model_path(path, progress=None)
    config = AutoConfig.from_pretrained(path)
    kind = {"clip": "clip", "clip_vision_model": "clip", "siglip": "siglip", "siglip_vision_model": "siglip"}.get(
        config.model_type
    )
    if config.model_type in TEXT_HALVES:
        raise UserError(
            f"--vision {path}: a {TEXT_HALVES[config.model_type]} text encoder ({config.model_type!r}) has no vision "
            "half",
            "use the vision model or the full CLIP/SigLIP checkpoint (e.g. openai/clip-vit-large-patch14-336)",
        )
    if kind is None:
        raise UserError(
            f"--vision {path}: a {config.model_type!r} model is not a CLIP or SigLIP vision encoder",
            "use a CLIP (openai/clip-vit-large-patch14-336) or SigLIP (google/siglip-so400m-patch14-384) checkpoint",
        )
    return path, getattr(config, "vision_config", config), kind


def _vision_encoder(path: str, kind: str):
    from transformers import CLIPVisionModel, SiglipVisionModel

    cls = CLIPVisionModel if kind == "clip" else SiglipVisionModel
    return cls.from_pretrained(path)  # from a full CLIP/SigLIP checkpoint this keeps the vision half


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
    lm = AutoModelForCausalLM.from_pretrained(path)
    try:  # the stop tokens of the language model's family (HyperCLOVAX: <|endofturn|>, <|stop|>) join its own
        apply_generation_stops(lm, detect(lm.config, tokenizer, path), tokenizer)
    except UserError:
        pass  # a family the workbench does not know: the model's generation_config alone
    return path, lm, tokenizer


def _check_connector(projector: str, pool: int | None, sizes: dict) -> int:
    """The pool to use; refuses settings the projector does not take."""
    if projector not in PROJECTORS:
        raise UserError(f"--projector {projector!r} is not supported", f"use one of {', '.join(PROJECTORS)}")
    pool = DEFAULT_POOL[projector] if pool is None else pool
    if pool < 1:
        raise UserError(f"--pool {pool}: the pooling window must be 1 or more patches per side", "e.g. --pool 2")
    if projector == "mlp2x_gelu":
        if pool != 1:
            raise UserError(f"--pool {pool}: the mlp2x_gelu projector cannot pool image tokens", POOL_HINT)
        given = [k for k, v in sizes.items() if v is not None]
        if given:
            raise UserError(f"--projector mlp2x_gelu has no {', '.join(given)}",
                            "these sizes belong to --projector aiku")  # fmt: skip
    for name, value in sizes.items():
        if value is not None and (value < 0 or (value == 0 and name != "resnet_blocks")):
            raise UserError(f"{name} {value}: must be positive", "see `align model compose --help`")
    if sizes.get("resnet_kernel") is not None and sizes["resnet_kernel"] % 2 == 0:
        raise UserError(f"resnet_kernel {sizes['resnet_kernel']}: must be odd (the pooled grid keeps its size)",
                        "use 3 (AIKU's) or 1, 5, 7")  # fmt: skip
    return pool


def _check_pool(pool: int, vision_config, vision_path: str) -> int:
    """Image tokens per image; refuses a pool that does not divide the encoder's patch grid."""
    grid = vision_config.image_size // vision_config.patch_size
    if grid % pool:
        divisors = [d for d in range(1, grid + 1) if grid % d == 0]
        raise UserError(
            f"--pool {pool} does not divide the {grid}×{grid} patch grid of {vision_path} "
            f"({vision_config.image_size} px in {vision_config.patch_size}-px patches)",
            f"use a divisor of {grid}: {', '.join(map(str, divisors))} "
            f"(→ {', '.join(str((grid // d) ** 2) for d in divisors)} image tokens per image)",
        )
    return (grid // pool) ** 2


def _model(projector: str, base: dict, pool: int, sizes: dict, tokens: int):
    """The freshly initialised composed model (connector random, the rest overwritten by the caller)."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    if projector == "mlp2x_gelu":
        return LlavaForConditionalGeneration(LlavaConfig(**base, image_seq_length=tokens))
    from align.models.aiku_vlm import AikuVLMConfig, AikuVLMForConditionalGeneration

    sizes = {k: v for k, v in sizes.items() if v is not None}
    if "projector_hidden" in sizes:
        sizes["projector_hidden_size"] = sizes.pop("projector_hidden")
    return AikuVLMForConditionalGeneration(AikuVLMConfig(**base, image_seq_length=tokens, pool=pool, **sizes))


def compose(vision: str, language: str, out_dir: str | Path, projector: str = "mlp2x_gelu", pool: int | None = None,
            seed: int = 0, progress=print, *, resnet_blocks: int | None = None, resnet_kernel: int | None = None,
            projector_hidden: int | None = None) -> Path:  # fmt: skip
    """Compose into ``out_dir`` (written atomically, after every check). ``pool``: None is 1 for mlp2x_gelu and 2
    for aiku; ``resnet_blocks`` (1), ``resnet_kernel`` (3) and ``projector_hidden`` (the language model's hidden
    size) are the aiku connector's sizes."""
    import torch
    from transformers import AutoImageProcessor, LlavaProcessor

    sizes = {"resnet_blocks": resnet_blocks, "resnet_kernel": resnet_kernel, "projector_hidden": projector_hidden}
    pool = _check_connector(projector, pool, sizes)
    vision_path, vision_config, kind = _vision_config(vision)
    tokens = _check_pool(pool, vision_config, vision_path)
    language_path, lm, tokenizer = _language_model(language)
    encoder = _vision_encoder(vision_path, kind)
    where = f"pool {pool}, {tokens} image tokens per image" if projector == "aiku" else f"{tokens} image tokens"
    progress(f"composing {kind} encoder {vision_path} + {type(lm).__name__} {language_path} ({projector}, {where})")
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if image_token_id >= lm.get_input_embeddings().weight.shape[0]:
        lm.resize_token_embeddings(len(tokenizer))
    strategy = "default" if kind == "clip" else "full"  # CLIP's CLS token is dropped, SigLIP has none
    base = {
        "vision_config": encoder.config.to_dict(),
        "text_config": lm.config.to_dict(),
        "image_token_id": image_token_id,
        "projector_hidden_act": "gelu",
        "vision_feature_select_strategy": strategy,
        "vision_feature_layer": -2,
        "tie_word_embeddings": bool(getattr(lm.config, "tie_word_embeddings", False)),
    }
    torch.manual_seed(seed)
    model = _model(projector, base, pool, sizes, tokens).to(lm.dtype)
    model.model.vision_tower.load_state_dict(encoder.state_dict())
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    model.generation_config = lm.generation_config
    image_processor = AutoImageProcessor.from_pretrained(vision_path)
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size * pool,  # the pixel side of one image token
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1 if kind == "clip" else 0,
        image_token=IMAGE_TOKEN,
        chat_template=FLATTEN_CONTENT + tokenizer.chat_template,
    )
    connector = sum(p.numel() for p in model.model.multi_modal_projector.parameters())
    record = {"vision": vision_path, "language": language_path, "projector": projector, "pool": pool, "seed": seed,
              "image_tokens_per_image": tokens, "connector_parameters": connector}  # fmt: skip
    if projector == "aiku":
        record["sizes"] = {k: getattr(model.config, k) for k in ("projector_hidden_size", "resnet_blocks",
                                                                  "resnet_kernel")}  # fmt: skip
        record["load"] = "import align.models.aiku_vlm before transformers' Auto classes (it registers aiku_vlm)"
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        vllm_weight_names(tmp)
        (tmp / "composed_from.json").write_text(json.dumps(record, indent=2))
    return Path(out_dir)
