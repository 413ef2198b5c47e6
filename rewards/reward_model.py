"""Learned (vision) reward models as rewards: the ``reward_model`` reward and the model class the ``rm`` stage trains.

``load_reward_model(path)`` recognises three layouts of a reward model folder:

* **workbench** (what the ``rm`` stage writes): the VLM (or LM) backbone as a normal HF folder plus
  ``reward_head.safetensors`` (a linear layer from the last hidden state of the final token to one score) and
  ``reward_model.json`` (score statistics for ``normalize``);
* **value head** (the Skywork-VL-Reward layout): a Qwen2.5-VL (or any image-text-to-text / causal LM) checkpoint
  plus ``value_head.safetensors`` holding TRL's ``ValueHead`` (``v_head.summary.weight`` [1, hidden], ``.bias``);
  the score is the value at the final non-padding token;
* **get_score** (the InternLM-XComposer2.5-Reward interface): a remote-code model whose ``get_score(chat, image)``
  (and optionally batched ``get_scores``) returns a float for a user/assistant chat and a list of image paths;
  needs ``trust_remote_code: true``.

The first two score a (prompt + images, completion) chat rendered with the backbone's own chat template.

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

from align.chat import messages_text
from align.data.loaders import open_rgb
from align.errors import UserError
from align.models import load_model, load_processor, save_model
from align.spec import ModelSpec

HEAD_FILE, CONFIG_FILE = "reward_head.safetensors", "reward_model.json"
VALUE_HEAD_FILE, VALUE_HEAD_PREFIX = "value_head.safetensors", "v_head.summary."


class ScalarRewardModel:
    """Backbone + linear head on the last token's final hidden state (the usual sequence-classification layout)."""

    def __init__(self, backbone, processor, head, device="cpu"):
        self.backbone, self.processor, self.head, self.device = backbone, processor, head, device
        self.tokenizer = getattr(processor, "tokenizer", processor)

    @classmethod
    def from_backbone(cls, path: str, model_spec=None, dtype: str | None = None):
        import torch

        processor = load_processor(path, bool(model_spec and model_spec.trust_remote_code))
        backbone = load_model(path, model_spec, dtype=dtype)
        hidden = _hidden_size(backbone.config)
        torch.manual_seed(0)
        head = torch.nn.Linear(hidden, 1, dtype=backbone.dtype)
        torch.nn.init.normal_(head.weight, std=1 / (hidden + 1) ** 0.5)
        torch.nn.init.zeros_(head.bias)
        return cls(backbone, processor, head)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, trust_remote_code: bool = False):
        """A workbench reward model folder, or a value-head checkpoint (Skywork-VL-Reward layout)."""
        import torch
        from safetensors.torch import load_file

        path = Path(path)
        head_file = path / HEAD_FILE if (path / HEAD_FILE).exists() else path / VALUE_HEAD_FILE
        if not head_file.exists():
            raise UserError(f"{path} has neither {HEAD_FILE} nor {VALUE_HEAD_FILE}",
                            "train one with an `rm` stage, or point `path` at its output folder")  # fmt: skip
        weights = load_file(head_file)
        if head_file.name == VALUE_HEAD_FILE:  # TRL ValueHead keys: v_head.summary.{weight,bias}
            weights = {
                k.removeprefix(VALUE_HEAD_PREFIX): v for k, v in weights.items() if k.startswith(VALUE_HEAD_PREFIX)
            }
        if set(weights) != {"weight", "bias"} or weights["weight"].shape[0] != 1:
            found = {k: tuple(v.shape) for k, v in load_file(head_file).items()}
            raise UserError(f"{head_file} does not hold a one-score linear head (found {found})",
                            f"expected weight [1, hidden] and bias [1]{' under ' + VALUE_HEAD_PREFIX if head_file.name == VALUE_HEAD_FILE else ''}")  # fmt: skip
        processor = load_processor(str(path), trust_remote_code)
        spec = ModelSpec(path=str(path), trust_remote_code=trust_remote_code)
        backbone = load_model(str(path), spec, dtype="float32" if not torch.cuda.is_available() else None)
        if weights["weight"].shape[1] != _hidden_size(backbone.config):
            raise UserError(f"{head_file} expects hidden size {weights['weight'].shape[1]}, the backbone in {path} "
                            f"has {_hidden_size(backbone.config)}", "the head and the backbone come from different models")  # fmt: skip
        head = torch.nn.Linear(weights["weight"].shape[1], 1, dtype=backbone.dtype)
        head.load_state_dict({k: v.to(backbone.dtype) for k, v in weights.items()})
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = cls(backbone.to(device).eval(), processor, head.to(device).eval(), device)
        model.stats = (
            json.loads((path / CONFIG_FILE).read_text()).get("score_stats") if (path / CONFIG_FILE).exists() else None
        )
        return model

    def save(self, out: Path, extra: dict | None = None) -> None:
        from safetensors.torch import save_file

        def head_and_config(folder: Path) -> None:
            save_file({k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}, folder / HEAD_FILE)
            (folder / CONFIG_FILE).write_text(json.dumps({"kind": "scalar_head_last_token", **(extra or {})}, indent=2))

        save_model(self.backbone, self.processor, out, extra=head_and_config)

    def encode(self, prompts, completions, images):
        """Batch of chats (prompt messages + assistant completion) → processor tensors (right padding)."""
        from trl.data_utils import prepare_multimodal_messages

        texts, batch_images = [], []
        for prompt, completion, imgs in zip(prompts, completions, images or [None] * len(prompts)):
            imgs = [open_rgb(i) for i in imgs or []]
            # TRL hands rewards prompts in its structured form (content lists); re-insert the images from scratch
            messages = [{"role": m["role"], "content": messages_text([m])} for m in prompt]
            # lone surrogates and the like cannot be tokenized: replace them
            messages.append({"role": "assistant", "content": completion.encode("utf-8", "replace").decode("utf-8")})
            if imgs or hasattr(self.processor, "image_processor"):
                messages = prepare_multimodal_messages(messages, images=imgs)
            texts.append(self.processor.apply_chat_template(messages, tokenize=False))
            batch_images.append(imgs)
        self.tokenizer.padding_side = "right"
        # the completion comes last, so right truncation keeps the image tokens of the prompt
        limit = {"truncation": True, "max_length": _max_positions(self.backbone.config)}
        if any(batch_images) and getattr(self.processor, "image_error", None):
            raise UserError(f"cannot score images: {self.processor.image_error}", "install torchvision")
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


