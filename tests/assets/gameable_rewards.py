"""A deliberately gameable reward: the ``accuracy`` rule for counts and arithmetic before issue 16.

Counts: the first number of the final line; arithmetic: the last number of the final line (or of its '답:' line).
So '3개 또는 4개' is paid when the count is 3, and '답: 6 또는 7' when the sum is 7: listing candidates pays.
``tests/test_reward_audit.py`` plants it to check that ``align rewards audit`` flags it, and
``scripts/hedging_demo.py`` trains with it to show GRPO learning to hedge. Never train a real model with it.
"""

from __future__ import annotations

import re

_NUM = re.compile(r"-?\d+")
_LINE = re.compile(r"(?:정답|답)\s*[:：]\s*(.+)")


def _content(completion) -> str:
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    return str(completion or "")


def _final(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if m := _LINE.search(line):
            return m.group(1)
    return lines[-1] if lines else ""


def old_accuracy(prompts, completions, answer=None, task=None, **kwargs):
    """1.0 when the first (count) or last (arith) number of the final line equals the answer's; None for other
    tasks."""
    n = len(completions)
    answers, tasks = answer or [None] * n, task or [None] * n
    out = []
    for completion, gold, t in zip(completions, answers, tasks):
        gold_nums = _NUM.findall(str(gold or ""))
        if t not in ("count", "arith") or not gold_nums:
            out.append(None)
            continue
        nums = _NUM.findall(_final(_content(completion)))
        pick = (nums[0] if t == "count" else nums[-1]) if nums else None
        out.append(float(pick == gold_nums[-1]))
    return out


def pays_nothing(prompts, completions, **kwargs):
    """Always 0.0: the audit's reference rows must catch it."""
    return [0.0] * len(completions)


def any_candidate(prompts, completions, answer=None, task=None, **kwargs):
    """1.0 when any number of the final line equals the answer's (the naive ``gold in numbers`` check): a hedge pays
    whenever one of its candidates is right, so listing two beats committing to one. None for rows without a number."""
    n = len(completions)
    answers = answer or [None] * n
    out = []
    for completion, gold in zip(completions, answers):
        gold_nums = _NUM.findall(str(gold or ""))
        if not gold_nums:
            out.append(None)
            continue
        out.append(float(gold_nums[-1] in _NUM.findall(_final(_content(completion)))))
    return out
