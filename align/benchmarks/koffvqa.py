"""KOFFVQA: free-form Korean VQA, each answer graded 0-10 by a judge model against the question's own criteria.

Layout (``maum-ai/KOFFVQA_Data``: ``data/KOFFVQA.tsv``, VLMEvalKit-style): ``index``, ``question``, ``answer`` (the
grading criteria, one item per line), ``category`` (10 tasks), ``image`` (base64). The model sees the image and the
question alone. The judge sees the question, the answer and the criteria (not the image) and is told, as in the
official ``evaluate.py``: grade only by the criteria, no partial credit for a criterion met in part, synonyms are
fine except where text in the image must be read exactly, judge each criterion then end with
"최종 점수: 10점 만점에 X점" (the instruction is our Korean wording of theirs). Official judge: google/gemma-2-9b-it,
run locally — point ``judge.model`` at it to reproduce; any other local judge stands in and the score says which.

Scoring as published: the judge's final score (0-10; none, or above 10, counts 0), an answer that is not Korean
counts 0 (unless it is only digits and punctuation), and the benchmark score is the mean × 10, overall and per
category. Published language check: py3langid; where it is not installed, a Hangul-majority check stands in
(``language_check`` in the per-row file says which). ``score_parsed`` leaves out the rows whose judge reply held no
score (``unparsed_judge``), which the published rule counts as 0.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict

from align.benchmarks.common import (
    BenchContext,
    Tally,
    ask_judge,
    generate,
    key_part,
    mean_se,
    user_prompt,
    write_rows,
)
from align.benchmarks.judge import make_judge
from align.benchmarks.sources import image_map, load_rows, to_image
from rollouts import Sampling

JUDGE_RULE = """사진 한 장에 대한 질문과 그 질문에 대한 답변, 그리고 채점 기준이 아래에 주어집니다. 채점 기준의 항목들에 비추어 답변이 얼마나 옳은지 채점해 주세요.

사진은 보여 드리지 않지만, 채점 기준을 읽으면 사진의 내용을 짐작할 수 있습니다. 오직 채점 기준에 따라서만 채점하세요.

채점의 목적은 사람이 읽었을 때 이 답변이 얼마나 정확하고 좋은 답변인지를 판단하는 것입니다.

질문:
> "{question}"

답변:
> "{answer}"

채점 기준:

{criteria}

위 기준에 따라 답변을 10점 만점으로 채점하세요. 채점 기준의 한 항목을 일부만 만족한 경우에는 그 항목의 점수를 주지 않습니다. 점수는 반드시 0점에서 10점 사이여야 합니다.

표현이 정확히 같지 않더라도 같은 뜻의 말이나 비슷한 표현으로 설명했다면 옳은 답변일 수 있습니다. 다만 사진 속 글자를 그대로 읽어야 하는 질문에서는, 비슷한 말이라도 정확히 일치하지 않게 읽었다면 틀린 답변입니다.

