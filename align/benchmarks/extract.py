"""Reading the option a free-form multiple-choice reply picks.

``extract_choice`` is the workbench's rule set (docs/benchmarks.md, "Reading the answer": each rule and where it
comes from). The published scorers are kept beside it, written from their documented behaviour, for the labelled
second figures: ``first_character_hit`` (lmms-eval's K-SEED / K-DTCBench scorer), ``lmms_eval_letter`` (lmms-eval's
ranked extractor, ``_task_utils/mcq_extract.py``, used by its K-MMStar task) and ``vlmevalkit_letter`` (VLMEvalKit's
``can_infer``: a lone option letter near the end, its verbose-answer pattern, or the one option text; VLMEvalKit asks
a GPT model when that fails, which is not done here).
"""

from __future__ import annotations

import re
from itertools import pairwise

_FULLWIDTH = str.maketrans("ＡＢＣＤＥＦＧＨ（）．：，①②③④⑤⑥⑦⑧", "ABCDEFGH().:,ABCDEFGH")
# Hangul that may follow an option letter directly: a copula or a particle ("B입니다", "B번", "B가 정답", "B로 답").
# A capital glued to any other Hangul is part of a word ("B형 간염", "A형"), not a choice.
_COPULA = r"(?:입니다|이에요|이예요|예요|이요|이다|이야|야|요|임|이죠|죠)"
_PARTICLE = r"(?:번|가|이|는|은|를|을|로|으로|와|과|도|만|라고|라는|이라고|이라는|이고|이며|이지만|인데|일|인)"
_WORD_CHAR = r"[A-Za-z0-9가-힣]"
_END = rf"(?:번)?(?:{_COPULA}|{_PARTICLE})?(?!{_WORD_CHAR})"
_OPEN = r"[\s(\[*\"'“‘`]*"
# 1. a reply that starts with a letter answers with it ("B", "(B)", "**B**", "B. 바나나", "B입니다. 왜냐하면 …");
#    a particle after it means the option is being discussed ("A는 사과이고 …"), "A dog" is the article
_LEADING = re.compile(rf"^[\s(\[*\"'“‘`#>]*([A-H])(?:번)?{_COPULA}?(?!{_WORD_CHAR})")
# 2. an answer statement ("정답은 B입니다", "답: D", "The correct answer is **B**", "옵션 B"); the last one counts
_STATEMENT = re.compile(r"(?i:정답|답변|답|answer|option|옵션|선택지)\s*(?i:은|는|이|:|=|is|would be|will be)?\s*"
                        r"(?i:바로|the|option|옵션|선택지)?" + _OPEN + rf"([A-H]){_END}")  # fmt: skip
