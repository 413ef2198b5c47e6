"""Korean text helpers and rewards: number words, answer normalisation, language consistency."""

from __future__ import annotations

import re
import unicodedata

from rewards.common import completion_texts

NATIVE_UNITS = {
    "하나": 1, "한": 1, "둘": 2, "두": 2, "셋": 3, "세": 3, "석": 3, "넷": 4, "네": 4, "넉": 4,
    "다섯": 5, "여섯": 6, "일곱": 7, "여덟": 8, "아홉": 9,
}  # fmt: skip
NATIVE_TENS = {
    "열": 10,
    "스물": 20,
    "스무": 20,
    "서른": 30,
    "마흔": 40,
    "쉰": 50,
    "예순": 60,
    "일흔": 70,
    "여든": 80,
    "아흔": 90,
}
SINO_DIGITS = {"영": 0, "공": 0, "일": 1, "이": 2, "삼": 3, "사": 4, "오": 5, "육": 6, "칠": 7, "팔": 8, "구": 9}
SINO_UNITS = {"십": 10, "백": 100, "천": 1000}
SINO_BIG = {"만": 10_000, "억": 100_000_000}

# Counters and endings that may follow an answer: 3개, 세 명, 5입니다, 빨간색이에요
COUNTERS = ("개", "명", "마리", "권", "자루", "장", "대", "살", "번", "송이", "그루", "잔", "병", "쪽", "원", "점")
ENDINGS = (
    "입니다", "이에요", "예요", "이다", "이요", "이고", "요", "다", "이", "가", "은", "는", "을", "를",
)  # fmt: skip

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LATIN = re.compile(r"[A-Za-z]")
_CJK = re.compile(r"[\u4e00-\u9fff\u3040-\u30ff]")  # Han and Japanese kana
_OTHER_LETTER = re.compile(r"[\u0400-\u04ff\u0600-\u06ff\u0e00-\u0e7f]")  # Cyrillic, Arabic, Thai


def _native(word: str) -> int | None:
    for tens_word, tens in sorted(NATIVE_TENS.items(), key=lambda kv: -len(kv[0])):
        if word.startswith(tens_word):
            rest = word[len(tens_word) :]
            if not rest:
                return tens
            unit = NATIVE_UNITS.get(rest)
            return tens + unit if unit else None
    return NATIVE_UNITS.get(word)


def _sino(word: str) -> int | None:
    if not word or any(ch not in SINO_DIGITS and ch not in SINO_UNITS and ch not in SINO_BIG for ch in word):
        return None
    total, section, digit = 0, 0, None
    for ch in word:
        if ch in SINO_DIGITS:
            if digit is not None:
                return None  # "삼사" is not a number word
            digit = SINO_DIGITS[ch]
        elif ch in SINO_UNITS:
            section += (1 if digit is None else digit) * SINO_UNITS[ch]
            digit = None
        else:
            section += digit or 0
            total += (section or 1) * SINO_BIG[ch]
            section, digit = 0, None
    return total + section + (digit or 0)


def korean_number(text: str) -> int | None:
    """'세' -> 3, '스물다섯' -> 25, '삼십이' -> 32, '열 개' -> 10. None if the text is not a number word."""
    word = text.strip().replace(" ", "")
    for counter in COUNTERS:
        if word.endswith(counter) and len(word) > len(counter):
            word = word[: -len(counter)]
            break
    if not word:
        return None
    value = _native(word)
    return value if value is not None else _sino(word)


_NUM_TOKEN = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def first_number(text: str) -> float | None:
    """The first number in a short answer, digits or Korean words: '3개', '세 개', '3 개', '삼' -> 3."""
    m = _NUM_TOKEN.search(text)
    if m:
        return _to_float(m.group())
    for token in re.split(r"[\s,.!?]+", text.strip()):
        value = korean_number(token) if token else None
        if value is None and token:
            value = korean_number(strip_endings(token))
        if value is not None:
            return float(value)
    return None


def _to_float(s: str) -> float | None:
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def strip_endings(word: str) -> str:
    for ending in sorted(ENDINGS, key=len, reverse=True):
        if word.endswith(ending) and len(word) > len(ending):
            return word[: -len(ending)]
    return word


