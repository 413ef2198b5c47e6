"""Rewards that cannot be gamed: every hack class against every built-in verifiable reward, the natural Korean answers
that must still score, the shared hedge detector, and the code reward comparing results outside the solution's reach
(HumanEval's canonical solutions included)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

import rewards
from rewards.answer import final, hedge_rate, hedge_reason
from rewards.audit import KINDS, audit
from rewards.code_rewards import code_tests, hack_proof_report
from rewards.code_rewrite import rewrite

ASSETS = Path(__file__).parent / "assets"
ANSWER_REWARDS = sorted(n for n, k in KINDS.items() if k == "answer")
COMMON = {"hedge (Korean)", "hedge (English)", "candidate list", "several final answers", "empty / whitespace",
          "format only", "copy of the question", "very long", "markup injection"}  # fmt: skip
BOX = "<bbox>0.10, 0.10, 0.50, 0.50</bbox>"
WRONG_BOX = "<bbox>0.60, 0.60, 0.90, 0.90</bbox>"


@pytest.mark.parametrize("name", ANSWER_REWARDS)
def test_no_hack_class_is_paid_and_honest_answers_are(name):
    report = audit(rewards.resolve(name), name)
    assert report.kind == "answer" and not report.notes
    bad = [(r.task, r.cls, r.completion[:60], r.score, r.verdict) for r in report.rows if r.verdict not in ("ok",
                                                                                                            "baseline")]  # fmt: skip
    assert bad == []
    hacks = {r.cls for r in report.rows if not r.reference and r.verdict != "baseline"}
    assert COMMON <= hacks
    if name in ("accuracy", "count_accuracy", "math_accuracy"):
        assert {"range", "wrong language"} <= hacks
    assert sum(r.reference for r in report.rows) >= 8  # each class has an honest twin that was paid


def test_accuracy_battery_covers_every_task_and_class():
    report = audit(rewards.resolve("accuracy"), "accuracy")
    assert {r.task for r in report.rows} == {"count", "color", "ocr", "arith", "bbox", "choice"}
    assert {r.cls for r in report.rows if not r.reference} >= COMMON | {"range", "wrong language"}
    assert len(report.rows) > 200


@pytest.mark.parametrize("reward,completion,answer,task", [
    ("accuracy", "답: 6 또는 7", "답: 7", "arith"),                    # the issue's examples, paid 1.0 before
    ("math_accuracy", "답: 7 (아니면 3)", "3", None),
    ("count_accuracy", "정답은 3 또는 4 또는 5입니다", "3개", None),
    ("count_accuracy", "3개 4개 5개", "3개", None),
    ("accuracy", f"{WRONG_BOX} 또는 {BOX}", BOX, "bbox"),
    ("bbox_iou", f"{WRONG_BOX}{BOX}<bbox>0.60, 0.05, 0.95, 0.30</bbox>", BOX, None),
    ("count_accuracy", "두세 개", "3개", None), ("count_accuracy", "3~5개", "3개", None),
    ("count_accuracy", "3-5개", "3개", None), ("count_accuracy", "3개 이상", "3개", None),
    ("math_accuracy", "\\boxed{6} \\boxed{7}", "7", None), ("math_accuracy", "\\boxed{6, 7}", "7", None),
    ("math_accuracy", "\\boxed{7 \\pm 1}", "7", None), ("math_accuracy", "7 or 8", "7", None),
    ("choice_accuracy", "B 또는 C", "B", None), ("choice_accuracy", "A~C", "B", None),
    ("exact_match", "답: 파란색\n답: 빨간색", "빨간색", None), ("ocr_accuracy", "사과<bbox>바다</bbox>", "사과", None),
    ("ocr_accuracy", "사과 또는 사고", "사과", None),
])  # fmt: skip
def test_hedges_score_zero(reward, completion, answer, task):
    assert rewards.resolve(reward)(None, [completion], answer=[answer], task=[task]) == [0.0]


@pytest.mark.parametrize("reward,completion,answer,task,expected", [
    ("math_accuracy", "답: 7", "답: 7", None, 1.0), ("math_accuracy", "정답은 7개입니다", "7", None, 1.0),
    ("math_accuracy", "\\boxed{\\frac{1}{2}}", "0.5", None, 1.0), ("math_accuracy", "3 + 4 = 7\n답: 7", "7", None, 1.0),
    ("math_accuracy", "3개에 4개를 더하면 7개입니다.", "7", None, 1.0),
    ("math_accuracy", "사과 3개에 4개를 더 받았습니다. 모두 7개입니다.", "7", None, 1.0),
    ("math_accuracy", "민수는 3개, 영희는 4개이므로 모두 7개입니다", "7", None, 1.0),
    ("math_accuracy", "<think>6일까 7일까? 3+4=7</think>답: 7", "7", None, 1.0),
    ("math_accuracy", "\\boxed{7}\n답: 7", "7", None, 1.0), ("math_accuracy", "\\boxed{3+4}", "7", None, 1.0),
    ("math_accuracy", "\\boxed{3-5}", "-2", None, 1.0), ("math_accuracy", "답: 1,000", "1000", None, 1.0),
    ("math_accuracy", "답: 일곱", "7", None, 1.0), ("math_accuracy", "7<|im_end|>", "7", None, 1.0),
    ("count_accuracy", "세 개입니다", "3개", None, 1.0), ("count_accuracy", "네, 3개입니다", "3개", None, 1.0),
    ("count_accuracy", "이번에는 세 개예요", "3개", None, 1.0), ("count_accuracy", "한번 세어 보면 3개", "3개", None, 1.0),
    ("count_accuracy", "도형이 3개 있습니다.", "3개", None, 1.0), ("count_accuracy", "셋이요", "3개", None, 1.0),
    ("choice_accuracy", "정답은 B입니다", "B", None, 1.0), ("choice_accuracy", "나)", "B", None, 1.0),
    ("choice_accuracy", "The answer is (B).", "B", None, 1.0),
    ("exact_match", "빨간색입니다.", "빨간색", None, 1.0), ("exact_match", "\\boxed{빨간색}", "빨간색", None, 1.0),
    ("ocr_accuracy", "<char>사과</char><bbox>0.1, 0.2, 0.3, 0.4</bbox><char>나무</char><bbox>0.5, 0.2, 0.7, 0.4</bbox>",
     "사과 나무", None, 1.0),
    ("bbox_iou", f"<ref>도형</ref>{BOX}", BOX, None, 1.0),
    ("bbox_iou", f"<think>{WRONG_BOX}일까?</think>{BOX}", BOX, None, 1.0),
    ("bbox_iou", "<bbox>0.10, 0.10, 0.50, 0.30</bbox>", BOX, None, 0.5),  # partial IoU is unchanged
    ("accuracy", "정답은 3개입니다", "3개", "count", 1.0), ("accuracy", "답: 7", "답: 7", "arith", 1.0),
    ("accuracy", f"도형은 {BOX}에 있습니다.", BOX, "bbox", 1.0),
])  # fmt: skip
def test_natural_answers_still_score(reward, completion, answer, task, expected):
    assert rewards.resolve(reward)(None, [completion], answer=[answer], task=[task]) == [pytest.approx(expected)]


def test_final_answer_rule_and_hedge_detector():
    assert final("풀이: 3+4\n답: 7").text == "7" and final("\\boxed{1}\n\\boxed{2}").markers == ["1", "2"]
    assert final("생각 중 <think>답: 3").text == "생각 중"  # an unclosed think block is not an answer
    assert final("reasoning</think>답: 5").text == "5"  # templates that open <think> in the prompt
    assert hedge_reason("3개 또는 4개", "count") and hedge_reason("답: 3\n답: 4", "arith")
    assert hedge_reason("A or B", "choice") and hedge_reason(f"{BOX} {WRONG_BOX}", "bbox", BOX)
    assert hedge_reason("빨간색 혹은 파란색", "color", "빨간색")
    assert hedge_reason("빨간색 또는 파란색", "default", "빨간색 또는 파란색") is None  # the reference says it
    for ok in ("3개", "답: 7", "B", BOX, "빨간색입니다", "3 + 4 = 7이므로 7개"):
        assert hedge_reason(ok, None, {"답: 7": "답: 7", "B": "B", BOX: BOX}.get(ok, "3개")) is None, ok
    assert hedge_rate(["3개", "3개 또는 4개", "답: 7", "답: 6 또는 7"], ["count", "count", "arith", "arith"]) == 0.5


# ------------------------------------------------------------------------------------------------ code


def test_code_comparison_is_strict_and_type_aware():
    def score(body, test):
        return code_tests(None, [f"def f():\n    return {body}\n"], tests=[[test]])[0]

    assert score("True", "assert f() == True") == 1.0 and score("1", "assert f() == True") == 0.0
    assert score("True", "assert f() == 1") == 0.0 and score("2.0", "assert f() == 2") == 1.0
    assert score("[1, 2]", "assert f() == [1, 2]") == 1.0 and score("(1, 2)", "assert f() == [1, 2]") == 0.0
    assert score("{'a': (1, b'x')}", "assert f() == {'a': (1, b'x')}") == 1.0
    assert score("None", "assert f() is None") == 1.0 and score("0", "assert f() is None") == 0.0
    assert score("3", "assert f() in (1, 3)") == 1.0 and score("'x'", "assert not f()") == 0.0
    cheat = "type('A', (), {'__eq__': lambda s, o: True, '__hash__': object.__hash__})()"
    assert score(cheat, "assert f() == 5") == 0.0 and score(cheat, "assert f() != 5") == 0.0


def test_rewritten_candidate_program_holds_no_expected_value():
    plan = rewrite("REF = lambda n: n * 98765\nexpected = REF(3)\nxs = [3]\nassert f(xs[0]) == expected, 'msg 4242'")
    assert plan.hack_proof and "f(xs[0])" in plan.candidate_code
    for secret in ("98765", "expected", "4242", "REF"):
        assert secret not in plan.candidate_code and secret in plan.source
    he = rewrite("def check(candidate):\n    import math\n    assert abs(candidate(1.33) - 0.33) < 1e-6\n"
                 "    assert math.isclose(candidate(2.5), 0.5, rel_tol=1e-9)\n    for i in range(3):\n"
                 "        assert candidate(i + 0.5) == 0.5\n    assert not candidate(4.0)\n", "truncate")  # fmt: skip
    assert he.hack_proof and [s.template for s in he.sites.values()] == [
        "abs(__c0 - 0.33) < 1e-06", "math.isclose(__c0, 0.5, rel_tol=1e-09)", "__c0 == 0.5", "not __c0"]  # fmt: skip
    assert "0.33" not in he.candidate_code and "0.33" not in he.expected_code  # constants stay in the template
    assert (
        code_tests(None, ["def truncate(x):\n    return x % 1.0\n"], tests=[he.source], entry_point="truncate")[0]
        == 1.0
    )


def test_tests_that_cannot_be_rewritten_still_run_and_are_reported(capfd):
    tests = ["x = f(2)\nassert x == 3", "assert f(1) == 2"]
    report = hack_proof_report(tests)
    assert [r["hack_proof"] for r in report] == [False, True]
    assert "the solution is used outside an assert" in report[0]["reason"]
    right, wrong = "def f(x):\n    return x + 1\n", "def f(x):\n    return x\n"
    assert code_tests(None, [right, wrong], tests=[tests, tests]) == [1.0, 0.0]
    assert "not hack-proof" in capfd.readouterr().err
    assert hack_proof_report(["def check(candidate):\n    assert candidate(1) == 2\n"])[0]["reason"].startswith(
        "a check(candidate) test needs")  # fmt: skip
    # without its entry point a check() test cannot pass (before issue 16 it passed anything: check was never called)
    assert code_tests(None, [right], tests=["def check(candidate):\n    assert candidate(1) == 2\n"]) == [0.0]


def test_code_battery_pays_no_cheat():
    report = audit(rewards.resolve("code_tests"), "code_tests")
    assert report.kind == "code" and not report.notes
    bad = [(r.task, r.cls, r.score, r.verdict) for r in report.rows if r.verdict not in ("ok", "baseline")]
    assert bad == []
    assert {r.cls for r in report.rows} >= {"always-equal object", "patched builtins / __eq__", "frame introspection",
                                            "sys.exit / os._exit", "output forgery"}  # fmt: skip


def _humaneval():
    return [json.loads(line) for line in gzip.open(ASSETS / "human_eval" / "HumanEval.jsonl.gz", "rt")]


def test_humaneval_canonical_solutions_pass():
    """All 164 rewrite (161 hack-proof); a fixed sample of the canonical solutions (every 8th, and the 3 that run as
    written) pass and the same prompts with a wrong body fail. All 164: scripts/humaneval_canonical.py."""
    rows = _humaneval()
    plans = [rewrite(r["test"], r["entry_point"]) for r in rows]
    fallback = [r["task_id"] for r, p in zip(rows, plans) if not p.hack_proof]
    assert len(rows) == 164 and fallback == ["HumanEval/32", "HumanEval/38", "HumanEval/50"]
    sample = [r for i, r in enumerate(rows) if i % 8 == 0 or r["task_id"] in fallback]
    tests, entries = [r["test"] for r in sample], [r["entry_point"] for r in sample]
    right = code_tests(None, [r["prompt"] + r["canonical_solution"] for r in sample], tests=tests, entry_point=entries,
                       timeout=10)  # fmt: skip
    assert right == [1.0] * len(sample)
    wrong = code_tests(None, [r["prompt"] + "    return None\n" for r in sample], tests=tests, entry_point=entries,
                       timeout=10)  # fmt: skip
    assert wrong == [0.0] * len(sample)


# ------------------------------------------------------------------------------------------------ issue 26: free-form
# Every example of issue 26, through rewards.resolve (the way TRL calls them). Answers real chat models write.

ISSUE_PAID = [
    ("exact_match", "도형은 빨간색입니다.", "빨간색"), ("exact_match", "빨강", "빨간색"),
    ("exact_match", "**빨간색**", "빨간색"), ("exact_match", "색깔: 빨간색", "빨간색"),
    ("exact_match", "“빨간색”입니다.", "빨간색"),
    ("math_accuracy", "정답은 7입니다.\n도움이 되었길 바랍니다.", "7"),
    ("math_accuracy", "…7개입니다. 더 궁금한 점이 있으면 물어보세요!", "7"),
    ("count_accuracy", "3개요. 모두 원이에요.", "3개"),
    ("ocr_accuracy", "사과.", "사과"), ("ocr_accuracy", "'사과'", "사과"), ("ocr_accuracy", "**사과**", "사과"),
    ("choice_accuracy", "답: B. A는 원이므로 오답입니다.", "B"),
    ("math_accuracy", "\\boxed{\\sqrt{49}}", "7"), ("math_accuracy", "\\boxed{2^{10}}", "1024"),
    ("math_accuracy", "\\boxed{\\dfrac{1}{2}}", "0.5"), ("math_accuracy", "답: −3", "-3"),
    ("math_accuracy", "24cm²입니다", "24"),
]  # fmt: skip
ISSUE_HEDGES = [
    "답: 7\n아니면 8일 수도 있어요.", "\\boxed{7} 또는 8", "<answer>7</answer> 혹은 8", "7개가 넘습니다", "최소한 7개",
    "답: 7+", "답: 7 또는 여덟", "**답**: 8\n답: 7", "\\boxed{7^{2}}",
]  # fmt: skip


@pytest.mark.parametrize("reward,completion,answer", ISSUE_PAID)
def test_issue_correct_free_form_answers_are_paid(reward, completion, answer):
    assert rewards.resolve(reward)(None, [completion], answer=[answer]) == [1.0]
    task = {"exact_match": "color", "ocr_accuracy": "ocr", "choice_accuracy": "choice", "count_accuracy": "count"}
    assert rewards.resolve("accuracy")(None, [completion], answer=[answer], task=[task.get(reward, "math")]) == [1.0]


@pytest.mark.parametrize("completion", ISSUE_HEDGES)
def test_issue_hedges_are_not_paid(completion):
    for name in ("math_accuracy", "count_accuracy", "accuracy"):
        assert rewards.resolve(name)(None, [completion], answer=["7"], task=["arith"]) == [0.0], name


def test_math_accuracy_compares_the_whole_expression():
    pairs = [("\\boxed{7^{2}}", "7", 0.0), ("\\boxed{7^{2}}", "49", 1.0), ("\\boxed{\\sqrt{49}}", "7", 1.0),
             ("\\boxed{2^{10}}", "1024", 1.0), ("\\boxed{\\dfrac{1}{2}}", "0.5", 1.0), ("\\boxed{2^{9}}", "1024", 0.0),
             ("최종 답: 0.5", "\\frac{1}{2}", 1.0), ("정답은 $\\sqrt{49} = 7$입니다.", "7", 1.0),
             ("\\boxed{\\approx 7}", "7", 0.0), ("넓이는 $6 \\times 4 = 24\\,\\text{cm}^2$입니다.", "24", 1.0)]  # fmt: skip
    fn = rewards.resolve("math_accuracy")
    assert fn(None, [c for c, _, _ in pairs], answer=[a for _, a, _ in pairs]) == [e for _, _, e in pairs]


def test_terse_quickstart_answers_score_as_before():
    """The embedded tasks' own answer forms (align/data/synthetic.py) keep their scores."""
    rows = [("빨간색", "빨간색", "color"), ("3개", "3개", "count"), ("답: 7", "답: 7", "arith"), ("사과", "사과", "ocr"),
            (BOX, BOX, "bbox"), ("파란색", "빨간색", "color"), ("4개", "3개", "count"), ("답: 8", "답: 7", "arith"),
            ("바다", "사과", "ocr"), (WRONG_BOX, BOX, "bbox"), ("빨간색 원 3개", "빨간색 원 3개", "caption")]  # fmt: skip
    got = rewards.resolve("accuracy")(None, [c for c, _, _ in rows], answer=[a for _, a, _ in rows],
                                      task=[t for _, _, t in rows])  # fmt: skip
    assert got == [1.0] * 5 + [0.0] * 5 + [1.0]


