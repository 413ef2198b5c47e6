"""One final answer per completion: where every verifiable reward reads the answer, and when a completion hedges.

**The answer part** (``answer_part(text)``): the completion after its reasoning — every ``<think>…</think>`` dropped,
everything before a stray ``</think>`` (templates that open the think block in the prompt) and everything after a
``<think>`` that is never closed (still thinking: no answer) — with chat special tokens and invisible characters
removed, NFKC-normalised (fullwidth ``７`` → ``7``, ``²`` → ``2``) and Unicode minus signs (``−``) read as ``-``.

**The final answer** (``final(text, kind)``), the same for every verifiable reward:

1. The explicit answer markers are collected: every ``\\boxed{…}``, every ``<answer>…</answer>``, every answer line
   (``답:``, ``정답:``, ``최종 답:``, ``Answer:``, markdown-emphasised as ``**답**:`` or ``**정답: B**``, or a ``## 답``
   heading followed by its line) and every answer sentence (``정답은 7입니다``, ``답은 B예요``, ``The answer is 7``).
2. The final answer is the last ``\\boxed{}``, else the last ``<answer>``, else the last answer line or sentence, else
   the last sentence of the answer part that holds a candidate of the asked kind (a number, an option letter, a box,
   a colour, any text), skipping closing pleasantries (``도움이 되었길 바랍니다``, ``더 궁금한 점이 있으면 물어보세요!``),
   emoji and list numbering (``3. 삼각형``). **All markers must agree**: ``답: 3`` … ``답: 4``, ``**답**: 8`` …
   ``답: 7``, or ``\\boxed{3}`` with ``답: 4`` commit to two answers, which is a hedge.

**One final answer**: the whole answer part is checked, not only the final answer. A hedge scores 0:

* a second candidate anywhere, offered as an alternative: a disjunction (``또는``, ``혹은``, ``아니면``, ``이거나``,
  ``or``, ``either``) or a possibility (``8일 수도 있어요``, ``8일지도``, ``8일 가능성``, ``C도 가능``, ``B인지 C인지``)
  next to a candidate (``답: 7\\n아니면 8일 수도 있어요``, ``\\boxed{7} 또는 8``, ``<answer>7</answer> 혹은 8``);
* number answers (``count``, ``arith``, numeric ``math``): the final answer is narrowed to what follows the last ``=``,
  ``→`` or conclusion word (``따라서``, ``그래서``, ``즉``, ``이므로``, ``하면``, ``모두``, ``총``, ``so`` …) that a number
  follows; it must then name exactly one value — digits, a Korean number word (``세 개``, ``일곱``), units dropped
  (``24cm²``, ``24\\,\\text{cm}^2``), LaTeX fractions read (``$\\frac{3}{4}$``). Several values (``3 또는 4``,
  ``7 또는 여덟``, ``3~5``, ``3, 4, 5``), an open range (``7개가 넘습니다``, ``최소한 7개``, ``3개 이상``, ``7+``,
  ``보다 큽니다``, ``±``) or an approximate quantity (``약 7개``, ``7개쯤``, ``12 정도``, ``대략``, ``두세 개``) in the final
  answer or after it is a hedge;
* option letters: more than one letter committed to (``B 또는 C``, ``B, C``, ``A~C``, ``B와 C 둘 다``); a letter that
  only appears in the explanation after the answer (``답: B. A는 원이므로 오답입니다``) is not a candidate;
* boxes: more distinct ``<bbox>`` boxes in the answer part than the reference has;
* text (colour, OCR, exact match): a disjunction the reference itself does not contain, two different quoted words,
  or, for a colour, two different colours anywhere in the answer part (``빨간색이 아니라 파란색``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from rewards.korean import COUNTERS, korean_number, strip_endings

# ------------------------------------------------------------------------------------------------ the answer part

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_SPECIAL = re.compile(r"<\|[^|<>\s]{1,40}\|>")  # chat special tokens left in a decoded completion
# zero-width and other invisible characters (and Hangul fillers) that can stand in for text
INVISIBLE = re.compile("[\u00ad\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u3164\ufeff\uffa0]")


def strip_think(text: str) -> str:
    """The completion without its reasoning (see the module docstring)."""
    text = _THINK.sub("\n", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        text = text.split("<think>", 1)[0]
    return text


def answer_part(text: str) -> str:
    """What a verifiable reward reads: the completion after its reasoning, normalised (module docstring)."""
    text = unicodedata.normalize("NFKC", text or "").replace("\u2212", "-")
    return INVISIBLE.sub("", _SPECIAL.sub("", strip_think(text)))


def boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{…}`` (nested braces allowed), in order."""
    return [content for content, _ in _boxed_spans(text)]


