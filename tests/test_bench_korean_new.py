"""Issue 32: KOFFVQA, KoNET, K-Viscuit, KRETA, KMMLU-Redux, KMMLU-Pro, KoBALT-700 — readers of judge replies and
answers in the forms real models write, each benchmark's scoring rule against hand-worked scores on its published
layout (scripted answers and judge), and all seven through ``align eval --bench`` and a recipe's eval hook on the
tiny model, then ``align compare`` and the HTML report."""

from __future__ import annotations

import json

import pytest

from align.benchmarks import koffvqa
from align.benchmarks.koffvqa import is_korean, parse_score
from align.benchmarks.konet import answer_for, parse_verdict, read_answer
from align.benchmarks.korean_mc import read_strict, split_embedded
from align.benchmarks.run import run_benchmarks
from align.errors import UserError
from align.io import read_jsonl
from align.recipe import validate
from rollouts.base import Completion, Engine
from tests import bench_fixtures_korean as kfx
from tests.bench_fixtures import COLORS

NAMES = ("koffvqa", "konet", "k-viscuit", "kreta", "kmmlu-redux", "kmmlu-pro", "kobalt")


@pytest.mark.parametrize(
    ("review", "score"),
    [
        ("1. 색을 빨간색이라고 답함: 충족 (10점)\n\n최종 점수: 10점 만점에 10점", 10.0),
        ("- 원이라고 답함: 충족 (6점)\n- 색: 충족하지 않음 (0점)\n\n**최종 점수: 10점 만점에 6점**", 6.0),
        ("각 기준을 종합하면 최종 점수는 10점 만점에 7점입니다.", 7.0),
        ("채점 결과\n최종 점수: 8/10", 8.0),
        ("최종 점수: 0점", 0.0),
        ("Final score: 5 out of 10", 5.0),
        ("기준 1 충족(4점), 기준 2 미충족. 합계 4", 4.0),  # no final line: the last number, as the official reader
        ("이 답변은 채점 기준에 비추어 판단하기 어렵습니다.", None),
        ("최종 점수: 10점 만점에 12점", None),
        ("", None),
    ],
)
def test_koffvqa_judge_score_reader(review, score):
    assert parse_score(review) == score


@pytest.mark.parametrize(
    ("answer", "korean"),
    [
        ("도형은 빨간색입니다.", True),
        ("간판에는 'OPEN'이라고 적혀 있어요.", True),
        ("3,000", True),  # only digits and punctuation count, as published
        ("The sign says OPEN.", False),
        ("The answer is 사과.", False),
        ("", True),
    ],
)
def test_koffvqa_korean_answer_check(answer, korean):
    assert is_korean(answer)[0] is korean


@pytest.mark.parametrize(
    ("review", "verdict"),
    [
        ("Correct.", True),
        ("**Correct.**", True),
        ("Incorrect.", False),
        ("Incorrect. The correct answer is 3, but the student answered 5.", False),
        ("The student's solution is not correct.", False),
        ("Correct. The student chose ②, which matches the answer 2.", True),
        ("답을 판단할 수 없습니다.", None),
    ],
)
def test_konet_verdict_reader(review, verdict):
    assert parse_verdict(review) is verdict


@pytest.mark.parametrize(
    ("text", "rule", "letter"),
    [
        ("B", "bare", "B"),
        ("(C).", "bare", "C"),
        ("정답은 C입니다", "bare", None),  # K-Viscuit's rule: the bare letter only
        ("영업 시작은 10시입니다.\nAnswer: B", "answer_line", "B"),
        ("Answer: A\n다시 보니 합계는 3,000원입니다.\nAnswer: C", "answer_line", "C"),
        ("정답은 (D)입니다.", "answer_line", "D"),
        ("풀이 …\n\n정답: J", "answer_ko", "J"),
        ("**정답: (A)**", "answer_ko", "A"),
        ("정답은 B입니다.", "answer_ko", "B"),
        ("답은 3번 선택지인 C입니다", "answer_ko", "C"),
        ("잘 모르겠습니다.", "answer_ko", None),
    ],
)
def test_multiple_choice_rules(text, rule, letter):
    options = {k: f"선택지 {k}" for k in "ABCDEFGHIJ"}
    assert read_strict(text, options, rule) == letter


