"""Rewards for reasoning ("think") models: a well-formed reasoning block, and the reasoning's length.

They read completions in the workbench's canonical form, ``<think>REASONING</think>ANSWER``: a stage that trains a
reasoning model rewrites every completion into it from the model's own markers (``align/models/reasoning.py``), and
passes ``reasoning_tokens`` / ``answer_tokens`` counted on the token ids. Called on plain text (``align rewards
try``, the audit, your own calls) they read ``<think>…</think>`` in it and count characters.

Both are shaping rewards: they cannot tell a right answer from a wrong one. Combine them with a verifiable reward
(``accuracy``, ``math_accuracy``), which reads only the answer after the reasoning (``rewards/answer.py``).

* ``reasoning_format``: 1.0 for exactly one closed reasoning block with something in it, followed by a non-empty
  answer; 0.0 otherwise (no block, unfinished reasoning, two blocks, an empty reasoning or answer).
* ``length_band``: length control (HyperCLOVAX-SEED-Think's "length controllability" stage; DAPO's soft over-length
  penalty is ``soft_overlong``): 0 inside ``[min_tokens, max_tokens]`` of reasoning, falling linearly to −1 over
  ``ramp`` tokens outside it (−1 beyond); a row's ``length_budget`` column, when present, replaces ``max_tokens``
  (a per-prompt budget, as in budget-following training). Unfinished reasoning scores −1: it never reached an answer.
"""

from __future__ import annotations

import re

from rewards.answer import INVISIBLE, final
from rewards.common import column, completion_texts

_OPEN, _CLOSE = "<think>", "</think>"
_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def _visible(text: str) -> str:
    """Text without whitespace and invisible characters (zero-width spaces, Hangul fillers …)."""
    return re.sub(r"\s+", "", INVISIBLE.sub("", text))


def _parts(text: str) -> tuple[str | None, str, bool]:
    """(every piece of reasoning joined or None, the answer part, closed): the contents of every think block, what
    stands before a stray closing tag, and, for an unclosed block, everything after it (unfinished)."""
    blocks = _THINK_BLOCK.findall(text)
    rest = _THINK_BLOCK.sub("", text)
    if _CLOSE in rest:
        before, rest = rest.rsplit(_CLOSE, 1)
        blocks.append(before.replace(_CLOSE, ""))
    if _OPEN in rest:
        rest, unfinished = rest.split(_OPEN, 1)
        return "".join(blocks) + unfinished, rest, False
    return ("".join(blocks) if blocks else None), rest, True


def _reasoning_in_answer(answer: str) -> int:
    """Characters of reasoning written in the answer part: everything before the line holding the final answer, and
    every invisible character (padding that stands in for text)."""
    visible = INVISIBLE.sub("", answer)
    f = final(visible)
    line_start = f.body.rfind("\n", 0, max(0, f.end - len(f.text))) + 1 if f.text else 0
    return len(f.body[:line_start].strip()) + len(INVISIBLE.findall(answer))


def reasoning_format(prompts, completions, **kwargs) -> list[float]:
    """1.0 when the completion is one closed, non-empty reasoning block followed by a non-empty answer
    (``<think>…</think>answer``), else 0.0: a second block or closing tag, reasoning after the answer, or a reasoning
    or answer made only of whitespace and invisible characters scores 0."""
    out = []
    for text in completion_texts(completions):
        reasoning, answer, closed = _parts(text)
        ok = (closed and reasoning is not None and text.lstrip().startswith(_OPEN) and _visible(reasoning) != ""
              and _visible(answer) != "" and text.count(_OPEN) == 1 and text.count(_CLOSE) == 1)  # fmt: skip
        out.append(float(ok))
    return out


def length_band(prompts, completions, min_tokens: int = 0, max_tokens: int = 1024, ramp: int = 256,
                part: str = "reasoning", reasoning_tokens=None, answer_tokens=None, completion_ids=None,
                **kwargs) -> list[float]:  # fmt: skip
    """Length control: 0 when the reasoning (``part: completion``: the whole completion) is within
    ``[min_tokens, max_tokens]``, linearly down to −1 at ``ramp`` tokens outside; unfinished reasoning, or an answer
    made only of invisible characters, −1. The reasoning is every piece of it wherever it stands: all think blocks,
    text before a stray closing tag, and, in the answer part, everything before the line holding the final answer plus
    invisible padding. A ``length_budget`` column replaces ``max_tokens`` per row. Tokens when the stage counts them
    (the answer part's share scaled from ``answer_tokens``), else characters."""
    if part not in ("reasoning", "completion"):
        raise ValueError(f"length_band: part must be 'reasoning' or 'completion', not {part!r}")
    if ramp <= 0 or min_tokens < 0 or max_tokens < min_tokens:
        raise ValueError(f"length_band: need 0 <= min_tokens <= max_tokens and ramp > 0 (got {min_tokens}, "
                         f"{max_tokens}, {ramp})")  # fmt: skip
    texts = completion_texts(completions)
    n = len(texts)
    budgets = column(kwargs, "length_budget", n)
    out = []
    for i, text in enumerate(texts):
        reasoning, answer, closed = _parts(text)
        if part == "reasoning" and reasoning is not None and (not closed or _visible(answer) == ""):
            out.append(-1.0)
            continue
        if part == "completion":
            length = len(completion_ids[i]) if completion_ids is not None and len(completion_ids) == n else len(text)
        else:
            extra = _reasoning_in_answer(answer)
            if reasoning_tokens is not None and len(reasoning_tokens) == n:
                scale = int(answer_tokens[i]) / max(1, len(answer)) if answer_tokens is not None else 1.0
                length = int(reasoning_tokens[i]) + round(extra * scale)
            else:
                length = len(reasoning or "") + extra
        high = max_tokens if budgets[i] is None else int(budgets[i])
        low = min(min_tokens, high)
        distance = low - length if length < low else length - high if length > high else 0
        out.append(-min(1.0, distance / ramp) if distance > 0 else 0.0)
    return out
