"""Reward functions on Korean examples, and the registry."""

from __future__ import annotations

import pytest

import rewards
from rewards.korean import first_number, korean_consistency, korean_number, normalize_korean
from rewards.math_rewards import math_accuracy
from rewards.vision import bbox_iou, choice_accuracy, count_accuracy, exact_match, ocr_accuracy, parse_boxes


def msg(text):
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize("word,value", [
    ("세", 3), ("세 개", 3), ("3개", 3), ("삼", 3), ("스물다섯", 25), ("열", 10), ("삼십이", 32), ("백이십", 120),
    ("일곱 명", 7), ("천오백", 1500), ("이만", 20000),
])  # fmt: skip
def test_korean_numbers(word, value):
    assert first_number(word) == value
    if not word[0].isdigit():
        assert korean_number(word) == value


@pytest.mark.parametrize("completion,answer,expected", [
    ("답: 7", "답: 7", 1.0), ("정답: 7개", "7", 1.0), ("일곱 개입니다", "7", 1.0), ("\\boxed{7}", "답: 7", 1.0),
    ("그래서 사과는 모두 7개입니다.", "7", 1.0), ("답: 8", "7", 0.0), ("\\boxed{\\frac{1}{2}}", "0.5", 1.0),
    ("답: 삼", "3", 1.0), ("", "3", 0.0), ("<think>3+4=7</think><answer>7</answer>", "7", 1.0),
])  # fmt: skip
def test_math_accuracy(completion, answer, expected):
    assert math_accuracy(None, [msg(completion)], answer=[answer]) == [expected]


def test_math_accuracy_none_without_answer():
    assert math_accuracy(None, ["7"], answer=[None]) == [None]


def test_count_accuracy():
    got = count_accuracy(None, ["3개", "세 개", "3 개", "삼", "4개", "모르겠어요"], answer=["3개"] * 6)
    assert got == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert count_accuracy(None, ["빨간색"], answer=["빨간색"]) == [None]


def test_choice_accuracy():
    got = choice_accuracy(None, ["B", "(B)", "정답은 B입니다", "답: C", "나)"], answer=["B"] * 5)
    assert got == [1.0, 1.0, 1.0, 0.0, 1.0]


def test_bbox_iou_and_varco_format():
    gold = "<bbox>0.10, 0.10, 0.50, 0.50</bbox>"
    assert bbox_iou(None, [gold], answer=[gold]) == [1.0]
    half = bbox_iou(None, ["<bbox>0.10, 0.10, 0.50, 0.30</bbox>"], answer=[gold])[0]
    assert half == pytest.approx(0.5)
    assert bbox_iou(None, ["no box"], answer=[gold]) == [0.0]
    assert parse_boxes("<bbox>0.1, 0.1, 0.2, 0.2<delim>0.5, 0.5, 0.6, 0.6</bbox>") == [
        (0.1, 0.1, 0.2, 0.2), (0.5, 0.5, 0.6, 0.6)]  # fmt: skip
    two = "<bbox>0.1, 0.1, 0.2, 0.2<delim>0.5, 0.5, 0.6, 0.6</bbox>"
    assert bbox_iou(None, ["<bbox>0.5, 0.5, 0.6, 0.6</bbox><bbox>0.1, 0.1, 0.2, 0.2</bbox>"], answer=[two]) == [
        pytest.approx(1.0)]  # fmt: skip
    assert bbox_iou(None, ["<bbox>0.1, 0.1, 0.2, 0.2</bbox>"], answer=[two]) == [pytest.approx(0.5)]
    assert bbox_iou(None, [half and "<bbox>0.10, 0.10, 0.50, 0.30</bbox>"], answer=[gold], threshold=0.6) == [0.0]


def test_ocr_and_exact_match():
    assert ocr_accuracy(None, ["사과", "사고", "", "사 과"], answer=["사과"] * 4) == [1.0, 0.5, 0.0, 1.0]
    # VARCO-VISION's OCR output: each word in <char>…</char> followed by its box
    varco = "<char>사과</char><bbox>0.10, 0.20, 0.30, 0.40</bbox><char>나무</char><bbox>0.5, 0.2, 0.7, 0.4</bbox>"
    assert ocr_accuracy(None, [varco, "<char>사과</char>"], answer=["사과 나무"] * 2) == [1.0, 0.5]
    assert exact_match(None, ["빨간색입니다.", "빨간 색", "파란색"], answer=["빨간색"] * 3) == [1.0, 1.0, 0.0]
    assert normalize_korean("  사과예요! ") == "사과"