def _boxed_spans(text: str) -> list[tuple[str, int]]:
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
                out.append((text[i + 1 : j].strip(), j + 1))
                break
        start = i + 1
    return out


# ------------------------------------------------------------------------------------------------ markers

_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
_EMPHASIS = re.compile(r"\*\*|__|(?<![\w*])\*(?![\s*])|(?<=\S)\*(?![\w*])")
_MARKER_WORD = r"(?:최종\s*)?(?:정답|답|(?:final\s+)?answer)"
_ANSWER_LINE = re.compile(rf"(?:^|(?<=[\s(\[]))(?<![가-힣]){_MARKER_WORD}\s*(?:은|는)?\s*[:：]\s*(.*)", re.IGNORECASE)
_ANSWER_SENTENCE = re.compile(
    r"(?:(?<![가-힣])(?:최종\s*)?(?:정답|답)(?:은|는)\s+|\bthe\s+(?:final\s+)?answer\s+is\s*[:：]?\s*)(.*)",
    re.IGNORECASE,
)
_ANSWER_HEADING = re.compile(rf"^\s*#{{1,6}}\s*{_MARKER_WORD}\s*[:：]?\s*$", re.IGNORECASE)
_ANSWER_PREFIX = re.compile(rf"^\s*{_MARKER_WORD}\s*(?:은|는)?\s*[:：]\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<!\d)[.!?。](?:\s+|$)|[.!?。](?=\s+\D)|(?<=[다요])[.!?]*$")
_LIST_MARK = re.compile(r"^\s*(?:[-*•](?=\s)|>|\d{1,2}[.)](?=\s)|#{1,6})\s*")
_PLEASANTRY = re.compile(
    r"도움이\s*(?:되|됐)|궁금(?:한|하신|하시)\s*(?:점|것|사항)|물어\s*(?:보|봐)|질문(?:이|은|있|하)|말씀해|알려\s*주(?:세요|시면)|바랍니다"
    r"|도와\s*드릴|도움이\s*필요|좋은\s*하루|즐거운|감사합니다|언제든|편하게|\bhope (?:this|it|that) helps\b|\blet me know\b|\bfeel free\b",
    re.IGNORECASE,
)


def _plain(line: str) -> str:
    """A line without markdown emphasis and list or heading marks."""
    return _LIST_MARK.sub("", _EMPHASIS.sub("", line)).strip()


def _first_sentence(span: str) -> str:
    parts = [p for p in _SENTENCE_END.split(span.strip()) if p and p.strip()]
    return parts[0].strip() if parts else span.strip()


@dataclass
class Final:
    """The final answer of a completion and every explicit answer marker it holds."""

    text: str  # the final answer span ("" when there is none)
    source: str  # "boxed", "tag", "line", "sentence" or "none"
    markers: list[str] = field(default_factory=list)  # every marker's span, in order (boxed, tags, lines)
    body: str = ""  # the answer part
    end: int = 0  # where the final answer ends in the answer part (the tail after it is checked for hedges)


def _lines_with_offsets(body: str) -> list[tuple[str, int, int]]:
    out, pos = [], 0
    for line in body.split("\n"):
        out.append((line, pos, pos + len(line)))
        pos += len(line) + 1
    return out


_LEAD_IN = re.compile(r"^(?:다음과|아래와|이렇|같습니다|as follows)", re.IGNORECASE)


