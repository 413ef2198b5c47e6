"""Conformance of the multiple-choice sets: a fixture in each set's published columns, scripted model answers in
the styles chat VLMs write, and the expected score worked out by hand from the published rule (in each docstring).
(K-LLaVA-W: tests/test_bench_judge.py; KMMLU and the other text sets: tests/test_bench_text.py.)"""

from __future__ import annotations

import re

import pytest

from align.benchmarks.run import run_benchmarks
from align.io import read_jsonl
from align.recipe import validate
from rollouts.base import Completion, Engine
from tests import bench_fixtures as fx


class Scripted(Engine):
    """Replies by question: a fixed string, or a function of the prompt (the options it shows)."""

    name = "scripted"

    def __init__(self, script: dict):
        self.script = script

    def generate(self, prompts, images, sampling):
        out = []
        for prompt, imgs in zip(prompts, images):
            assert imgs[0].size == (64, 64)  # the row's own image, decoded for its batch
            text = prompt[-1]["content"]
            reply = next(v for q, v in self.script.items() if text.startswith(q) or f" {q}" in text.split("\n")[0])
            out.append([Completion(reply(text) if callable(reply) else reply, [1], [0.0], "stop")])
        return out


def _run(name: str, source, tmp_path, script: dict, **extra) -> tuple[dict, list[dict]]:
    spec = {"name": name, "source": str(source), **extra}
    recipe = validate({"name": "c", "rollout": {"engine": "hf"}, "eval": {"benchmarks": [spec]}})
    m = run_benchmarks("unused", recipe, tmp_path / name, engine=Scripted(script))
    return {k.split("/", 2)[2]: v for k, v in m.items()}, read_jsonl(tmp_path / name / "bench" / f"{name}.jsonl")


def _image():
    return fx.shape_image("빨간색")


def test_k_seed(tmp_path):
    """Five questions (hub columns). Replies and the published reading:
    1. "정답은 B입니다." → B, answer B: right.
    2. options 10/20/30/40, "총 120개입니다" → no option (20 is not read inside 120), answer B: wrong, unparsed.
    3. "B형 간염 바이러스입니다" → option C's text (not the letter B glued to 형), answer C: right.
    4. options dog/cat/bird/fish, "The answer is a dog." → option A's text (the article is no letter), answer B: wrong.
    5. "<think>정답은 A …" never closed → no answer, answer A: wrong, unparsed (unclosed reasoning).
    accuracy = 2/5 = 0.4; unparsed = 2; unclosed_reasoning = 1; stderr = √(0.4·0.6/5).
    lmms-eval's own scorer (first character of the reply): 정, 총, B (answer C), T, < → 0/5 = accuracy_lmms_eval."""
    qs = [("사진 속 과일은 무엇인가요?", ["사과", "바나나", "포도", "귤"], "B", "정답은 B입니다."),
          ("사과는 모두 몇 개인가요?", ["10", "20", "30", "40"], "B", "총 120개입니다"),
          ("어떤 질병의 원인인가요?", ["인플루엔자", "홍역", "B형 간염 바이러스", "결핵"], "C", "B형 간염 바이러스입니다"),
          ("Which animal is shown?", ["dog", "cat", "bird", "fish"], "B", "The answer is a dog."),
          ("무슨 색인가요?", ["빨간색", "파란색", "초록색", "노란색"], "A", "<think>정답은 A일 것 같지만 다시 보면")]  # fmt: skip
    rows = [{"answer": a, "choice_a": o[0], "choice_b": o[1], "choice_c": o[2], "choice_d": o[3], "data_type": "image",
             "question": q, "question_id": str(i), "image": _image()} for i, (q, o, a, _) in enumerate(qs)]  # fmt: skip
    source = fx._write_parquet(rows, tmp_path / "K-SEED" / "data" / "test-00000-of-00001.parquet").parent.parent
    m, out = _run("k-seed", source, tmp_path, {q: r for q, _, _, r in qs})
    assert m["accuracy"] == pytest.approx(0.4) and m["n"] == 5
    assert m["unparsed"] == 2 and m["unclosed_reasoning"] == 1 and m["accuracy_lmms_eval"] == 0.0
    assert m["accuracy_stderr"] == pytest.approx((0.4 * 0.6 / 5) ** 0.5)
    assert [r["extracted"] for r in out] == ["B", None, "C", "A", None]
    assert out[0]["prompt"].endswith("\nD. 귤\n주어진 선택지 중 해당 옵션의 문자로 바로 답하세요.")