def normalize_korean(text: str) -> str:
    """Normalise a short Korean answer for exact match.

    Unicode NFC, lower case, no punctuation or spaces, and no trailing copula/particle/counter:
    '빨간색입니다.' -> '빨간색', '사과 예요' -> '사과', '3 개' -> '3'.
    """
    s = unicodedata.normalize("NFC", text).strip().lower()
    s = re.sub(r"^(정답|답|answer)\s*[:：]\s*", "", s)
    s = re.sub(r"[\s\"'`.,!?~·:;()\[\]{}<>「」『』“”‘’*]+", "", s)
    for _ in range(2):
        s = strip_endings(s)
        for counter in COUNTERS:
            if s.endswith(counter) and len(s) > len(counter) and s[: -len(counter)][-1:].isdigit():
                s = s[: -len(counter)]
    return s


def hangul_ratio(text: str) -> float | None:
    """Share of Hangul among the letters of ``text`` (None if it has no letters)."""
    hangul = len(_HANGUL.findall(text))
    others = len(_LATIN.findall(text)) + len(_CJK.findall(text)) + len(_OTHER_LETTER.findall(text))
    total = hangul + others
    return hangul / total if total else None


_OTHER_LANGUAGE_REQUEST = re.compile(
    r"영어로|영문으로|일본어로|중국어로|한자로|in english|in japanese|in chinese|translate|번역", re.IGNORECASE
)


def _prompt_text(prompt) -> str:
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    parts = []
    for m in prompt if isinstance(prompt, list) else [prompt]:
        content = m.get("content") if isinstance(m, dict) else m
        if isinstance(content, list):
            parts += [p.get("text") or "" for p in content if isinstance(p, dict)]
        elif content is not None:
            parts.append(str(content))
    return " ".join(parts)


_CODE = re.compile(r"```.*?(?:```|$)|`[^`\n]*`|<!--.*?(?:-->|$)", re.DOTALL)
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)", re.DOTALL)
_MATH_TEXT = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox|operatorname)\s*\{([^{}]*)\}")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_TAG = re.compile(r"</?[A-Za-z][\w|]{0,19}>|<\|[^|<>]{1,40}\|>")


def language_text(text: str) -> str:
    """The prose of an answer, whose language is measured: the answer after its reasoning, without code (fenced or
    inline), HTML comments, tags (<bbox>, <answer> …), LaTeX (math keeps only its \\text{…} words; commands such as
    \\boxed go) and units after numbers ('24cm²')."""
    from rewards.answer import UNIT, answer_part

    text = UNIT.sub(" ", _CODE.sub(" ", answer_part(text)))
    text = _MATH.sub(lambda m: " " + " ".join(_MATH_TEXT.findall(m.group())) + " ", text)
    text = _LATEX_COMMAND.sub(" ", _MATH_TEXT.sub(r" \1 ", text))
    return _TAG.sub(" ", text)


def korean_consistency(prompts, completions, allowed_latin: tuple[str, ...] = ("bbox", "delim"), **kwargs):
    """Share of Hangul among the letters of the answer's prose (``language_text``: after the reasoning, without code,
    LaTeX, tags, comments, numbers and units): 1.0 for an all-Korean answer, lower when it switches language without
    being asked. Words in ``allowed_latin`` are ignored. None for answers with no letters (a bare number), for prompts
    that ask for another language ('영어로', 'in English', '번역' …), and for rows whose reference ``answer`` is not
    Korean text (letters or markup and no Hangul: a box, an option letter, a code snippet): there a Korean reply is not
    what was asked, and scoring it would reward replacing the answer with Korean text (seen in GRPO: bounding-box
    answers turned into Korean words for the language bonus)."""
    out = []
    prompts = list(prompts) if prompts is not None else [None] * len(completions)
    answers = kwargs.get("answer") or [None] * len(completions)
    for prompt, text, answer in zip(prompts, completion_texts(completions), answers):
        foreign_reference = (isinstance(answer, str) and not _HANGUL.search(answer)
                             and re.search(r"[A-Za-z<>\\]", answer))  # fmt: skip
        if _OTHER_LANGUAGE_REQUEST.search(_prompt_text(prompt)) or foreign_reference:
            out.append(None)
            continue
        cleaned = language_text(text)
        for word in allowed_latin:
            cleaned = cleaned.replace(word, " ")
        out.append(hangul_ratio(cleaned))
    return out