def _line_markers(body: str, has_candidate) -> list[tuple[str, int]]:
    """(content, end offset) of every answer line, answer sentence and heading-introduced line, in order. An answer
    sentence that names no candidate ('답은 간단합니다') is not a marker."""
    found = []
    lines = _lines_with_offsets(body)
    for k, (line, start, end) in enumerate(lines):
        if "\\boxed" in line or "<answer>" in line:
            continue
        plain = _plain(line)
        m = _ANSWER_LINE.search(plain)
        if _ANSWER_HEADING.match(line) or (m and not m.group(1).strip()):  # '## 답' or a bare '정답:': the next line
            nxt = next(((ln, e) for ln, _s, e in lines[k + 1 :] if ln.strip()), None)
            if nxt and not _ANSWER_HEADING.match(nxt[0]):
                found.append((_plain(nxt[0]), nxt[1]))
            elif m:
                found.append(("", end))
            continue
        if m:
            found.append((m.group(1).strip(), end))
        elif (m := _ANSWER_SENTENCE.search(plain)) and not _LEAD_IN.match(m.group(1)):
            content = _first_sentence(m.group(1))
            if not has_candidate(content):
                continue
            pos = body.find(content[-6:], start, end + 1) if content else -1
            found.append((content, pos + len(content[-6:]) if pos >= 0 else end))
    return found


def _is_answer_before(prefix: str, has_candidate) -> bool:
    """What precedes a pleasantry in its sentence holds an answer ('정답은 7입니다 도움이 되었길…'), not a lead-in
    ('더 궁금한 점이…', '혹시 다른 질문이…')."""
    prefix = re.sub(r"(?<![가-힣])(?:더|혹시|그리고|또|추가로|다른|기타)(?![가-힣])", " ", prefix)
    return len(re.findall(r"[가-힣A-Za-z0-9]", prefix)) >= 2 and has_candidate(prefix)


_LIST_ITEM = re.compile(r"^\s*(?:[-*•](?=\s)|\d{1,2}[.)](?=\s))")


def _candidate_sentence(body: str, has_candidate, first_in_line: bool = False) -> tuple[str, int]:
    """The last sentence of the answer part that holds a candidate (pleasantries and asides skipped), with its end
    offset; list items only when no other line holds one (a list after the answer is its breakdown: '총 3개입니다.\n-
    원 1개\n- 사각형 2개'). With ``first_in_line`` the first such sentence of its line (an option letter, then its
    explanation)."""
    fallback = ("", 0)
    lines = list(reversed(_lines_with_offsets(body)))
    for in_list in (False, True):
        for line, start, _end in lines:
            if bool(_LIST_ITEM.match(line)) != in_list:
                continue
            text = _LIST_MARK.sub("", line).strip()
            if not _EMPHASIS.sub("", text).strip():
                continue
            parts = [p.strip() for p in _SENTENCE_END.split(text) if p and p.strip()]
            for part in parts if first_in_line else reversed(parts):
                if (m := _PLEASANTRY.search(part)) and not _is_answer_before(part[: m.start()], has_candidate):
                    continue
                if part.startswith("(") and part.endswith(")") and part is not parts[0]:
                    continue  # an aside after the answer: '3개입니다. (원 1개, 사각형 2개)'
                if has_candidate(part):
                    pos = body.find(part[-8:], start)
                    return part, (pos + min(8, len(part))) if pos >= 0 else start + len(line)
                if not fallback[0] and re.search(r"[가-힣A-Za-z0-9]", part):
                    fallback = (part, start + len(line))
    return fallback


def final(text: str, kind: str | None = None) -> Final:
    """The final answer of ``text`` (rules 1-2 of the module docstring); ``kind`` ('number', 'choice', 'box', 'text',
    'color') says what counts as a candidate when the completion has no answer marker."""
    body = answer_part(text)
    boxed = _boxed_spans(body)
    tags = [(_ANSWER_PREFIX.sub("", m.group(1)).strip(), m.end()) for m in _ANSWER_TAG.finditer(body)
            if "\\boxed" not in m.group(1)]  # fmt: skip
    outside = _ANSWER_TAG.sub(lambda m: " " * len(m.group()), body)
    lines = _line_markers(outside, CANDIDATE.get(kind, _has_text))
    markers = [t for t, _ in boxed] + [t for t, _ in tags] + [t for t, _ in lines]
    for source, found in (("boxed", boxed), ("tag", tags), ("line", lines)):
        if found:
            return Final(found[-1][0], source, markers, body, found[-1][1])
    span, end = _candidate_sentence(outside, CANDIDATE.get(kind, _has_text), first_in_line=kind == "choice")
    return Final(span, "sentence" if span else "none", [], body, end)


