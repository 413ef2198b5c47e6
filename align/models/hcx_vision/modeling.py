"""``HCXVisionForCausalLM``: HyperCLOVAX-SEED-Vision-Instruct-3B as a native transformers model.

SigLIP (or CLIP) vision tower → C-Abstractor (``mm_projector``) → Llama language model, with AnyRes (a global view
plus up to ``max_num_grids`` local grids), unpadding and an ``image_newline`` column, and videos whose grids get
``slow`` or ``fast`` query counts. Parameter names are the published checkpoint's: ``vision_model.vision_model.*``,
``mm_projector.{pos_emb, net.0, net.2, readout.0, readout.2}``, ``image_newline``, ``language_model.*``.

Inputs: the processor (``processing.py``) writes one image token per visual feature into the text, and the model
puts each image's features at those positions (as LLaVA does), so a forward pass, the labels and TRL's log-prob code
all see one sequence. Text with one collapsed placeholder per image (the published processor's output) is expanded
here first. Image tensors come padded per row (``pixel_values_images`` [rows, grids, 3, S, S],
``image_sizes_images`` [rows, images, 2] as width/height, ``vision_query_lengths_images`` [rows, images], 0 =
padding), or as the published nested lists; the first revision's names (``pixel_values``, ``image_sizes``,
``vision_query_lengths``) are accepted too.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from align.models.hcx_vision.configuration import HCXVisionConfig
from align.models.hcx_vision.geometry import anyres_layout, grids_per_image, image_query_length, unpadded_shape
from align.models.hcx_vision.projector import CAbstractor


class VisionTower(nn.Module):
    """Holds the encoder under ``vision_model`` so its weights keep the published ``vision_model.vision_model.*``
    names (transformers 5's SigLIP/CLIP models no longer nest a ``vision_model`` themselves)."""

    def __init__(self, vision_config):
        super().__init__()
        self.vision_model = AutoModel.from_config(vision_config)

    def forward(self, pixel_values, layer: int):
        out = self.vision_model(pixel_values=pixel_values, output_hidden_states=True)
        hidden = out.hidden_states[layer]
        return hidden[:, 1:] if "clip" in self.vision_model.config.model_type else hidden


class HCXVisionPreTrainedModel(PreTrainedModel):
    config_class = HCXVisionConfig
    config: HCXVisionConfig
    base_model_prefix = ""
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _no_split_modules: ClassVar[list[str]] = ["LlamaDecoderLayer", "SiglipEncoderLayer", "CLIPEncoderLayer"]
    _skip_keys_device_placement = "past_key_values"

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, CAbstractor) and module.pos_emb is not None:
            nn.init.normal_(module.pos_emb, std=0.02)
        if isinstance(module, HCXVisionForCausalLM) and module.image_newline is not None:
            nn.init.normal_(module.image_newline, std=1 / math.sqrt(module.image_newline.numel()))


def _as_size(size) -> tuple[int, int]:
    """(width, height) from a [w, h] pair or the published processor's {"width", "height"} dict."""
    if isinstance(size, dict):
        return int(size["width"]), int(size["height"])
    w, h = (int(v) for v in (size.tolist() if hasattr(size, "tolist") else size))
    return w, h


