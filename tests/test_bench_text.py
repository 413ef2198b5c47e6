"""KMMLU / HAE-RAE / CLIcK / KoBEST through lm-eval: few-shot counts and averaging as the papers report them,
labelled beside lm-eval's defaults, and a headline metric for every group (generative tasks report exact_match)."""

from __future__ import annotations

import pytest

from align.benchmarks.registry import lookup
from align.benchmarks.run import run_benchmarks
from align.benchmarks.text_tasks import summarise
from align.io import read_jsonl
from align.recipe import validate
from tests import bench_fixtures as fx


def test_averages_by_hand():
    """Two subjects: one of 1 question right (1.0), one of 3 questions with 0 right (0.0).
    lm-eval's group figure weights by questions: (1·1 + 0·3) / 4 = 0.25; the KMMLU paper's mean over subjects:
    (1.0 + 0.0) / 2 = 0.5. Its standard error √(Σ p(1−p)/n) / k: 0 for these, √(0.25/4 + 0.25/4) / 2 = 0.1768 for two
    subjects at 0.5 with 4 questions each."""
    result = {"results": {"kmmlu_a": {"acc,none": 1.0}, "kmmlu_b": {"acc,none": 0.0}},
              "samples": {"kmmlu_a": [{}], "kmmlu_b": [{}, {}, {}]}}  # fmt: skip
    m = summarise(result, ["kmmlu_a", "kmmlu_b"])
    assert m["acc"] == pytest.approx(0.25) and m["acc_macro"] == pytest.approx(0.5)
    assert m["acc_macro_stderr"] == 0.0  # each subject's p(1 − p) is 0 here
    # kmmlu_direct is generative: lm-eval reports exact_match for the group; the headline must not be empty
    direct = {"results": {"kmmlu_direct": {"exact_match,none": 0.25, "exact_match_stderr,none": 0.2},
                          "kmmlu_direct_a": {"exact_match,none": 1.0}, "kmmlu_direct_b": {"exact_match,none": 0.0}},
              "samples": {"kmmlu_direct_a": [{}], "kmmlu_direct_b": [{}, {}, {}]}}  # fmt: skip
    m = summarise(direct, ["kmmlu_direct"])
    assert m["acc"] == 0.25 and m["acc_stderr"] == 0.2 and m["acc_macro"] == pytest.approx(0.5)
    assert lookup("kmmlu").main == "acc_macro"
    half = {"results": {"a": {"acc,none": 0.5}, "b": {"acc,none": 0.5}}, "samples": {"a": [{}] * 4, "b": [{}] * 4}}
    assert summarise(half, ["a", "b"])["acc_macro_stderr"] == pytest.approx((0.25 / 4 + 0.25 / 4) ** 0.5 / 2)


@pytest.fixture(scope="module")
def kmmlu(tmp_path_factory):
    return fx.kmmlu_snapshot(tmp_path_factory.mktemp("kmmlu") / "KMMLU")


def test_kmmlu_paper_settings_and_generative_headline(kmmlu, tiny_model, tmp_path):
    """By default KMMLU runs 5-shot (the paper), lm-eval's own default is 0-shot; a generative task (exact_match)
    still has its headline. The macro average is recomputed by hand from the per-row answers."""
    specs = [{"name": "kmmlu", "source": str(kmmlu), "tasks": ["kmmlu_accounting", "kmmlu_korean_history"]},
             {"name": "kmmlu", "source": str(kmmlu), "tasks": ["kmmlu_direct_accounting"], "limit": 1,
              "num_fewshot": 0}]  # fmt: skip
    recipe = validate({"name": "t", "rollout": {"engine": "hf"}, "eval": {"batch_size": 8, "benchmarks": specs[:1]}})
    m = run_benchmarks(tiny_model, recipe, tmp_path / "a")
    rows = read_jsonl(tmp_path / "a" / "bench" / "kmmlu.jsonl")
    assert m["bench/kmmlu/num_fewshot"] == 5
    assert all(r["prompt"].count("정답：") == 6 for r in rows)  # five solved dev questions, then the question
    by_subject = {}
    for r in rows:
        by_subject.setdefault(r["task"], []).append(r["acc"])
    macro = sum(sum(v) / len(v) for v in by_subject.values()) / len(by_subject)
    assert len(by_subject) == 2 and m["bench/kmmlu/acc_macro"] == pytest.approx(macro)
    assert m["bench/kmmlu/acc"] == pytest.approx(sum(r["acc"] for r in rows) / len(rows))
    recipe = validate({"name": "t", "rollout": {"engine": "hf"}, "eval": {"batch_size": 8, "benchmarks": specs[1:]}})
    m = run_benchmarks(tiny_model, recipe, tmp_path / "b")
    assert m["bench/kmmlu/num_fewshot"] == 0 and m["bench/kmmlu/n"] == 1
    assert m["bench/kmmlu/acc"] == m["bench/kmmlu/exact_match"]  # one generative task: its exact_match
    assert "bench/kmmlu/acc_macro" in m
