"""Reasoning ("think") models: where a completion's reasoning ends and its answer begins, from the model's own
markers, and the recipe's thinking switch applied through the model's own chat template.

A family with a reasoning mode names the markers its chat template writes around the reasoning
(``Family.reasoning``: ``("<think>", "</think>")`` for EXAONE 4.x and HyperCLOVAX-SEED-Think-32B;
``("/think\\n", "<|im_end|>\\n<|im_start|>assistant\\n")`` for HyperCLOVAX-SEED-Think-14B, whose reasoning is a turn
of its own) and the template's keyword arguments that switch reasoning (``Family.thinking``: ``enable_thinking``,
``force_reasoning`` / ``skip_reasoning``). ``model.thinking: auto | on | off`` in a recipe picks them.

Completions are read from their token ids decoded *with* special tokens, so markers made of special tokens
(``<|im_end|>``, ``<|im_start|>``) are found even though TRL and the rollout engines decode completions without
them. The split is rewritten in one canonical form, ``<think>REASONING</think>ANSWER`` (``<think>REASONING`` while
the reasoning is unfinished), which every reward reads the same way (``rewards/answer.py`` drops the reasoning;
``rewards/reasoning.py`` checks its form and length). The rules:

1. the last end marker splits the completion: reasoning before it (without the start marker), answer after it;
2. without an end marker, a completion that starts with the start marker, or whose prompt opened the reasoning
   block (the generation prompt ends with the start marker: ``enable_thinking``, ``force_reasoning``), is
   unfinished reasoning: it has no answer;
3. otherwise the whole completion is the answer.

Token counts (reasoning tokens before the end marker, answer tokens after it) come from the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from align.errors import UserError
from align.models.families import FAMILIES

THINKING = ("auto", "on", "off")
_PROBE = "\u00a7"


@dataclass(frozen=True)
class Split:
    """A completion split into reasoning and answer."""

    reasoning: str | None  # None: the completion has no reasoning block
    answer: str  # "" while the reasoning is unfinished
    closed: bool  # the reasoning block was closed by its end marker
    reasoning_tokens: int = 0
    answer_tokens: int = 0

    @property
    def canonical(self) -> str:
        if self.reasoning is None:
            return self.answer
        return f"<think>{self.reasoning}</think>{self.answer}" if self.closed else f"<think>{self.reasoning}"


@dataclass(frozen=True)
class ReasoningFormat:
    """A model's reasoning markers and whether its generation prompt (with the recipe's switch) opens the block."""

    start: str
    end: str
    opened_by_prompt: bool
    specials: tuple[str, ...] = ()  # special-token strings removed from the reasoning and the answer
    tokenizer: object = None

    def split_text(self, text: str) -> Split:
        """Split a completion's text (special tokens may still be in it)."""
        text = text or ""
        cut = text.rfind(self.end)
        if cut >= 0:
            before, answer, closed = text[:cut], text[cut + len(self.end) :], True
        elif self.opened_by_prompt or text.lstrip().startswith(self.start):
            before, answer, closed = text, "", False
        else:
            return Split(None, self._clean(text), False)
        stripped = before.lstrip()
        if stripped.startswith(self.start):
            before = stripped[len(self.start) :]
        return Split(self._clean(before), self._clean(answer), closed)

    def split_ids(self, ids) -> Split:
        """Split generated token ids (decoded with their special tokens, so markers made of them are found)."""
        ids = list(ids)
        full = self.tokenizer.decode(ids, skip_special_tokens=False)
        split = self.split_text(full)
        if split.reasoning is None:
            return Split(None, split.answer, False, 0, len(ids))
        if not split.closed:
            return Split(split.reasoning, "", False, len(ids), 0)
        cut = full.rfind(self.end)
        before = self._tokens_within(ids, cut)  # tokens wholly before the end marker
        after = len(ids) - self._tokens_reaching(ids, cut + len(self.end))  # tokens wholly after it
        return Split(split.reasoning, split.answer, True, before, max(0, after))

    def rewrite(self, completions, completion_ids) -> tuple[list, dict]:
        """TRL-style completions (strings or one-message lists) rewritten in the canonical form from their ids,
        with ``reasoning_tokens`` and ``answer_tokens`` for the rewards' keyword arguments."""
        splits = [self.split_ids(ids) for ids in completion_ids]
        out = []
        for completion, split in zip(completions, splits):
            if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
                out.append([*completion[:-1], {**completion[-1], "content": split.canonical}])
            else:
                out.append(split.canonical)
        return out, {"reasoning_tokens": [s.reasoning_tokens for s in splits],
                     "answer_tokens": [s.answer_tokens for s in splits]}  # fmt: skip

    def _clean(self, text: str) -> str:
        for token in self.specials:
            text = text.replace(token, "")
        return text.strip()

    def _prefix_len(self, ids, k: int) -> int:
        return len(self.tokenizer.decode(ids[:k], skip_special_tokens=False)) if k else 0

    def _tokens_within(self, ids, chars: int) -> int:
        """The largest k whose decoded prefix ids[:k] fits in ``chars`` characters."""
        lo, hi = 0, len(ids)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._prefix_len(ids, mid) <= chars:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _tokens_reaching(self, ids, chars: int) -> int:
        """The smallest k whose decoded prefix ids[:k] reaches ``chars`` characters."""
        lo, hi = 0, len(ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._prefix_len(ids, mid) >= chars:
                hi = mid
            else:
                lo = mid + 1
        return lo


def template_kwargs(family, thinking: str, where: str = "model.thinking") -> dict:
    """The chat template's keyword arguments for ``model.thinking`` (``auto``: none; the template's default)."""
    if thinking not in THINKING:
        raise UserError(f"{where}: {thinking!r} is not one of {', '.join(THINKING)}")
    if thinking == "auto":
        return {}
    if thinking not in family.thinking:
        raise UserError(
            f"{where} is '{thinking}' but the {family.name} family has no reasoning switch in its chat template",
            "set model.thinking: auto (families with a switch: "
            + ", ".join(f.name for f in FAMILIES.values() if f.thinking) + ")",
        )  # fmt: skip
    return dict(family.thinking[thinking])


def reasoning_format(family, tokenizer, kwargs: dict | None = None) -> ReasoningFormat | None:
    """The family's reasoning format for this tokenizer and template switch (None: not a reasoning model)."""
    if family is None or family.reasoning is None or tokenizer is None:
        return None
    start, end = family.reasoning
    try:
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": _PROBE}], tokenize=False,
                                                 add_generation_prompt=True, **(kwargs or {}))  # fmt: skip
    except Exception:  # noqa: BLE001 - a template that cannot render one user turn: assume it opens nothing
        rendered = ""
    tail = rendered.split(_PROBE)[-1].rstrip()
    opened = bool(start.strip()) and tail.endswith(start.rstrip())
    specials = tuple(sorted(set(getattr(tokenizer, "all_special_tokens", []) or []), key=len, reverse=True))
    return ReasoningFormat(start, end, opened, specials, tokenizer)
