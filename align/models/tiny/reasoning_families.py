"""Tiny models of the Korean model families released since mid-2025, built from their native transformers configs
(as TRL's own tests do), with a tokenizer trained on the Korean corpus and a chat template laid out like the
published one. Random weights: they test the workbench's code paths (recognition, SFT, GRPO, generation, the batch
guards, the reasoning switch), not the models.

* ``hyperclovax_think`` — HyperCLOVAX-SEED-Think-14B: ``HyperCLOVAXForCausalLM`` with non-trivial μP multipliers and
  Peri-LN (``use_post_norm``); its reasoning turn is ``<|im_start|>assistant/think\\n…<|im_end|>`` before the answer
  turn, switched by the template's ``force_reasoning`` / ``skip_reasoning``.
* ``hyperclovax_vision_v2`` — HyperCLOVAX-SEED-Think-32B: Qwen2.5-VL vision transformer + linear projector +
  HyperCLOVAX LM; images as ``<|image_start|><|IMAGE_PAD|><|image_end|>`` after a ``<|mime_start|>…<|mime_end|>``
  line; reasoning in ``<think>…</think>``, opened by the generation prompt unless ``thinking: false``.
* ``exaone`` — EXAONE 4.5 (``Exaone4_5_ForConditionalGeneration``: 2D-RoPE GQA vision encoder + EXAONE 4.0 LM with
  hybrid sliding/full attention), turns ``<|role|>\n…<|endofturn|>``, images ``<vision><|image_pad|></vision>``;
  ``exaone_text`` builds EXAONE 4.0 (``Exaone4ForCausalLM``) alone, turns ``[|role|]\n…[|endofturn|]``. Every
  assistant turn opens a think block (empty unless reasoning is kept); ``enable_thinking`` opens ``<think>\n``.
* ``varco_vision_2`` — VARCO-VISION-2.0 is ``build_varco_vision`` (``from_config.py``) with a Qwen3 LM.

The templates are our reading of the published ones (the hub is unreachable here); docs/families.md says what
differs.
"""

from __future__ import annotations

import functools

from align.models.processors import images_only_processor
from align.models.tiny.from_config import dynamic_image_processor, dynamic_vision_config, write_from_config
from align.models.tiny.korean_vlm import CHAT_TOKENS, TinySpec, build_tokenizer
from align.models.tiny.korean_vlm import text_config as _text_config

THINK = ["<think>", "</think>"]  # ordinary added tokens: decoding with skip_special_tokens keeps them

# Text of a message (a string, or TRL's parts), and the reasoning split off an assistant message written as
# '<think>R</think>A' (how the workbench writes reasoning in SFT data and canonical completions).
_TEXT = (
    "{%- set content = message['content'] if message['content'] is string else "
    "(message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('')) -%}"
)
_SPLIT = (
    "{%- set reasoning = '' -%}"
    "{%- if '</think>' in content -%}"
    "{%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\\n') -%}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') -%}"
    "{%- endif -%}"
)

# HyperCLOVAX-SEED-Think-14B (its model card's layout, tests/assets/published/hyperclovax_think): turns separated by a
# newline; the answer turn ends <|im_end|><|endofturn|>; only the last assistant turn keeps its reasoning turn (earlier
# turns' reasoning is left out of the prompt). Without a switch the prompt stops at '<|im_start|>assistant' and the
# model writes '/think\n…' (reasoning) or '\n…'.
HCX_THINK_TEMPLATE = (
    "{%- for message in messages -%}" + _TEXT + "{%- if not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}"
    + _SPLIT
    + "{%- if reasoning and loop.last -%}{{- '<|im_start|>assistant/think\\n' + reasoning + '<|im_end|>\\n' -}}{%- endif -%}"
    "{{- '<|im_start|>assistant\\n' + content + '<|im_end|><|endofturn|>' -}}"
    "{%- else -%}{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{%- if force_reasoning is defined and force_reasoning -%}{{- '\\n<|im_start|>assistant/think\\n' -}}"
    "{%- elif skip_reasoning is defined and skip_reasoning -%}{{- '\\n<|im_start|>assistant\\n' -}}"
    "{%- else -%}{{- '\\n<|im_start|>assistant' -}}{%- endif -%}"
    "{%- endif -%}"
)

