"""Small helpers shared by the reward modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_CHARS = 20_000  # rewards look at most at the last this-many characters of a completion: a 1 MB answer must not
# stall a step, and the end is kept because that is where the final answer stands


def completion_text(completion: Any) -> str:
    """Text of a completion, whether TRL passes a string or a list of chat messages."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        text = completion
    elif isinstance(completion, dict):
        text = completion_text(completion.get("content"))
    elif isinstance(completion, Sequence):
        parts = []
        for item in completion:
            if isinstance(item, dict) and item.get("role") not in (None, "assistant"):
                continue
            if isinstance(item, dict) and item.get("type") == "text":
                parts.append(str(item.get("text") or ""))
            else:
                parts.append(completion_text(item))
        text = "".join(parts)
    elif isinstance(completion, bytes):
        text = completion.decode("utf-8", errors="replace")
    else:
        text = str(completion)
    return text[-MAX_CHARS:]


def completion_texts(completions) -> list[str]:
    return [completion_text(c) for c in completions]


def column(kwargs: dict, name: str, n: int) -> list:
    """A dataset column from reward kwargs, or Nones when the dataset does not have it."""
    values = kwargs.get(name)
    if values is None:
        return [None] * n
    return list(values)