# ------------------------------------------------------------------------------------------------ numbers

_NUM = re.compile(r"(?<![\d,])(?<!\d\.)-?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?")
_COUNTER = "|".join(sorted(COUNTERS, key=len, reverse=True))
# counters after which a number word counts ('세 개', '일곱 명'); not 번/대/원/점/쪽, which make ordinary words with a
# syllable that is also a numeral ('한번', '이번', '세대', '사원')
_WORD_COUNTERS = "|".join(sorted(set(COUNTERS) - {"번", "대", "원", "점", "쪽"} | {"가지"}, key=len, reverse=True))
_WORD_BEFORE_COUNTER = re.compile(rf"(?<![가-힣])([가-힣]{{1,6}}?)(\s?)(?:{_WORD_COUNTERS})")
# one-syllable words that are numerals only sometimes ('네' is also "yes", '이' "this", '사' "four" or "company"):
# a number only with a space before a counter ('사 개') or as the whole answer
_AMBIGUOUS = set("네이일사오구육칠팔삼한세두영공만천백십")
# native number words that are never ordinary words: a number wherever they stand ('7 또는 여덟')
_NATIVE_WORD = re.compile(
    r"(?<![가-힣])(다섯|여섯|일곱|여덟|아홉|스물|서른|마흔|쉰|예순|일흔|여든|아흔)(?:개|이요|이에요|입니다|요)?(?![가-힣])"
)
# "two or three", "three or four" … : a Korean numeral that is itself a range
APPROXIMATE = ("한두", "두세", "두서너", "서너", "세네", "너덧", "네다섯", "댓", "대여섯", "예닐곱", "일고여덟", "여덟아홉",
               "엳아홉", "두어")  # fmt: skip
_APPROX = re.compile(
    rf"(?<![가-힣])(?:{'|'.join(sorted(APPROXIMATE, key=len, reverse=True))})(?=\s?(?:{_COUNTER})|\s|$)"
    rf"|(?<![가-힣])(?:약|대략|대충|얼추|거의|어림잡아)\s*-?\d|\d\s*(?:{_COUNTER})?\s*(?:쯤|정도|가량|내외|남짓|안팎|여\s*개)"
    r"|\b(?:about|around|approximately|roughly|nearly|almost)\s+-?\d|≈|\\approx|\\sim\b",
    re.IGNORECASE,
)
_OPEN_RANGE = re.compile(  # an open range around a number: '3개 이상', '적어도 세 개', '7개가 넘습니다', '7+', 'at least 3'
    rf"(?:\d|{_COUNTER})\s*(?:{_COUNTER})?\s*(?:이상|이하|미만|초과|넘게|(?:이|가)?\s*넘(?:습|어|는|을|음)|보다\s*(?:많|크|적|작|큼|큽))"
    r"|(?:최소|최대|적어도|많아야|최소한)(?:\s*\d|\s+[가-힣])|그\s*(?:이상|이하)|\d\s*\+(?!\s*\d)|[±∓]|\\pm|\\mp"
    r"|\bat (?:least|most)\b|\bor (?:more|less|fewer)\b|\b(?:more|less|fewer) than\b|\bup to\b|[≤≥]"
    r"|(?<![\w|/])[<>]=?\s*-?\d",
    re.IGNORECASE,
)
_CONCLUSION = re.compile(
    r"=>|=|→|⇒|따라서|그래서|그러므로|그러니까|결국|즉|이므로|므로|니까|하면|모두|총|합계|합쳐서"
    r"|\b(?:so|therefore|thus|hence)\b",
    re.IGNORECASE,
)
_LATEX = re.compile(r"\\[A-Za-z]+|[{}^]|\d\s*[+*×÷]\s*\d")
_EACH = re.compile(rf"(?:\d|[가-힣]{{1,3}})\s?(?:{_COUNTER})?씩")  # '하나씩', '1개씩': per item, not an answer
UNIT = re.compile(
    r"(?<=\d)\s*(?:\\[,;!]\s*|\\ |~)?(?:\\(?:text|mathrm|mbox)\{\s*)?(?:cm|mm|km|kg|mg|ml|mL|m|g|L|cc)(?:\s*\})?"
    r"(?:\s*\^?\s*\{?[23]\}?)?(?![A-Za-z0-9])"
)
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")