def test_kmmlu_pro_licence_pass_rule():
    """A: subjects 2/4 and 3/4 → both ≥ 40 % but mean 62.5 % ≥ 60 % → pass. B: 2/4 and 2/4 → mean 50 % → fail.
    C: 4/4 and 1/4 → mean 62.5 % but one subject at 25 % < 40 % → fail."""
    from align.benchmarks.korean_mc import Item, licence_passes

    plan = {("A", "s1"): [1, 1, 0, 0], ("A", "s2"): [1, 1, 1, 0], ("B", "s1"): [1, 1, 0, 0], ("B", "s2"): [0, 1, 0, 1],
            ("C", "s1"): [1, 1, 1, 1], ("C", "s2"): [0, 0, 1, 0]}  # fmt: skip
    items, hits = [], []
    for (licence, subject), marks in plan.items():
        for mark in marks:
            items.append(Item("x", "q", {"A": "a", "B": "b"}, "A", None, {"license_name": licence, "subject": subject}))
            hits.append(bool(mark))
    assert licence_passes(items, hits) == {"A": True, "B": False, "C": False}


def test_kobalt_options_inside_the_question():
    stem, options = split_embedded("다음 중 옳은 것은?\n<보기>\n가. 예\nA: 첫째\nB: 둘째가\n길다\nJ: 열째")
    assert stem == "다음 중 옳은 것은?\n<보기>\n가. 예" and options == {"A": "첫째", "B": "둘째가 길다", "J": "열째"}


@pytest.mark.parametrize(
    ("reply", "answer"),
    [  # the first five are gpt-4o-mini replies shipped in KoNET's src/utils/submission_test.json (excerpts)
        (
            "Adding these up …\n\nThe value that goes in the blank … is \\(20000\\).\n\nSo, the answer is:\n\n**② 20000**",
            "2",
        ),
        ("So, the value in the blank should be \\( 7000 \\).\n\nThe correct answer is:\n④ 7000.", "4"),
        (
            (
                "4. **Option 4**: This angle seems to be obtuse.\n\nBased on this analysis, **Option 3** is the one "
                "that represents an acute angle."
            ),
            "3",
        ),
        (
            (
                "Since 연수 weighs 42 kg, he falls into the **설악급** category (40 초과 45 이하).\n\nThus, the answer "
                "is: **② 설악급**."
            ),
            "2",
        ),
        ("Therefore, the answer is \\( 22 \\), corresponding to option ②.", "2"),
        ("미분하면 5가 나온다.\n정답: 5", "5"),
        ("정답은 3번입니다.", "3"),
        ("보기 ① 1 ② 2 ③ 3 중에서 ③이 맞습니다.", "3"),
        ("따라서 정답은 3/4이다.", "3/4"),
        ("잘 모르겠습니다.", None),
    ],
)
def test_konet_final_answer_reader(reply, answer):
    assert read_answer(reply) == answer


def test_konet_answers_with_the_published_offsets():
    answers = {"kocsat_1st_MathematicsCalculus": [3, 15], "koeged_1st_Korean": [1, 2, 4]}
    assert answer_for("kocsat_1st_MathematicsCalculus_24", answers) == "15"  # 24 - 22 - 1 = index 1
    assert answer_for("koeged_1st_Korean_03", answers) == "4"
    assert answer_for("koeged_1st_Korean_04", answers) is None and answer_for("komged_1st_Art_01", answers) is None


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return kfx.build_all(tmp_path_factory.mktemp("korean-bench"))


def _recipe(benchmarks: list[dict]):
    return validate({"name": "bench-ko", "rollout": {"engine": "hf"},
                     "eval": {"max_new_tokens": 8, "batch_size": 16, "benchmarks": benchmarks}})  # fmt: skip