def test_korean_consistency():
    got = korean_consistency(None, ["사과입니다", "apple입니다", "apple", "42", "<bbox>0.1</bbox> 여기"])
    assert got[0] == 1.0 and 0 < got[1] < 1 and got[2] == 0.0 and got[3] is None and got[4] == 1.0


def test_registry_resolves_builtin_module_and_file(tmp_path):
    r = rewards.resolve({"name": "bbox_iou", "weight": 0.5, "args": {"threshold": 0.5}})
    assert r.weight == 0.5 and r.__name__ == "bbox_iou"
    assert r(None, ["<bbox>0, 0, 1, 1</bbox>"], answer=["<bbox>0, 0, 1, 1</bbox>"]) == [1.0]
    m = rewards.resolve("rewards.vision:count_accuracy")
    assert m(None, ["3개"], answer=["3"]) == [1.0]
    (tmp_path / "mine.py").write_text("def brevity(prompts, completions, limit=5, **kw):\n"
                                      "    return [float(len(c) <= limit) for c in completions]\n")  # fmt: skip
    f = rewards.resolve({"name": "./mine.py:brevity", "args": {"limit": 2}}, base_dir=tmp_path)
    assert f(None, ["ab", "abc"]) == [1.0, 0.0]
    with pytest.raises(rewards.RewardError, match="did you mean 'math_accuracy'"):
        rewards.resolve("math_acuracy")
    with pytest.raises(rewards.RewardError, match="has no function 'nope'.*brevity"):
        rewards.resolve("./mine.py:nope", base_dir=tmp_path)


def test_trl_rewards_work_unchanged():
    r = rewards.resolve("trl.rewards:think_format_reward")
    assert r(None, [msg("<think>생각</think>답")]) == [1.0]


def test_reward_errors_are_isolated_counted_and_bounded(tmp_path):
    (tmp_path / "flaky.py").write_text(
        "def flaky(prompts, completions, **kw):\n"
        "    if any('boom' in c for c in completions):\n        raise ValueError('boom')\n"
        "    return [1.0] * len(completions)\n"
        "def short(prompts, completions, **kw):\n    return [1.0]\n"
    )
    r = rewards.resolve("flaky.py:flaky", base_dir=tmp_path)
    assert r(None, ["ok", "boom", "ok"], id=["a", "b", "c"]) == [1.0, None, 1.0]
    assert r.errors == 1 and "boom" in r.first_error and "row b" in r.first_error
    with pytest.raises(rewards.RewardError, match="failed on"):
        for _ in range(10):
            r(None, ["boom", "ok"])
    s = rewards.resolve("flaky.py:short", base_dir=tmp_path)
    with pytest.raises(rewards.RewardError, match="returned 1 scores for 2"):
        s(None, ["a", "b"])


# reward_model needs a trained model: tests/test_vrlhf.py feeds it the same junk
@pytest.mark.parametrize("name", sorted(set(rewards.BUILTIN) - {"reward_model"}))
def test_every_builtin_survives_malformed_completions(name):
    junk = ["", "\x00\xff\ud800", "가" * 1_000_000, "<think>unclosed", "<bbox>1, 2", "\\boxed{", None, 12345]
    fn = rewards.resolve(name)
    out = fn(None, junk, answer=["3"] * len(junk), task=["count"] * len(junk))
    assert len(out) == len(junk) and all(v is None or isinstance(v, float) for v in out)
    assert fn.errors == 0


def test_format_and_length_rewards():
    from rewards.formatting import repetition_penalty, soft_overlong, think_answer_format

    assert think_answer_format(None, ["<think>세 개를 센다</think><answer>3개</answer>", "<think></think><answer>3</answer>",
                                      "<answer>3</answer>", "<think>a</think><answer>3</answer> 덧붙임",
                                      "<think>a<think>b</think><answer>3</answer>"]) == [1.0, 0.0, 0.0, 0.0, 0.0]  # fmt: skip
    assert soft_overlong(None, ["x"] * 4, max_length=10, cache=4, completion_ids=[[0] * n for n in (6, 8, 10, 12)]) == [
        0.0, -0.5, -1.0, -1.0]  # fmt: skip
    assert soft_overlong(None, ["가" * 7], max_length=10, cache=4) == [-0.25]  # characters without ids
    rep = repetition_penalty(
        None, ["사과 사과 사과 사과 사과 사과 사과", "하늘은 파랗고 구름은 하얗고 바다는 넓다", "네"]
    )
    assert rep[0] < -0.5 and rep[1] == 0.0 and rep[2] == 0.0
    assert repetition_penalty(None, ["하하하하하하하하하하"])[0] < -0.5  # no spaces: character n-grams