# HyperCLOVAX-SEED-Think-32B: reasoning on unless `thinking` (the published template's switch, per vLLM PR #42366) is
# false (then the prompt holds an empty block).
HCX_V2_IMAGE = (
    '<|mime_start|>{"id": "image", "type": "image/jpeg", "filename": "image.jpg"}<|mime_end|>\\n'
    "<|image_start|><|IMAGE_PAD|><|image_end|>"
)
HCX_V2_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}" + _TEXT + _SPLIT + "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if reasoning or loop.last -%}{{- '<think>\\n' + reasoning + '\\n</think>\\n\\n' -}}{%- endif -%}"
    "{{- content + '<|im_end|>\\n' -}}"
    "{%- else -%}{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    "{%- if part['type'] == 'image' -%}{{- '" + HCX_V2_IMAGE + "' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{%- if thinking is not defined or thinking -%}{{- '<|im_start|>assistant\\n<think>\\n' -}}"
    "{%- else -%}{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)
HCX_V2_TOKENS = [
    "<|endoftext|>",
    "<|pad|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|endofturn|>",
    "<|stop|>",
    "<|mime_start|>",
    "<|mime_end|>",
    "<|image_start|>",
    "<|image_end|>",
    "<|IMAGE_PAD|>",
    "<|video_start|>",
    "<|video_end|>",
    "<|VIDEO_PAD|>",
]


# EXAONE 4.0 ('[|role|]\n…[|endofturn|]\n') and EXAONE 4.5 ('<|role|>\n…<|endofturn|>\n', images
# '<vision><|image_pad|></vision>'), laid out as LG's published 4.0 template renders (tests/assets/published/exaone):
# every assistant turn opens a think block, empty unless it is the last message and skip_think is false (the published
# default drops reasoning); the generation prompt opens '<think>\n' with enable_thinking, else an empty block.
def exaone_template(open_role: str, end: str) -> str:
    """Our EXAONE chat template; ``open_role`` is the role marker with ROLE in place of the role's name."""
    head = "'" + open_role.replace("ROLE", "' + message['role'] + '") + "\\n'"
    assistant = "'" + open_role.replace("ROLE", "assistant") + "\\n'"
    keep = "(skip_think is defined and not skip_think)"
    return (
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'assistant' -%}" + _TEXT + _SPLIT + "{{- " + assistant + " -}}"
        "{%- if reasoning and loop.last and " + keep + " -%}{{- '<think>\\n' + reasoning + '\\n</think>\\n\\n' -}}"
        "{%- else -%}{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}"
        "{{- content + '" + end + "\\n' -}}"
        "{%- else -%}{{- " + head + " -}}"
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- else -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'image' -%}{{- '<vision><|image_pad|></vision>' -}}"
        "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}{{- '" + end + "\\n' -}}{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- " + assistant + " -}}"
        "{%- if enable_thinking is defined and enable_thinking -%}{{- '<think>\\n' -}}"
        "{%- else -%}{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}{%- endif -%}"
    )


EXAONE_TEMPLATE = exaone_template("[|ROLE|]", "[|endofturn|]")  # EXAONE 4.0
EXAONE_4_5_TEMPLATE = exaone_template("<|ROLE|>", "<|endofturn|>")  # EXAONE 4.5
_EXAONE_MEDIA = ["<vision>", "</vision>", "<|image_pad|>", "<|video_pad|>"]
EXAONE_TOKENS = ["<|endoftext|>", "<|pad|>", "[|system|]", "[|user|]", "[|assistant|]", "[|tool|]",
                 "[|endofturn|]", *_EXAONE_MEDIA]  # fmt: skip
EXAONE_4_5_TOKENS = ["<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>",
                     "<|endofturn|>", *_EXAONE_MEDIA]  # fmt: skip


def build_hyperclovax_think(spec: TinySpec):
    from transformers import HyperCLOVAXConfig, HyperCLOVAXForCausalLM

    tok = build_tokenizer(
        spec, CHAT_TOKENS, added=(), eos="<|endofturn|>", image_token=None, template=HCX_THINK_TEMPLATE
    )
    # μP multipliers away from 1 and Peri-LN: the parts of the architecture a plain Llama does not have
    config = HyperCLOVAXConfig(
        **_text_config(spec, tok, eos_token_id=tok.convert_tokens_to_ids("<|endofturn|>"), tie_word_embeddings=False),
        embedding_multiplier=2.0,
        logits_scaling=0.5,
        residual_multiplier=0.7,
        attention_multiplier=0.1,
        use_post_norm=True,
    )
    return HyperCLOVAXForCausalLM(config), tok, ["<|endofturn|>", "<|stop|>"]


