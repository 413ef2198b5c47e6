"""Reading the option a free-form reply picks (``extract_choice``), rule by rule.

Cases come from two places: the published extractors' own examples (lmms-eval's ``_task_utils/mcq_extract.py``
docstring and phrases, VLMEvalKit's ``utils/matching_util.py``: ``can_infer_option`` / ``can_infer_text`` and its
verbose-answer pattern) and replies written the way chat VLMs answer in Korean and English (sentences, politeness
endings, markdown, explanations after the letter, the option's text instead of its letter, numbers with units,
reasoning blocks)."""

from __future__ import annotations

import pytest

from align.benchmarks.extract import (
    extract_choice,
    first_character_hit,
    lmms_eval_letter,
    strip_reasoning,
    vlmevalkit_letter,
)

FRUIT = {"A": "사과", "B": "바나나", "C": "사과나무", "D": "포도"}
COUNTS = {"A": "10", "B": "20", "C": "30", "D": "40"}
UNITS = {"A": "3개", "B": "4개", "C": "12개", "D": "20개"}
LENGTHS = {"A": "1.5 cm", "B": "15 cm", "C": "2.5 cm", "D": "25 cm"}
DISEASE = {"A": "인플루엔자", "B": "홍역", "C": "B형 간염 바이러스", "D": "결핵"}
PETS = {"A": "dog", "B": "cat", "C": "bird", "D": "fish"}
SCENE = {"A": "해변", "B": "산", "C": "도시", "D": "사막"}

PUBLISHED = [
    # lmms-eval mcq_extract.py: its docstring example and its phrase list (Korean "정답은", "답:", "옵션")
    ("The correct answer is (B).", FRUIT, "B"),
    ("정답은 C", FRUIT, "C"),
    ("답: D", FRUIT, "D"),
    ("옵션 A", FRUIT, "A"),
    ("(C)", FRUIT, "C"),
    ("B", FRUIT, "B"),
    # lmms-eval's K-SEED / K-DTCBench scorer compares the first character: a bare letter
    ("D", FRUIT, "D"),
    # VLMEvalKit matching_util.py: its verbose-answer examples, and text matching when no letter is given
    ("The correct answer is **B**. Here's why: the fruit is long and yellow.", FRUIT, "B"),
    ("The answer is C.", FRUIT, "C"),
    ("바나나", FRUIT, "B"),
    ("Cannot determine the answer", FRUIT, None),
]

FREE_FORM = [
    # answer statements, politeness endings, markdown
    ("정답은 B입니다.", FRUIT, "B"),
    ("**정답: D**", FRUIT, "D"),
    ("정답은 옵션 C입니다.", FRUIT, "C"),
    ("Answer: C", FRUIT, "C"),
    ("The best option is D because the grapes are purple.", FRUIT, "D"),
    ("B가 맞습니다.", FRUIT, "B"),
    ("B번입니다!", FRUIT, "B"),
    ("정답: A, 이유: 빨간 과일이기 때문입니다.", FRUIT, "A"),
    ("B. 바나나, 길고 노랗습니다", FRUIT, "B"),
    ("I'd go with C.", FRUIT, "C"),
    ("Ｂ", FRUIT, "B"),
    ("②", FRUIT, "B"),
    # explanations after the letter: the leading letter stands, options named in the reasons do not
    ("B. 바나나입니다. A는 사과라서 틀립니다.", FRUIT, "B"),
    ("B\n\n이미지 속 과일은 길고 노란색이므로 바나나입니다. 사과(A)나 포도(D)는 아닙니다.", FRUIT, "B"),
    # reasons first, answer last
    ("A는 사과이고 B는 바나나인데, 그림 속 과일은 길쭉하므로 정답은 B입니다.", FRUIT, "B"),
    ("정답은 A가 아니라 B입니다.", FRUIT, "B"),
    # the option's text instead of its letter (the longer option when one holds another)
    ("그림 속 과일은 포도예요.", FRUIT, "D"),
    ("사과나무", FRUIT, "C"),
    ("사진은 해변에서 찍은 것으로 보입니다.", SCENE, "A"),
    ("The answer is a dog.", PETS, "A"),  # option A's text, not the letter
    # numbers: whole numbers only, units allowed
    ("총 20개입니다.", COUNTS, "B"),
    ("사진 속 사과는 4개입니다.", UNITS, "B"),
    ("12개", UNITS, "C"),
    ("길이는 약 15cm입니다.", LENGTHS, "B"),
    ("1.5 cm", LENGTHS, "A"),
    # pleasantries and markdown around the answer
    ("좋은 질문이네요! 정답은 B입니다. 도움이 되셨길 바랍니다 😊", FRUIT, "B"),
    ("안녕하세요. 이미지를 보면 노란 과일이 있습니다. 따라서 **B. 바나나**가 정답입니다.", FRUIT, "B"),
    ("Sure! The answer is **D. 포도**.", FRUIT, "D"),
    ("물론이죠! 답: (C)", FRUIT, "C"),
    ("**답변:** B", FRUIT, "B"),
    ("이미지 속 과일은 바나나입니다. 감사합니다!", FRUIT, "B"),
    # hedged Korean endings, negation, a reply that repeats the options first, LaTeX boxed answers
    ("음, 아마도 C일 거예요.", FRUIT, "C"),
    ("C인 것 같습니다.", FRUIT, "C"),
    ("A가 아닌 B가 정답이다", FRUIT, "B"),
    ("A. 사과\nB. 바나나\n정답: B", FRUIT, "B"),
    ("B) 바나나\n\nA) 사과는 오답입니다.", FRUIT, "B"),
    ("답은 ③번입니다.", FRUIT, "C"),
    ("**정답: (C) 사과나무**", FRUIT, "C"),
    ("A는 틀리고 B도 아니므로 최종 답은 $\\boxed{D}$", FRUIT, "D"),
    # reasoning blocks: closed ones are skipped; a reply whose template opened the block starts inside it
    ("<think>A일까? 아니, 길쭉하니 바나나다.</think>정답은 B", FRUIT, "B"),
    ("음... 정답은 A 같은데 다시 보면 포도네.</think>\n\nD", FRUIT, "D"),
]