def test_k_dtcbench(tmp_path):
    """Three questions (document, table, chart). "A. 계약서" → A (answer A) right; "D번입니다." → D (answer D)
    right; "가장 높은 값은 2023년입니다" → option D's text, answer C: wrong.
    accuracy 2/3; category/document 1, category/table 1, category/chart 0. lmms-eval's first-character scorer
    agrees here: A, D, 가 → 2/3."""
    qs = [("문서의 종류는?", ["계약서", "영수증", "편지", "신문"], "A", "A. 계약서", "document"),
          ("표에서 가장 큰 값의 행은?", ["1행", "2행", "3행", "4행"], "D", "D번입니다.", "table"),
          ("막대가 가장 높은 해는?", ["2020년", "2021년", "2022년", "2023년"], "C", "가장 높은 값은 2023년입니다", "chart")]  # fmt: skip
    rows = [{"index": i, "question": q, "choice_a": o[0], "choice_b": o[1], "choice_c": o[2], "choice_d": o[3],
             "answer": a, "category": c, "image": _image()} for i, (q, o, a, _, c) in enumerate(qs)]  # fmt: skip
    source = fx._write_parquet(rows, tmp_path / "K-DTCBench" / "data" / "test-00000-of-00001.parquet").parent.parent
    m, out = _run("k-dtcbench", source, tmp_path, {q: r for q, _, _, r, _ in qs})
    assert m["accuracy"] == pytest.approx(2 / 3) and m["accuracy_lmms_eval"] == pytest.approx(2 / 3)
    assert (m["category/document"], m["category/table"], m["category/chart"]) == (1.0, 1.0, 0.0)
    assert "\nOptions: A: 계약서, B: 영수증, C: 편지, D: 신문\n" in out[0]["prompt"]


def test_k_mmstar(tmp_path):
    """Three questions with their options inside the question text (hub layout). "(A) 고양이" → A, answer A: right;
    "I think it's C because the sky is dark." → C, answer C: right; "Answer: B" → B, answer D: wrong.
    accuracy 2/3; the one category "coarse perception" 2/3. lmms-eval's ranked extractor reads A ("(A)" and "A)"),
    C (the only capital A–D, "C " form) and B (the reply ends with it) → 2/3 too."""
    qs = [("동물은?", "A", "(A) 고양이"), ("시간대는?", "C", "I think it's C because the sky is dark."),
          ("장소는?", "D", "Answer: B")]  # fmt: skip
    rows = [{"index": i, "question": f"{q}\nOptions: A: 고양이, B: 개, C: 밤, D: 숲", "image": _image(), "answer": a,
             "category": "coarse perception", "l2_category": "image scene and topic", "meta_info": None}
            for i, (q, a, _) in enumerate(qs)]  # fmt: skip
    source = fx._write_parquet(rows, tmp_path / "K-MMStar" / "data" / "val-00000-of-00001.parquet").parent.parent
    m, out = _run("k-mmstar", source, tmp_path, {q: r for q, _, r in qs})
    assert m["accuracy"] == pytest.approx(2 / 3) and m["category/coarse perception"] == pytest.approx(2 / 3)
    assert m["accuracy_lmms_eval"] == pytest.approx(2 / 3)
    assert out[0]["prompt"].endswith(
        "Options: A: 고양이, B: 개, C: 밤, D: 숲\nAnswer with the option's letter from the given choices directly"
    )


