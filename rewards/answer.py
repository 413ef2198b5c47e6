"""One final answer per completion: where every verifiable reward reads the answer, and when a completion hedges.

**The final answer** (``final(text)``), the same for every verifiable reward:

1. Reasoning is dropped: every ``<think>…</think>``, everything before a stray ``</think>`` (templates that open the
   think block in the prompt), and everything after a ``<think>`` that is never closed (still thinking: no answer).
2. The explicit answer markers are collected: every ``\\boxed{…}``, every ``<answer>…</answer>`` and every answer line
   (``답:``, ``정답:``, ``정답은:``, ``Answer:`` … up to the end of its line).
3. The final answer is the last ``\\boxed{}``, else the last ``<answer>``, else the last answer line, else the last
   non-empty line. **All markers must agree**: ``답: 3`` … ``답: 4``, two ``\\boxed{}`` with different values, or
   ``\\boxed{3}`` with ``답: 4`` commit to two answers, which is a hedge.

**Hedges** score 0. Only the final answer is checked, so reasoning before it may hold any numbers and words:

* number answers (``count``, ``arith``, numeric ``math``): the answer is narrowed to what follows the last ``=``, ``→``
  or conclusion word (``따라서``, ``그래서``, ``즉``, ``이므로``, ``하면``, ``so``, ``therefore`` …) that is followed
  by a number; without a marker, to the last sentence of the last line. It must then name exactly one value (digits,
  or a Korean number word before a counter: ``세 개``; or a lone number word: ``일곱``). Several values (``3 또는 4``,
  ``3 (아니면 4)``, ``3 or 4``, ``3~5``, ``3-5개``, ``3, 4, 5``, ``3개 4개``), an open range (``3개 이상``,
  ``at least 3``) or an approximate Korean numeral (``두세 개``, ``서너 개``) is a hedge;
* option letters: more than one distinct letter (``A 또는 B``, ``A, B``, ``A~C``);
* boxes: more ``<bbox>`` boxes (``<delim>``-separated ones included) than the reference has;
* text (colour, OCR, exact match): a disjunction (``또는``, ``혹은``, ``아니면``, ``이거나``, ``or``, ``either``, ``/``
  between words) that the reference itself does not contain.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from rewards.korean import COUNTERS, korean_number, strip_endings

# ------------------------------------------------------------------------------------------------ markers

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_SPECIAL = re.compile(r"<\|[^|<>\s]{1,40}\|>")  # chat special tokens left in a decoded completion
_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
_ANSWER_LINE = re.compile(r"(?:정답|답|answer)\s*(?:은|는)?\s*[:：]\s*(.+)", re.IGNORECASE)
_ANSWER_PREFIX = re.compile(r"^\s*(?:최종\s*)?(?:정답|답|(?:final\s+)?answer)\s*(?:은|는)?\s*[:：]\s*", re.IGNORECASE)


def strip_think(text: str) -> str:
    """The completion without its reasoning (see the module docstring, rule 1)."""
    text = _THINK.sub("\n", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        text = text.split("<think>", 1)[0]
    return text


def boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{…}`` (nested braces allowed), in order."""
    out, start = [], 0
    while (start := text.find("\\boxed", start)) >= 0:
        i = text.find("{", start)
        if i < 0 or text[start + 6 : i].strip():
            start += 6
            continue
        depth = 0
        for j in range(i, min(len(text), i + 2000)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                out.append(text[i + 1 : j].strip())
                break
        start = i + 1
    return out


@dataclass
class Final:
    """The final answer of a completion and every explicit answer marker it holds."""

    text: str  # the final answer span ("" when there is none)
    source: str  # "boxed", "tag", "line", "last line" or "none"
    markers: list[str] = field(default_factory=list)  # every marker's span, in order (boxed, tags, lines)


def final(text: str) -> Final:
    """The final answer of ``text`` (rules 1-3 of the module docstring)."""
    body = _SPECIAL.sub("", strip_think(unicodedata.normalize("NFKC", text or "")))
    boxed = boxed_contents(body)
    tags = [_ANSWER_PREFIX.sub("", t).strip() for t in _ANSWER_TAG.findall(body) if "\\boxed" not in t]
    outside = _ANSWER_TAG.sub("\n", body)
    lines = [ln.strip() for ln in outside.splitlines() if ln.strip()]
    answer_lines = [m.group(1).strip() for ln in lines if "\\boxed" not in ln and (m := _ANSWER_LINE.search(ln))]
    markers = boxed + tags + answer_lines
    for source, found in (("boxed", boxed), ("tag", tags), ("line", answer_lines)):
        if found:
            return Final(found[-1], source, markers)
    if lines:
        return Final(lines[-1], "last line", [])
    return Final("", "none", [])


# ------------------------------------------------------------------------------------------------ numbers

_NUM = re.compile(r"(?<![\d.,])-?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?")
_COUNTER = "|".join(sorted(COUNTERS, key=len, reverse=True))
# counters after which a number word counts ('세 개', '일곱 명'); not 번/대/원/점/쪽, which make ordinary words with a
# syllable that is also a numeral ('한번', '이번', '세대', '사원')
_WORD_COUNTERS = "|".join(sorted(set(COUNTERS) - {"번", "대", "원", "점", "쪽"} | {"가지"}, key=len, reverse=True))
_WORD_BEFORE_COUNTER = re.compile(rf"(?<![가-힣])([가-힣]{{1,6}}?)(\s?)(?:{_WORD_COUNTERS})")
# one-syllable words that are numerals only sometimes ('네' is also "yes", '이' "this", '사' "four" or "company"):
# a number only with a space before a counter ('사 개') or as the whole answer
_AMBIGUOUS = set("네이일사오구육칠팔삼한세두영공만천백십")
# "two or three", "three or four" … : a Korean numeral that is itself a range
APPROXIMATE = ("한두", "두세", "두서너", "서너", "세네", "너덧", "네다섯", "댓", "대여섯", "예닐곱", "일고여덟", "여덟아홉",
               "엳아홉", "두어")  # fmt: skip
_APPROX = re.compile(
    rf"(?<![가-힣])(?:{'|'.join(sorted(APPROXIMATE, key=len, reverse=True))})(?=\s?(?:{_COUNTER})|\s|$)"
)
_OPEN_RANGE = re.compile(  # an open range around a number: '3개 이상', '적어도 세 개', 'at least 3', '> 3'
    rf"(?:\d|{_COUNTER})\s*(?:{_COUNTER})?\s*(?:이상|이하|미만|초과|넘게)|(?:최소|최대|적어도|많아야)(?:\s*\d|\s+[가-힣])"
    r"|\bat (?:least|most)\b|\bor (?:more|less|fewer)\b|\b(?:more|less|fewer) than\b|\bup to\b|[≤≥]"
    r"|(?<![\w|/])[<>]=?\s*-?\d",
    re.IGNORECASE,
)
_CONCLUSION = re.compile(
    r"=>|=|→|⇒|따라서|그래서|그러므로|그러니까|결국|즉|이므로|므로|니까|하면|\b(?:so|therefore|thus|hence)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<!\d)[.!?。](?:\s+|$)|[.!?。](?=\s+\D)")
_LATEX = re.compile(r"\\[A-Za-z]+|[{}^]|\d\s*[+*×÷]\s*\d")


def _value(token: str) -> float | None:
    token = token.replace(",", "")
    if "/" in token:
        num, den = (float(x) for x in token.split("/"))
        return num / den if den else None
    return float(token)


def number_values(span: str) -> list[float]:
    """Every number a span names, in order: digits ('7', '1,000', '0.5', '3/4') and Korean number words before a
    counter ('세 개', '일곱 명') or alone ('일곱', '셋이요')."""
    values = [v for v in (_value(m.group()) for m in _NUM.finditer(span)) if v is not None]
    for m in _WORD_BEFORE_COUNTER.finditer(span):
        word, spaced = m.group(1), m.group(2)
        v = korean_number(word)
        if v is not None and (spaced or len(word) > 1 or word not in _AMBIGUOUS or word in "세네두한"):
            values.append(float(v))
    if not values:
        tokens = [t for t in re.split(r"[\s,.!?~]+", span) if t]
        for token in tokens:
            word = strip_endings(strip_endings(token))
            v = korean_number(word)
            if v is not None and (len(tokens) == 1 or len(word) > 1 or word not in _AMBIGUOUS):
                values.append(float(v))
    return values


def _narrow(span: str, sentences: bool) -> str:
    """What follows the last conclusion marker that is followed by a number; without a marker, the last sentence."""
    cut = None
    for m in _CONCLUSION.finditer(span):
        if number_values(span[m.end() :]):
            cut = m.end()
    if cut is not None:
        return span[cut:].strip()
    if sentences:
        parts = [p for p in _SENTENCE_END.split(span) if p and p.strip()]
        return parts[-1].strip() if parts else span
    return span


def _distinct(values: list[float]) -> list[float]:
    out: list[float] = []
    for v in values:
        if all(abs(v - u) > 1e-9 * max(1.0, abs(u)) for u in out):
            out.append(v)
    return out


def span_number(span: str, sentences: bool = False) -> tuple[float | None, str | None]:
    """(the one value a span names, None) or (None, why it is not one value)."""
    span = _narrow(span, sentences)
    if _APPROX.search(span):
        return None, f"approximate numeral in {span[:40]!r}"
    if _OPEN_RANGE.search(span):
        return None, f"open range in {span[:40]!r}"
    values = _distinct(number_values(span))
    if len(values) > 1:
        return None, f"several numbers in {span[:40]!r}"
    return (values[0], None) if values else (None, None)


def number_answer(text: str) -> tuple[float | None, str | None]:
    """The single number a completion answers, or (None, hedge reason); (None, None) when it names no number."""
    f = final(text)
    value, why = span_number(f.text, sentences=f.source == "last line")
    if why:
        return None, why
    for marker in f.markers:
        other, why = span_number(marker)
        if why:
            return None, why
        if other is not None and (value is None or abs(other - value) > 1e-9 * max(1.0, abs(value))):
            return None, "answer markers disagree"
    return value, None


def is_expression(span: str) -> bool:
    """A LaTeX or arithmetic expression (math-verify's business) rather than a plain number or sentence."""
    return bool(_LATEX.search(span))


# ------------------------------------------------------------------------------------------------ options

_CHOICE = re.compile(r"(?<![A-Za-z])\(?([A-E])\)?(?![A-Za-z])")
_CHOICE_KO = {"가": "A", "나": "B", "다": "C", "라": "D", "마": "E"}


def span_choices(span: str) -> list[str]:
    """Distinct option letters in a span: 'B', '(B)', '정답은 B입니다', or Korean 가/나/다/라/마 options ('나)')."""
    found = [m.group(1) for m in _CHOICE.finditer(span)]
    found += [_CHOICE_KO[m.group(1)] for m in re.finditer(r"(?<![가-힣])\(?([가나다라마])\)", span)]
    if not found and (m := re.fullmatch(r"\s*\(?([가나다라마])\s*[.)]?\s*", span)):
        found.append(_CHOICE_KO[m.group(1)])
    return list(dict.fromkeys(found))


def choice_answer(text: str) -> tuple[str | None, str | None]:
    f = final(text)
    letters = span_choices(f.text)
    for marker in f.markers:
        letters += [x for x in span_choices(marker) if x not in letters]
    if len(letters) > 1:
        return None, f"several options: {', '.join(letters)}"
    return (letters[0] if letters else None), None


# ------------------------------------------------------------------------------------------------ text and boxes

_DISJUNCTION = re.compile(
    r"또는|혹은|아니면|이거나|거나\s|\b(?:or|either)\b|\\lor|\\vee|(?<=[가-힣A-Za-z])\s*/\s*(?=[가-힣A-Za-z])",
    re.IGNORECASE,
)


def disjunction(span: str, reference: str | None = None) -> str | None:
    """A disjunction word in ``span`` that ``reference`` does not contain itself."""
    m = _DISJUNCTION.search(span)
    if m and not (reference and _DISJUNCTION.search(reference)):
        return f"disjunction {m.group().strip()!r}"
    return None


def text_answer(text: str, reference: str | None, normalize) -> tuple[str | None, str | None]:
    """The final answer span for text answers, or (None, reason) when it hedges or markers disagree."""
    f = final(text)
    why = disjunction(f.text, reference)
    if why:
        return None, why
    if len({normalize(m) for m in f.markers}) > 1:
        return None, "answer markers disagree"
    return f.text, None


_BBOX = re.compile(r"<bbox>(.*?)</bbox>", re.DOTALL)
_FLOAT = re.compile(r"-?\d+(?:\.\d+)?")


def parse_boxes(text: str) -> list[tuple[float, float, float, float]]:
    """Boxes in VARCO-VISION form: '<bbox>x1, y1, x2, y2</bbox>' (0-1 floats); several boxes of one object are
    separated by '<delim>' inside a <bbox> or given as several <bbox> tags."""
    boxes = []
    for body in _BBOX.findall(text):
        for part in body.split("<delim>"):
            nums = [float(x) for x in _FLOAT.findall(part)]
            if len(nums) == 4:
                x1, y1, x2, y2 = nums
                boxes.append((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)))
    return boxes


