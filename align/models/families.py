"""Model families: what the workbench must know about each base model to train it correctly.

A family is recognised from the model's ``config.json`` (and tokenizer) or named in the recipe (``model.family``).
It says which class loads the model, whether it needs its own code, how chats and images are written, which
tokens end an assistant turn (they must carry loss) and stop generation, which modules are the vision tower and
the projector (for ``freeze`` and LoRA), its recommended sampling settings and which vLLM versions serve it.
``align model info PATH`` prints it. Facts come from the models' own cards and code (see ``../shared/FACTS.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from align.errors import UserError


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    vision: bool
    model_types: tuple[str, ...] = ()  # config.model_type values that belong to the family
    loader: str = "AutoModelForImageTextToText"  # transformers auto class that loads it
    remote_code: bool = False  # needs trust_remote_code (the model's own modeling code)
    image_token: str | None = None  # placeholder the processor expands into image features
    end_of_turn: tuple[str, ...] = ()  # tokens that close an assistant turn: they carry loss so the model learns to stop
    stop_tokens: tuple[str, ...] = ()  # generation stops on any of these
    marker_tokens: tuple[str, ...] = ()  # family-specific markup tokens (grounding, OCR) that must stay single tokens
    modules: dict[str, tuple[str, ...]] = field(default_factory=dict)  # role -> parameter-name fragments
    generation: dict = field(default_factory=dict)  # model-card sampling advice beyond its generation_config.json
    image_inputs: tuple[str, ...] = ()  # processor outputs the model takes under names TRL does not forward
    unsupported_stages: dict[str, str] = field(default_factory=dict)  # stage type -> why it cannot run
    vllm: str = "any vLLM version with the architecture"
    hardware: str = ""


FAMILIES = {
    f.name: f
    for f in (
        Family(
            "hyperclovax_text",
            "HyperCLOVAX-SEED-Text-Instruct-0.5B / 1.5B (Llama architecture, 4K context)",
            vision=False,
            model_types=("llama",),
            loader="AutoModelForCausalLM",
            end_of_turn=("<|im_end|>", "<|endofturn|>"),
            stop_tokens=("<|endofturn|>", "<|stop|>"),
            generation={"repetition_penalty": 1.2},
            hardware="0.5B: one 16 GB GPU for full SFT/GRPO; 1.5B: one 24-40 GB GPU",
        ),
        Family(
            "hyperclovax_vision",
            "HyperCLOVAX-SEED-Vision-Instruct-3B (native HCXVisionForCausalLM: SigLIP + C-Abstractor + AnyRes + Llama)",
            vision=True,
            model_types=("hyperclovax_vlm",),  # "vlm" is HyperCLOVAX-SEED-Think-32B (transformers' hyperclovax_vision_v2)
            loader="AutoModelForCausalLM",
            image_token="<|dummy3|>",
            image_inputs=("pixel_values_images", "image_sizes_images", "vision_query_lengths_images"),
            end_of_turn=("<|im_end|>", "<|endofturn|>"),
            stop_tokens=("<|endofturn|>", "<|stop|>"),
            modules={"vision_tower": ("vision_model",), "connector": ("mm_projector", "image_newline"),
                     "language_model": ("language_model",)},  # fmt: skip
            generation={"temperature": 0.5, "top_p": 0.6, "repetition_penalty": 1.0},  # the model card's example
            vllm="vLLM 0.32 through this workbench's plugin (rollouts/vllm_plugin.py, entry point "
            "vllm.general_plugins); vLLM's own module existed up to 0.27.x",
            hardware="one 40 GB GPU for LoRA; 80 GB for full fine-tuning",
        ),
        Family(
            "varco_vision",
            "VARCO-VISION-14B-HF / 2.0 (LLaVA-OneVision: SigLIP + AnyRes + Qwen2.5/Qwen3)",
            vision=True,
            model_types=("llava_onevision",),
            image_token="<image>",
            end_of_turn=("<|im_end|>",),
            stop_tokens=("<|im_end|>", "<|endoftext|>"),
            marker_tokens=("<gro>", "<ocr>", "<char>", "</char>", "<obj>", "</obj>", "<bbox>", "</bbox>", "<delim>"),
            modules={"vision_tower": ("vision_tower",), "connector": ("multi_modal_projector", "image_newline"),
                     "language_model": ("language_model", "lm_head")},  # fmt: skip
            vllm="vLLM ≥ 0.7 (LlavaOnevisionForConditionalGeneration)",
            hardware="14B: LoRA on one 80 GB GPU; full fine-tuning on 8×80 GB with ZeRO-3. 2.0-1.7B: one 24 GB GPU",
        ),
        Family(
            "qwen2_5_vl",
            "Qwen2.5-VL 3B/7B/32B/72B (dynamic-resolution ViT + patch merger + Qwen2.5)",
            vision=True,
            model_types=("qwen2_5_vl", "qwen2_vl"),
            image_token="<|image_pad|>",
            end_of_turn=("<|im_end|>",),
            stop_tokens=("<|im_end|>", "<|endoftext|>"),
            modules={"vision_tower": ("visual.blocks", "visual.patch_embed"), "connector": ("visual.merger",),
                     "language_model": ("language_model", "lm_head")},  # fmt: skip
            vllm="vLLM ≥ 0.7.2 (Qwen2_5_VLForConditionalGeneration)",
            hardware="3B: one 24 GB GPU (LoRA) or 40 GB (full); 7B: one 80 GB GPU or ZeRO-3",
        ),
        Family(
            "generic",
            "any standard transformers image-text-to-text or causal LM (Idefics3, LLaVA, the embedded tiny model…)",
            vision=True,
            modules={"vision_tower": ("vision_model", "vision_tower", "vision_encoder"),
                     "connector": ("connector", "multi_modal_projector", "mm_projector"),
                     "language_model": ("text_model", "language_model", "lm_head", "embed_tokens")},  # fmt: skip
            vllm="whatever vLLM version serves the architecture",
        ),
    )
}


def _vocab(tokenizer) -> set[str]:
    return set(tokenizer.get_vocab()) if tokenizer is not None else set()


def detect(config, tokenizer=None, path: str = "") -> Family:
    """The family of a model from its config (and tokenizer, to tell HyperCLOVAX and VARCO apart from their bases)."""
    model_type = getattr(config, "model_type", None)
    archs = getattr(config, "architectures", None) or []
    vocab = _vocab(tokenizer)
    if "HCXVisionForCausalLM" in archs or model_type in FAMILIES["hyperclovax_vision"].model_types:
        return FAMILIES["hyperclovax_vision"]
    if model_type in FAMILIES["qwen2_5_vl"].model_types:
        return FAMILIES["qwen2_5_vl"]
    if model_type == "llava_onevision" and {"<gro>", "<ocr>"} & vocab:
        return FAMILIES["varco_vision"]
    if model_type == "llama" and "<|endofturn|>" in vocab and not hasattr(config, "vision_config"):
        return FAMILIES["hyperclovax_text"]
    from transformers import CONFIG_MAPPING

    if model_type in CONFIG_MAPPING:
        return FAMILIES["generic"]
    raise UserError(
        f"cannot recognise the model family of {path or 'the model'}: model_type {model_type!r}, "
        f"architectures {archs or 'none'}",
        f"set model.family to one of {', '.join(FAMILIES)} in the recipe (remote-code models also need "
        "model.trust_remote_code: true)",
    )


def resolve(name: str, config, tokenizer=None, path: str = "") -> Family:
    """``model.family`` from the recipe ('auto' = detect), checked against the model's config."""
    if name == "auto":
        return detect(config, tokenizer, path)
    if name not in FAMILIES:
        raise UserError(f"model.family: unknown family {name!r}", f"use 'auto' or one of {', '.join(FAMILIES)}")
    family = FAMILIES[name]
    model_type = getattr(config, "model_type", None)
    if family.model_types and model_type not in family.model_types:
        raise UserError(
            f"model.family is {name!r} but {path or 'the model'} has model_type {model_type!r} "
            f"({name} models have {', '.join(family.model_types)})",
            "set model.family: auto, or point model.path at a model of that family",
        )
    return family


