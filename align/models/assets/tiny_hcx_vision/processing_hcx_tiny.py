"""Processor of the tiny HyperCLOVAX-SEED-Vision stand-in: ``load_images_videos`` for HCX-format chats and a
``__call__`` returning ``pixel_values_images`` / ``image_sizes_images`` / ``vision_query_lengths_images`` (the names
vLLM 0.27 read from the published processor). Images: one SigLIP grid each (no AnyRes)."""

import torch
from PIL import Image
from transformers import BatchFeature, ProcessorMixin


class HCXVisionProcessor(ProcessorMixin):
    image_token = "<|dummy3|>"

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, image_seq_length=16, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self.image_seq_length = image_seq_length  # visual tokens per image (one grid, no AnyRes)
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)

    def load_images_videos(self, vlm_chat):
        """HCX chat entries {"role", "content": {"type": "image", "image": PIL or path, "ocr": ...}} -> (the chat
        without pixel data, the images in order, is_video flags)."""
        new_chat, images = [], []
        for turn in vlm_chat:
            content = turn["content"]
            if isinstance(content, dict) and content.get("type") == "image":
                image = content.get("image")
                images.append(image if isinstance(image, Image.Image) else Image.open(image).convert("RGB"))
                content = {k: v for k, v in content.items() if k != "image"}
            new_chat.append({**turn, "content": content})
        return new_chat, images, [False] * len(images)

    def __call__(self, images=None, text=None, **kwargs):
        return_tensors = kwargs.pop("return_tensors", None)
        data = {}
        if text is not None:
            keys = ("padding", "padding_side", "truncation", "max_length", "add_special_tokens")
            data.update(self.tokenizer(text, **{k: v for k, v in kwargs.items() if k in keys}))
        if images is not None:
            batch = [imgs if isinstance(imgs, (list, tuple)) else [imgs] for imgs in images]
            if batch and not isinstance(images[0], (list, tuple)) and text is not None and isinstance(text, str):
                batch = [list(images)]
            counts = {len(b) for b in batch}
            if len(counts) != 1:
                raise ValueError("this stand-in needs the same number of images in every row of a batch")
            flat = [img for b in batch for img in b]
            pixels = self.image_processor(flat, return_tensors="pt")["pixel_values"]
            n = counts.pop()
            data["pixel_values_images"] = pixels.reshape(len(batch), n, *pixels.shape[1:])
            data["image_sizes_images"] = torch.tensor([[[img.height, img.width] for img in b] for b in batch])
            data["vision_query_lengths_images"] = torch.full((len(batch), n), self.image_seq_length)
        return BatchFeature(data=data, tensor_type=return_tensors)