def box_answer(text: str, expected: int) -> tuple[list, str | None]:
    """The boxes a completion commits to (those of its final answer marker, else every box after the reasoning),
    or ([], reason) when it gives more than ``expected`` or its markers disagree."""
    f = final(text)
    body = _SPECIAL.sub("", strip_think(unicodedata.normalize("NFKC", text or "")))
    boxes = parse_boxes(f.text) if f.markers else parse_boxes(body)
    if f.markers and len({tuple(parse_boxes(m)) for m in f.markers}) > 1:
        return [], "answer markers disagree"
    if len(boxes) > expected:
        return [], f"{len(boxes)} boxes where {expected} {'is' if expected == 1 else 'are'} asked"
    return boxes, None


# ------------------------------------------------------------------------------------------------ any task

NUMBER_TASKS, CHOICE_TASKS, BOX_TASKS = ("count", "arith", "math"), ("choice",), ("bbox",)


def answer_kind(task: str | None, answer: str | None) -> str:
    """'number', 'choice', 'box' or 'text': from the task name, else from the reference answer's shape."""
    if task in NUMBER_TASKS:
        return "number"
    if task in CHOICE_TASKS:
        return "choice"
    if task in BOX_TASKS:
        return "box"
    ref = str(answer or "")
    if parse_boxes(ref):
        return "box"
    if task is None or task == "default":
        ref_final = final(ref).text
        if re.fullmatch(r"\s*\(?[A-E]\)?[.)]?\s*", ref_final):
            return "choice"
        value, _ = span_number(ref_final)
        if value is not None and len(ref_final) <= 12:
            return "number"
    return "text"