def build_hyperclovax_vision_v2(spec: TinySpec):
    from transformers import (
        HyperCLOVAXVisionV2Config,
        HyperCLOVAXVisionV2ForConditionalGeneration,
        HyperCLOVAXVisionV2Processor,
    )

    tok = build_tokenizer(
        spec,
        HCX_V2_TOKENS,
        added=THINK,
        eos="<|im_end|>",
        image_token="<|IMAGE_PAD|>",
        template=HCX_V2_TEMPLATE,
        named={"video_token": "<|VIDEO_PAD|>"},
    )
    ids = tok.convert_tokens_to_ids
    image_processor = dynamic_image_processor()
    processor = images_only_processor(
        HyperCLOVAXVisionV2Processor, image_processor=image_processor, tokenizer=tok, chat_template=HCX_V2_TEMPLATE
    )
    config = HyperCLOVAXVisionV2Config(
        vision_config=dynamic_vision_config(64, model_type="qwen2_5_vl"),
        text_config={
            "model_type": "hyperclovax",
            **_text_config(spec, tok),
            "embedding_multiplier": 2.0,
            "logits_scaling": 0.5,
            "residual_multiplier": 0.7,
            "use_post_norm": True,
        },
        image_token_id=ids("<|IMAGE_PAD|>"),
        video_token_id=ids("<|VIDEO_PAD|>"),
        tie_word_embeddings=True,
    )
    return HyperCLOVAXVisionV2ForConditionalGeneration(config), processor, ["<|im_end|>", "<|endofturn|>", "<|stop|>"]


def _exaone_text(spec: TinySpec, tok) -> dict:
    # hybrid attention as in EXAONE 4.0-32B: a sliding-window layer, then a global one
    return _text_config(
        spec,
        tok,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
        sliding_window=64,
        sliding_window_pattern=2,
    )


def _exaone_tokenizer(spec: TinySpec, version: str = "4.0"):
    v45 = version == "4.5"
    return build_tokenizer(
        spec,
        EXAONE_4_5_TOKENS if v45 else EXAONE_TOKENS,
        added=THINK,
        eos="<|endofturn|>" if v45 else "[|endofturn|]",
        image_token="<|image_pad|>",
        template=EXAONE_4_5_TEMPLATE if v45 else EXAONE_TEMPLATE,
        named={"video_token": "<|video_pad|>"},
    )


def build_exaone_text(spec: TinySpec):
    from transformers import Exaone4Config, Exaone4ForCausalLM

    tok = _exaone_tokenizer(spec)
    return Exaone4ForCausalLM(Exaone4Config(**_exaone_text(spec, tok))), tok, ["[|endofturn|]"]


def build_exaone_vision(spec: TinySpec):
    from transformers import (
        Exaone4_5_Config,
        Exaone4_5_ForConditionalGeneration,
        Exaone4_5_Processor,
    )

    tok = _exaone_tokenizer(spec, "4.5")
    ids = tok.convert_tokens_to_ids
    image_processor = dynamic_image_processor()
    processor = images_only_processor(
        Exaone4_5_Processor, image_processor=image_processor, tokenizer=tok, chat_template=EXAONE_4_5_TEMPLATE
    )
    config = Exaone4_5_Config(
        # EXAONE 4.5's vision encoder: grouped-query attention (2 heads, 1 key/value head)
        vision_config=dynamic_vision_config(spec.text_hidden, hidden_size=128, num_heads=2, num_key_value_heads=1),
        text_config={"model_type": "exaone4", **_exaone_text(spec, tok)},
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        tie_word_embeddings=False,
    )
    return Exaone4_5_ForConditionalGeneration(config), processor, ["<|endofturn|>"]


# the registry's builders: (out_dir) -> out_dir
hyperclovax_think = functools.partial(write_from_config, "hyperclovax_think", build_hyperclovax_think)
hyperclovax_vision_v2 = functools.partial(write_from_config, "hyperclovax_vision_v2", build_hyperclovax_vision_v2)
exaone = functools.partial(write_from_config, "exaone", build_exaone_vision)
exaone_text = functools.partial(write_from_config, "exaone_text", build_exaone_text)
