"""The rollout-engine interface: chat prompts (+ images) in, n sampled completions per prompt out."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass
class Sampling:
    """Sampling settings shared by every engine (names follow vLLM's SamplingParams).

    ``temperature``, ``top_p``, ``top_k`` and ``repetition_penalty`` left at ``None`` are not set by the caller: the
    engine takes them from the model's published ``generation_config.json`` (``resolve_sampling``)."""

    n: int = 1
    temperature: float | None = None  # 0 means greedy
    top_p: float | None = None
    top_k: int | None = None  # 0 means no top-k
    max_new_tokens: int = 64
    stop: list[str] = field(default_factory=list)  # stop strings (cut from the text)
    stop_token_ids: list[int] = field(default_factory=list)  # added to the model's own end-of-turn tokens
    repetition_penalty: float | None = None
    seed: int | None = None


NEUTRAL = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0}  # the model's own distribution


def published_sampling(generation_config) -> dict:
    """The sampling values a model's ``generation_config.json`` publishes, e.g. Qwen2.5-VL's temperature 0.1, top_p
    0.001, top_k 1, repetition_penalty 1.05 (a config with ``do_sample`` off publishes no temperature / top_p /
    top_k: they would not apply)."""
    if generation_config is None:
        return {}
    keys = list(NEUTRAL) if getattr(generation_config, "do_sample", False) else ["repetition_penalty"]
    return {k: v for k in keys if (v := getattr(generation_config, k, None)) is not None}


def resolve_sampling(sampling: Sampling, published: dict) -> Sampling:
    """``sampling`` with its unset values filled. The published values were tuned together, so they are taken as a
    set, only when the caller (the recipe or stage) sets none of temperature / top_p / top_k /
    repetition_penalty; once it sets one, the ones it leaves unset are neutral (temperature 1, no top-p / top-k,
    penalty 1). So Qwen2.5-VL's published top_k 1 / top_p 0.001 never narrows a recipe's temperature 1.0 to greedy
    decoding, which would make every RFT / GRPO sample of a prompt the same (docs/families.md)."""
    own = {k: getattr(sampling, k) for k in NEUTRAL if getattr(sampling, k) is not None}
    base = {**NEUTRAL, **({} if own else published)}
    return replace(sampling, **{**base, **own})


@dataclass
class Completion:
    text: str
    token_ids: list[int]  # generated ids, including the stop token when generation stopped on one
    logprobs: list[float]  # log-probability of each generated id under the model (before temperature)
    finish_reason: str  # "stop" or "length"


class Engine:
    """Base class. ``generate`` returns, for each prompt, a list of ``sampling.n`` completions."""

    name = "base"
    family = None  # the model's family (align.models.families.Family), as the engine's loader resolved it

    def generate(
        self, prompts: list[list[dict]], images: list[list] | None, sampling: Sampling
    ) -> list[list[Completion]]:
        raise NotImplementedError

    def close(self) -> None:
        """Free the engine's memory (and processes)."""


def truncate_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