def test_math_accuracy_parallel_matches_sequential():
    comps = [f"답: {i}" if i % 3 else f"\\boxed{{{i}+1}}" for i in range(40)]
    answers = [str(i) for i in range(40)]
    seq = math_accuracy(None, comps, answer=answers)
    assert seq == math_accuracy(None, comps, answer=answers, workers=2)
    assert sum(seq) == 26  # the boxed "i+1" forms are wrong


def test_math_verification_times_out_instead_of_hanging():
    import time

    t = time.time()
    out = math_accuracy(None, ["\\boxed{" + "(" * 4000 + "1" + ")" * 4000 + "}"], answer=["2"], timeout=1)
    assert out == [0.0] and time.time() - t < 60  # does not hang (a bound, not a speed target)


def test_reward_plugins_by_entry_point(tmp_path, monkeypatch):
    (tmp_path / "ko_plugin.py").write_text("def polite(prompts, completions, **kw):\n"
                                           "    '''1.0 for answers ending in 요.'''\n"
                                           "    return [float(str(c).endswith('요')) for c in completions]\n")  # fmt: skip
    dist = tmp_path / "ko_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ko-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[korean_vlm_align.rewards]\npolite = ko_plugin:polite\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert rewards.available()["polite"] == "ko_plugin:polite"
    assert rewards.resolve("polite")(None, ["그래요", "아니다"]) == [1.0, 0.0]


def test_rewards_cli_list_and_try(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "align.cli", "rewards", "list"], capture_output=True, check=False, text=True
    )
    assert out.returncode == 0 and "math_accuracy" in out.stdout and "bbox_iou" in out.stdout
    out = subprocess.run([sys.executable, "-m", "align.cli", "rewards", "try", "math_accuracy",
                          "--completion", "그래서 답: 일곱 개", "--answer", "7"], capture_output=True, check=False, text=True)  # fmt: skip
    assert out.returncode == 0 and "= 1.0" in out.stdout and '"math_number": 7.0' in out.stdout
    f = tmp_path / "rows.jsonl"
    f.write_text('{"completion": "B", "answer": "C"}\n{"completion": "(C)", "answer": "C"}\n')
    out = subprocess.run([sys.executable, "-m", "align.cli", "rewards", "try", "choice_accuracy", "--file", str(f)],
                         capture_output=True, check=False, text=True)  # fmt: skip
    assert out.stdout.count("choice_accuracy = 0.0") == 1 and out.stdout.count("choice_accuracy = 1.0") == 1
    assert '"choice": "B"' in out.stdout
    bad = subprocess.run([sys.executable, "-m", "align.cli", "rewards", "try", "nope", "--completion", "x"],
                         capture_output=True, check=False, text=True)  # fmt: skip
    assert bad.returncode == 2 and "unknown reward 'nope'" in bad.stderr


def test_korean_consistency_respects_requested_language():
    prompts = [
        [{"role": "user", "content": "이 문장을 영어로 번역해 주세요."}],
        [{"role": "user", "content": "설명해 주세요."}],
    ]
    assert korean_consistency(prompts, ["It is an apple.", "It is an apple."]) == [None, 0.0]


def test_recipe_rewards_from_module_and_file(tmp_path):
    from align.recipe import load_recipe

    (tmp_path / "r.py").write_text("def one(prompts, completions, **kw):\n    return [1.0] * len(completions)\n")
    (tmp_path / "recipe.yaml").write_text(
        "name: t\nrewards:\n  - {name: rewards.vision:count_accuracy, weight: 2}\n  - {name: ./r.py:one, weight: 0.5}\n"
    )
    recipe = load_recipe(tmp_path / "recipe.yaml")
    got = rewards.resolve_all(recipe.rewards, base_dir=tmp_path)
    assert [r.weight for r in got] == [2.0, 0.5]
    assert got[0](None, ["3개"], answer=["3"]) == [1.0] and got[1](None, ["x"]) == [1.0]


def test_korean_consistency_does_not_apply_to_non_korean_answers():
    """A box answer is not Korean text: rewarding Hangul there taught GRPO to answer boxes with Korean words."""
    got = korean_consistency(
        None,
        ["<bbox>0.1, 0.2, 0.3, 0.4</bbox>", "사과", "답: 7"],
        answer=["<bbox>0.1, 0.2, 0.5, 0.6</bbox>", "<bbox>0.1, 0.2, 0.5, 0.6</bbox>", "답: 7"],
    )
    assert got == [None, None, 1.0]
