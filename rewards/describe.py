"""Measures of open-ended image descriptions against the scene they describe (the synthetic ``describe`` task).

A description is read into claims about shapes (``parse_description``): which shapes it says are there, and for each
its colour, count and position (왼쪽 / 가운데 / 오른쪽). Claims and the scene's ground truth (the ``scene`` column:
``{"objects": [{"shape", "color", "count", "position"}], "references": [...]}``) become atoms — (shape), (shape,
colour), (shape, count), (shape, position) — and ``describe_precision`` / ``describe_recall`` / ``describe_f1`` compare
the two sets. An invented shape or a wrong colour costs precision, a missing shape or attribute recall; saying the
same thing twice changes neither (``repetition_rate`` watches that).

The reader takes what Korean chat models write, not only our templates: colour words as adjectives or nouns (빨간 /
빨간색 / 빨강 / 붉은 / 적색), shape synonyms (원 / 동그라미 / 원형, 사각형 / 네모 / 정사각형, 삼각형 / 세모), counts as
digits or native numerals with or without 개 (2개, 두 개, 둘, 하나), particles and copulas glued to each word (원이,
빨간색입니다, 왼쪽에는), markdown (bullets, bold, headings) and pleasantries. Inside one clause (clauses end at . ! ?
, ; newlines and -고 / -며 connectives) a colour goes to the next shape (빨간 원, 빨간색이나 파란색 원, and a list
빨간색, 파란색 원) or, said as a predicate, to the shape before it (원은 빨간색입니다); a clause with no shape goes on
about the sentence's last one (원은 빨간색이고 두 개입니다); a count to the shape before it (원 두 개) or, with 의, after it (두 개의 원); a place to
the shape it predicates (원은 왼쪽에, 원 두 개가 왼쪽에) or else to the shapes after it (왼쪽에 빨간 원). A clause
that says something is not there (없습니다) claims nothing. Words for the whole picture (도형, 그림) take no attribute:
"도형이 모두 세 개" is not a count of any one shape.

``cider_d``: CIDEr-D (Vedantam et al. 2015, coco-caption's variant; ``align.benchmarks.caption``, checked against
pycocoevalcap there) of each description against the scene's references, the document frequencies taken over the
rows of the call (the held-out set in an evaluation). ``description_words`` (length in words) and
``repetition_rate`` (share of repeated word 3-grams) are the reward-hacking watch. None for rows without a scene.
"""

from __future__ import annotations

import bisect
import json
import re
from functools import lru_cache

from rewards.common import column, completion_texts
from rewards.formatting import repetition_penalty
from rewards.text_metrics import cider_d as corpus_cider_d
from rewards.text_metrics import tokenize

SHAPES = {"원": ("원", "원형", "동그라미", "circle"), "사각형": ("사각형", "정사각형", "직사각형", "네모", "square"),
          "삼각형": ("삼각형", "정삼각형", "세모", "triangle")}  # fmt: skip
COLORS = {
    "빨간색": ("빨간색", "빨강색", "빨간", "빨강", "붉은색", "붉은", "적색", "red"),
    "파란색": ("파란색", "파랑색", "파란", "파랑", "푸른색", "푸른", "청색", "blue"),
    "초록색": ("초록색", "초록", "녹색", "연두색", "green"),
    "노란색": ("노란색", "노랑색", "노란", "노랑", "황색", "yellow"),
    "보라색": ("보라색", "보랏빛", "보라", "자주색", "purple"),
    "주황색": ("주황색", "주황", "오렌지색", "orange"),
    "검은색": ("검은색", "검정색", "검은", "검정", "까만색", "까만", "흑색", "black"),
}
POSITIONS = {"왼쪽": ("왼쪽", "좌측", "왼편", "left"), "가운데": ("한가운데", "가운데", "중앙", "중간", "center"),
             "오른쪽": ("오른쪽", "우측", "오른편", "right")}  # fmt: skip
GENERIC = ("도형", "모양", "물체", "그림", "이미지", "사진")  # the picture or all its shapes, not one kind
NATIVE = {"하나": 1, "한": 1, "둘": 2, "두": 2, "셋": 3, "세": 3, "석": 3, "넷": 4, "네": 4, "다섯": 5, "여섯": 6,
          "일곱": 7, "여덟": 8, "아홉": 9, "열": 10}  # fmt: skip
STANDALONE = ("하나", "둘", "셋", "넷")  # numerals that count without 개 (한, 두, 세, 네 need it)
# particles, copulas and endings that may follow a word (longest first when matched)
TAILS = ("", "이", "가", "은", "는", "을", "를", "과", "와", "도", "의", "만", "로", "으로", "에", "에는", "에도", "에서",
         "이고", "고", "이며", "며", "이나", "나", "하고", "이랑", "랑", "입니다", "이에요", "예요", "이야", "야", "이다",
         "이죠", "죠", "이네요", "네요", "이고요", "이며요", "빛", "빛의", "으로는", "로는", "에서는", "쪽", "쪽에",
         "모양", "모양의", "모양이", "모양은", "이에", "에요")  # fmt: skip
