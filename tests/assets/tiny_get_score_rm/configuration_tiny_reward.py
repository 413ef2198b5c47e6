"""Config of a tiny remote-code reward model with InternLM-XComposer2.5-Reward's ``get_score`` interface (test asset)."""

from transformers import PretrainedConfig


class TinyGetScoreConfig(PretrainedConfig):
    model_type = "tiny_get_score_reward"

    def __init__(self, vocab_size=3100, hidden_size=16, **kwargs):
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        super().__init__(**kwargs)