def clean_number_text(span: str) -> str:
    """A span as plain text for reading numbers: units dropped, LaTeX delimiters, spacing and commands undone."""
    s = UNIT.sub("", span)
    s = _LATEX_FRAC.sub(r"(\1/\2)", s)
    s = re.sub(r"\\(?:times|cdot)", "×", s)
    s = re.sub(r"\\(?:text|mathrm|mbox|textbf|mathbf)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\$|\\[()\[\]]|\\[,;!]|\\left|\\right", " ", s)
    return _EACH.sub(" ", s)


def _value(token: str) -> float | None:
    token = token.replace(",", "")
    if "/" in token:
        num, den = (float(x) for x in token.split("/"))
        return num / den if den else None
    return float(token)


def number_values(span: str) -> list[float]:
    """Every number a span names, in order: digits ('7', '1,000', '0.5', '3/4') and Korean number words before a
    counter ('세 개', '일곱 명'), unambiguous native words anywhere ('여덟') or alone ('일곱', '셋이요')."""
    values = [v for v in (_value(m.group()) for m in _NUM.finditer(span)) if v is not None]
    for m in _WORD_BEFORE_COUNTER.finditer(span):
        word, spaced = m.group(1), m.group(2)
        v = korean_number(word)
        if v is not None and (spaced or len(word) > 1 or word not in _AMBIGUOUS or word in "세네두한"):
            values.append(float(v))
    if values:
        values += [float(korean_number(m.group(1))) for m in _NATIVE_WORD.finditer(span)]
        return values
    tokens = [t for t in re.split(r"[\s,.!?~]+", span) if t]
    for token in tokens:
        word = strip_endings(strip_endings(token))
        v = korean_number(word)
        if v is not None and (len(tokens) == 1 or len(word) > 1 or word not in _AMBIGUOUS):
            values.append(float(v))
    return values


def _narrow(span: str) -> str:
    """What follows the last conclusion marker that is followed by a number."""
    cut = None
    for m in _CONCLUSION.finditer(span):
        if number_values(span[m.end() :]):
            cut = m.end()
    return span[cut:].strip() if cut is not None else span


def _distinct(values: list[float]) -> list[float]:
    out: list[float] = []
    for v in values:
        if all(abs(v - u) > 1e-9 * max(1.0, abs(u)) for u in out):
            out.append(v)
    return out


# a breakdown in parentheses inside the answer ('총 3개(원 1개, 사각형 2개)입니다'); one that offers an alternative
# ('7 (아니면 8)') stays and is read as a second value
_ASIDE = re.compile(r"\((?![^()]*(?:또는|혹은|아니면|이거나|수도|\bor\b))(?=[^()]*[가-힣])[^()]*\)")


def span_number(span: str, sentences: bool = False) -> tuple[float | None, str | None]:
    """(the one value a span names, None) or (None, why it is not one value). ``sentences``: read only the last
    sentence that names a number."""
    span = clean_number_text(span)
    if sentences:
        parts = [p for p in _SENTENCE_END.split(span) if p and p.strip() and number_values(p)]
        span = parts[-1] if parts else span
    without_asides = _ASIDE.sub(" ", span)
    span = _narrow(without_asides if number_values(without_asides) else span)
    if _APPROX.search(span):
        return None, f"approximate quantity in {span[:40]!r}"
    if _OPEN_RANGE.search(span):
        return None, f"open range in {span[:40]!r}"
    values = _distinct(number_values(span))
    if len(values) > 1:
        return None, f"several numbers in {span[:40]!r}"
    return (values[0], None) if values else (None, None)


_DISJUNCTION = re.compile(
    r"또는|혹은|아니면|이거나|거나\s|\b(?:or|either)\b|\\lor|\\vee|(?<=[가-힣A-Za-z])\s*/\s*(?=[가-힣A-Za-z])",
    re.IGNORECASE,
)
_POSSIBLE = re.compile(r"일\s*수도\s*있|일지도|일\s*가능성|(?:도|또한)\s*가능|맞을\s*수도|인지\s*\S{1,12}?인지")


