"""The tiny HyperCLOVAX-SEED-Vision stand-in: a remote-code model directory (``trust_remote_code=True``) with the
published model's interface (``assets/tiny_hcx_vision``: HCXVisionForCausalLM with vision_model / mm_projector /
language_model, the ``<|dummy3|>`` image placeholder expanded inside the model, a processor with
``load_images_videos``) and the HyperCLOVAX chat tokens. It tests the workbench's code path for that family on CPU;
it is not HyperCLOVAX's code (see docs/families.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from align.io import atomic_dir
from align.models.tiny import CHAT_TOKENS, TinySpec, already_built, build_tokenizer

CODE = Path(__file__).parent / "assets" / "tiny_hcx_vision"
IMAGE_TOKEN = "<|dummy3|>"

# HyperCLOVAX turns; content may be a string, an HCX entry ({"type": "image"/"text", ...}) or a list of parts (TRL).
# An image entry becomes the placeholder followed by its OCR and lens keywords when given.
TEMPLATE = (
    "{%- macro part(p) -%}"
    "{%- if p['type'] == 'image' -%}{{- '<|dummy3|>' -}}"
    "{%- if p.get('ocr') -%}{{- '\\n<ocr>' + p['ocr'] -}}{%- endif -%}"
    "{%- if p.get('lens_keywords') -%}{{- '\\n<lens>' + p['lens_keywords'] -}}{%- endif -%}"
    "{%- if p.get('lens_local_keywords') -%}{{- '\\n<lens_local>' + p['lens_local_keywords'] -}}{%- endif -%}"
    "{%- elif p['type'] == 'text' -%}{{- p['text'] -}}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- macro body(c) -%}"
    "{%- if c is string -%}{{- c -}}{%- elif c is mapping -%}{{- part(c) -}}"
    "{%- else -%}{%- for p in c -%}{{- part(p) -}}{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}{%- generation -%}"
    "{{- body(message['content']) + '<|im_end|><|endofturn|>' -}}{%- endgeneration -%}"
    "{%- else -%}{{- body(message['content']) + '<|im_end|>' -}}{%- endif -%}"
    "{%- if not loop.last -%}{{- '\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '\\n<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def build_tiny_hcx(out_dir: str | Path, spec: TinySpec | None = None) -> Path:
    import torch
    from transformers import GenerationConfig, SiglipImageProcessorPil
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    spec = spec or TinySpec()
    out_dir = Path(out_dir)
    stamp = {"family": "hyperclovax_vision", "builder_version": 1, **spec.__dict__}
    if already_built(out_dir, stamp):
        return out_dir
    # the stand-in's classes, imported the way transformers imports a model's remote code
    HCXVisionConfig, HCXVisionForCausalLM, HCXVisionProcessor = (
        get_class_from_dynamic_module(ref, str(CODE))
        for ref in ("configuration_hcx_tiny.HCXVisionConfig", "modeling_hcx_tiny.HCXVisionForCausalLM",
                    "processing_hcx_tiny.HCXVisionProcessor")
    )  # fmt: skip

    tok = build_tokenizer(spec, CHAT_TOKENS + [IMAGE_TOKEN], added=("<ocr>", "<lens>", "<lens_local>"),
                          image_token=None, template=TEMPLATE)  # fmt: skip
    ids = tok.convert_tokens_to_ids
    side, patch = 32, 8
    image_processor = SiglipImageProcessorPil(size={"height": side, "width": side})
    processor = HCXVisionProcessor(image_processor=image_processor, tokenizer=tok, chat_template=TEMPLATE,
                                   image_seq_length=(side // patch) ** 2)  # fmt: skip
    config = HCXVisionConfig(
        text_config={"model_type": "llama", "vocab_size": len(tok), "hidden_size": spec.text_hidden,
                     "intermediate_size": spec.text_intermediate, "num_hidden_layers": 2,
                     "num_attention_heads": spec.text_heads, "num_key_value_heads": spec.text_heads,
                     "max_position_embeddings": spec.max_position_embeddings, "tie_word_embeddings": True,
                     "pad_token_id": ids("<|pad|>"), "eos_token_id": ids("<|endofturn|>")},
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 64, "intermediate_size": 128,
                       "num_hidden_layers": 2, "num_attention_heads": 1, "image_size": side, "patch_size": patch},
        image_token_id=ids(IMAGE_TOKEN),
        architectures=["HCXVisionForCausalLM"],
        auto_map={"AutoConfig": "configuration_hcx_tiny.HCXVisionConfig",
                  "AutoModelForCausalLM": "modeling_hcx_tiny.HCXVisionForCausalLM"},
    )  # fmt: skip
    torch.manual_seed(spec.seed)
    model = HCXVisionForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(eos_token_id=[ids("<|endofturn|>"), ids("<|stop|>")],
                                               pad_token_id=ids("<|pad|>"), do_sample=False, max_new_tokens=32)  # fmt: skip
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        for name in ("configuration_hcx_tiny.py", "modeling_hcx_tiny.py", "processing_hcx_tiny.py"):
            shutil.copy(CODE / name, tmp / name)
        for name in ("processor_config.json", "tokenizer_config.json"):
            f = tmp / name
            data = json.loads(f.read_text()) if f.exists() else {}
            data["auto_map"] = {"AutoProcessor": "processing_hcx_tiny.HCXVisionProcessor"}
            data["processor_class"] = "HCXVisionProcessor"
            f.write_text(json.dumps(data, indent=2, ensure_ascii=False))
        (tmp / "tiny_spec.json").write_text(json.dumps(stamp, indent=2))
    return out_dir