def hedge_reason(text: str, task: str | None = None, answer: str | None = None) -> str | None:
    """Why a completion commits to more than one answer (None if it does not), with the rules the rewards use."""
    kind = answer_kind(task, answer)
    if kind == "number":
        f = final(text)
        if f.source == "boxed" and is_expression(f.text):
            return disjunction(f.text, answer) or expression_hedge(f.text, answer)
        return number_answer(text)[1]
    if kind == "choice":
        return choice_answer(text)[1]
    if kind == "box":
        return box_answer(text, max(1, len(parse_boxes(str(answer or "")))))[1]
    return text_answer(text, answer, lambda s: re.sub(r"\W+", "", s.lower()))[1]


def is_hedge(text: str, task: str | None = None, answer: str | None = None) -> bool:
    return hedge_reason(text, task, answer) is not None


def hedge_rate(texts, tasks=None, answers=None) -> float | None:
    """Share of completions that hedge (``hedge_reason``), or None for no completions."""
    texts = list(texts)
    if not texts:
        return None
    tasks = list(tasks) if tasks is not None else [None] * len(texts)
    answers = list(answers) if answers is not None else [None] * len(texts)
    return sum(is_hedge(t, k, a) for t, k, a in zip(texts, tasks, answers)) / len(texts)


_EXPR_HEDGE = re.compile(r"\\pm|\\mp|±|∓|\\(?:le|ge|leq|geq|sim|to)\b|[≤≥<>~]|[,;]")


def expression_hedge(span: str, reference: str | None) -> str | None:
    """A math expression that lists or bounds candidates (``6, 7``, ``\\pm 2``, ``\\le 3``) where the reference
    does not."""
    cleaned = re.sub(r"\d,\d{3}(?!\d)", "0", span)
    m = _EXPR_HEDGE.search(cleaned)
    ref = re.sub(r"\d,\d{3}(?!\d)", "0", reference or "")
    if m and not _EXPR_HEDGE.search(ref):
        return f"{m.group()!r} in {span[:40]!r}"
    return None