NOT_AN_ANSWER = [
    # lower-case English words are never letters
    ("The answer is a dog.", FRUIT, None, "none"),
    ("the answer is b", FRUIT, None, "none"),
    ("A cat on a mat", FRUIT, None, "none"),
    # no number inside another number
    ("총 120개입니다", COUNTS, None, "none"),
    ("길이는 11.5cm입니다.", LENGTHS, None, "none"),
    # a capital glued to Hangul is part of a word
    ("B형 간염 바이러스입니다", FRUIT, None, "none"),
    ("A4 용지에 인쇄된 문서입니다.", FRUIT, None, "none"),
    ("B인형이 보입니다.", FRUIT, None, "none"),
    # two letters, no decision; a letter that is not an option
    ("A와 B 중에서 잘 모르겠어요", FRUIT, None, "none"),
    ("E", FRUIT, "E", "outside"),
    ("정답은 F입니다", FRUIT, "F", "outside"),
    # hedges: two or more options given as the answer earn nothing
    ("정답은 A 또는 B입니다", FRUIT, None, "hedge"),
    ("The answer is A or C.", FRUIT, None, "hedge"),
    ("A/B", FRUIT, None, "hedge"),
    ("B나 C일 것 같아요", FRUIT, None, "hedge"),
    ("정답은 A이거나 B입니다", FRUIT, None, "hedge"),
    ("정답: A, B, C, D 모두 가능", FRUIT, None, "hedge"),
    # a letter inside a reasoning block that never closed is not the answer
    ("<think>정답은 A일 것 같다. 하지만 다시 확인해 보면", FRUIT, None, "unclosed_reasoning"),
    ("", FRUIT, None, "none"),
]


@pytest.mark.parametrize(("text", "options", "letter"), PUBLISHED + FREE_FORM)
def test_the_reply_picks_this_option(text, options, letter):
    assert extract_choice(text, options)[0] == letter


@pytest.mark.parametrize(("text", "options", "letter", "how"), NOT_AN_ANSWER)
def test_replies_that_pick_no_option(text, options, letter, how):
    assert extract_choice(text, options) == (letter, how)


def test_the_rule_that_decided_is_reported():
    assert extract_choice("(B) 바나나", FRUIT) == ("B", "leading")
    assert extract_choice("A는 사과이고 B는 바나나인데, 정답은 B입니다.", FRUIT) == ("B", "statement")
    assert extract_choice("B가 맞습니다.", FRUIT) == ("B", "letter")
    assert extract_choice("B형 간염 바이러스입니다", DISEASE) == ("C", "text")  # the option's text, not the letter B
    assert extract_choice("사진 속 사과는 4개예요", {"A": "3", "B": "4", "C": "5", "D": "6"}) == ("B", "text")
    assert extract_choice("모두 네 개, 즉 4 입니다", {"A": "3 개", "B": "4 개", "C": "5 개", "D": "6 개"}) == (
        "B",
        "number",
    )
    assert extract_choice("정답은 4", {"A": "3마리", "B": "4마리", "C": "5마리", "D": "6마리"}) == ("B", "number")


def test_strip_reasoning():
    assert strip_reasoning("<think>x</think> B") == " B"
    assert strip_reasoning("x</think>B") == "B"
    assert strip_reasoning("<think>B") is None
    assert strip_reasoning("B") == "B"


@pytest.mark.parametrize(
    ("text", "lmms_eval", "vlmevalkit"),
    [
        # the published scorers on their own examples and on the replies the workbench's rules are about
        ("The correct answer is (B).", "B", "B"),
        ("The correct answer is **B**. Here's why: the fruit is long.", "B", "B"),
        ("B", "B", "B"),
        ("정답은 B입니다.", "B", None),  # lmms-eval: after "정답은"; VLMEvalKit: no lone B token → its GPT step
        ("The answer is a dog.", "", "A"),  # VLMEvalKit's "answer is X" pattern ignores case: the article is A
        ("B형 간염 바이러스입니다", "B", None),  # lmms-eval: its last resort, any capital B in the reply
        ("그림 속 과일은 포도예요.", "", "D"),  # lmms-eval: no capital at all; VLMEvalKit: the option text
        ("Cannot determine the answer", "C", "Z"),  # lmms-eval: the C of "Cannot"; VLMEvalKit: a refusal
    ],
)
def test_published_scorers(text, lmms_eval, vlmevalkit):
    assert lmms_eval_letter(text) == lmms_eval
    assert vlmevalkit_letter(text, FRUIT) == vlmevalkit


def test_first_character_scorer():
    assert first_character_hit(" b. 바나나", "B") and not first_character_hit("정답은 B", "B")
