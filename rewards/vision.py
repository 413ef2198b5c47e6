"""Vision rewards for Korean VLM tasks: counting, multiple choice, grounding boxes, OCR."""

from __future__ import annotations

import re

from rewards.common import column, completion_texts, final_answer
from rewards.korean import first_number, normalize_korean

# ------------------------------------------------------------------------------------------------- counting


def count_accuracy(prompts, completions, answer=None, **kwargs) -> list[float | None]:
    """1.0 when the first number in the answer equals the row's count ('3개', '세 개', '3 개', '삼' are all 3).
    None where the row's answer is not a count."""
    out: list[float | None] = []
    for text, gold in zip(completion_texts(completions), column({"answer": answer}, "answer", len(completions))):
        target = first_number(str(gold)) if gold is not None else None
        if target is None:
            out.append(None)
            continue
        pred = first_number(final_answer(text))
        out.append(float(pred is not None and abs(pred - target) < 1e-9))
    return out


# ------------------------------------------------------------------------------------------ multiple choice

_CHOICE = re.compile(r"(?<![A-Za-z])\(?([A-E])\)?(?![A-Za-z])")
_CHOICE_KO = {"가": "A", "나": "B", "다": "C", "라": "D", "마": "E"}


def parse_choice(text: str) -> str | None:
    """The chosen letter: 'B', '(B)', 'B.', '답: B', '정답은 B입니다', or Korean 가/나/다/라/마 options."""
    ans = final_answer(text)
    m = _CHOICE.search(ans)
    if m:
        return m.group(1)
    m = re.search(r"\(?([가나다라마])\)", ans) or re.fullmatch(r"\s*([가나다라마])\s*[.)]?\s*", ans)
    return _CHOICE_KO[m.group(1)] if m else None


def choice_accuracy(prompts, completions, answer=None, **kwargs) -> list[float | None]:
    """1.0 when the chosen option letter (A–E, as in K-MMBench / K-SEED / K-MMStar) equals the row's answer."""
    out: list[float | None] = []
    for text, gold in zip(completion_texts(completions), column({"answer": answer}, "answer", len(completions))):
        target = parse_choice(str(gold)) if gold is not None else None
        if target is None:
            out.append(None)
            continue
        out.append(float(parse_choice(text) == target))
    return out


# ----------------------------------------------------------------------------------------------- grounding

_BBOX = re.compile(r"<bbox>(.*?)</bbox>", re.DOTALL)
_FLOAT = re.compile(r"-?\d+(?:\.\d+)?")


def parse_boxes(text: str) -> list[tuple[float, float, float, float]]:
    """Boxes in VARCO-VISION form: '<bbox>x1, y1, x2, y2</bbox>' (0–1 floats); several boxes of one object are
    separated by '<delim>' inside a <bbox> or given as several <bbox> tags."""
    boxes = []
    for body in _BBOX.findall(text):
        for part in body.split("<delim>"):
            nums = [float(x) for x in _FLOAT.findall(part)]
            if len(nums) == 4:
                x1, y1, x2, y2 = nums
                boxes.append((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)))
    return boxes


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_iou(pred: list, gold: list) -> float:
    """Mean IoU over ground-truth boxes after greedy one-to-one matching; extra predictions count as misses."""
    if not gold:
        return 0.0
    pairs = sorted(((iou(p, g), i, j) for i, p in enumerate(pred) for j, g in enumerate(gold)), reverse=True)
    used_p, used_g, total = set(), set(), 0.0
    for value, i, j in pairs:
        if i in used_p or j in used_g:
            continue
        used_p.add(i)
        used_g.add(j)
        total += value
    return total / max(len(gold), len(pred))


def bbox_iou(prompts, completions, answer=None, threshold: float | None = None, **kwargs) -> list[float | None]:
    """Mean IoU between predicted and ground-truth <bbox> boxes (matched one to one). With ``threshold`` the reward
    is 1.0 when the IoU reaches it, else 0.0. None where the row's answer holds no box."""
    out: list[float | None] = []
    for text, gold in zip(completion_texts(completions), column({"answer": answer}, "answer", len(completions))):
        gold_boxes = parse_boxes(str(gold)) if gold is not None else []
        if not gold_boxes:
            out.append(None)
            continue
        value = match_iou(parse_boxes(text), gold_boxes)
        out.append(value if threshold is None else float(value >= threshold))
    return out


# --------------------------------------------------------------------------------------------------- OCR


def edit_distance(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


_VARCO_OCR_MARKUP = re.compile(r"<bbox>.*?</bbox>|</?char>|<ocr>|<delim>", re.DOTALL)


def _ocr_norm(text: str) -> str:
    """Spaces removed; VARCO-VISION's OCR markup (<char>word</char><bbox>…</bbox>) reduced to the words."""
    return re.sub(r"\s+", "", _VARCO_OCR_MARKUP.sub("", text))


def ocr_accuracy(prompts, completions, answer=None, **kwargs) -> list[float | None]:
    """1 − character error rate between the answer and the row's text (spaces ignored), floored at 0."""
    out: list[float | None] = []
    for text, gold in zip(completion_texts(completions), column({"answer": answer}, "answer", len(completions))):
        if gold is None or not str(gold).strip():
            out.append(None)
            continue
        ref = _ocr_norm(str(gold))
        hyp = _ocr_norm(final_answer(text))[: 4 * len(ref) + 16]
        out.append(max(0.0, 1.0 - edit_distance(hyp, ref) / len(ref)))
    return out


def exact_match(prompts, completions, answer=None, **kwargs) -> list[float | None]:
    """1.0 when the answer equals the row's answer after Korean normalisation (spacing, punctuation, endings such as
    '입니다', counters such as '개'): '빨간색입니다.' matches '빨간색'."""
    out: list[float | None] = []
    for text, gold in zip(completion_texts(completions), column({"answer": answer}, "answer", len(completions))):
        if gold is None or not str(gold).strip():
            out.append(None)
            continue
        out.append(float(normalize_korean(final_answer(text)) == normalize_korean(str(gold))))
    return out