_SENTENCE = re.compile(r"[.!?\n]+")
_CLAUSE = re.compile(r"[;,]+|(?<=[고며])\s")  # inside a sentence: commas and -고/-며 connectives
SUBJECT = ("이", "가", "은", "는")  # a place after a word with these is said of it (원은 왼쪽에)
_MARKUP = re.compile(r"[*#>`_~\[\](){}:\-–—•·\"'“”‘’]")
_COUNT = re.compile(r"^(\d+)\s*개")


@lru_cache(maxsize=1)
def _lexicon() -> list[tuple[str, str, str]]:
    """(surface stem, kind, canonical value), longest stems first."""
    out = [(w, "shape", k) for k, ws in SHAPES.items() for w in ws]
    out += [(w, "color", k) for k, ws in COLORS.items() for w in ws]
    out += [(w, "position", k) for k, ws in POSITIONS.items() for w in ws]
    out += [(w, "generic", w) for w in GENERIC]
    return sorted(out, key=lambda t: -len(t[0]))


def _tail_ok(rest: str) -> bool:
    return rest.removeprefix("들") in TAILS


def _word_items(word: str) -> list[tuple[str, object, str]]:
    """The items one word says: [(kind, value, tail)], e.g. '빨간원이' -> colour, shape; '두개가' -> count 2."""
    m = re.fullmatch(r"(\d+)(개)?(.*)", word)
    if m:
        if m.group(2) and _tail_ok(m.group(3)):
            return [("count", int(m.group(1)), m.group(3))]
        return [("count?", int(m.group(1)), "")] if not m.group(2) and not m.group(3) else []
    for stem, value in NATIVE.items():
        rest = word[len(stem) :] if word.startswith(stem) else None
        if rest is not None and rest.startswith("개") and _tail_ok(rest[1:]):  # 두개가, 한개
            return [("count", value, rest[1:])]
        if rest is not None and stem in STANDALONE and rest in TAILS:  # 하나가, 둘이, 셋
            return [("count", value, rest)]
    for stem, kind, value in _lexicon():
        if not word.startswith(stem):
            continue
        rest = word[len(stem) :]
        if _tail_ok(rest):
            return [(kind, value, rest.removeprefix("들"))]
        if kind == "color":  # a colour glued to its shape: 빨간원이
            after = _word_items(rest)
            if after and after[0][0] == "shape":
                return [(kind, value, "")] + after
    return []


def _items(clause: str) -> list[tuple[str, object, str]]:
    """The clause's colour, shape, count, position and generic items in order; numerals joined with 개."""
    words = _MARKUP.sub(" ", clause).split()
    items: list[tuple[str, object, str]] = []
    i = 0
    while i < len(words):
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        numeral = NATIVE.get(w) if w in NATIVE else int(w) if w.isdigit() else None
        if numeral is not None and nxt.startswith("개") and _tail_ok(nxt[1:]):  # 두 개가, 3 개
            items.append(("count", numeral, nxt[1:]))
            i += 2
            continue
        for kind, value, tail in _word_items(w):
            if kind != "count?":
                items.append((kind, value, tail))
            elif items and items[-1][0] == "shape":  # a bare number counts only right after a shape (원 2)
                items.append(("count", value, tail))
        i += 1
    return items


def parse_description(text: str) -> dict[str, dict[str, set]]:
    """Claims per shape (canonical name): ``{"원": {"color": {"빨간색"}, "count": {2}, "position": {"왼쪽"}}}``."""
    claims: dict[str, dict[str, set]] = {}
    for sentence in _SENTENCE.split(text or ""):
        last = (
            None  # the shape the sentence spoke of last: a clause without one continues about it (원은 빨갛고 두 개다)
        )
        pending: list = []  # colours listed before their shape
        for clause in _CLAUSE.split(sentence):
            if "없" in clause:  # 사각형은 없습니다: nothing claimed
                continue
            items = pending + _items(clause)
            pending = []
            if items and not any(it[0] in ("shape", "generic") for it in items):
                if last is None and all(it[0] == "color" for it in items):  # 빨간색, 파란색 원: a list of colours
                    pending = items
                    continue
                if last is not None:
                    items = [("shape", last, "은"), *items]
            shapes = [it[1] for it in items if it[0] == "shape"]
            for shape in shapes:
                claims.setdefault(shape, {"color": set(), "count": set(), "position": set()})
            for j, targets in _owners(items).items():
                for t in targets:
                    if items[t][0] == "shape":
                        claims[items[t][1]][items[j][0]].add(items[j][1])
            last = shapes[-1] if shapes else last
    return claims