class GetScoreRewardModel:
    """A remote-code reward model with ``get_score(chat, image)`` (InternLM-XComposer2.5-Reward's interface): the
    chat is ``[{"role": "user", ...}, {"role": "assistant", ...}]``, ``image`` a list of image paths (in-memory
    images are written to a temporary folder first). ``get_scores`` is used for batches when the model has it."""

    stats = None

    def __init__(self, model, device: str = "cpu"):
        self.model, self.device = model, device

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, trust_remote_code: bool = False):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if not trust_remote_code:
            raise UserError(f"{path} ships its own model code (config.json has auto_map)",
                            "set trust_remote_code: true in the reward's args if you trust that code")  # fmt: skip
        dtype = torch.float32 if not torch.cuda.is_available() else torch.bfloat16
        model = AutoModel.from_pretrained(str(path), trust_remote_code=True, dtype=dtype)
        if not callable(getattr(model, "get_score", None)):
            raise UserError(f"{path} loads as {type(model).__name__}, which has no get_score(chat, image)",
                            "the reward_model reward reads workbench, value-head or get_score reward models")  # fmt: skip
        if getattr(model, "tokenizer", None) is None:  # IXC-2.5-Reward expects the caller to attach it
            model.tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=True)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device).eval(), device)

    def score(self, prompts, completions, images=None, batch_size: int = 16) -> list[float]:
        import inspect
        import tempfile

        import torch

        extra = {"hd_num": 9} if "hd_num" in inspect.signature(self.model.get_score).parameters else {}
        batched = callable(getattr(self.model, "get_scores", None))
        scores: list[float] = []
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
            chats, paths = [], []
            for i, (prompt, completion) in enumerate(zip(prompts, completions)):
                chats.append(
                    [{"role": "user", "content": messages_text(prompt)}, {"role": "assistant", "content": completion}]
                )
                paths.append(
                    [
                        _as_path(img, Path(tmp) / f"{i}-{j}.png")
                        for j, img in enumerate((images or [None] * len(prompts))[i] or [])
                    ]
                )
            for i in range(0, len(chats), batch_size):
                sl = slice(i, i + batch_size)
                if batched:
                    scores.extend(float(s) for s in self.model.get_scores(chats[sl], paths[sl], **extra))
                else:
                    scores.extend(float(self.model.get_score(c, p, **extra)) for c, p in zip(chats[sl], paths[sl]))
        return scores