# 3. the only option letter standing alone anywhere ("I'd go with B.", "B가 맞습니다")
_TOKEN = re.compile(rf"(?<!{_WORD_CHAR})([A-H]){_END}")
_NEGATED = re.compile(r"\s*(?:가|이|는|은)?\s*(?:아니|아닌|아님|아닙|not\b|is not\b|isn't)", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{\s*\(?([A-H])\)?\s*\}")  # "\boxed{B}", as reasoning models end their answers
_OPTION_LINE = re.compile(r"\s*[(\[]?([A-H])[.):\]]")  # "A. 사과": a line of the options repeated
# a hedge names two options as the answer: "A 또는 B", "A or C", "A/B", "B나 C", "A이거나 B", "B 아니면 C"
_HEDGE = re.compile(r"(?<![A-Za-z0-9가-힣])([A-H])\)?\**[ \t]*(?:이거나|거나|이나|나|또는|혹은|아니면|or|/)[ \t]*"
                    r"(?:또는|혹은|아니면)?[ \t]*[(*]*([A-H])(?![A-Za-z0-9])")  # fmt: skip
_LISTED = re.compile(r"\)?\**[ \t]*,[ \t]*[(*]*[A-H](?![A-Za-z0-9가-힣])")  # "정답: A, B, C, D": several answers
_ARTICLE = re.compile(r"A\s+[a-z]")  # "A cat …": the English article, not option A
_REASONING_END = "</think>"
_PUNCT = r"[\s.,!?·'\"“”‘’()\[\]{}:;*`]"
_NUMBER = re.compile(r"(?<![0-9.,])[0-9]+(?:[.,][0-9]+)*(?![0-9])")


def norm_text(text: str) -> str:
    return re.sub(_PUNCT + "+", "", str(text)).lower()


def strip_reasoning(text: str) -> str | None:
    """The reply after its reasoning block; None when a ``<think>`` block never closes (the budget ran out while
    the model was still thinking: nothing in it is an answer). A reply whose chat template opened the block in the
    prompt starts inside it and has only the closing tag: the answer is what follows that tag."""
    t = str(text or "")
    if _REASONING_END in t:
        return t.rsplit(_REASONING_END, 1)[1]
    return None if "<think>" in t else t


def _option_pattern(text: str) -> re.Pattern | None:
    """The option's text as a pattern: spacing and punctuation free inside, and bounded where it starts or ends
    with a digit (20 is not in 120 or 2.05) or a Latin letter (cat is not in category)."""
    core = norm_text(text)
    if not core:
        return None
    body = (_PUNCT + "*").join(re.escape(c) for c in core)

    def edge(c: str, before: bool) -> str:
        if c.isdigit():
            return r"(?<![0-9])(?<![0-9][.,])" if before else r"(?![0-9]|[.,][0-9])"
        if c.isascii() and c.isalpha():
            return r"(?<![a-z])" if before else r"(?![a-z])"
        return ""

    return re.compile(edge(core[0], True) + body + edge(core[-1], False))


def _lists_options(t: str) -> bool:
    """Whether the reply repeats the options: two consecutive lines that start with different option letters."""
    starts = [(i, m.group(1)) for i, line in enumerate(t.splitlines()) if (m := _OPTION_LINE.match(line))]
    return any(j == i + 1 and a != b for (i, a), (j, b) in pairwise(starts))


def _negated(t: str, m: re.Match) -> bool:
    return bool(_NEGATED.match(t, m.end(1))) or t[max(0, m.start(1) - 4) : m.start(1)].lower().endswith("not ")


def _by_text(t: str, options: dict[str, str]) -> str | None:
    """The one option whose text the reply contains (when one option's text holds another's, the longer)."""
    low = t.lower()
    hits = [k for k, v in options.items() if (p := _option_pattern(v)) is not None and p.search(low)]
    hits = [k for k in hits if not any(k != o and norm_text(options[k]) in norm_text(options[o]) for o in hits)]
    return hits[0] if len(hits) == 1 else None


def _by_number(t: str, options: dict[str, str]) -> str | None:
    """Options that are numbers with units ("3개", "15 cm"): the one whose number the reply names as a whole
    number (options 10/20/30/40: "총 120개입니다" names none of them)."""

    def number(v: str) -> str | None:
        found = _NUMBER.findall(str(v))
        return found[0].replace(",", "") if len(found) == 1 else None

    nums = {k: number(v) for k, v in options.items()}
    if None in nums.values() or len(set(nums.values())) < len(nums):
        return None
    said = {n.replace(",", "") for n in _NUMBER.findall(t)}
    hits = [k for k, n in nums.items() if n in said]
    return hits[0] if len(hits) == 1 else None


def extract_choice(text: str, options: dict[str, str]) -> tuple[str | None, str]:
    """The option letter a free-form reply picks, and the rule that found it: ``leading``, ``statement``,
    ``letter``, ``text``, ``number``; ``outside`` for a letter that is not an option, ``hedge`` for a reply that
    names two or more options as its answer, ``unclosed_reasoning`` for a reply still inside ``<think>``, ``none``. Letters are capitals A–H only (lower-case English words are never
    letters), standing alone or before a Korean ending (docs/benchmarks.md, "Reading the answer")."""
    t = strip_reasoning(text)
    if t is None:
        return None, "unclosed_reasoning"
    t = t.translate(_FULLWIDTH).strip()
    if not t:
        return None, "none"

    if any(a != b for a, b in _HEDGE.findall(t)):
        return None, "hedge"

    def found(letter: str, how: str, m: re.Match | None = None):
        if m is not None and _LISTED.match(t, m.end(1)):
            return None, "hedge"
        return (letter, how) if letter in options else (letter, "outside")

    lead = _LEADING.match(t)
    echoed = _lists_options(t)
    if lead and not echoed and not _ARTICLE.match(t, lead.start(1)) and not _negated(t, lead):
        return found(lead.group(1), "leading", lead)
    boxed = _BOXED.findall(t)
    if boxed:
        return found(boxed[-1], "statement")
    statements = [m for m in _STATEMENT.finditer(t) if not _negated(t, m)]
    if statements:
        return found(statements[-1].group(1), "statement", statements[-1])
    letters = {m.group(1) for m in _TOKEN.finditer(t) if not _ARTICLE.match(t, m.start(1)) and not _negated(t, m)}
    if len(letters) == 1:
        return found(letters.pop(), "letter")
    if not letters:
        by_text = _by_text(t, options)
        if by_text:
            return by_text, "text"
        by_number = _by_number(t, options)
        if by_number:
            return by_number, "number"
    return None, "none"


def first_character_hit(text: str, answer: str) -> bool:
    """lmms-eval's K-SEED / K-DTCBench scorer: the stripped reply's first character equals the answer letter (any
    case). Reported beside ``accuracy`` as ``accuracy_lmms_eval`` for those two sets."""
    reply = str(text or "").strip()
    return reply[:1].lower() == answer.strip().lower()


# lmms-eval mcq_extract: answer phrases and the ranking of the forms a letter may take (higher wins, then later)
_LMMS_PHRASES = ("the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
                 "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
                 "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select",
                 "i pick", "my answer is", "my choice is", "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは")  # fmt: skip
_LMMS_FORMS = (("({})", 6), ("{}.", 5), ("{}:", 4), ("{})", 3), ("{} ", 2))


def lmms_eval_letter(text: str, letters: str = "ABCD") -> str:
    """The letter lmms-eval's ranked extractor picks ('' for none): a letter starting the reply (10), ending it (9),
    after an answer phrase (7), in "(B)" (6), "B." (5), "B:" (4), "B)" (3), "B " (2); the latest of the best form;
    any occurrence only when nothing else matched."""
    body = str(text or "").strip()
    if not body:
        return ""
    body = " " + body.strip(",.!?;:'\"") + " "
    found: list[tuple[int, int, str]] = []  # (rank, position, letter)
    for letter in letters:
        for form, rank in _LMMS_FORMS:
            pos = body.rfind(form.format(letter))
            if pos >= 0:
                found.append((rank, pos, letter))
    low = body.lower()
    for phrase in _LMMS_PHRASES:
        at = low.find(phrase)
        if at >= 0:
            for letter in letters:
                pos = body.find(letter, at + len(phrase))
                if pos >= 0:
                    found.append((7, pos, letter))
    core = body.strip()
    for letter in letters:
        if core.startswith(letter) and (len(core) == 1 or not core[1].isalpha()):
            found.append((10, 0, letter))
        if core.endswith(letter) and (len(core) == 1 or not core[-2].isalpha()):
            found.append((9, len(body) - 1, letter))
    if not found:
        found = [(0, body.rfind(letter), letter) for letter in letters if letter in body]
    return max(found)[2] if found else ""


_VLMEVAL_PUNCT = str.maketrans({c: " " for c in ".()[],:;!*#{}"})
_VLMEVAL_VERBOSE = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")
_VLMEVAL_REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
                     "I'm sorry, but without the image provided", "Cannot determine the answer")  # fmt: skip


def vlmevalkit_letter(text: str, options: dict[str, str]) -> str | None:
    """The letter VLMEvalKit's ``can_infer`` reads without its GPT fallback (None when it would ask the GPT model;
    "Z" for a refusal): the one option letter among the reply's space/punctuation-separated tokens if it sits among
    the last four tokens; else its verbose "answer is X" pattern (any case); else, for a reply at most twice as long
    as the options' texts together, the one option whose text it contains."""
    reply = str(text or "")
    if any(r in reply for r in _VLMEVAL_REFUSALS):
        return "Z"
    tokens = reply.translate(_VLMEVAL_PUNCT).split()
    present = [k for k in options if k in tokens]
    if len(present) == 1 and tokens.index(present[0]) > len(tokens) - 5:
        return present[0]
    m = _VLMEVAL_VERBOSE.search(reply)
    if m and m.group(1).upper() in options:
        return m.group(1).upper()
    low = reply.lower()
    if len(low) > 2 * sum(len(str(v)) for v in options.values()):
        return None
    hits = [k for k, v in options.items() if str(v).lower() in low]
    return hits[0] if len(hits) == 1 else None