def test_k_mmbench_circular(tmp_path):
    """Two questions (hub columns), each asked in its 4 rotations. Question 1: the model names the right option's
    letter in every rotation ("정답은 X입니다") → all 4 right → counts. Question 2 (answer A in the original order):
    the model always says "A" → right only in rotation 0 → does not count.
    Circular accuracy 1/2 = 0.5; plain accuracy of the first rotations 2/2 = 1.0; 8 prompts.
    VLMEvalKit's rule without its GPT fallback: "정답은 X입니다." splits into the tokens 정답은 / X입니다 — no lone letter,
    no "answer is", no option text — so question 1 is unmatched in every rotation (VLMEvalKit would ask GPT); "A" is
    read in every rotation → right only in rotation 0. accuracy_vlmevalkit = 0/2."""

    def knows(text: str) -> str:
        letter = re.search(r"^([A-D])\. 바나나$", text, re.MULTILINE).group(1)
        return f"정답은 {letter}입니다."

    rows = [{"index": i, "question": q, "hint": None, "A": a, "B": b, "C": c, "D": d, "answer": ans,
             "category": "attribute_recognition", "image": _image(), "source": "fixture",
             "l2-category": "fine-grained perception", "comment": None, "split": "dev"}
            for i, (q, a, b, c, d, ans) in enumerate([("과일은?", "사과", "바나나", "포도", "귤", "B"),
                                                      ("색은?", "빨간색", "파란색", "초록색", "노란색", "A")])]  # fmt: skip
    source = fx._write_parquet(rows, tmp_path / "K-MMBench" / "data" / "dev-00000-of-00001.parquet").parent.parent
    m, out = _run("k-mmbench", source, tmp_path, {"과일은?": knows, "색은?": "A"})
    assert m["accuracy"] == 0.5 and m["accuracy_vanilla"] == 1.0 and m["rows"] == 8 and m["n"] == 2
    assert m["accuracy_vlmevalkit"] == 0.0
    assert [r["correct"] for r in out if r["group"] == "1"] == [True, False, False, False]


def test_limit_applies_before_any_image_is_decoded(tmp_path, monkeypatch):
    """Five K-SEED rows, --limit 2: each of the two questions' images is decoded twice (once to check it, once in
    its generation batch) = 4 decodes; the other three rows' images never are."""
    from align.benchmarks import sources

    decoded = []
    real = sources.to_image
    monkeypatch.setattr(sources, "to_image", lambda *a, **k: decoded.append(1) or real(*a, **k))
    source = fx.kseed_parquet(tmp_path / "K-SEED", n=5).parent.parent
    m, _ = _run("k-seed", source, tmp_path, {fx.QUESTION: "A"}, limit=2)
    assert m["n"] == 2 and len(decoded) == 4


def test_snapshot_folders_are_read_by_their_readme_configs(tmp_path):
    """A hub snapshot whose README ``configs:`` names the files of each split; rows read a row group at a time."""
    from align.benchmarks.sources import ParquetRows, load_rows

    folder = tmp_path / "K-SEED"
    fx.kseed_parquet(folder, n=3)
    (folder / "data" / "test-00000-of-00001.parquet").rename(folder / "data" / "eval_part.parquet")
    fx.kseed_parquet(folder, n=2)  # another split's file
    (folder / "data" / "test-00000-of-00001.parquet").rename(folder / "data" / "dev_part.parquet")
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: test\n"
                                      "    path: data/eval_part.parquet\n  - split: dev\n    path: data/dev_part.parquet\n"
                                      "---\n")  # fmt: skip
    rows, _ = load_rows(str(folder), "test", "k-seed")
    assert (
        isinstance(rows, ParquetRows) and len(rows) == 3 and [r["question_id"] for r in rows] == ["100", "101", "102"]
    )
    assert set(rows[1]["image"]) == {"bytes", "path"}  # still encoded
    assert len(load_rows(str(folder), "dev", "k-seed")[0]) == 2
