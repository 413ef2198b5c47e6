"""Learned (vision) reward models as rewards: the ``reward_model`` reward and the model class the ``rm`` stage trains.

A workbench reward model is a model directory holding the VLM (or LM) backbone as a normal HF folder plus
``reward_head.safetensors`` (a linear layer from the last hidden state of the final token to one score) and
``reward_model.json``. It scores a (prompt + images, completion) chat rendered with the backbone's template.

In a recipe::

    rewards:
      - name: reward_model
        weight: 0.5
        args: {path: stage:rm, normalize: true}   # stage:NAME = the model an earlier stage of this run trained
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from align.data.loaders import content_text

HEAD_FILE, CONFIG_FILE = "reward_head.safetensors", "reward_model.json"


class ScalarRewardModel:
    """Backbone + linear head on the last token's final hidden state (the usual sequence-classification layout)."""

    def __init__(self, backbone, processor, head, device="cpu"):
        self.backbone, self.processor, self.head, self.device = backbone, processor, head, device
        self.tokenizer = getattr(processor, "tokenizer", processor)

    @classmethod
    def from_backbone(cls, path: str, model_spec=None, dtype: str | None = None):
        import torch

        from align.models import load_model, load_processor

        processor = load_processor(path, bool(model_spec and model_spec.trust_remote_code))
        backbone = load_model(path, model_spec, dtype=dtype)
        hidden = _hidden_size(backbone.config)
        torch.manual_seed(0)
        head = torch.nn.Linear(hidden, 1, dtype=backbone.dtype)
        torch.nn.init.normal_(head.weight, std=1 / (hidden + 1) ** 0.5)
        torch.nn.init.zeros_(head.bias)
        return cls(backbone, processor, head)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None):
        import torch
        from safetensors.torch import load_file

        from align.errors import UserError
        from align.models import load_model, load_processor

        path = Path(path)
        if not (path / HEAD_FILE).exists():
            raise UserError(f"{path} is not a workbench reward model (no {HEAD_FILE})",
                            "train one with an `rm` stage, or point `path` at its output folder")  # fmt: skip
        processor = load_processor(str(path))
        backbone = load_model(str(path), dtype="float32" if not torch.cuda.is_available() else None)
        head = torch.nn.Linear(_hidden_size(backbone.config), 1, dtype=backbone.dtype)
        head.load_state_dict(load_file(path / HEAD_FILE))
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = cls(backbone.to(device).eval(), processor, head.to(device).eval(), device)
        model.stats = json.loads((path / CONFIG_FILE).read_text()).get("score_stats") if (path / CONFIG_FILE).exists() else None
        return model

    def save(self, out: Path, extra: dict | None = None) -> None:
        from safetensors.torch import save_file

        from align.models import save_model

        save_model(self.backbone, self.processor, out)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}, out / HEAD_FILE)
        (out / CONFIG_FILE).write_text(json.dumps({"kind": "scalar_head_last_token", **(extra or {})}, indent=2))

    def encode(self, prompts, completions, images):
        """Batch of chats (prompt messages + assistant completion) → processor tensors (right padding)."""
        from trl.data_utils import prepare_multimodal_messages

        from align.data.loaders import open_rgb

        texts, batch_images = [], []
        for prompt, completion, imgs in zip(prompts, completions, images or [None] * len(prompts)):
            imgs = [open_rgb(i) for i in imgs or []]
            # TRL hands rewards prompts in its structured form (content lists); re-insert the images from scratch
            messages = [{"role": m["role"], "content": _text([m])} for m in prompt]
            # lone surrogates and the like cannot be tokenized: replace them
            messages.append({"role": "assistant", "content": completion.encode("utf-8", "replace").decode("utf-8")})
            if imgs or hasattr(self.processor, "image_processor"):
                messages = prepare_multimodal_messages(messages, images=imgs)
            texts.append(self.processor.apply_chat_template(messages, tokenize=False))
            batch_images.append(imgs)
        self.tokenizer.padding_side = "right"
        # the completion comes last, so right truncation keeps the image tokens of the prompt
        limit = dict(truncation=True, max_length=_max_positions(self.backbone.config))
        if any(batch_images):
            enc = self.processor(text=texts, images=batch_images, padding=True, return_tensors="pt",
                                 add_special_tokens=False, **limit)  # fmt: skip
        else:
            enc = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False, **limit)
        return {k: v.to(self.device) for k, v in enc.items() if hasattr(v, "to")}

    def forward(self, enc):
        out = self.backbone(**enc, output_hidden_states=True)
        hidden = out.hidden_states[-1]
        last = enc["attention_mask"].sum(dim=1) - 1  # right padding: the final real token
        final = hidden[range(hidden.shape[0]), last]
        return self.head(final.to(self.head.weight.dtype)).squeeze(-1)

    def score(self, prompts, completions, images=None, batch_size: int = 16) -> list[float]:
        import torch

        scores: list[float] = []
        with torch.no_grad():
            for i in range(0, len(prompts), batch_size):
                sl = slice(i, i + batch_size)
                enc = self.encode(prompts[sl], completions[sl], images[sl] if images else None)
                scores.extend(self.forward(enc).float().tolist())
        return scores


def _hidden_size(config) -> int:
    text = getattr(config, "text_config", None) or config
    return int(text.hidden_size)


def _max_positions(config) -> int:
    text = getattr(config, "text_config", None) or config
    return int(getattr(text, "max_position_embeddings", None) or 4096)


@lru_cache(maxsize=2)
def _cached(path: str, device: str | None):
    return ScalarRewardModel.load(path, device)


def _text(messages) -> str:
    """Text of a message list (or a plain string)."""
    if not isinstance(messages, list):
        return str(messages)
    return "".join(content_text(m.get("content", "")) for m in messages)


def reward_model(prompts, completions, path: str = "", images=None, normalize: bool = False,
                 images_only: bool = False, batch_size: int = 16, device: str | None = None,
                 **kwargs) -> list[float | None]:  # fmt: skip
    """Score of a learned (vision) reward model trained by an `rm` stage; `normalize` standardises it with the
    score mean/std measured on its held-out pairs; `images_only` leaves text-only rows to the other rewards."""
    from align.errors import UserError

    if not path:
        raise UserError("reward_model needs args.path: a reward model folder or stage:NAME")
    model = _cached(str(Path(path).resolve()), device)
    prompts = [p if isinstance(p, list) else [{"role": "user", "content": str(p)}] for p in prompts]
    keep = [i for i in range(len(prompts)) if not images_only or (images and images[i])]
    out: list[float | None] = [None] * len(prompts)
    if not keep:
        return out
    scores = model.score([prompts[i] for i in keep], [_text(completions[i]) for i in keep],
                         [images[i] for i in keep] if images else None, batch_size)  # fmt: skip
    for i, s in zip(keep, scores):
        if normalize and model.stats:
            s = (s - model.stats["mean"]) / (model.stats["std"] or 1.0)
        out[i] = s
    return out