def _alternatives(body: str, near) -> str | None:
    """A disjunction or a possibility phrase with a candidate (``near(text)``) right next to it."""
    for m in _DISJUNCTION.finditer(body):
        after, before = body[m.end() : m.end() + 8].split("\n")[0], body[max(0, m.start() - 8) : m.start()]
        if near(after) or near(before.split("\n")[-1]):
            return f"alternative {m.group().strip()!r}"
    for m in _POSSIBLE.finditer(body):
        if near(body[max(0, m.start() - 12) : m.start() + 1].split("\n")[-1]):
            return f"alternative {m.group().strip()!r}"
    return None


def _has_number(span: str) -> bool:
    return bool(number_values(clean_number_text(span)))


def number_answer(text: str) -> tuple[float | None, str | None]:
    """The single number a completion answers, or (None, hedge reason); (None, None) when it names no number."""
    f = final(text, "number")
    return number_of(f)


_BARE = re.compile(rf"-?\d+(?:\.\d+)?\s*(?:{_COUNTER})?\s*(?:입니다|이요|요)?[.!]?")
_BARE_IN_PARENS = re.compile(rf"\(\s*(-?\d+(?:\.\d+)?)\s*(?:{_COUNTER})?\s*\)")


def _bare_numbers(body: str) -> list[float]:
    """Numbers standing alone anywhere in the answer part: a line or list item that is only a number ('- 4개'), or a
    number alone in parentheses ('(8)'): candidates, not working."""
    out = []
    for line in body.split("\n"):
        plain = _plain(re.sub(r"\$+", " ", line))
        if _BARE.fullmatch(plain):
            out += number_values(plain)[:1]
    out += [float(x) for x in _BARE_IN_PARENS.findall(body)]
    return out


def number_of(f: Final) -> tuple[float | None, str | None]:
    """The single number of a final answer (every marker agreeing, no hedge in the answer part), or (None, reason)."""
    value, why = span_number(f.text)
    if why:
        return None, why
    for marker in f.markers:
        other, why = span_number(marker)
        if why:
            return None, why
        if other is not None and (value is None or abs(other - value) > 1e-9 * max(1.0, abs(value))):
            return None, "answer markers disagree"
    why = number_hedge(f)
    if not why and value is not None and _distinct([value, *_bare_numbers(f.body)])[1:]:
        why = "a second number standing alone in the answer"
    return (None, why) if why else (value, None)


def number_hedge(f: Final) -> str | None:
    """A hedge anywhere in the answer part of a number answer: an alternative next to a number, or an open range or
    approximate quantity after the final answer."""
    why = _alternatives(re.sub(r"\$[^$\n]*\$", " ", f.body), _has_number)
    if why:
        return why
    tail = clean_number_text(f.body[f.end : f.end + 400])
    if m := (_OPEN_RANGE.search(tail) or _APPROX.search(tail)):
        return f"open range or approximate quantity after the answer: {m.group()!r}"
    return None


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


def _committed_choices(span: str) -> list[str]:
    """The letters of the first sentence of a span that names one: the answer, not the explanation after it."""
    for part in _SENTENCE_END.split(span.strip()):
        if part and (letters := span_choices(part)):
            return letters
    return []


_CHOICE_NEAR = re.compile(r"(?<![A-Za-z])\(?[A-E]\)?(?![A-Za-z])")


def choice_answer(text: str) -> tuple[str | None, str | None]:
    f = final(text, "choice")
    letters = _committed_choices(f.text)
    for marker in f.markers:
        letters += [x for x in _committed_choices(marker) if x not in letters]
    if len(letters) > 1:
        return None, f"several options: {', '.join(letters)}"
    direct = re.search(
        r"(?<![A-Za-z])\(?[A-E]\)?\s*(?:또는|혹은|아니면|이거나|이나|나|or|/|~)\s*\(?[A-E](?![A-Za-z])", f.body
    )
    why = f"alternative {direct.group()!r}" if direct else _alternatives(f.body, lambda s: bool(_CHOICE_NEAR.search(s)))
    if why and letters:
        return None, why
    return (letters[0] if letters else None), None


# ------------------------------------------------------------------------------------------------ text and boxes


def disjunction(span: str, reference: str | None = None) -> str | None:
    """A disjunction word in ``span`` that ``reference`` does not contain itself."""
    m = _DISJUNCTION.search(span)
    if m and not (reference and _DISJUNCTION.search(reference)):
        return f"disjunction {m.group().strip()!r}"
    return None