def stop_token_ids(family: Family, tokenizer) -> list[int]:
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in family.stop_tokens if t in vocab]


def apply_generation_stops(model, family: Family, tokenizer) -> None:
    """Make generation stop on the family's stop tokens (TRL's GRPO and our HF engine read generation_config)."""
    ids = stop_token_ids(family, tokenizer)
    if not ids:
        return
    current = model.generation_config.eos_token_id
    current = [] if current is None else [current] if isinstance(current, int) else list(current)
    model.generation_config.eos_token_id = current + [i for i in ids if i not in current]


def check_stage(ctx) -> Family:
    """The family of the stage's input model; stops a stage the family cannot run, saying why and what to use."""
    from align.errors import StageError
    from align.models import load_config

    spec = ctx.recipe.model
    family = resolve(spec.family, load_config(ctx.input_model, spec.trust_remote_code), None, ctx.input_model)
    reason = family.unsupported_stages.get(ctx.stage.type)
    if reason:
        raise StageError(f"stage '{ctx.stage.name}': the {ctx.stage.type} stage does not support {family.name} "
                         f"models yet: {reason}", "use the sft, rft or grpo stages with this model")  # fmt: skip
    return family


def describe(family: Family) -> dict:
    return {k: v for k, v in family.__dict__.items() if v not in ((), {}, None, "")}
