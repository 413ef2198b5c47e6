"""HyperCLOVAX-SEED-Vision's processor, native: AnyRes image processing, video canvases, image-token expansion.

Images (``HCXVisionImageProcessor``, PIL + numpy, no torchvision): the global view is the image resized so its long
side is ``S`` (the tower's image size) and padded to a square with the mean colour; the local grids come from the
image resized into the best AnyRes canvas (``geometry.best_resolution``), padded to it and cut into S × S grids.
Every grid is rescaled and normalised. Each image's visual-token count follows ``geometry.image_query_length``.

Videos: ``sample_frames`` picks frames evenly; frames are tiled nine at a time (3 × 3, each S × S) into canvases that
are processed like images without a global view; their token counts follow ``geometry.video_query_length``.

``HCXVisionProcessor.__call__(text, images, videos)`` writes each ``<|dummy3|>`` (image) or video placeholder as
that many tokens, tokenizes, and returns ``pixel_values_images`` [rows, grids, 3, S, S], ``image_sizes_images``
[rows, images, 2] (width, height), ``vision_query_lengths_images`` [rows, images] (0 = padding),
``pixel_values_videos`` (per row, per video, its canvases) and ``vision_query_lengths_videos``.
``load_images_videos(chat)`` reads the published chat format (one image entry per image, with OCR / lens text).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, ProcessorMixin
from transformers.image_processing_utils import BaseImageProcessor

from align.models.hcx_vision.geometry import (
    best_resolution,
    grid_resolutions,
    image_query_length,
    video_query_length,
)

IMAGE_TOKEN = "<|dummy3|>"
VIDEO_TOKEN = "<|_unuse_missing_100270|>"
FRAMES_PER_CANVAS = 9  # 3 × 3


def _background(mean) -> tuple[int, ...]:
    return tuple(int(m * 255) for m in mean)


def _paste_centered(image: Image.Image, height: int, width: int, color) -> Image.Image:
    canvas = Image.new("RGB", (width, height), color)
    canvas.paste(image, ((width - image.width) // 2, (height - image.height) // 2))
    return canvas


class HCXVisionImageProcessor(BaseImageProcessor):
    model_input_names: ClassVar[list[str]] = ["pixel_values_images"]

    def __init__(self, size: int | dict = 378, anyres: bool = True, unpad: bool = True, max_num_grids: int = 9,
                 use_1x1_grid: bool = False, possible_resolutions: list | None = None,
                 num_queries_vis_abstractor: int = 81, num_queries_vis_abstractor_video_slow: int = 81,
                 num_queries_vis_abstractor_video_fast: int = 9, first_last_frames_slow: bool = False,
                 image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5), rescale_factor: float = 1 / 255,
                 patch_size: int = 14, **kwargs):  # fmt: skip
        for key in (
            "crop_size",
            "do_resize",
            "do_center_crop",
            "do_rescale",
            "do_normalize",
            "do_convert_rgb",
            "resample",
            "pad_to_square",
            "image_processor_type",
            "processor_class",
            "auto_map",
        ):
            kwargs.pop(key, None)  # fmt: skip
        super().__init__(**kwargs)
        self.size = int(size["shortest_edge"] if isinstance(size, dict) else size)
        self.anyres, self.unpad, self.max_num_grids, self.use_1x1_grid = anyres, unpad, max_num_grids, use_1x1_grid
        self.possible_resolutions = [list(r) for r in possible_resolutions] if possible_resolutions else (
            grid_resolutions(max_num_grids, self.size, use_1x1_grid) if anyres else [])  # fmt: skip
        self.num_queries_vis_abstractor = num_queries_vis_abstractor
        self.num_queries_vis_abstractor_video_slow = num_queries_vis_abstractor_video_slow
        self.num_queries_vis_abstractor_video_fast = num_queries_vis_abstractor_video_fast
        self.first_last_frames_slow = first_last_frames_slow
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        self.rescale_factor, self.patch_size = rescale_factor, patch_size

    # the geometry helpers read these names (the model's config has the same ones)
    @property
    def num_queries_vis_abstractor_image(self) -> int:
        return self.num_queries_vis_abstractor

    @property
    def vision_config(self):
        return type("VisionSize", (), {"image_size": self.size})

    def _normalize(self, image: Image.Image) -> np.ndarray:
        array = (np.asarray(image, dtype=np.float64) * self.rescale_factor).astype(np.float32)
        array = (array - np.array(self.image_mean, dtype=np.float32)) / np.array(self.image_std, dtype=np.float32)
        return array.transpose(2, 0, 1)

    def global_view(self, image: Image.Image) -> Image.Image:
        s, (w, h) = self.size, image.size
        if w != h:
            w, h = (s, math.ceil(h / w * s)) if w > h else (math.ceil(w / h * s), s)
            image = image.resize((w, h), Image.Resampling.BICUBIC)
            image = _paste_centered(image, max(w, h), max(w, h), _background(self.image_mean))
        return image.resize((s, s), Image.Resampling.BICUBIC) if image.size != (s, s) else image

    def local_grids(self, image: Image.Image) -> list[Image.Image]:
        s, (w, h) = self.size, image.size
        ch, cw = best_resolution(h, w, self.possible_resolutions)
        if cw / w < ch / h:
            nw, nh = cw, min(math.ceil(h * (cw / w)), ch)
        else:
            nw, nh = min(math.ceil(w * (ch / h)), cw), ch
        canvas = _paste_centered(image.resize((nw, nh), Image.Resampling.BICUBIC), ch, cw, _background(self.image_mean))
        return [canvas.crop((x, y, x + s, y + s)) for y in range(0, ch, s) for x in range(0, cw, s)]

    def image_grids(self, image: Image.Image) -> np.ndarray:
        """[grids, 3, S, S] for one image: the global view, then the local grids row by row (AnyRes)."""
        image = image.convert("RGB")
        views = [self.global_view(image)] + (self.local_grids(image) if self.anyres else [])
        return np.stack([self._normalize(v) for v in views])

    def canvas_grids(self, frames: list[Image.Image]) -> np.ndarray:
        """Up to nine frames tiled 3 × 3 (S × S each) into one canvas, cut back into its grids (no global view)."""
        s, n = self.size, len(frames)
        cols, rows = min(n, 3), math.ceil(n / 3)
        tiles = [f.convert("RGB").resize((s, s), Image.Resampling.BICUBIC) for f in frames]
        tiles += [Image.new("RGB", (s, s), _background(self.image_mean))] * (rows * cols - n)
        return np.stack([self._normalize(t) for t in tiles])

    def preprocess(self, images, return_tensors=None, **kwargs):
        images = images if isinstance(images, (list, tuple)) else [images]
        return BatchFeature(
            {
                "pixel_values": [torch.from_numpy(self.image_grids(i)) for i in images],
                "image_sizes": [[i.width, i.height] for i in images],
                "vision_query_lengths": [image_query_length((i.width, i.height), self) for i in images],
            }
        )


def sample_frames(frames: list, max_frames: int = 18) -> list:
    """At most ``max_frames`` frames, evenly spaced (first and last kept)."""
    if len(frames) <= max_frames:
        return list(frames)
    step = (len(frames) - 1) / (max_frames - 1)
    return [frames[round(i * step)] for i in range(max_frames)]


class HCXVisionProcessor(ProcessorMixin):
    attributes: ClassVar[list[str]] = ["image_processor", "tokenizer"]
    image_token = IMAGE_TOKEN
    video_token = VIDEO_TOKEN

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, max_video_frames: int = 18, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self.max_video_frames = max_video_frames
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.video_token_id = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """From the folder's processor files, published or saved by this workbench (``published.load_published``):
        the published remote-code class names stand for this class, and no remote code is run or asked for (vLLM
        loads the processor through here)."""
        from align.models.hcx_vision.published import load_published

        return load_published(str(pretrained_model_name_or_path))

    # ------------------------------------------------------------------ the published chat format
    def load_images_videos(self, vlm_chat):
        """HCX chat entries ``{"role", "content": {"type": "image" | "video", "image" / "video": PIL, path or
        frame list, "ocr", "lens_keywords", ...}}`` → (the chat without pixel data, the images and videos in order,
        an is-video flag for each)."""
        new_chat, visuals, is_video = [], [], []
        for turn in vlm_chat:
            content = turn["content"]
            if isinstance(content, dict) and content.get("type") in ("image", "video"):
                kind = content["type"]
                value = content.get(kind)
                if kind == "image":
                    value = value if isinstance(value, Image.Image) else Image.open(value)
                    value = value.convert("RGB")
                visuals.append(value)
                is_video.append(kind == "video")
                content = {k: v for k, v in content.items() if k != kind}
            new_chat.append({**turn, "content": content})
        return new_chat, visuals, is_video

    # ------------------------------------------------------------------ encoding
    @staticmethod
    def _rows(visuals, text, token, depth: int) -> list[list]:
        """Per text row, its images (``depth`` 1: an image is a leaf) or videos (``depth`` 2: a frame list)."""

        def nesting(x):
            return 1 + nesting(x[0]) if isinstance(x, (list, tuple)) and x else 0

        visuals = list(visuals) if isinstance(visuals, (list, tuple)) else [visuals]
        if nesting(visuals) > depth or (visuals and all(isinstance(v, (list, tuple)) for v in visuals)
                                        and depth == 1):  # fmt: skip
            return [list(v) for v in visuals]
        if text is None:
            return [visuals]
        counts = [t.count(token) for t in text]
        if sum(counts) != len(visuals):
            raise ValueError(f"{sum(counts)} {token} placeholders in the text but {len(visuals)} images/videos given")
        rows, i = [], 0
        for n in counts:
            rows.append(visuals[i : i + n])
            i += n
        return rows

    def __call__(self, images=None, text=None, videos=None, **kwargs):
        return_tensors = kwargs.pop("return_tensors", None)
        if isinstance(text, str):
            text = [text]
            if images is not None and not isinstance(images, (list, tuple)):
                images = [images]
        image_rows = self._rows(images, text, IMAGE_TOKEN, 1) if images is not None else None
        video_rows = self._rows(videos, text, VIDEO_TOKEN, 2) if videos is not None else None
        data = {}
        ip = self.image_processor
        if image_rows is not None:
            grids = [[ip.image_grids(im) for im in row] for row in image_rows]
            sizes = [[[im.width, im.height] for im in row] for row in image_rows]
            lengths = [[image_query_length(tuple(s), ip) for s in row] for row in sizes]
            width = max([sum(len(g) for g in row) for row in grids] + [1])
            most = max([len(row) for row in image_rows] + [1])
            s = ip.size
            pixels = np.zeros((len(grids), width, 3, s, s), dtype=np.float32)
            for b, row in enumerate(grids):
                if row:
                    stacked = np.concatenate(row)
                    pixels[b, : len(stacked)] = stacked
            data["pixel_values_images"] = torch.from_numpy(pixels)
            data["image_sizes_images"] = torch.tensor([r + [[0, 0]] * (most - len(r)) for r in sizes], dtype=torch.long)
            data["vision_query_lengths_images"] = torch.tensor([r + [0] * (most - len(r)) for r in lengths],
                                                               dtype=torch.long)  # fmt: skip
        else:
            lengths = None
        if video_rows is not None:
            canvases = [[self.video_canvases(v) for v in row] for row in video_rows]
            data["pixel_values_videos"] = [[[torch.from_numpy(c) for c in v] for v in row] for row in canvases]
            vlengths = [[video_query_length([len(c) for c in v], ip) for v in row] for row in canvases]
            data["vision_query_lengths_videos"] = vlengths
        else:
            vlengths = None
        if text is not None:
            text = [self.expand_text(t, lengths[b] if lengths else [], vlengths[b] if vlengths else [])
                    for b, t in enumerate(text)]  # fmt: skip
            keys = (
                "padding",
                "padding_side",
                "truncation",
                "max_length",
                "add_special_tokens",
                "return_attention_mask",
            )
            enc = self.tokenizer(text, return_tensors=return_tensors, **{k: v for k, v in kwargs.items() if k in keys})
            data.update(enc)
        return BatchFeature(data=data, tensor_type=None)

    def video_canvases(self, frames) -> list[np.ndarray]:
        frames = sample_frames(list(frames), self.max_video_frames)
        frames = [f if isinstance(f, Image.Image) else Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
        return [self.image_processor.canvas_grids(frames[i : i + FRAMES_PER_CANVAS])
                for i in range(0, len(frames), FRAMES_PER_CANVAS)]  # fmt: skip

    @staticmethod
    def expand_text(text: str, image_lengths: list[int], video_lengths: list[int]) -> str:
        """Each placeholder → as many tokens as its image/video gives (text already expanded stays as it is)."""
        for token, lengths in ((IMAGE_TOKEN, image_lengths), (VIDEO_TOKEN, video_lengths)):
            if not lengths or text.count(token) == sum(lengths):
                continue
            parts = text.split(token)
            if len(parts) - 1 != len(lengths):
                raise ValueError(f"{len(parts) - 1} {token} placeholders in the text but {len(lengths)} images/videos")
            text = parts[0] + "".join(token * n + p for n, p in zip(lengths, parts[1:]))
        return text

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self):
        return list(self.tokenizer.model_input_names) + ["pixel_values_images", "image_sizes_images",
                                                         "vision_query_lengths_images"]  # fmt: skip