먼저 채점 기준의 각 항목에 대한 판단을 차례로 적고, 마지막 줄에 "최종 점수: 10점 만점에 X점" 형식으로 최종 점수를 적으세요."""

_FINAL = re.compile(r"최종\s*점수|final\s*score", re.IGNORECASE)
_OUT_OF_TEN = re.compile(r"10\s*점\s*만점\s*(?:에|중|기준)?\s*(?:서)?")
_NUMBER = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)")
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")


def judge_messages(question: str, answer: str, criteria: str) -> list[dict]:
    return [{"role": "user", "content": JUDGE_RULE.format(question=question, answer=answer, criteria=criteria)}]


def parse_score(review: str) -> float | None:
    """The judge's final score out of 10, or None. The last "최종 점수 …" line decides ("10점 만점에 7점", "7/10",
    "7점"); without one, the last number of the reply, as the official reader does. Scores above 10 are None."""
    text = str(review or "")
    finals = list(_FINAL.finditer(text))
    if finals:
        line = text[finals[-1].end() :].split("\n", 1)[0]
        line = _OUT_OF_TEN.sub(" ", line)
        nums = _NUMBER.findall(line)
        value = float(nums[0]) if nums else None
    else:
        nums = _NUMBER.findall(text)
        value = float(nums[-1]) if nums else None
    return value if value is not None and 0 <= value <= 10 else None


def _langid_ko(text: str) -> bool | None:
    try:
        import py3langid as langid
    except ImportError:
        return None
    return langid.classify(text)[0] == "ko"


def is_korean(text: str) -> tuple[bool, str]:
    """Whether an answer counts as Korean, and the check used: py3langid (the official one) if installed, else
    Hangul letters at least half of all letters. Answers of only digits, punctuation and spaces always count."""
    text = str(text or "")
    if all(c.isdigit() or c in string.punctuation or c.isspace() for c in text):
        return True, "digits"
    verdict = _langid_ko(text)
    if verdict is not None:
        return verdict, "py3langid"
    letters = [c for c in text if c.isalpha()]
    hangul = sum(1 for c in letters if _HANGUL.match(c))
    return (hangul > 0 and hangul * 2 >= len(letters)), "hangul"


def answer_then_judge(ctx: BenchContext, items: list[dict], prompts: list, judge_convs) -> tuple[list, list, str]:
    """Greedy answers to ``prompts`` (with each item's image), then judge replies to ``judge_convs(answers)``.
    A judge server is checked before the answers are generated (fails fast); a judge model loads after them."""
    judge = make_judge(ctx.spec.judge, ctx.recipe.rollout, ctx.recipe.seed) if ctx.spec.judge.url else None
    sampling = Sampling(n=1, temperature=0.0, max_new_tokens=ctx.spec.max_new_tokens or ctx.recipe.eval.max_new_tokens)
    outs = generate(ctx, prompts, [[it["image"]] for it in items], sampling, f"{ctx.info.name} answers")
    answers = [o[0].text for o in outs]
    judge = judge or make_judge(ctx.spec.judge, ctx.recipe.rollout, ctx.recipe.seed)
    return answers, ask_judge(ctx, judge, judge_convs(answers)), judge.name


def _text(value) -> str | None:
    text = None if value is None else str(value).strip()
    return text if text and text != "nan" else None


def run(ctx: BenchContext) -> dict[str, float]:
    rows, folder = load_rows(ctx.spec.source or ctx.info.source, ctx.spec.split or ctx.info.split, ctx.info.name,
                             ctx.base_dir)  # fmt: skip
    images = image_map(rows)
    bad, items = Tally(), []
    for pos, row in enumerate(rows):
        rid = str(row.get("index", pos))
        question, criteria = _text(row.get("question")), _text(row.get("answer"))
        image = to_image(row.get("image"), folder, images)
        reason = "missing_question" if not question else "missing_criteria" if not criteria else \
            "missing_image" if image is None else None  # fmt: skip
        if reason:
            bad.add(reason, rid)
        else:
            items.append({"id": rid, "question": question, "criteria": criteria, "image": image,
                          "category": _text(row.get("category")) or "all"})  # fmt: skip
    items = items[: ctx.spec.limit] if ctx.spec.limit else items
    prompts = [user_prompt(it["question"] + (ctx.spec.prompt or "")) for it in items]
    answers, reviews, judge_name = answer_then_judge(
        ctx, items, prompts, lambda answers: [judge_messages(it["question"], a, it["criteria"])
                                              for it, a in zip(items, answers)])  # fmt: skip
    finals, parsed, by_cat, out_rows, non_korean = [], [], defaultdict(list), [], 0
    for it, answer, review in zip(items, answers, reviews):
        judged = parse_score(review)
        korean, check = is_korean(answer)
        final = (judged or 0.0) if korean else 0.0
        non_korean += not korean
        finals.append(final)
        by_cat[it["category"]].append(final)
        if judged is not None:
            parsed.append(final)
        out_rows.append({"id": it["id"], "category": it["category"], "question": it["question"],
                         "criteria": it["criteria"], "prediction": answer, "judge": judge_name, "review": review,
                         "judge_score": judged, "korean": korean, "language_check": check, "score": final})  # fmt: skip
    write_rows(ctx.rows_path, out_rows)
    n = len(items)
    metrics = {"n": float(n), "judged": float(len(parsed)), "unparsed_judge": float(n - len(parsed)),
               "non_korean": float(non_korean)}  # fmt: skip
    if finals:
        metrics["score"] = sum(finals) / n * 10
        se = mean_se(finals)
        if se is not None:
            metrics["score_stderr"] = se * 10
    if parsed:
        metrics["score_parsed"] = sum(parsed) / len(parsed) * 10
    for cat, vals in by_cat.items():
        metrics[f"category/{key_part(cat)}"] = sum(vals) / len(vals) * 10
    if n - len(parsed):
        ctx.log(f"  {ctx.info.name}: {n - len(parsed)} of {n} judge replies held no score (counted 0 as published); "
                f"see {ctx.rows_path}")  # fmt: skip
    return bad.report(ctx, metrics)
