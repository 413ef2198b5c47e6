"""KoNET: Korean national education exams (elementary, middle and high school GED, and the CSAT) as problem images.

The exam papers are not redistributed: KoNET's own ``generate_KoNET()`` (github.com/naver-ai/KoNET) downloads them
and crops one image per problem. Two layouts are read:

* that checkout after generation: ``data/images_problem/<id>.png`` and ``src/utils/answers.json`` (answers per exam
  prefix, e.g. ``kocsat_1st_MathematicsCalculus``; ids are ``<prefix>_<number>``; the CSAT elective sections number
  their problems from 23 and 35, hence the published offsets below);
* the table ``generate_KoNET()`` returns, saved as .jsonl / .parquet / .csv (or pushed to the hub): ``idx``,
  ``img_path`` (or ``image``), ``problem_answer``, ``problem_type``, ``problem_point``.

The model gets the problem image and our Korean instruction to solve it and give the answer on the last line (the
paper's prompt is not in the repository). A judge compares the reference answer with the model's reply and says
"Correct." or "Incorrect." — the official one is gpt-4o-mini, shown the problem image too; here the local judge (text
only) stands in, so scores are comparable between our checkpoints, not with the paper. As published, the 17 CSAT
English listening problems count as correct without being asked, replies left empty are not counted
(``empty_answers``; ``accuracy_all`` counts them wrong), and accuracy is reported overall and per exam (KoEGED,
KoMGED, KoHGED, KoCSAT). ``accuracy_rule`` is ours and needs no judge: the reply's final answer ("정답: ③", "the
answer is ② 20000", "Option 3") compared with the reference, counted the same way.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from align.benchmarks.common import BenchContext, Tally, key_part, proportion_se, user_prompt, write_rows
from align.benchmarks.koffvqa import answer_then_judge
from align.benchmarks.sources import load_rows, resolve_local, to_image
from align.errors import UserError

# Published facts (src/evaluator.py of naver-ai/KoNET): numbering offsets of the CSAT elective sections, the
# listening problems counted correct, and the four exams.
OFFSET_MAP = {
    "kocsat_1st_KoreanLanguageMedia": 34,
    "kocsat_1st_KoreanSpeechWriting": 34,
    "kocsat_1st_MathematicsCalculus": 22,
    "kocsat_1st_MathematicsGeometry": 22,
    "kocsat_1st_MathematicsStatistics": 22,
}
LISTENING = {f"kocsat_1st_English_{i:02d}" for i in range(1, 18)}
EXAMS = {"koeged": "KoEGED", "komged": "KoMGED", "kohged": "KoHGED", "kocsat": "KoCSAT"}

SOLVE_KO = "이미지 속 시험 문제를 풀고, 마지막 줄에 '정답: ' 뒤에 답을 쓰세요. 선택형 문제는 선택지 번호로 답하세요."
JUDGE_TEMPLATE = """## Correct answer
{answer}

## Student's submitted solution
{response}

You grade exam answers. Compare the student's submitted solution with the correct answer above; do not solve the
problem yourself. If the solution's final answer matches the correct answer, reply "Correct." — otherwise reply
"Incorrect."."""

_VERDICT = re.compile(r"\b(incorrect|not\s+correct|correct)\b", re.IGNORECASE)


def parse_verdict(review: str) -> bool | None:
    """True for "Correct.", False for "Incorrect." (or "not correct"), from the first such word of the reply;
    None when it has neither (counted, and wrong, as the official exact-match check would have it)."""
    m = _VERDICT.search(str(review or ""))
    if not m:
        return None
    return m.group(1).lower() == "correct"


_CIRCLED = {c: str(i + 1) for i, c in enumerate("①②③④⑤⑥⑦⑧⑨⑩")}
_ANSWER_CUE = re.compile(r"정답|답은|답:|answer|option|선택지", re.IGNORECASE)
_VALUE = re.compile(r"([①-⑩])|(?:option|선택지)\s*(\d+)|(\d+)\s*번|(-?\d+(?:\.\d+)?(?:/\d+)?)", re.IGNORECASE)


def read_answer(reply: str) -> str | None:
    """The final answer a reply gives, for the judge-free check: the first option mark or number after the last
    answer cue ("정답: ③", "정답은 3번", "the answer is **② 20000**", "Option 3"), else the reply's last circled
    option mark. None when it names none."""
    text = str(reply or "").replace(",", "")
    cues = list(_ANSWER_CUE.finditer(text))
    if cues:
        m = _VALUE.search(text, cues[-1].end())
        if m:
            circled, option, numbered, number = m.groups()
            return _CIRCLED[circled] if circled else option or numbered or number
    marks = [c for c in text if c in _CIRCLED]
    return _CIRCLED[marks[-1]] if marks else None


def same_answer(given: str | None, reference: str) -> bool:
    if given is None:
        return False
    try:
        from fractions import Fraction

        return Fraction(given) == Fraction(str(reference).strip())
    except (ValueError, ZeroDivisionError):
        return given.strip() == str(reference).strip()


def answer_for(problem_id: str, answers: dict) -> str | None:
    """The reference answer of ``<prefix>_<number>`` from KoNET's answers.json (with the published offsets)."""
    prefix, _, number = problem_id.rpartition("_")
    if not number.isdigit() or prefix not in answers:
        return None
    pos = int(number) - OFFSET_MAP.get(prefix, 0) - 1
    values = answers[prefix]
    return str(values[pos]) if 0 <= pos < len(values) else None


