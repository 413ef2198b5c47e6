"""A tiny remote-code reward model with InternLM-XComposer2.5-Reward's interface (test asset, loaded with
``trust_remote_code=True``): ``get_score(chat, image, hd_num=...)`` and ``get_scores(chats, images, hd_num=...)``.
Like IXC-2.5-Reward it reads image *paths*, needs ``model.tokenizer`` attached by the caller, and scores the
user/assistant chat: token embeddings of the assistant's answer and the mean colour of the images, through a
linear layer."""

import numpy as np
import torch
from PIL import Image
from transformers import PreTrainedModel

from .configuration_tiny_reward import TinyGetScoreConfig


class TinyGetScoreRewardModel(PreTrainedModel):
    config_class = TinyGetScoreConfig
    base_model_prefix = "tiny"

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.vision = torch.nn.Linear(3, config.hidden_size)
        self.score_head = torch.nn.Linear(config.hidden_size, 1)
        self.post_init()

    def _features(self, chat, image):
        if getattr(self, "tokenizer", None) is None:
            raise RuntimeError("set model.tokenizer first")
        assert [m["role"] for m in chat] == ["user", "assistant"], chat
        ids = self.tokenizer(chat[-1]["content"], return_tensors="pt")["input_ids"][0] % self.config.vocab_size
        text = self.embed(ids).mean(0) if len(ids) else torch.zeros(self.config.hidden_size)
        pixels = [
            torch.from_numpy(np.asarray(Image.open(p).convert("RGB").resize((8, 8)), dtype=np.float32)).mean((0, 1))
            / 255
            for p in image
        ]
        vision = self.vision(torch.stack(pixels).mean(0)) if pixels else torch.zeros(self.config.hidden_size)
        return text + vision

    def get_score(self, chat, image, hd_num=24):
        return self.score_head(self._features(chat, image)).item()

    def get_scores(self, chats, images, hd_num=24):
        return [self.get_score(c, i, hd_num) for c, i in zip(chats, images)]
