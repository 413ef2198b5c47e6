"""Vision rewards for Korean VLM tasks: counting, multiple choice, grounding boxes, OCR.

Each reward reads the one final answer of ``rewards.answer`` and scores 0 when the completion commits to more than one
candidate (several counts, options or boxes, a disjunction, answer markers that disagree): see each reward's rule.
"""

from __future__ import annotations

import re
import unicodedata

from rewards.answer import (
    answer_part,
    box_answer,
    choice_answer,
    color_answer,
    color_of,
    disjunction,
    final,
    number_answer,
    parse_boxes,
    span_choices,
    text_answer,
)
from rewards.common import column, completion_texts
from rewards.korean import first_number, normalize_korean

# ------------------------------------------------------------------------------------------------- counting


def count_accuracy(prompts, completions, answer=None, **kwargs) -> list[float | None]:
    """1.0 when the final answer names exactly the row's count ('3개', '세 개', '3 개', '삼', '정답은 3개입니다'), else
    0.0: two or more counts ('3 또는 4', '3개 4개', '3~5개', '두세 개'), an open range ('3개 이상') or answer markers
    that disagree score 0. None where the row's answer is not a count."""
    out: list[float | None] = []
    for text, gold in zip(completion_texts(completions), column({"answer": answer}, "answer", len(completions))):
        target = first_number(str(gold)) if gold is not None else None
        if target is None:
            out.append(None)
            continue
        pred, _hedge = number_answer(text)
        out.append(float(pred is not None and abs(pred - target) < 1e-9))
    return out


# ------------------------------------------------------------------------------------------ multiple choice


def parse_choice(text: str) -> str | None:
    """The chosen letter: 'B', '(B)', 'B.', '답: B', '정답은 B입니다', or Korean 가/나/다/라/마 options; None when the
    final answer names no option or several ('A 또는 B', 'A, B')."""
    return choice_answer(text)[0]


def choice_accuracy(prompts, completions, answer=None, **kwargs) -> list[float | None]:
    """1.0 when the one option letter the final answer names (A–E, as in K-MMBench / K-SEED / K-MMStar) equals the
    row's answer; several letters ('A 또는 B', 'A, B', 'A~C') score 0."""
    out: list[float | None] = []
    for text, gold in zip(completion_texts(completions), column({"answer": answer}, "answer", len(completions))):
        letters = span_choices(final(str(gold)).text) if gold is not None else []
        target = letters[0] if len(letters) == 1 else None
        if target is None:
            out.append(None)
            continue
        out.append(float(parse_choice(text) == target))
    return out


# ----------------------------------------------------------------------------------------------- grounding


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_iou(pred: list, gold: list) -> float:
    """Mean IoU over ground-truth boxes after greedy one-to-one matching; extra predictions count as misses (the
    rewards score more boxes than the reference has as 0 before this)."""
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
    """Mean IoU between the final answer's <bbox> boxes and the row's (matched one to one; a missing box counts 0).
    More boxes than the reference has (two boxes joined by '또는', a list, a grid, '<delim>'-separated extras) score
    0. With ``threshold`` the reward is 1.0 when the IoU reaches it, else 0.0. None where the row's answer holds no
    box."""
    out: list[float | None] = []
    for text, gold in zip(completion_texts(completions), column({"answer": answer}, "answer", len(completions))):
        gold_boxes = parse_boxes(str(gold)) if gold is not None else []
        if not gold_boxes:
            out.append(None)
            continue
        boxes, _hedge = box_answer(text, len(gold_boxes))
        value = match_iou(boxes, gold_boxes) if boxes else 0.0
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


_VARCO_BOX = re.compile(
    r"<bbox>\s*-?[\d.]+(?:\s*,\s*-?[\d.]+){3}(?:\s*<delim>\s*-?[\d.]+(?:\s*,\s*-?[\d.]+){3})*\s*</bbox>"
)
_CHAR = re.compile(r"<char>(.*?)</char>", re.DOTALL)


def _ocr_norm(text: str) -> str:
    """Spaces, emoji and the punctuation around the text removed; VARCO-VISION's OCR markup (<char>word</char><bbox>x1,
    y1, x2, y2</bbox>) reduced to the words. Only real boxes (four numbers) are dropped: anything else inside markup
    is text."""
    text = re.sub(r"\s+", "", re.sub(r"</?char>|<ocr>", "", _VARCO_BOX.sub("", text)))
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("So", "Sk", "Cn"))
    return text.strip(".,!?~:;·…")


_COPULA = re.compile(r"(?:입니다|이에요|예요|이다|이요|요)$")


def _ocr_score(read: str, ref: str) -> float:
    """1 − CER of the text read, or of it without a copula ('사과입니다'), whichever is closer (a word that ends in
    '요' itself keeps it)."""
    best = 0.0
    for hyp in dict.fromkeys((_ocr_norm(read), _COPULA.sub("", _ocr_norm(read)))):
        hyp = hyp[: 4 * len(ref) + 16]
        best = max(best, 1.0 - edit_distance(hyp, ref) / len(ref))
    return best


def ocr_text(text: str, reference: str | None = None) -> tuple[str | None, str | None]:
    """The text a completion reads: its <char>…</char> words in order (VARCO-VISION's OCR output), else its final
    answer; (None, reason) when it offers alternatives ('사과 또는 사고', answer markers that disagree)."""
    body = answer_part(text)
    if _CHAR.search(body):
        words = "".join(_CHAR.findall(body))
        why = disjunction(_VARCO_BOX.sub(" ", body), reference)
        return (None, why) if why else (words, None)
    return text_answer(text, reference, _ocr_norm)


def ocr_accuracy(prompts, completions, answer=None, **kwargs) -> list[float | None]:
    """1 − character error rate between the text read and the row's text (spaces ignored), floored at 0. The text
    read is the <char>…</char> words (VARCO-VISION), else the final answer; alternatives ('사과 또는 사고', answer
    markers that disagree) score 0."""
    out: list[float | None] = []
    for text, gold in zip(completion_texts(completions), column({"answer": answer}, "answer", len(completions))):
        if gold is None or not str(gold).strip():
            out.append(None)
            continue
        ref = _ocr_norm(str(gold))
        read, _hedge = ocr_text(text, str(gold))
        if read is None or not ref:
            out.append(0.0 if ref else None)
            continue
        out.append(_ocr_score(read, ref))
    return out


def exact_match(prompts, completions, answer=None, **kwargs) -> list[float | None]:
    """1.0 when the final answer equals the row's answer after Korean normalisation (spacing, punctuation, quotes,
    emphasis, endings such as '입니다', counters such as '개', a sentence around it: '도형은 빨간색입니다.' matches
    '빨간색'). A colour reference is matched by the one colour the answer names, synonyms included ('빨강', '빨간 원',
    '붉은색'); two colours, a disjunction or answer markers that disagree score 0."""
    out: list[float | None] = []
    for text, gold in zip(completion_texts(completions), column({"answer": answer}, "answer", len(completions))):
        if gold is None or not str(gold).strip():
            out.append(None)
            continue
        ref = str(gold)
        if colour := color_of(ref):
            got, _hedge = color_answer(text, ref)
            out.append(float(got == colour))
            continue
        span, _hedge = text_answer(text, ref, normalize_korean)
        out.append(float(span is not None and normalize_korean(span) == normalize_korean(ref)))
    return out
