"""HyperCLOVAX-SEED-Vision (family ``hyperclovax_vision``): the adapter between the workbench's rows and TRL's
SFTTrainer for a model whose remote code expands image placeholders itself.

HCX's published interface (its model card, and vLLM 0.27's implementation that served it): a chat where each image is
its own entry ``{"role": "user", "content": {"type": "image", "image": …, "ocr": …, "lens_keywords": …,
"lens_local_keywords": …}}`` and text entries are ``{"type": "text", "text": …}``; the processor's
``load_images_videos(chat)`` returns the chat without pixel data, the images and video flags; the chat template writes
one placeholder (``<|dummy3|>``) per image; the model replaces each placeholder by that image's
``vision_query_lengths`` visual tokens inside ``forward``, so labels must already be expanded to those positions
(``-100`` there). TRL's own collators assume the processor expands placeholders in the text, so SFT uses
``HCXCollator`` below (the family's ``sft_adapter`` hook), scored by the model's own loss. GRPO and generation go through the processor's ``apply_chat_template`` / ``__call__`` and the
model's ``generate`` as for other VLMs.
"""

from __future__ import annotations

import json

from align.chat import content_text

IGNORE = -100
INFO_FIELDS = ("ocr", "lens_keywords", "lens_local_keywords")


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
    """Rows (prompt, completion, images, image_info) -> input_ids with one placeholder per image, the model's image
    tensors, and labels expanded to the visual tokens (loss on the assistant's answer and its end tokens only)."""

    def __init__(self, processor, image_token_id: int):
        self.processor = processor
        self.tok = processor.tokenizer
        self.image_token_id = image_token_id

    def _row(self, row):
        images = list(row.get("images") or [])
        prompt_chat, images, _ = self.processor.load_images_videos(vlm_chat(row["prompt"], images,
                                                                            row.get("image_info")))  # fmt: skip
        answer_text = content_text(row["completion"][-1]["content"])
        answer = {"role": "assistant", "content": {"type": "text", "text": answer_text}}
        prompt = self.tok.apply_chat_template(prompt_chat, tokenize=False, add_generation_prompt=True)
        full = self.tok.apply_chat_template(prompt_chat + [answer], tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template renders the prompt differently with and without the answer")
        prompt_ids = self.tok(prompt, add_special_tokens=False)["input_ids"]
        ids = prompt_ids + self.tok(full[len(prompt) :], add_special_tokens=False)["input_ids"]
        return ids, [IGNORE] * len(prompt_ids) + ids[len(prompt_ids) :], images

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        parsed = [self._row(r) for r in rows]
        batch = {}
        lengths = [[] for _ in parsed]
        if any(images for _, _, images in parsed):
            batch = dict(self.processor(images=[images for _, _, images in parsed], return_tensors="pt"))
            lengths = batch["vision_query_lengths_images"].tolist()
        width = max(len(ids) for ids, _, _ in parsed)
        extra = [sum(n) - len(n) for n in lengths]
        pad = self.tok.pad_token_id
        input_ids, mask, labels = [], [], []
        for (ids, labs, _), n, more in zip(parsed, lengths, extra):
            placeholders = [i for i, t in enumerate(ids) if t == self.image_token_id]
            if len(placeholders) != len(n):
                raise ValueError(f"{len(placeholders)} image placeholders in the text but {len(n)} images")
            expanded = []
            for i, label in enumerate(labs):
                expanded += [IGNORE] * n[placeholders.index(i)] if i in placeholders else [label]
            gap = width - len(ids)
            input_ids.append(ids + [pad] * gap)
            mask.append([1] * len(ids) + [0] * gap)
            # the model left-pads rows whose images gave fewer visual tokens than the widest row
            labels.append([IGNORE] * (max(extra) - more) + expanded + [IGNORE] * gap)
        batch.update(input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(mask), labels=torch.tensor(labels))
        return batch


def sft_adapter(model, processor) -> tuple[HCXCollator, dict]:
    """The family's SFT hook (``Family.sft_adapter``): this collator, with TRL's dataset preparation off (the
    collator reads the raw rows) and the row columns kept for it."""
    collator = HCXCollator(processor, model.config.image_token_id)
    return collator, {"dataset_kwargs": {"skip_prepare_dataset": True}, "remove_unused_columns": False}