def possibility(span: str, reference: str | None = None) -> str | None:
    """A phrase offering another possibility ('사고일 수도 있어요', 'B인지 C인지') that ``reference`` does not hold."""
    m = _POSSIBLE.search(span)
    if m and not (reference and _POSSIBLE.search(reference)):
        return f"alternative {m.group().strip()!r}"
    return None


_QUOTED = re.compile(r"'([^'\n]{1,40})'|\"([^\"\n]{1,40})\"|“([^”\n]{1,40})”|‘([^’\n]{1,40})’|「([^」\n]{1,40})」"
                     r"|『([^』\n]{1,40})』|`([^`\n]{1,40})`|\*\*([^*\n]{1,40})\*\*")  # fmt: skip
_WRITTEN = re.compile(r"(\S{1,40}?)(?:이)?라(?:고|는)\s*(?:적|쓰|써|되어|나와|표시|글|단어|텍스트|문구)")
_TRANSLATION = re.compile(r"\s*\([A-Za-z][A-Za-z\s,.'-]{0,40}\)")  # '사과 (apple)': a gloss, not the text read
_LABEL = re.compile(r"^[^:：<>]{1,15}[:：]\s*(.+)$")
_TOPIC = re.compile(r"^.*?(?:은|는)\s+(.+?(?:입니다|이에요|예요|이다|이요|요|임))\s*[.!]*$")
_COPULA_TAIL = re.compile(r"(?:입니다|이에요|예요|이다|이요|요|임)?[\s.!~]*$")


def text_core(span: str) -> tuple[str, str | None]:
    """(the answer inside a sentence, hedge reason): the one quoted or emphasised text ('“사과”입니다', '**사과**'),
    what is written ('사과라고 적혀 있어요'), a label's value ('색깔: 빨간색'), the predicate of '…은 X입니다', else the
    span; two different quoted texts are a hedge."""
    quoted = [next(g for g in m.groups() if g is not None).strip() for m in _QUOTED.finditer(span)]
    distinct = list(dict.fromkeys(re.sub(r"\W+", "", q) for q in quoted if q.strip()))
    if len(distinct) > 1:
        return "", f"several quoted answers: {', '.join(quoted[:3])}"
    if quoted:
        return quoted[0], None
    plain = _TRANSLATION.sub("", _EMPHASIS.sub("", span)).strip() or span.strip()
    if m := _WRITTEN.search(plain):
        return m.group(1), None
    if m := _LABEL.match(plain):
        plain = m.group(1)
    if m := _TOPIC.match(plain):
        plain = m.group(1)
    return plain, None


def text_answer(text: str, reference: str | None, normalize) -> tuple[str | None, str | None]:
    """The final answer for text answers, or (None, reason) when it hedges or its markers disagree."""
    f = final(text, "text")
    why = disjunction(f.body, reference) or possibility(f.body, reference)
    if why:
        return None, why
    if f.body.count("?") >= 2:
        return None, "several questioned answers"
    if len({normalize(text_core(m)[0]) for m in f.markers}) > 1:
        return None, "answer markers disagree"
    core, why = text_core(f.text)
    return (None, why) if why else (core, None)


def _has_text(span: str) -> bool:
    return bool(re.search(r"[가-힣A-Za-z0-9]", span))


# colours and the words real models use for them (빨강, 빨간, 붉은색 …): the canonical name is the first
COLORS = {
    "빨간색": ("빨간색", "빨강색", "빨강", "빨간", "붉은색", "붉은", "적색"),
    "파란색": ("파란색", "파랑색", "파랑", "파란", "푸른색", "청색"),
    "초록색": ("초록색", "초록", "녹색", "초록빛"),
    "노란색": ("노란색", "노랑색", "노랑", "노란", "황색"),
    "보라색": ("보라색", "보라", "보랏빛", "자주색"),
    "주황색": ("주황색", "주황", "오렌지색", "귤색"),
    "검은색": ("검은색", "검정색", "검정", "검은", "까만색", "까만", "흑색"),
    "흰색": ("흰색", "하얀색", "하얀", "하양", "흰", "백색"),
    "분홍색": ("분홍색", "분홍", "핑크색"),
    "회색": ("회색", "잿빛"),
    "갈색": ("갈색", "밤색"),
    "남색": ("남색",),
    "하늘색": ("하늘색",),
    "연두색": ("연두색", "연두"),
}
_COLOR_OF = {w: c for c, words in COLORS.items() for w in words}
_COLOR_WORD = re.compile(rf"(?<![가-힣])({'|'.join(sorted(_COLOR_OF, key=len, reverse=True))})")


