"""The embedded default model: ``tiny-korean-vlm``.

A real transformers vision-language architecture, built offline from a config and a fixed seed:

* Idefics3 (SigLIP-style vision tower -> pixel-shuffle connector -> Llama text model). Idefics3 is the LLaVA-lineage
  architecture that vLLM's CPU build serves without torchvision (see docs/rollouts.md).
* A byte-level BPE tokenizer trained with ``tokenizers`` on the Korean corpus shipped in ``assets/`` plus the prompts
  of the synthetic tasks.
* A HyperCLOVAX-style chat template: ``<|im_start|>{role}\\n{content}<|im_end|>``, assistant turns end with
  ``<|im_end|><|endofturn|>``; generation stops on ``<|endofturn|>`` or ``<|stop|>``.

Everything is deterministic: the same builder version and seed give the same weights and tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from align.data.synthetic import vocabulary_texts
from align.io import atomic_dir

BUILDER_VERSION = 1
CORPUS = Path(__file__).parent.parent / "assets" / "korean_corpus.txt"

# Special tokens. The first block is the HyperCLOVAX chat format, the second the Idefics3 image markup,
# the third VARCO-VISION's grounding markup (added as single tokens so boxes tokenize compactly).
CHAT_TOKENS = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>", "<|endofturn|>", "<|stop|>"]
IMAGE_TOKENS = ["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"]
GROUNDING_TOKENS = ["<bbox>", "</bbox>", "<delim>"]

# HyperCLOVAX-style template. Content may be a string or a list of parts ({"type": "image"} / {"type": "text"}).
# The assistant's text and its two end tokens sit inside {% generation %} so assistant-only loss trains the stop.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}{%- generation -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|><|endofturn|>' -}}"
    "{%- endgeneration -%}"
    "{%- else -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<image>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>' -}}"
    "{%- endif -%}"
    "{%- if not loop.last -%}{{- '\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '\\n<|im_start|>assistant\\n' -}}{%- endif -%}"
)


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the embedded model. Defaults give 1.40M parameters (1.21M for the text-only model): minutes per stage on 2 CPU cores."""

    seed: int = 1234
    vocab_size: int = 3000
    image_size: int = 64
    patch_size: int = 16
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 1  # head_dim 64
    scale_factor: int = 2
    text_hidden: int = 128
    text_layers: int = 4
    text_heads: int = 2  # head_dim 64: vLLM's CPU attention refuses 16 and accepts 64
    text_intermediate: int = 512
    max_position_embeddings: int = 512
    text_only: bool = False  # True: the same tokenizer and language model as a LlamaForCausalLM (tiny-korean-lm)

    @property
    def image_seq_len(self) -> int:
        return (self.image_size // self.patch_size) ** 2 // self.scale_factor**2


def training_texts() -> list[str]:
    """The tokenizer's corpus: the shipped Korean text plus every phrase the synthetic tasks can produce."""

    lines = [line.strip() for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines + vocabulary_texts()


def build_tokenizer(
    spec: TinySpec,
    specials=None,
    added=GROUNDING_TOKENS,
    eos="<|endofturn|>",
    pad="<|pad|>",
    image_token="<image>",
    template=CHAT_TEMPLATE,
    named: dict[str, str] | None = None,
):
    """A byte-level BPE tokenizer trained on the Korean corpus. The defaults give the embedded model's tokenizer;
    the tiny models of other families (``align/models/tiny/``) pass their own special tokens and chat
    template. ``specials[:2]`` are plain special tokens (end of text, padding); the rest are marked additional.
    ``named``: more named special tokens (``{"video_token": "<|VIDEO_PAD|>"}``), as processors look them up."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = specials or CHAT_TOKENS + IMAGE_TOKENS
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size - len(added),
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(training_texts(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token=eos,
        pad_token=pad,
        unk_token=None,
        model_max_length=spec.max_position_embeddings,
        padding_side="left",
        extra_special_tokens={**({"image_token": image_token} if image_token else {}), **(named or {})},
    )
    fast.add_special_tokens({"additional_special_tokens": specials[2:]})
    if added:
        fast.add_tokens(list(added))
    fast.chat_template = template
    return fast


def build_processor(spec: TinySpec, tokenizer):
    from transformers import Idefics3ImageProcessorPil, Idefics3Processor

    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": spec.image_size},
        max_image_size={"longest_edge": spec.image_size},
    )
    return Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=spec.image_seq_len,
        chat_template=CHAT_TEMPLATE,
    )


def build_model(spec: TinySpec, tokenizer):
    import torch
    from transformers import GenerationConfig, Idefics3Config, Idefics3ForConditionalGeneration

    ids = tokenizer.convert_tokens_to_ids
    config = Idefics3Config(
        vision_config={
            "hidden_size": spec.vision_hidden,
            "intermediate_size": spec.vision_hidden * 4,
            "num_hidden_layers": spec.vision_layers,
            "num_attention_heads": spec.vision_heads,
            "image_size": spec.image_size,
            "patch_size": spec.patch_size,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": spec.text_hidden,
            "intermediate_size": spec.text_intermediate,
            "num_hidden_layers": spec.text_layers,
            "num_attention_heads": spec.text_heads,
            "num_key_value_heads": spec.text_heads,
            "head_dim": spec.text_hidden // spec.text_heads,
            "max_position_embeddings": spec.max_position_embeddings,
            "tie_word_embeddings": True,
            "pad_token_id": ids("<|pad|>"),
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|endofturn|>"),
        },
        scale_factor=spec.scale_factor,
        image_token_id=ids("<image>"),
        pad_token_id=ids("<|pad|>"),
        tie_word_embeddings=True,
    )
    torch.manual_seed(spec.seed)
    if spec.text_only:
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(**config.text_config.to_dict())).to(torch.float32)
    else:
        model = Idefics3ForConditionalGeneration(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=[ids("<|endofturn|>"), ids("<|stop|>")],
        pad_token_id=ids("<|pad|>"),
        do_sample=False,
        max_new_tokens=32,
    )
    return model


def already_built(out_dir: Path, stamp: dict) -> bool:
    """True when ``out_dir`` holds a model built with ``stamp`` (its ``tiny_spec.json``). A stale folder is left
    in place until ``atomic_dir`` swaps the rebuilt one in."""
    stamp_file = out_dir / "tiny_spec.json"
    return stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp


def build_tiny(out_dir: str | Path, spec: TinySpec | None = None, force: bool = False) -> Path:
    """Build (or reuse) the tiny Korean VLM at ``out_dir``. Rebuilds when the builder version or spec changed."""
    spec = spec or TinySpec()
    out_dir = Path(out_dir)
    stamp = {"builder_version": BUILDER_VERSION, **asdict(spec)}
    if not force and already_built(out_dir, stamp):
        return out_dir
    tokenizer = build_tokenizer(spec)
    processor = tokenizer if spec.text_only else build_processor(spec, tokenizer)
    model = build_model(spec, tokenizer)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "tiny_spec.json").write_text(json.dumps(stamp, indent=2))
    return out_dir


# ``demo-korean-vlm``, the quickstart's model: the embedded VLM with 8-px patches, so 16 visual tokens per image
# instead of 4 (1.36M parameters). With 4 tokens the SFT model answers one colour for every image when the colour
# task is one of five (docs/quickstart_findings.md); with 16 it reads the colour, and the RL stages have something
# to sharpen. The test models keep the default spec, so their fixtures stay as they are.
DEMO_SPEC = TinySpec(patch_size=8)


def build_demo(out_dir: str | Path) -> Path:
    """``demo-korean-vlm``: the quickstart's model (``DEMO_SPEC``)."""
    return build_tiny(out_dir, DEMO_SPEC)


def build_tiny_lm(out_dir: str | Path) -> Path:
    """``tiny-korean-lm``: the embedded VLM's language model alone (a LlamaForCausalLM)."""
    return build_tiny(out_dir, TinySpec(text_only=True))


# Qwen2-VL / Qwen2.5-VL chat layout: a default system turn, images as <|vision_start|><|image_pad|><|vision_end|>
# before the text, turns closed by <|im_end|> and a newline.
QWEN_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- IMAGE -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
QWEN_TOKENS = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
               "<|image_pad|>", "<|video_pad|>"]  # fmt: skip
VARCO_TOKENS = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
VARCO_MARKUP = ["<gro>", "<ocr>", "<char>", "</char>", "<obj>", "</obj>", "<bbox>", "</bbox>", "<delim>"]


def qwen_template(image: str) -> str:
    return QWEN_TEMPLATE.replace("IMAGE", repr(image))


def text_sizes(spec: TinySpec) -> dict:
    """A tiny text model's sizes: 2 layers, the spec's widths and heads."""
    return {
        "hidden_size": spec.text_hidden,
        "intermediate_size": spec.text_intermediate,
        "num_hidden_layers": 2,
        "num_attention_heads": spec.text_heads,
        "num_key_value_heads": spec.text_heads,
        "max_position_embeddings": spec.max_position_embeddings,
    }


def text_config(spec: TinySpec, tok, **extra) -> dict:
    """A tiny text model's config fields (``text_sizes``, special token ids from ``tok``)."""
    ids = tok.convert_tokens_to_ids
    return {
        "vocab_size": len(tok),
        **text_sizes(spec),
        "tie_word_embeddings": True,
        "pad_token_id": ids("<|pad|>"),
        "bos_token_id": ids("<|endoftext|>"),
        "eos_token_id": ids("<|im_end|>"),
        **extra,
    }