class HCXVisualMixin:
    """Visual features from pixels, shared by the transformers model and the vLLM model
    (``vllm_model.py``): needs ``config``, ``vision_model``, ``mm_projector`` and ``image_newline``."""

    def _grid_features(self, pixels: torch.Tensor, queries: list[int]) -> list[torch.Tensor]:
        dtype = self.mm_projector.readout[0].weight.dtype
        feats = self.vision_model(pixels.to(dtype), self.config.use_nth_layer).to(dtype)
        return self.mm_projector(feats, queries)

    def encode_images(self, images: list[tuple[torch.Tensor, tuple[int, int]]]) -> list[torch.Tensor]:
        """(grids [g, 3, S, S], (width, height)) per image → its visual tokens [n, hidden] (AnyRes layout)."""
        if not images:
            return []
        cfg = self.config
        q = cfg.num_queries_vis_abstractor_image
        projected = self._grid_features(torch.cat([p for p, _ in images]), [q] * sum(len(p) for p, _ in images))[0]
        out, start, side = [], 0, math.isqrt(q)
        for pixels, size in images:
            feat = projected[start : start + len(pixels)]
            start += len(pixels)
            if len(pixels) == 1:
                out.append(feat[0] if self.image_newline is None else torch.cat([feat[0], self.image_newline[None]]))
                continue
            rows, cols = anyres_layout(size, cfg.possible_resolutions, cfg.vision_config.image_size)
            local = feat[1:].view(rows, cols, side, side, -1)
            if cfg.unpad:
                grid = local.permute(4, 0, 2, 1, 3).reshape(local.shape[-1], rows * side, cols * side)
                height, width = unpadded_shape(rows * side, cols * side, size)
                top, left = (rows * side - height) // 2, (cols * side - width) // 2
                grid = grid[:, top : top + height, left : left + width]
                newline = self.image_newline[:, None, None].expand(-1, height, 1).to(grid.dtype)
                local = torch.cat([grid, newline], dim=-1).flatten(1).transpose(0, 1)
            else:
                local = local.permute(0, 2, 1, 3, 4).reshape(-1, local.shape[-1])
            out.append(torch.cat([feat[0], local]))
        return out

    def encode_videos(self, videos: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """Per video, its canvases (each [g, 3, S, S]) → the video's visual tokens: the first grid of each canvas
        gets the slow query count and the others the fast one; with ``first_last_frames_slow`` only the first and
        the last grid of the batch's videos are slow."""
        cfg = self.config
        slow, fast = cfg.num_queries_vis_abstractor_video_slow, cfg.num_queries_vis_abstractor_video_fast
        canvases = [c for v in videos for c in v]
        if not canvases:
            return []
        total = sum(len(c) for c in canvases)
        if cfg.first_last_frames_slow:
            queries = [slow] * total if total <= 2 else [slow] + [fast] * (total - 2) + [slow]
        else:
            queries = [q for c in canvases for q in [slow] + [fast] * (len(c) - 1)]
        flat = torch.cat([g.flatten(0, 1) for g in self._grid_features(torch.cat(canvases), queries)])
        sizes = [sum(queries[i] for i in range(a, a + len(c))) for a, c in zip(_starts(canvases), canvases)]
        per_canvas = torch.split(flat, sizes)
        out, i = [], 0
        for v in videos:
            out.append(torch.cat(per_canvas[i : i + len(v)]))
            i += len(v)
        return out

    # ---------------------------------------------------------------- inputs
    def _images_from_inputs(self, pixel_values, image_sizes, lengths) -> list[list[tuple]]:
        """Normalise padded tensors or the published nested lists to, per row, [(grids, (width, height)), ...]."""
        cfg = self.config
        rows = []
        if isinstance(pixel_values, torch.Tensor) and pixel_values.dim() == 5:
            for b in range(pixel_values.shape[0]):
                images, start = [], 0
                n = lengths[b] if lengths is not None else [1] * len(image_sizes[b])
                for m, size in enumerate(image_sizes[b]):
                    if int(n[m]) == 0:
                        continue
                    size = _as_size(size)
                    g = grids_per_image(size, cfg.anyres, cfg.possible_resolutions, cfg.vision_config.image_size)
                    images.append((pixel_values[b, start : start + g], size))
                    start += g
                rows.append(images)
            return rows
        for b, row in enumerate(pixel_values):
            row = row if isinstance(row, (list, tuple)) else [row]
            rows.append([(p, _as_size(s)) for p, s in zip(row, image_sizes[b]) if p is not None and len(p)])
        return rows


class HCXVisionForCausalLM(HCXVisionPreTrainedModel, HCXVisualMixin, GenerationMixin):
    def __init__(self, config: HCXVisionConfig):
        super().__init__(config)
        if config.mm_projector_type != "cabstractor":
            raise ValueError(f"HCXVisionForCausalLM: mm_projector_type {config.mm_projector_type!r} is not supported "
                             "(HyperCLOVAX-SEED-Vision-Instruct-3B uses 'cabstractor')")  # fmt: skip
        self.vision_model = VisionTower(config.vision_config)
        self.mm_projector = CAbstractor(config)
        hidden = config.text_config.hidden_size
        self.image_newline = nn.Parameter(torch.zeros(hidden)) if config.anyres else None
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

    # ---------------------------------------------------------------- plumbing transformers / PEFT / TRL expect
    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value):
        self.language_model.set_output_embeddings(value)

    def get_decoder(self):
        return self.language_model.get_decoder()

    @property
    def model(self):  # TRL and PEFT look for the backbone under .model
        return self.language_model.model

    def _visual_embeddings(self, input_ids, inputs_embeds, token_id, features):
        mask = input_ids == token_id
        feats = torch.cat(features) if features else inputs_embeds.new_zeros(0, inputs_embeds.shape[-1])
        if int(mask.sum()) != feats.shape[0]:
            raise ValueError(f"Image features and image tokens do not match: {int(mask.sum())} image tokens in the "
                             f"text but the images give {feats.shape[0]} features")  # fmt: skip
        return inputs_embeds.masked_scatter(mask[..., None], feats.to(inputs_embeds.dtype))

    def prepare_inputs(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None,
                       pixel_values_images=None, image_sizes_images=None, vision_query_lengths_images=None,
                       pixel_values_videos=None, vision_query_lengths_videos=None, pixel_values=None, image_sizes=None,
                       vision_query_lengths=None, **kwargs):  # fmt: skip
        """Token embeddings with each image's / video's features at its tokens → (inputs_embeds, attention_mask,
        labels, remaining kwargs). The first revision's names are accepted for the image inputs."""
        pixel_values_images = pixel_values_images if pixel_values_images is not None else pixel_values
        image_sizes_images = image_sizes_images if image_sizes_images is not None else image_sizes
        if vision_query_lengths_images is None:
            vision_query_lengths_images = vision_query_lengths
        for key in (
            "image_sizes_videos",
            "non_vision_query_lengths",
            "img_start_ids_list",
            "is_videos",
            "num_queries_vis_abstractors",
            "num_queries_slow",
            "first_last_frames_slows",
            "num_grids",
        ):
            kwargs.pop(key, None)  # fmt: skip
        if inputs_embeds is not None:
            return inputs_embeds, attention_mask, labels, kwargs
        cfg = self.config
        images = videos = None
        if pixel_values_images is not None and (input_ids == cfg.image_token_id).any():
            rows = self._images_from_inputs(pixel_values_images, image_sizes_images, vision_query_lengths_images)
            flat = iter(self.encode_images([im for row in rows for im in row]))  # one tower pass for the batch
            images = [[next(flat) for _ in row] for row in rows]
        if (
            pixel_values_videos is not None
            and cfg.video_token_id is not None
            and (input_ids == cfg.video_token_id).any()
        ):
            videos = [self.encode_videos(list(row)) for row in pixel_values_videos]
        if images or videos:
            input_ids, attention_mask, labels = expand_collapsed(input_ids, attention_mask, labels, cfg, images, videos)
        inputs_embeds = self.get_input_embeddings()(input_ids)
        if images:
            inputs_embeds = self._visual_embeddings(input_ids, inputs_embeds, cfg.image_token_id,
                                                    [f for row in images for f in row])  # fmt: skip
        if videos:
            inputs_embeds = self._visual_embeddings(input_ids, inputs_embeds, cfg.video_token_id,
                                                    [f for row in videos for f in row])  # fmt: skip
        return inputs_embeds, attention_mask, labels, kwargs

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, pixel_values_images=None, image_sizes_images=None,
                vision_query_lengths_images=None, pixel_values_videos=None, vision_query_lengths_videos=None,
                use_cache=None, logits_to_keep=0, **kwargs):  # fmt: skip
        inputs_embeds, attention_mask, labels, kwargs = self.prepare_inputs(
            input_ids, attention_mask, labels, inputs_embeds, pixel_values_images, image_sizes_images,
            vision_query_lengths_images, pixel_values_videos, vision_query_lengths_videos, **kwargs)  # fmt: skip
        out = self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                  position_ids=position_ids, past_key_values=past_key_values, labels=labels,
                                  use_cache=use_cache, logits_to_keep=logits_to_keep, **kwargs)  # fmt: skip
        return CausalLMOutputWithPast(loss=out.loss, logits=out.logits, past_key_values=out.past_key_values,
                                      hidden_states=out.hidden_states, attentions=out.attentions)  # fmt: skip

    @property
    def base_model(self):
        """The backbone transformers' VLMs expose: images merged, the decoder's hidden states out (no LM head).
        TRL's fused log-prob head (DPO, SFT) runs ``model.base_model(...)`` and projects ``last_hidden_state``."""
        return _Backbone(self)

    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, **kwargs):
        """Accepts prompts whose placeholders are collapsed (one per image, the published interface) by expanding
        them first; expanded prompts pass through unchanged."""
        if input_ids is not None and kwargs.get("inputs_embeds") is None:
            pv = kwargs.get("pixel_values_images", kwargs.get("pixel_values"))
            if pv is not None:
                sizes = kwargs.get("image_sizes_images", kwargs.get("image_sizes"))
                lengths = kwargs.get("vision_query_lengths_images", kwargs.get("vision_query_lengths"))
                rows = self._images_from_inputs(pv, sizes, lengths)
                counts = [[_image_tokens(self.config, p, s) for p, s in row] for row in rows]
                input_ids, attention_mask, _ = expand_collapsed(input_ids, attention_mask, None, self.config,
                                                                counts, None)  # fmt: skip
        return super().generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


