"""Chat formatting helpers that models, data, rollouts and rewards share.

Messages follow TRL's conversational format: ``{"role": ..., "content": str | [parts]}`` where a part is
``{"type": "text", "text": ...}`` or ``{"type": "image"}``.
"""

from __future__ import annotations

from typing import Any


def content_text(content: Any) -> str:
    """Text of a message's content: a string, or TRL's structured parts (text parts joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def messages_text(value: Any) -> str:
    """Text of a message list (every message's content joined; TRL's structured parts too) or of a plain value.
    Lists may come back from Parquet as arrays."""
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return "".join(content_text(m.get("content")) if isinstance(m, dict) else str(m) for m in list(value))
    return str(value)


_TEMPLATE_KWARGS = "_align_chat_template_kwargs"  # not an __init__ argument: save_pretrained leaves it out


def set_template_kwargs(processor, kwargs: dict) -> None:
    """Keyword arguments every prompt rendered for ``processor`` passes to its chat template (the recipe's
    ``model.thinking`` switch: ``enable_thinking``, ``force_reasoning`` …; ``align/models/reasoning.py``)."""
    setattr(processor, _TEMPLATE_KWARGS, dict(kwargs))


def template_kwargs(processor) -> dict:
    return dict(getattr(processor, _TEMPLATE_KWARGS, None) or {})


def chat_texts(processor, prompts: list[list[dict]], images: list[list] | None) -> list[str]:
    """Render chat prompts with the model's template, image placeholders inserted as TRL inserts them, and the
    template switches set for this processor (``set_template_kwargs``)."""
    from trl.data_utils import prepare_multimodal_messages  # TRL is heavy to import: only when rendering

    kwargs = template_kwargs(processor)
    texts = []
    for i, messages in enumerate(prompts):
        imgs = images[i] if images else []
        if imgs or hasattr(processor, "image_processor"):
            messages = prepare_multimodal_messages(messages, images=list(imgs or []))
        texts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs))
    return texts