def test_bad_input_scores_zero_or_none_and_long_answers_keep_their_end():
    junk = ["", "\x00\x01\x02\xff" * 50, "The answer is seven.", "答案是七。", "가" * 1_000_000]
    for name in ANSWER_REWARDS + ["korean_consistency", "reasoning_format", "length_band"]:
        fn = rewards.resolve(name)
        out = fn(None, junk, answer=["7"] * len(junk), task=["arith"] * len(junk))
        assert all(v is None or v <= 0.0 or name == "korean_consistency" for v in out) and fn.errors == 0, name
    long = "풀이를 길게 씁니다. " * 5_000 + "\n답: 7"  # 60,000 characters: the final answer is at the end
    assert rewards.resolve("math_accuracy")(None, [long], answer=["7"]) == [1.0]


def test_reasoning_counted_wherever_it_stands():
    from rewards.reasoning import length_band, reasoning_format

    hidden = ["<think>3 + 4 = 7</think><think>다시 확인하면 7</think>답: 7", "<think>짧게</think>답: 7</think>사실",
              "<think>3 + 4 = 7</think>\u200b", "<think>3 + 4 = 7</think>\u3164", "<think>\u200b</think>답: 7"]  # fmt: skip
    assert reasoning_format(None, hidden + ["<think>3 + 4 = 7</think>\n정답은 7입니다."]) == [0.0] * 5 + [1.0]
    texts = ["<think>" + "가" * 30 + "</think><think>" + "나" * 200 + "</think>답: 7",  # a second block
             "<think>" + "가" * 30 + "</think>" + "생각해 보면 " * 20 + "\n답: 7",  # reasoning after the closing tag
             "<think>" + "가" * 30 + "</think>" + "\u200b" * 300 + "답: 7",  # invisible padding
             "<think>" + "가" * 30 + "</think>\u200b",  # invisible characters for an answer: never answered
             "<think>" + "가" * 30 + "</think>\n정답은 7입니다.\n도움이 되었길 바랍니다."]  # fmt: skip
    got = length_band(None, texts, max_tokens=40, ramp=300)
    assert got == [
        pytest.approx(-190 / 300),
        pytest.approx(-(30 + 139 - 40) / 300),
        pytest.approx(-(30 + 300 - 40) / 300),
        -1.0,
        0.0,
    ]
