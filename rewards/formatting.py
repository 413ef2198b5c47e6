"""Format and length rewards: think/answer tags, DAPO's soft over-length penalty, repetition penalty."""

from __future__ import annotations

import re

from rewards.common import completion_texts

_THINK_ANSWER = re.compile(r"^\s*<think>(.+?)</think>\s*<answer>(.+?)</answer>\s*$", re.DOTALL)


def think_answer_format(prompts, completions, **kwargs) -> list[float]:
    """1.0 when the completion is exactly '<think>…</think><answer>…</answer>' (both non-empty, nothing after),
    else 0.0."""
    out = []
    for text in completion_texts(completions):
        m = _THINK_ANSWER.match(text)
        ok = bool(m) and m.group(1).strip() != "" and m.group(2).strip() != "" and text.count("<think>") == 1
        out.append(float(ok))
    return out


def soft_overlong(prompts, completions, max_length: int = 512, cache: int = 128, completion_ids=None,
                  **kwargs) -> list[float]:  # fmt: skip
    """DAPO's soft over-length penalty: 0 up to ``max_length - cache`` tokens, then falling linearly to −1 at
    ``max_length``, and −1 beyond. Lengths are tokens when TRL passes ``completion_ids``, else characters."""
    if cache <= 0 or cache > max_length:
        raise ValueError(f"soft_overlong: cache must be in 1..max_length, got {cache}")
    if completion_ids is not None and len(completion_ids) == len(completions):
        lengths = [len(ids) for ids in completion_ids]
    else:
        lengths = [len(t) for t in completion_texts(completions)]
    start = max_length - cache
    out = []
    for n in lengths:
        if n <= start:
            out.append(0.0)
        elif n <= max_length:
            out.append((start - n) / cache)
        else:
            out.append(-1.0)
    return out


def _ngrams(text: str, n: int) -> list[tuple]:
    words = text.split()
    units = words if len(words) >= 2 * n else list(text.replace(" ", ""))  # Korean without spaces: characters
    return [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]


def repetition_penalty(prompts, completions, ngram: int = 3, max_penalty: float = -1.0, **kwargs) -> list[float]:
    """Penalty for repeated n-grams (open-r1 style): ``max_penalty × (1 − unique/total)`` over word n-grams
    (character n-grams for text without enough spaces). 0.0 for text too short to repeat."""
    if max_penalty > 0:
        raise ValueError(f"repetition_penalty: max_penalty must be <= 0, got {max_penalty}")
    out = []
    for text in completion_texts(completions):
        grams = _ngrams(text, ngram)
        if len(grams) < 2:
            out.append(0.0)
            continue
        out.append(max_penalty * (1 - len(set(grams)) / len(grams)))
    return out
