"""HyperCLOVAX-SEED-Vision (family ``hyperclovax_vision``): the workbench's rows → the model's chat format, and the
SFT collator.

The published chat format: each image is its own entry ``{"role": "user", "content": {"type": "image", "image": …,
"ocr": …, "lens_keywords": …, "lens_local_keywords": …}}`` and text entries are ``{"type": "text", "text": …}``; the
processor's ``load_images_videos(chat)`` returns the chat without pixel data and the images. ``CHAT_TEMPLATE`` (ours,
written to give the published token layout) renders each image as three turns: ``user (mime)`` with the image's JSON,
``user (vector)`` with one ``<|dummy3|>`` (the processor expands it to the image's visual tokens) and ``image/aux``
with the OCR / lens keywords as JSON behind the published Korean instruction. TRL's list-style content
(``[{"type": "image"}, {"type": "text", …}]``) renders the same way: the message's images first, then its text. ``HCXCollator`` builds SFT batches from that format so the OCR / lens text reaches the model; labels cover
the answer and its end tokens only.
"""

from __future__ import annotations

import json

from align.chat import content_text

IGNORE = -100
INFO_FIELDS = ("ocr", "lens_keywords", "lens_local_keywords")
# the image/aux turn's instruction, as the published format writes it (TensorRT-LLM's placeholder text for this model)
AUX_INSTRUCTION = ("다음 중 ocr은 사진에서 검출된 글자이고, lens_keyword는 사진에서 추출된 keyword와 bbox 위치입니다."
                   "bbox는 0~1 사이로 정규화된 [x1, y1, x2, y2]의 형태입니다. 참고하여 답변하세요. ")  # fmt: skip

# Turns are joined by "\n"; an assistant turn ends <|im_end|><|endofturn|> (both in the generation mask); an image
# is three turns (mime JSON, the <|dummy3|> placeholder, the aux JSON), a video two (mime JSON, its placeholder).
CHAT_TEMPLATE = (
    "{%- macro visual(p) -%}"
    "{%- set video = p['type'] == 'video' -%}"
    "{{- '<|im_start|>user (mime)\\n' -}}"
    "{{- {'type': p.get('mime') or ('video/mp4' if video else 'image/jpeg'), 'filename': p.get('filename') or ''}"
    " | tojson -}}"
    "{{- '<|im_end|>\\n<|im_start|>user (vector)\\n' -}}"
    "{{- ('<|_unuse_missing_100270|>' if video else '<|dummy3|>') + '<|im_end|>' -}}"
    "{%- if not video -%}"
    "{{- '\\n<|im_start|>image/aux\\n' + '" + AUX_INSTRUCTION + "' -}}"
    "{{- {'ocr': p.get('ocr') or '', 'lens_keywords': p.get('lens_keywords') or '',"
    " 'lens_local_keywords': p.get('lens_local_keywords') or ''} | tojson -}}"
    "{{- '<|im_end|>' -}}"
    "{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{%- if not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    "{%- set c = message['content'] -%}"
    "{%- if c is mapping and c.get('type') in ('image', 'video') -%}{{- visual(c) -}}"
    "{%- else -%}"
    "{%- set visuals = [] -%}"
    "{%- if c is string -%}{%- set text = c -%}"
    "{%- elif c is mapping -%}{%- set text = c.get('text') or '' -%}"
    "{%- elif c is none -%}{%- set text = '' -%}"
    "{%- else -%}"
    "{%- set visuals = c | selectattr('type', 'in', ['image', 'video']) | list -%}"
    "{%- set text = c | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') -%}"
    "{%- endif -%}"
    "{%- for p in visuals -%}{{- visual(p) + '\\n' -}}{%- endfor -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}{%- generation -%}"
    "{{- text + '<|im_end|><|endofturn|>' -}}{%- endgeneration -%}"
    "{%- else -%}{{- text + '<|im_end|>' -}}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '\\n<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def vlm_chat(messages: list[dict], images: list, image_info: str | None = None) -> list[dict]:
    """Workbench messages + images (+ the row's ``image_info`` JSON: ocr / lens keywords, one value for every image or
    a list with one per image) -> HCX chat entries; images go right before the first user turn's text."""
    info = json.loads(image_info) if image_info else {}
    entries = []
    for i, image in enumerate(images):
        entry = {"type": "image", "image": image}
        for key in INFO_FIELDS:
            value = info.get(key)
            value = value[i] if isinstance(value, list) and i < len(value) else value
            if value and not isinstance(value, list):
                entry[key] = value
        entries.append({"role": "user", "content": entry})
    chat, placed = [], False
    for m in messages:
        if m["role"] == "user" and not placed:
            chat += entries
            placed = True
        chat.append({"role": m["role"], "content": {"type": "text", "text": content_text(m["content"])}})
    return chat if placed else entries + chat


class HCXCollator:
    """Rows (prompt, completion, images, image_info) → the processor's batch (image tokens expanded in the text,
    ``pixel_values_images`` & co) plus labels on the assistant's answer and its end tokens."""

    def __init__(self, processor, image_token_id: int):
        self.processor = processor
        self.tok = processor.tokenizer
        self.image_token_id = image_token_id

    def _texts(self, row):
        images = list(row.get("images") or [])
        chat, images, _ = self.processor.load_images_videos(vlm_chat(row["prompt"], images, row.get("image_info")))
        answer = {
            "role": "assistant",
            "content": {"type": "text", "text": content_text(row["completion"][-1]["content"])},
        }
        prompt = self.tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        full = self.tok.apply_chat_template(chat + [answer], tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template renders the prompt differently with and without the answer")
        return prompt, full, images

    def __call__(self, rows: list[dict]) -> dict:
        parsed = [self._texts(r) for r in rows]
        images = [im for _, _, im in parsed]
        kwargs = {"images": images} if any(images) else {}
        batch = dict(self.processor(text=[full for _, full, _ in parsed], padding=True, padding_side="right",
                                    add_special_tokens=False, return_tensors="pt", **kwargs))  # fmt: skip
        lengths = batch.get("vision_query_lengths_images")
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = IGNORE
        for b, (prompt, _, _) in enumerate(parsed):
            n = [int(x) for x in lengths[b] if int(x) > 0] if lengths is not None else []
            expanded = self.processor.expand_text(prompt, n, [])
            labels[b, : len(self.tok(expanded, add_special_tokens=False)["input_ids"])] = IGNORE
        batch["labels"] = labels
        return batch


def sft_adapter(model, processor) -> tuple[HCXCollator, dict]:
    """The family's SFT hook (``Family.sft_adapter``): this collator, with TRL's dataset preparation off (the collator
    reads the raw rows) and the row columns kept for it; the model's own loss scores the batch."""
    collator = HCXCollator(processor, model.config.image_token_id)
    return collator, {"dataset_kwargs": {"skip_prepare_dataset": True}, "remove_unused_columns": False}