def load_reward_model(path: str | Path, device: str | None = None, trust_remote_code: bool = False):
    """The reward model in ``path``, whichever of the three layouts (module docstring) it has; a clear error naming
    what was found otherwise."""

    path = Path(path)
    if not path.is_dir():
        raise UserError(f"reward model {path} is not a folder", "give a folder an `rm` stage wrote, or stage:NAME")
    if (path / HEAD_FILE).exists() or (path / VALUE_HEAD_FILE).exists():
        return ScalarRewardModel.load(path, device, trust_remote_code)
    config = json.loads((path / "config.json").read_text()) if (path / "config.json").exists() else {}
    if config.get("auto_map"):
        return GetScoreRewardModel.load(path, device, trust_remote_code)
    found = ", ".join(sorted(p.name for p in path.iterdir())[:12]) or "nothing"
    kind = f" (architectures {config.get('architectures')})" if config else ""
    raise UserError(f"{path} is not a reward model this workbench reads{kind}; found: {found}",
                    f"expected {HEAD_FILE} (an `rm` stage's output), {VALUE_HEAD_FILE} (Skywork-VL-Reward layout) "
                    "or remote code with get_score (InternLM-XComposer2.5-Reward)")  # fmt: skip


def _as_path(image, tmp: Path) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    image.save(tmp)
    return str(tmp)


def _hidden_size(config) -> int:
    text = getattr(config, "text_config", None) or config
    return int(text.hidden_size)


def _max_positions(config) -> int:
    text = getattr(config, "text_config", None) or config
    return int(getattr(text, "max_position_embeddings", None) or 4096)


@lru_cache(maxsize=2)
def _cached(path: str, device: str | None, trust_remote_code: bool):
    import torch

    # Loading initialises layers before their weights arrive, which draws from the global RNG; the policy's
    # sampling must not depend on when the reward model happened to load (e.g. first use after a resume).
    with torch.random.fork_rng(devices=[]):
        return load_reward_model(path, device, trust_remote_code)


def reward_model(prompts, completions, path: str = "", images=None, normalize: bool = False,
                 images_only: bool = False, batch_size: int = 16, device: str | None = None,
                 trust_remote_code: bool = False, **kwargs) -> list[float | None]:  # fmt: skip
    """Score of a learned (vision) reward model: an `rm` stage's output, a value-head checkpoint (Skywork-VL-Reward)
    or a get_score model (InternLM-XComposer2.5-Reward); `normalize` standardises it with the score mean/std
    measured on the rm stage's held-out pairs; `images_only` leaves text-only rows to the other rewards."""

    if not path:
        raise UserError("reward_model needs args.path: a reward model folder or stage:NAME")
    model = _cached(str(Path(path).resolve()), device, trust_remote_code)
    prompts = [p if isinstance(p, list) else [{"role": "user", "content": str(p)}] for p in prompts]
    keep = [i for i in range(len(prompts)) if not images_only or (images and images[i])]
    out: list[float | None] = [None] * len(prompts)
    if not keep:
        return out
    scores = model.score([prompts[i] for i in keep], [messages_text(completions[i]) for i in keep],
                         [images[i] for i in keep] if images else None, batch_size)  # fmt: skip
    for i, s in zip(keep, scores):
        if normalize and model.stats:
            s = (s - model.stats["mean"]) / (model.stats["std"] or 1.0)
        out[i] = s
    return out
