"""The rollout-engine interface: chat prompts (+ images) in, n sampled completions per prompt out."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Sampling:
    """Sampling settings shared by every engine (names follow vLLM's SamplingParams)."""

    n: int = 1
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means no top-k
    max_new_tokens: int = 64
    stop: list[str] = field(default_factory=list)  # stop strings (cut from the text)
    stop_token_ids: list[int] = field(default_factory=list)  # added to the model's own end-of-turn tokens
    repetition_penalty: float = 1.0
    seed: int | None = None


@dataclass
class Completion:
    text: str
    token_ids: list[int]  # generated ids, including the stop token when generation stopped on one
    logprobs: list[float]  # log-probability of each generated id under the model (before temperature)
    finish_reason: str  # "stop" or "length"


class Engine:
    """Base class. ``generate`` returns, for each prompt, a list of ``sampling.n`` completions."""

    name = "base"

    def generate(
        self, prompts: list[list[dict]], images: list[list] | None, sampling: Sampling
    ) -> list[list[Completion]]:
        raise NotImplementedError

    def close(self) -> None:
        """Free the engine's memory (and processes)."""


def truncate_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
