"""``accuracy``: one definition of "correct" per task, used by evaluation, RFT filtering and GRPO alike."""

from __future__ import annotations

from rewards.common import column
from rewards.math_rewards import math_accuracy
from rewards.vision import bbox_iou, choice_accuracy, count_accuracy, exact_match, ocr_accuracy


def _bbox_hit(prompts, completions, **kwargs):
    return bbox_iou(prompts, completions, threshold=0.5, **kwargs)


def _ocr_exact(prompts, completions, **kwargs):
    return [None if v is None else float(v == 1.0) for v in ocr_accuracy(prompts, completions, **kwargs)]


# task column value -> verifier. Rows of other tasks fall back to DEFAULT.
TASK_VERIFIERS = {
    "count": count_accuracy,
    "color": exact_match,
    "ocr": _ocr_exact,
    "arith": math_accuracy,
    "math": math_accuracy,
    "bbox": _bbox_hit,
    "choice": choice_accuracy,
}
DEFAULT = exact_match


def accuracy(prompts, completions, task=None, **kwargs) -> list[float | None]:
    """1.0/0.0 verifiable correctness, chosen by the row's ``task``: count → count_accuracy, color → exact_match,
    ocr → exact text, arith/math → math_accuracy, bbox → IoU ≥ 0.5, choice → choice_accuracy, others →
    exact_match after Korean normalisation. Each reads the one final answer (``rewards.answer``): a completion that
    commits to several candidates ('3개 또는 4개', two boxes, '답:' lines that disagree) scores 0. None for rows
    without an answer."""
    n = len(completions)
    tasks = column({"task": task}, "task", n)
    out: list[float | None] = [None] * n
    groups: dict = {}
    for i, t in enumerate(tasks):
        groups.setdefault(TASK_VERIFIERS.get(t, DEFAULT), []).append(i)
    for fn, idx in groups.items():
        sub = {k: [v[i] for i in idx] for k, v in kwargs.items() if isinstance(v, list) and len(v) == n}
        scores = fn([prompts[i] for i in idx] if prompts else None, [completions[i] for i in idx], **sub)
        for i, s in zip(idx, scores):
            out[i] = s
    return out