_BACKGROUND = re.compile(
    rf"{_COLOR_WORD.pattern}\s*(?:색|빛)?\s*(?:의\s*)?(?:배경|바탕)"
    rf"|(?:배경|바탕)(?:색)?(?:은|는|이|:)?\s*(?:{_COLOR_WORD.pattern})"
)


def colors_in(text: str) -> list[str]:
    """The canonical colours a text names, in order ('빨강' and '빨간 원' name 빨간색); the colour of the background
    ('흰 배경 위에', '배경은 흰색') is not the shape's."""
    text = _BACKGROUND.sub(" ", text)
    return list(dict.fromkeys(_COLOR_OF[m.group(1)] for m in _COLOR_WORD.finditer(text)))


def color_of(reference: str) -> str | None:
    """The colour a reference answer is, when it is one colour word ('빨간색', '빨강')."""
    word = re.sub(r"[\s.]+", "", reference or "")
    return _COLOR_OF.get(word)


def color_answer(text: str, reference: str | None = None) -> tuple[str | None, str | None]:
    """The one colour the answer part names, or (None, reason): a disjunction, two colours, or none."""
    f = final(text, "color")
    why = disjunction(f.body, reference) or possibility(f.body, reference)
    if why:
        return None, why
    found = colors_in(f.body)
    if len(found) > 1:
        return None, f"several colours: {', '.join(found)}"
    return (found[0] if found else None), None


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
    """The boxes a completion commits to (those of its final answer marker, else every box of the answer part), or
    ([], reason) when the answer part gives more distinct boxes than ``expected``, offers one as an alternative, or
    its markers disagree."""
    f = final(text, "box")
    every = list(dict.fromkeys(parse_boxes(f.body)))
    if len(every) > expected:
        return [], f"{len(every)} boxes where {expected} {'is' if expected == 1 else 'are'} asked"
    if f.markers and len({tuple(parse_boxes(m)) for m in f.markers}) > 1:
        return [], "answer markers disagree"
    why = disjunction(_BBOX.sub(" <bbox> ", f.body)) or _alternatives(f.body, lambda s: "bbox>" in s)
    if why:
        return [], why
    return (parse_boxes(f.text) if f.markers else every), None


CANDIDATE = {
    "number": _has_number,
    "choice": lambda s: bool(_committed_choices(s)),
    "box": lambda s: bool(parse_boxes(s)),
    "color": lambda s: bool(colors_in(s)),
    "text": _has_text,
}

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
        f = final(text, "number")
        if f.source in ("boxed", "tag") and is_expression(f.text):
            return disjunction(f.text, answer) or expression_hedge(f.text, answer) or number_hedge(f)
        return number_of(f)[1]
    if kind == "choice":
        return choice_answer(text)[1]
    if kind == "box":
        return box_answer(text, max(1, len(parse_boxes(str(answer or "")))))[1]
    if color_of(str(answer or "")):
        return color_answer(text, answer)[1]
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


_EXPR_HEDGE = re.compile(r"\\pm|\\mp|±|∓|\\(?:le|ge|leq|geq|sim|to|approx)\b|[≤≥<>~≈]|[,;]")


def expression_hedge(span: str, reference: str | None) -> str | None:
    """A math expression that lists or bounds candidates (``6, 7``, ``\\pm 2``, ``\\le 3``, ``\\approx 7``) where the
    reference does not."""
    cleaned = re.sub(r"\d,\d{3}(?!\d)", "0", span)
    m = _EXPR_HEDGE.search(cleaned)
    ref = re.sub(r"\d,\d{3}(?!\d)", "0", reference or "")
    if m and not _EXPR_HEDGE.search(ref):
        return f"{m.group()!r} in {span[:40]!r}"
    return None
