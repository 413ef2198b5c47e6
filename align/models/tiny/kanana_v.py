"""A tiny Kanana-1.5-v checkpoint in the published layout, for the ``kanana_v`` family's tests.

Kanana-1.5-v has no transformers class: its checkpoints carry their own code (``trust_remote_code``). The workbench
does not ship Kakao's code. This builder writes a checkpoint whose config fields and weight names are the ones vLLM
0.32's ``kanana_v`` module loads (``vision_config`` / ``projector_config`` / ``text_config``; ``vision_model.*``,
``abstractor.*``, ``language_model.model.*``, ``language_model.lm_head``), with minimal remote code written by this
project from those names (``assets/kanana_v/``: a Qwen2-VL vision transformer without its merger, the dynamic
C-Abstractor with RegNet stages laid out as timm's, a Llama LM). The placeholder for image features is the token
after the LM's end-of-text token (``<image>`` here), expanded to one token per merged 2×2 patch by transformers'
Qwen2-VL processor (Kakao's processor returns the same grid as ``image_meta``). Llama-3-style turns.

    align model build-tiny --family kanana_v --out /tmp/tiny-kanana   # then model.trust_remote_code: true
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from align.io import atomic_dir
from align.models.processors import images_only_processor
from align.models.tiny.korean_vlm import TinySpec, already_built, build_tokenizer
from align.models.tiny.korean_vlm import text_config as tiny_text_config

REMOTE_CODE = Path(__file__).parent.parent / "assets" / "kanana_v"
BUILDER_VERSION = 1
# ids: <|end_of_text|> 0, <image> 1 (= end of text + 1, the media token), then the turn markers
KANANA_TOKENS = ["<|end_of_text|>", "<image>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                 "<|eot_id|>", "<|pad|>"]  # fmt: skip
KANANA_TEMPLATE = (
    "{{- '<|begin_of_text|>' -}}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<image>\\n' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)
STOPS = ["<|eot_id|>", "<|end_of_text|>"]


def _config(spec: TinySpec, tok) -> dict:
    ids = tok.convert_tokens_to_ids
    text = tiny_text_config(spec, tok, eos_token_id=ids("<|end_of_text|>"), bos_token_id=ids("<|begin_of_text|>"),
                            head_dim=spec.text_hidden // spec.text_heads, tie_word_embeddings=False)  # fmt: skip
    return {
        "architectures": ["KananaVForConditionalGeneration"],
        "model_type": "kanana-1.5-v",
        "auto_map": {"AutoConfig": "configuration_kanana_v.KananaVConfig",
                     "AutoModelForCausalLM": "modeling_kanana_v.KananaVForConditionalGeneration",
                     "AutoModelForImageTextToText": "modeling_kanana_v.KananaVForConditionalGeneration"},
        "vision_config": {"depth": 2, "embed_dim": 64, "hidden_size": 64, "mlp_ratio": 2, "num_heads": 1,
                          "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        "projector_config": {"merge_size": 2, "pos_emb": True, "pos_emb_size": 16, "encoder_hidden_size": 64,
                             "hidden_size": 32, "output_hidden_size": spec.text_hidden, "depth": 1, "mlp_depth": 2,
                             "feature_layer_index": -1},
        "text_config": {"model_type": "llama", **text},
        "tie_word_embeddings": False,
    }  # fmt: skip


def build_tiny_kanana_v(out_dir: str | Path, spec: TinySpec | None = None) -> Path:
    """Build (or reuse) the tiny Kanana-1.5-v checkpoint with its remote code at ``out_dir``."""
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForImageTextToText,
        GenerationConfig,
        Qwen2VLImageProcessorPil,
        Qwen2VLProcessor,
    )

    spec = spec or TinySpec()
    out_dir = Path(out_dir)
    code = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(REMOTE_CODE.glob("*.py")))).hexdigest()[:16]
    stamp = {"family": "kanana_v", "builder_version": BUILDER_VERSION, "remote_code": code, **spec.__dict__}
    if already_built(out_dir, stamp):
        return out_dir
    tok = build_tokenizer(spec, KANANA_TOKENS, added=(), eos="<|eot_id|>", image_token="<image>",
                          template=KANANA_TEMPLATE)  # fmt: skip
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, patch_size=14,
                                               merge_size=2, temporal_patch_size=2)  # fmt: skip
    processor = images_only_processor(Qwen2VLProcessor, image_processor=image_processor, tokenizer=tok,
                                      chat_template=KANANA_TEMPLATE)  # fmt: skip
    with atomic_dir(out_dir) as tmp:
        for source in REMOTE_CODE.glob("*.py"):
            shutil.copy(source, tmp / source.name)
        (tmp / "config.json").write_text(json.dumps(_config(spec, tok), indent=2))
        config = AutoConfig.from_pretrained(tmp, trust_remote_code=True)
        torch.manual_seed(spec.seed)
        model = AutoModelForImageTextToText.from_config(config, trust_remote_code=True).to(torch.float32)
        model.generation_config = GenerationConfig(
            eos_token_id=tok.convert_tokens_to_ids(STOPS),
            pad_token_id=tok.pad_token_id,
            do_sample=False,
            max_new_tokens=32,
        )
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "tiny_spec.json").write_text(json.dumps(stamp, indent=2))
    return out_dir