# Scripted answers in the styles real Korean chat VLMs write, keyed by question (KoNET: by the problem image's colour)
ANSWERS = {
    "사진 속 도형은 무슨 색인가요?": "도형은 빨간색입니다.",
    "도형의 모양을 설명해 주세요.": "파란색 원이에요.",
    "간판에 적힌 글자를 읽어 주세요.": "The sign says OPEN.",
    "표지판의 문구는 무엇인가요?": "표지판에는 '출입금지'라고 쓰여 있습니다.",
    "What is the name of this food?": "A",
    "What is this dish usually served with?": "B.",
    "What does the red colour mainly come from?": "정답은 C입니다",
    "What is the name of this garment?": "D",
    "On which holiday is this worn most?": "(B) Seollal",
    "안내문에 적힌 영업 시작 시각은?": "안내문 상단에 '10시 오픈'이라고 적혀 있습니다.\nAnswer: B",
    "영수증의 합계 금액은?": "Answer: A\n다시 계산하면 합계는 3,000원입니다.\nAnswer: C",
    "표에서 가장 많이 팔린": "정답은 (D)입니다.",
    "공문에 따르면": "잘 모르겠습니다.",
    "바로크식 정원": "격자울타리는 바로크 정원과 거리가 멉니다.\n\n정답: C",
    "콘크리트의 압축강도": "**정답: (A)**",
    "저항의 단위는?": "답은 3번 선택지인 C입니다",
    "미성년자의 법률행위": "정답: C",
    "정당방위의 요건": "C",
    "부가가치세": "정답은 A입니다.",
    "문법적으로 가장 자연스러운": "분석 결과 J가 가장 자연스럽습니다.\n정답: J",
    "피동 표현이": "정답은 B입니다.",
    "비유적으로 쓰인": "A: 문장이 자연스럽다",
}
KONET_ANSWERS = ["20000이므로 정답: ②", "", "미분하면 5가 나온다.\n정답: 5", None, "정답: ①"]  # by image colour
JUDGE = {  # judge replies keyed by the answer they grade
    "빨간색입니다": "1. 색을 빨간색이라고 답함: 충족 (10점)\n\n최종 점수: 10점 만점에 10점",
    "파란색 원이에요": "- 원이라고 답함: 충족 (6점)\n- 색: 기준과 다름 (0점)\n\n**최종 점수: 10점 만점에 6점**",
    "OPEN": "글자를 정확히 읽었습니다.\n최종 점수: 10점 만점에 8점",
    "'출입금지'라고": "이 답변은 채점 기준에 비추어 판단하기 어렵습니다.",
    "정답: ②": "Correct.",
    "정답: 5": "Incorrect. The correct answer is 3, but the student answered 5.",
    "정답: ①": "답을 판단할 수 없습니다.",
}