class _Backbone(nn.Module):
    _tp_plan = None
    _pp_plan = None

    def __init__(self, outer):
        super().__init__()
        self.__dict__["_outer"] = outer  # not a submodule: the weights stay under their published names

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, **kwargs):  # fmt: skip
        outer = self.__dict__["_outer"]
        inputs_embeds, attention_mask, _, kwargs = outer.prepare_inputs(input_ids, attention_mask, None, inputs_embeds,
                                                                        **kwargs)  # fmt: skip
        return outer.language_model.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                          position_ids=position_ids, past_key_values=past_key_values,
                                          use_cache=use_cache, **kwargs)  # fmt: skip


def _starts(canvases):
    start = 0
    for c in canvases:
        yield start
        start += len(c)


def _image_tokens(config, pixels, size) -> int:
    return image_query_length(size, config)


def expand_collapsed(input_ids, attention_mask, labels, config, images, videos):
    """If a row holds one placeholder per image/video instead of one per visual token, repeat each placeholder to
    its token count (labels get -100 there). Rows are re-padded on the side their padding was on."""
    specs = []
    if images:
        specs.append((config.image_token_id, [[f if isinstance(f, int) else len(f) for f in row] for row in images]))
    if videos:
        specs.append((config.video_token_id, [[f if isinstance(f, int) else len(f) for f in row] for row in videos]))
    needs = False
    for token, counts in specs:
        for b, row in enumerate(counts):
            n = int((input_ids[b] == token).sum())
            if n == len(row) and n != sum(row):
                needs = True
            elif n != sum(row):
                raise ValueError(f"row {b}: {n} image/video tokens in the text for {len(row)} images/videos giving "
                                 f"{sum(row)} features (expected {len(row)} placeholders or {sum(row)} tokens)")  # fmt: skip
    if not needs:
        return input_ids, attention_mask, labels
    pad = config.text_config.pad_token_id if config.text_config.pad_token_id is not None else 0
    mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
    left = bool((mask[:, 0] == 0).any()) and not bool((mask[:, -1] == 0).any())
    new_ids, new_mask, new_labels = [], [], []
    for b in range(input_ids.shape[0]):
        keep = mask[b].bool()
        ids, lab = input_ids[b][keep].tolist(), labels[b][keep].tolist() if labels is not None else None
        for token, counts in specs:
            if sum(1 for t in ids if t == token) != len(counts[b]):
                continue
            reps = iter(counts[b])
            out_ids, out_lab = [], []
            for i, t in enumerate(ids):
                k = next(reps) if t == token else 1
                out_ids += [t] * k
                if lab is not None:
                    out_lab += [config.ignore_index] * k if t == token else [lab[i]]
            ids, lab = out_ids, out_lab if lab is not None else None
        new_ids.append(ids)
        new_labels.append(lab)
    width = max(len(x) for x in new_ids)
    for b, ids in enumerate(new_ids):
        gap = width - len(ids)
        new_mask.append([0] * gap + [1] * len(ids) if left else [1] * len(ids) + [0] * gap)
        new_ids[b] = [pad] * gap + ids if left else ids + [pad] * gap
        if labels is not None:
            lab = new_labels[b]
            new_labels[b] = [-100] * gap + lab if left else lab + [-100] * gap
    device = input_ids.device
    return (torch.tensor(new_ids, device=device), torch.tensor(new_mask, device=device),
            torch.tensor(new_labels, device=device) if labels is not None else None)  # fmt: skip