def _owners(items: list[tuple[str, object, str]]) -> dict[int, list[int]]:
    """For each colour, count and position item of a clause, the indexes of the shapes (or generic words) it is said
    of (the rules in the module docstring)."""
    things = [j for j, it in enumerate(items) if it[0] in ("shape", "generic")]
    places = [j for j, it in enumerate(items) if it[0] == "position"]
    owner: dict[int, list[int]] = {}
    for j, (kind, _value, tail) in enumerate(items):
        k = bisect.bisect_left(things, j)  # things[k:] come after item j
        before, after = things[k - 1 : k] if k else [], things[k : k + 1]
        if kind == "color":  # an adjective (빨간, 빨간색의) for the next shape, a predicate (빨간색이고) for the last
            adjective = tail in ("", "의", "빛", "빛의", "으로", "로", "이나", "나", "또는") and after
            owner[j] = after if adjective else before or after
        elif kind == "count":
            owner[j] = after if tail == "의" and after else before or after
        elif kind == "position":
            prev = items[j - 1] if j else None
            predicate = prev is not None and prev[0] in ("shape", "count", "generic") and prev[2][:1] in SUBJECT
            p = bisect.bisect_right(places, j)
            next_place = places[p] if p < len(places) else len(items)
            following = things[k : bisect.bisect_left(things, next_place)]
            owner[j] = before if predicate and before else following or before
    return owner


def atoms(claims: dict[str, dict[str, set]]) -> set[tuple]:
    out = set()
    for shape, attrs in claims.items():
        out.add((shape,))
        for kind, values in attrs.items():
            out.update((shape, kind, v) for v in values)
    return out


def scene_atoms(scene: dict) -> set[tuple]:
    return atoms({o["shape"]: {"color": {o["color"]}, "count": {int(o["count"])}, "position": {o["position"]}}
                  for o in scene["objects"]})  # fmt: skip


def attribute_scores(text: str, scene: dict) -> dict[str, float]:
    """Precision, recall and F1 of the description's atoms against the scene's (0 for a description with none)."""
    said, truth = atoms(parse_description(text)), scene_atoms(scene)
    right = len(said & truth)
    p = right / len(said) if said else 0.0
    r = right / len(truth) if truth else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def _scene(value) -> dict | None:
    if not value:
        return None
    return json.loads(value) if isinstance(value, str) else value


def _attribute(key: str, completions, kwargs) -> list[float | None]:
    scenes = column(kwargs, "scene", len(completions))
    return [None if _scene(s) is None else attribute_scores(t, _scene(s))[key]
            for t, s in zip(completion_texts(completions), scenes)]  # fmt: skip


def describe_f1(prompts, completions, **kwargs) -> list[float | None]:
    """Attribute F1 of a description against the scene's ground truth (shapes, colours, counts, positions)."""
    return _attribute("f1", completions, kwargs)


def describe_precision(prompts, completions, **kwargs) -> list[float | None]:
    """Share of a description's claims (shapes, colours, counts, positions) that the scene bears out."""
    return _attribute("precision", completions, kwargs)


def describe_recall(prompts, completions, **kwargs) -> list[float | None]:
    """Share of the scene's facts (shapes, colours, counts, positions) that a description states."""
    return _attribute("recall", completions, kwargs)


def cider_d(prompts, completions, **kwargs) -> list[float | None]:
    """CIDEr-D of each description against its scene's references (document frequencies over this call's rows)."""
    scenes = [_scene(s) for s in column(kwargs, "scene", len(completions))]
    idx = [i for i, s in enumerate(scenes) if s and s.get("references")]
    texts = completion_texts(completions)
    _, scores = corpus_cider_d([tokenize(texts[i]) for i in idx],
                               [[tokenize(r) for r in scenes[i]["references"]] for i in idx])  # fmt: skip
    out: list[float | None] = [None] * len(completions)
    for i, score in zip(idx, scores):
        out[i] = score
    return out


def description_words(prompts, completions, **kwargs) -> list[float | None]:
    """Length of a description in words (space-separated, punctuation dropped)."""
    scenes = column(kwargs, "scene", len(completions))
    return [None if not s else float(len(tokenize(t))) for t, s in zip(completion_texts(completions), scenes)]


def repetition_rate(prompts, completions, **kwargs) -> list[float | None]:
    """Share of a description's word 3-grams that repeat an earlier one (0: none; ``repetition_penalty`` negated)."""
    scenes = column(kwargs, "scene", len(completions))
    rates = repetition_penalty(prompts, completions, ngram=3, max_penalty=-1.0)
    return [None if not s else -r + 0.0 for r, s in zip(rates, scenes)]