class Scripted(Engine):
    name = "scripted"

    def __init__(self):
        self.seen = []  # every conversation it was asked

    def generate(self, prompts, images, sampling):
        out = []
        self.seen += prompts
        for prompt, imgs in zip(prompts, images or [None] * len(prompts)):
            text = prompt[-1]["content"]
            reply = next((a for q, a in ANSWERS.items() if q in text), None)
            if reply is None:  # KoNET: the same instruction for every problem; the image tells them apart
                rgb = imgs[0].getpixel((imgs[0].width // 2, imgs[0].height // 2))
                reply = KONET_ANSWERS[[tuple(c) for c in COLORS.values()].index(rgb)]
            out.append([Completion(reply, [1], [0.0], "stop")])
        return out


class ScriptedJudge:
    name = "scripted-judge"

    def __call__(self, conversations):
        return [next((r for k, r in JUDGE.items() if k in c[-1]["content"]), "Incorrect.") for c in conversations]

    def close(self):
        pass


def test_scores_follow_the_published_rules(sources, tmp_path, monkeypatch):
    """Hand-worked from the scripted answers above:

    KOFFVQA: judge scores 10, 6, 8, none; the third answer is English (language filter: 0) and the fourth reply has no
    score (0, as published) → finals 10, 6, 0, 0 → score = 16 / 4 × 10 = 40; 객체 속성 (10 + 6) / 2 × 10 = 80;
    텍스트 읽기 0; score_parsed = (10 + 6 + 0) / 3 × 10 = 53.33; stderr = sd(10, 6, 0, 0) / √4 × 10 = √24 / 2 × 10.
    KoNET: Mathematics_01 correct; Mathematics_02 empty (not counted); Calculus_23 incorrect; English_01 listening
    (correct unasked); Science_01 reply unreadable (wrong) → 2 / 4 = 0.5; accuracy_all 2 / 5; KoEGED 1/1, KoCSAT 1/2,
    KoMGED 0/1. Judge-free (ours): ② = 2 ✓, 5 ≠ 3 ✗, listening ✓, ① = 1 ✓ → accuracy_rule 3 / 4.
    K-Viscuit: "A" ✓, "B." ✓, "정답은 C입니다" (not a bare letter), "D" (answer A), "(B) Seollal" (not bare) → 2 / 5;
    read leniently 4 / 5; Food 2/3, Clothes 0/2.
    KRETA: Answer: B ✓, last Answer: C ✓, "정답은 (D)" ✓, no answer ✗ → 3 / 4; System1 2/2, System2 1/2.
    KMMLU-Redux: 정답: C ✓, 정답: (A) for D ✗, "3번 선택지인 C" ✓ → 2 / 3. KMMLU-Pro: C ✓, bare C for D ✗, A ✓ → 2 / 3;
    변호사 1/2, 세무사 1/1; licences (every subject ≥ 40 %, subjects' mean ≥ 60 %): 변호사 has 형법 at 0 % → fails,
    세무사 (세법학 100 %) passes → 1 passed, pass rate 1/2. KoBALT: 정답: J ✓, 정답은 B ✓, "A: …" for C ✗ → 2 / 3; Syntax 2/2, Semantics 0/1."""
    monkeypatch.setattr(koffvqa, "make_judge", lambda spec, rollout, seed=0: ScriptedJudge())
    judge = {"model": "scripted"}
    specs = [{"name": n, "source": str(sources[n]), **({"judge": judge} if n in ("koffvqa", "konet") else {})}
             for n in NAMES]  # fmt: skip
    engine = Scripted()
    m = run_benchmarks("unused", _recipe(specs), tmp_path, engine=engine)
    b = {k[len("bench/") :]: v for k, v in m.items()}
    assert b["koffvqa/score"] == pytest.approx(40.0) and b["koffvqa/score_parsed"] == pytest.approx(160 / 3)
    assert b["koffvqa/category/객체 속성"] == pytest.approx(80.0) and b["koffvqa/category/텍스트 읽기"] == 0.0
    assert b["koffvqa/score_stderr"] == pytest.approx(24**0.5 / 2 * 10)
    assert (b["koffvqa/n"], b["koffvqa/unparsed_judge"], b["koffvqa/non_korean"]) == (4, 1, 1)
    assert b["konet/accuracy"] == 0.5 and b["konet/accuracy_all"] == pytest.approx(0.4)
    assert b["konet/accuracy_rule"] == 0.75
    assert (b["konet/n"], b["konet/empty_answers"], b["konet/unparsed_judge"]) == (4, 1, 1)
    assert (b["konet/category/KoEGED"], b["konet/category/KoCSAT"], b["konet/category/KoMGED"]) == (1.0, 0.5, 0.0)
    assert b["k-viscuit/accuracy"] == pytest.approx(0.4) and b["k-viscuit/accuracy_lenient"] == pytest.approx(0.8)
    assert b["k-viscuit/category/category/Food"] == pytest.approx(2 / 3)
    assert b["k-viscuit/category/category/Clothes"] == 0.0
    assert b["kreta/accuracy"] == 0.75 and b["kreta/category/topic_difficulty/System2"] == 0.5
    assert b["kreta/category/topic_difficulty/System1"] == 1.0 and b["kreta/unparsed"] == 1
    for name in ("kmmlu-redux", "kmmlu-pro", "kobalt"):
        assert b[f"{name}/accuracy"] == pytest.approx(2 / 3) and b[f"{name}/n"] == 3, name
    assert (b["kmmlu-pro/category/license_name/변호사"], b["kmmlu-pro/category/license_name/세무사"]) == (0.5, 1.0)
    assert (b["kmmlu-pro/licences_passed"], b["kmmlu-pro/licence_pass_rate"]) == (1.0, 0.5)
    assert "kmmlu-redux/licences_passed" not in b
    assert (b["kobalt/category/Class/Syntax"], b["kobalt/category/Class/Semantics"]) == (1.0, 0.0)
    rows = read_jsonl(tmp_path / "bench" / "koffvqa.jsonl")
    assert [r["score"] for r in rows] == [10.0, 6.0, 0.0, 0.0] and rows[2]["korean"] is False
    assert "- 원이라고 답하면 6점\n- 색(파란색)까지 말하면 4점" == rows[1]["criteria"]  # multi-line TSV cell
    # the published prompts: K-Viscuit's run_vqa.py layout; KoBALT's protocol (system + user around the question)
    assert read_jsonl(tmp_path / "bench" / "k-viscuit.jsonl")[0]["prompt"] == (
        "What is the name of this food?\nA. Kimchi\nB. Salsa\nC. Pickled radish\nD. Tofu\n"
        "Answer with the option's letter from the given choices directly.")  # fmt: skip
    kobalt = next(c for c in engine.seen if "비유적으로 쓰인" in c[-1]["content"])
    assert kobalt[0] == {"role": "system", "content": "당신은 문제를 해결하는 전문가입니다."}
    assert kobalt[-1]["content"].startswith("다음 문제에 대해서 충분히 생각하고 추론하여, 10개의 보기(A, B, C, D, E,")
    assert "\nJ: 용례 9\n\n답변은 반드시" in kobalt[-1]["content"]
    assert kobalt[-1]["content"].endswith("정답: 문제를 풀기 위해, 한 번 천천히 생각해봅시다.")
    konet_rows = {r["id"]: r for r in read_jsonl(tmp_path / "bench" / "konet.jsonl")}
    assert konet_rows["kocsat_1st_MathematicsCalculus_23"]["answer"] == "3"
    assert konet_rows["kocsat_1st_English_01"]["prediction"] is None  # listening: never asked


def test_konet_without_a_source_says_how_to_build_it(tmp_path):
    spec = {"name": "konet", "judge": {"model": "tiny-korean-lm"}}
    with pytest.raises(UserError, match="not on the hub") as err:
        run_benchmarks("unused", _recipe([spec]), tmp_path, engine=Scripted())  # fails before any answer
    assert "generate_KoNET" in err.value.hint


def test_all_seven_through_align_eval_and_the_eval_hook_then_compare_and_report(sources, tmp_path, capsys):
    """The tiny VLM answers and the untrained tiny LM judges: the numbers are whatever they are, but each is the
    published aggregate of the per-row results written beside it."""
    from align.cli import main
    from align.pipeline import run_pipeline
    from align.recipe import load_recipe
    from align.report import write_report

    lines = []
    for name in NAMES:
        judge = ", judge: {model: tiny-korean-lm, max_new_tokens: 8}" if name in ("koffvqa", "konet") else ""
        lines.append(f"    - {{name: {name}, source: '{sources[name]}', limit: 2{judge}}}")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""name: bench-ko-small
output_dir: {tmp_path / "runs"}
rollout: {{engine: hf}}
data: {{train_size: 8, eval_size: 2, seed: 3}}
eval:
  max_new_tokens: 8
  samples: 1
  benchmarks:
{chr(10).join(lines)}
stages: []
""")
    run = run_pipeline(load_recipe(recipe))  # the eval hook on the base model
    out = tmp_path / "cli"
    assert main(["eval", "tiny-korean-vlm", "--recipe", str(recipe), "--bench", "all", "--out", str(out)]) == 0
    for ev_dir in (run.path / "base", out):
        ev = json.loads((ev_dir / "eval.json").read_text())
        for name in NAMES:
            rows = read_jsonl(ev_dir / "bench" / f"{name}.jsonl")
            assert ev[f"bench/{name}/{'rows' if name == 'konet' else 'n'}"] == 2 == len(rows), name
            if name == "koffvqa":
                assert ev["bench/koffvqa/score"] == pytest.approx(sum(r["score"] for r in rows) / 2 * 10)
                assert all(r["judge_score"] == parse_score(r["review"]) for r in rows)
            elif name == "konet":  # the first two problems by name: the listening one and Calculus_23
                assert rows[0]["how"].startswith("listening") and rows[1]["answer"] == "3"
                counted = [r for r in rows if not r["how"].startswith("empty")]  # empty replies: not counted
                assert ev["bench/konet/n"] == len(counted) and ev["bench/konet/empty_answers"] == 2 - len(counted)
                assert ev["bench/konet/accuracy"] == pytest.approx(sum(r["correct"] for r in counted) / len(counted))
            else:
                assert ev[f"bench/{name}/accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / 2), name
    capsys.readouterr()
    assert main(["compare", str(run.path / "base"), str(out), "--out", str(tmp_path / "cmp")]) == 0
    md = (tmp_path / "cmp" / "compare.md").read_text()
    for name in NAMES:
        main_metric = "score" if name == "koffvqa" else "accuracy"
        assert f"| {name} | {main_metric} |" in md, name
    for family in ("judged", "mcq", "text-gen"):
        assert (tmp_path / "cmp" / f"compare_bench_{family}.png").exists()
    page, _ = write_report([run.path / "base", out], tmp_path / "report.html")
    html = page.read_text()
    assert all(f"bench/{name}/" in html for name in NAMES)
