"""Batch guards: look at one real batch before training and stop with a clear message if it is wrong.

The failures users of every fine-tuning framework report most, checked with the family's own tokens:

* image tokens in the text do not match the image features (truncation cut them, a template dropped the
  placeholder, a processor setting disagrees with the model): transformers fails mid-step, or worse, trains on
  misplaced features;
* loss on the wrong tokens: labels that cover the prompt, or an answer whose end-of-turn tokens carry no loss (the
  model never learns to stop: HyperCLOVAX needs both ``<|im_end|>`` and ``<|endofturn|>``);
* a prompt plus answer longer than the model's context.

``check_sft_batch`` takes the trainer's own collator output, so what is checked is exactly what trains.
``check_prompts`` checks GRPO prompts (rendered and processed as the trainer will) against the completion budget.
"""

from __future__ import annotations

import inspect

from align.chat import chat_texts
from align.errors import StageError

IGNORE = -100


def max_positions(config) -> int | None:
    for cfg in (getattr(config, "text_config", None), getattr(config, "llm_config", None), config):
        n = getattr(cfg, "max_position_embeddings", None) if cfg is not None else None
        if n:
            return int(n)
    return None


def image_token_id(model, processor) -> int | None:
    for key in ("image_token_id", "image_token_index"):
        if isinstance(getattr(model.config, key, None), int):
            return getattr(model.config, key)
    return getattr(processor, "image_token_id", None)


def _count_features(out) -> int:
    import torch

    out = getattr(out, "pooler_output", out)
    if isinstance(out, torch.Tensor):
        return out.reshape(-1, out.shape[-1]).shape[0]
    if isinstance(out, (list, tuple)):
        return sum(_count_features(o) for o in out)
    raise TypeError(f"unexpected image features of type {type(out).__name__}")


def image_feature_count(model, batch) -> int:
    """How many feature vectors the model makes from the batch's images (its own ``get_image_features``)."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    fn = base.get_image_features
    params = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in batch.items() if k in params and k != "input_ids"}
    with torch.no_grad():
        return _count_features(fn(**kwargs))


def check_image_tokens(model, processor, batch, where: str) -> None:
    token = image_token_id(model, processor)
    if token is None:
        return
    in_text = int((batch["input_ids"] == token).sum())
    if batch.get("vision_query_lengths_images") is not None:  # HyperCLOVAX: visual tokens per image (0 = padding)
        features = int(batch["vision_query_lengths_images"].sum())
        what = "image features"
    elif batch.get("pixel_values") is None:
        return
    else:
        features = image_feature_count(model, batch)
        what = "image features"
    if in_text != features:
        raise StageError(
            f"{where}: the first batch has {in_text} image tokens in its text but its images give {features} {what}",
            "image tokens were cut (args.max_length too small — use max_length: null), or the chat template or "
            "processor settings do not match the model; check the model's processor_config.json",
        )


def user_header(tokenizer) -> str:
    """The text the chat template writes before a user message (``<|im_start|>user`` for HyperCLOVAX and Qwen)."""
    try:
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": "\u00a7"}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that needs more than one turn (any error): no header check
        return ""
    before = rendered.split("\u00a7")[0].rstrip("\n")
    return before.split("\n")[-1].strip()


def check_labels(batch, tokenizer, family, where: str, image_token: int | None = None) -> None:
    """Each row trains on something, never on the prompt, images or padding, and its answer ends with the family's
    end-of-turn tokens carrying loss."""
    labels = batch["labels"]
    vocab = tokenizer.get_vocab()
    end_ids = [vocab[t] for t in family.end_of_turn if t in vocab]
    header = user_header(tokenizer)
    for row in range(labels.shape[0]):
        mask = labels[row] != IGNORE
        if not bool(mask.any()):
            raise StageError(
                f"{where}: row {row + 1} of the first batch has no token that carries loss",
                "its answer is empty or was cut off by args.max_length; raise max_length or drop long rows",
            )
        trained = labels[row][mask].tolist()
        if image_token is not None and image_token in trained:
            raise StageError(f"{where}: row {row + 1}: image tokens carry loss",
                             "labels must cover the assistant's answer only (completion_only_loss)")  # fmt: skip
        text = tokenizer.decode(trained)
        if header and header in text:
            raise StageError(
                f"{where}: row {row + 1}: labels cover the prompt (trained text starts {text[:80]!r})",
                "keep completion_only_loss: true and give rows a prompt and a completion",
            )
        if end_ids:
            # the last trained tokens, ignoring trailing whitespace tokens (Qwen closes a turn with <|im_end|>\n)
            tail = [t for t in trained if tokenizer.decode([t]).strip()][-len(end_ids) :]
            if tail != end_ids:
                raise StageError(
                    f"{where}: row {row + 1}: the answer ends {tokenizer.decode(trained[-4:])!r} but a "
                    f"{family.name} assistant turn must end with {''.join(family.end_of_turn)} carrying loss, "
                    "or the model never learns to stop",
                    "use the model's own chat template (the assistant turn must close with those tokens), and "
                    "keep completion_only_loss: true with args.max_length: null",
                )


def check_context(lengths, config, where: str, extra: int = 0, what: str = "prompt plus answer") -> None:
    limit = max_positions(config)
    if not limit:
        return
    for row, n in enumerate(lengths):
        if int(n) + extra > limit:
            budget = f" + {extra} completion tokens" if extra else ""
            raise StageError(
                f"{where}: row {row + 1}: {what} is {int(n)} tokens{budget}, more than the model's context of {limit}",
                "shorten the data, lower max_completion_length, or drop long rows (data.max_rows / rows:)",
            )


def check_sft_batch(trainer, family, where: str, rows: int = 4) -> dict:
    """Collate the first ``rows`` training rows with the trainer's own collator and check them."""
    dataset = trainer.train_dataset
    batch = trainer.data_collator([dataset[i] for i in range(min(rows, len(dataset)))])
    processor = trainer.processing_class
    tok = getattr(processor, "tokenizer", processor)
    model = trainer.model
    lengths = (batch["attention_mask"].sum(dim=1) if "attention_mask" in batch
               else batch["input_ids"].new_full(batch["input_ids"].shape[:1], batch["input_ids"].shape[1]))  # fmt: skip
    check_context(lengths.tolist(), model.config, where)
    check_image_tokens(model, processor, batch, where)
    check_labels(batch, tok, family, where, image_token_id(model, processor))
    return {"rows": int(batch["input_ids"].shape[0]), "tokens": int(batch["input_ids"].shape[1])}


def check_prompts(model, processor, dataset, max_completion_length: int, where: str, rows: int = 4) -> None:
    """GRPO: the first prompts, rendered with the chat template and processed with their images, have matching
    image tokens and leave room for ``max_completion_length`` tokens in the context."""

    first = [dataset[i] for i in range(min(rows, len(dataset)))]
    images = [row.get("images") or [] for row in first]
    texts = chat_texts(processor, [row["prompt"] for row in first], images)
    kwargs = {"images": images} if any(images) else {}
    batch = processor(text=texts, padding=True, return_tensors="pt", add_special_tokens=False, **kwargs)
    check_context(batch["attention_mask"].sum(dim=1).tolist(), model.config, where, extra=max_completion_length,
                  what="the prompt")  # fmt: skip
    check_image_tokens(model, processor, batch, where)