def exam_of(problem_id: str) -> str:
    return EXAMS.get(problem_id.split("_", 1)[0].lower(), "other")


def _checkout_rows(root: Path) -> list[dict] | None:
    """Rows from a KoNET checkout (``…/images_problem/*.png`` + ``…/answers.json``), or None if it is not one."""
    image_dirs = sorted(p for p in root.rglob("images_problem") if p.is_dir())
    answer_files = sorted(root.rglob("answers.json"))
    if not image_dirs or not answer_files:
        return None
    answers = json.loads(answer_files[0].read_text(encoding="utf-8"))
    return [{"idx": p.stem, "image": str(p), "problem_answer": answer_for(p.stem, answers)}
            for p in sorted(image_dirs[0].glob("*.png"))]  # fmt: skip


def load_problems(ctx: BenchContext) -> tuple[list[dict], Path]:
    source = ctx.spec.source or ctx.info.source
    if source is None:
        raise UserError(f"{ctx.info.name}: no source (the KoNET exam papers are not on the hub)",
                        "run KoNET's generate_KoNET() (github.com/naver-ai/KoNET) and set `source:` to that checkout "
                        "or to the table it returns saved as .jsonl/.parquet")  # fmt: skip
    local = resolve_local(source, ctx.base_dir)
    if local is not None and local.is_dir():
        rows = _checkout_rows(local)
        if rows is not None:
            return rows, local
    return load_rows(source, ctx.spec.split or ctx.info.split, ctx.info.name, ctx.base_dir)


def run(ctx: BenchContext) -> dict[str, float]:
    rows, folder = load_problems(ctx)
    bad, items = Tally(), []
    for pos, row in enumerate(rows):
        pid = str(row.get("idx") or row.get("id") or pos)
        answer = row.get("problem_answer", row.get("answer"))
        image = to_image(row.get("image") if row.get("image") is not None else row.get("img_path"), folder)
        reason = "missing_answer" if answer is None or str(answer).strip() in ("", "None", "nan") else \
            "missing_image" if image is None else None  # fmt: skip
        if reason:
            bad.add(reason, pid)
        else:
            items.append({"id": pid, "answer": str(answer).strip(), "image": image, "exam": exam_of(pid)})
    items = items[: ctx.spec.limit] if ctx.spec.limit else items
    asked = [it for it in items if it["id"] not in LISTENING]
    prompts = [user_prompt(ctx.spec.prompt or SOLVE_KO) for _ in asked]
    answers, reviews, judge_name = answer_then_judge(
        ctx, asked, prompts, lambda answers: [[{"role": "user", "content": JUDGE_TEMPLATE.format(
            answer=it["answer"], response=a)}] for it, a in zip(asked, answers)])  # fmt: skip
    replies = {it["id"]: (a, r) for it, a, r in zip(asked, answers, reviews)}
    counted, by_rule, by_exam, out_rows, unparsed, empty = [], [], defaultdict(list), [], 0, 0
    for it in items:
        answer, review = replies.get(it["id"], (None, None))
        if it["id"] in LISTENING:
            verdict, how = True, "listening (counted correct, as published)"
        elif not answer:  # the official check: an empty string, not a reply of whitespace
            verdict, how = None, "empty (not counted, as published)"
            empty += 1
        else:
            verdict = parse_verdict(review)
            unparsed += verdict is None
            how = "judge"
        given = read_answer(answer) if answer else None
        rule = it["id"] in LISTENING or same_answer(given, it["answer"])
        if how != "empty (not counted, as published)":
            counted.append(bool(verdict))
            by_rule.append(rule)
            by_exam[it["exam"]].append(bool(verdict))
        out_rows.append({"id": it["id"], "exam": it["exam"], "answer": it["answer"], "prediction": answer,
                         "judge": judge_name, "review": review, "correct": bool(verdict), "how": how,
                         "read_answer": given, "correct_rule": rule})  # fmt: skip
    write_rows(ctx.rows_path, out_rows)
    n = len(counted)
    acc = sum(counted) / n if n else 0.0
    metrics = {"accuracy": acc, "n": float(n), "rows": float(len(items)), "empty_answers": float(empty),
               "unparsed_judge": float(unparsed)}  # fmt: skip
    if n > 1:
        metrics["accuracy_stderr"] = proportion_se(acc, n)
    if items:
        metrics["accuracy_all"] = sum(counted) / len(items)
    if by_rule:  # ours, judge-free: the reply's final answer against the reference (same counting as published)
        metrics["accuracy_rule"] = sum(by_rule) / len(by_rule)
    for exam, vals in by_exam.items():
        metrics[f"category/{key_part(exam)}"] = sum(vals) / len(vals)
    return bad.report(ctx, metrics)
