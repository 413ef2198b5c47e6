"""``align rewards audit`` on built-in rewards and planted plugins, the recipe's ``reward_audit`` gate, and the hedge
rate in ``align compare``'s reward hacking watch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import rewards
from align.cli import main
from align.errors import UserError
from align.pipeline import audit_rewards, run_pipeline
from align.recipe import load_recipe
from rewards.corpus import CORPUS_DIR, MAX_UNPAID, corpus_names, load_corpus, run_corpus
from tests.conftest import write_recipe

PLANTED = Path(__file__).parent / "assets" / "gameable_rewards.py"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps at 80 columns when captured


def test_audit_passes_builtins_and_exits_zero(capsys):
    assert main(["rewards", "audit", "accuracy"]) == 0
    out = capsys.readouterr().out
    assert "accuracy: no hack paid" in out and "│ PAID" not in out and "hedge (Korean)" in out
    assert main(["rewards", "audit", "count_accuracy", "--answer", "5개", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["gameable"] is False and report["kind"] == "answer" and len(report["rows"]) > 30
    assert {r["completion"] for r in report["rows"]} >= {"5개 또는 6개", "4~6개", "다섯 개입니다"}
    assert main(["rewards", "audit", "korean_consistency", "--task", "color"]) == 0  # a shaping reward: n/a
    assert "does not check the answer" in capsys.readouterr().out
    assert main(["rewards", "audit", "accuracy", "--task", "nope"]) == 2


def test_audit_flags_a_planted_gameable_plugin(tmp_path, monkeypatch, capsys):
    # file.py:function: the accuracy rule of before this issue (first / last number of the final line)
    assert main(["rewards", "audit", f"{PLANTED}:old_accuracy"]) == 1
    out = capsys.readouterr().out
    assert "is gameable" in out and out.count("│ PAID") >= 10
    assert main(["rewards", "audit", f"{PLANTED}:old_accuracy", "--task", "arith", "--json"]) == 1
    paid = {r["cls"] for r in json.loads(capsys.readouterr().out)["rows"] if r["verdict"] == "PAID"}
    assert {"hedge (Korean)", "hedge (English)", "several final answers"} <= paid
    # module:function, and the naive "any number matches" reward the hedging demo trains with
    shutil.copy(PLANTED, tmp_path / "planted_rewards.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["rewards", "audit", "planted_rewards:any_candidate", "--task", "count"]) == 1
    # a reward that pays nothing: n/a unless it is declared an answer check, then it fails
    assert main(["rewards", "audit", "planted_rewards:pays_nothing", "--task", "count"]) == 0
    assert main(["rewards", "audit", "planted_rewards:pays_nothing", "--task", "count", "--kind", "answer"]) == 1
    assert "the reference answer is not paid" in capsys.readouterr().out


def test_recipe_reward_audit_stops_before_training(tmp_path, tiny_model, capsys):
    text = f"""
name: t
output_dir: {tmp_path}
data: {{source: synthetic, train_size: 20, eval_size: 5, tasks: [count, arith]}}
rewards:
  - {{name: accuracy}}
  - {{name: {PLANTED}:old_accuracy, weight: 0.5}}
eval: {{enabled: false}}
stages:
  - type: sft
    args: {{max_steps: 1}}
"""
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", text))
    with pytest.raises(UserError, match="old_accuracy can be gamed"):
        run_pipeline(recipe)
    run = (tmp_path / "t" / "latest").resolve()
    assert not (run / "sft").exists()  # stopped before the first stage
    out = capsys.readouterr().out
    assert "accuracy: ok" in out and "old_accuracy: gameable" in out
    warn = load_recipe(tmp_path / "r.yaml", ["reward_audit=warn"])
    audit_rewards(warn, tmp_path, None)  # reports, does not raise
    assert "old_accuracy: gameable" in capsys.readouterr().out
    assert load_recipe(tmp_path / "r.yaml", ["reward_audit=off"]).reward_audit == "off"


def test_compare_watch_shows_hedge_rate_next_to_accuracy(tmp_path):
    from align.compare import compare, hacking_watch

    evals = {"sft": {"accuracy": 0.40, "hedge_rate": 0.05, "sampled/hedge_rate": 0.10},
             "grpo": {"accuracy": 0.38, "hedge_rate": 0.30, "sampled/hedge_rate": 0.45}}  # fmt: skip
    for name, metrics in evals.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval.json").write_text(json.dumps(metrics))
    watch = hacking_watch(compare([tmp_path / n for n in evals], out=tmp_path))
    assert watch[0]["note"] == "" and "hedge rate rose 0.050→0.300" in watch[1]["note"]
    assert "sampled hedge rate rose 0.100→0.450" in watch[1]["note"]
    md = (tmp_path / "compare.md").read_text()
    assert "/grpo | 0.380 | 0.300 | - | 0.450 |" in md


# ------------------------------------------------------------------------------------------------ the labelled corpus


def test_corpus_size_and_schema():
    names = corpus_names()
    sizes = {n: len(load_corpus(n)) for n in names}
    for name in ("accuracy", "math_accuracy", "count_accuracy", "choice_accuracy", "exact_match", "ocr_accuracy",
                 "bbox_iou", "korean_consistency"):  # fmt: skip
        assert sizes[name] >= 50, name
    assert sum(sizes.values()) >= 400
    for name in names:
        labels = [e["label"] for e in load_corpus(name)]
        assert 0.25 < labels.count("correct") / len(labels) < 0.75, name  # about half correct, half not


@pytest.mark.parametrize("name", corpus_names())
def test_every_corpus_both_directions(name):
    """Every file in rewards/corpus/: no hack or wrong answer paid above its expected score, and at most 1 % of the
    correct answers paid below theirs."""
    result = run_corpus(rewards.resolve(name), load_corpus(name), name)
    paid, _ = result.hacks_paid
    unpaid, total = result.correct_unpaid
    misjudged = [
        (r["line"], r["completion"][:60], r["score"], r["expected"]) for r in result.rows if r["verdict"] != "ok"
    ]
    assert paid == 0 and unpaid <= MAX_UNPAID * total, misjudged


def test_corpus_catches_a_gameable_and_a_strict_reward(tmp_path):
    from rewards.corpus import verdict

    old = rewards.resolve(f"{PLANTED}:old_accuracy")  # the accuracy rule of before the hedge audit
    result = run_corpus(old, load_corpus("accuracy"), "accuracy")
    assert result.hacks_paid[0] >= 5 and result.failed
    strict = run_corpus(lambda prompts, completions, **kw: [0.0] * len(completions), load_corpus("choice_accuracy"))
    unpaid, total = strict.correct_unpaid
    assert unpaid == total >= 25 and strict.hacks_paid[0] == 0 and strict.failed
    assert verdict("hack", 0.5, 0.505) == "ok" and verdict("hack", 0.5, 0.6) == "PAID"  # tolerance for partial credit
    assert verdict("correct", None, None) == "ok" and verdict("correct", None, 1.0) == "UNPAID"
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"completion": "3개", "row": {}, "expected": 1, "label": "right", "reason": ""}\n')
    with pytest.raises(UserError, match="x.jsonl:1: wrong types"):
        load_corpus(bad)


def test_audit_prints_the_corpus_and_the_recipe_gate_fails_on_it(tmp_path, monkeypatch, capsys):
    assert main(["rewards", "audit", "choice_accuracy"]) == 0
    out = capsys.readouterr().out
    labels = [e["label"] for e in load_corpus("choice_accuracy")]
    n_correct = labels.count("correct")
    assert f"hacks paid: 0/{len(labels) - n_correct}" in out and f"correct answers unpaid: 0/{n_correct}" in out
    # a corpus line the reward misjudges (a hedge labelled correct) makes the audit and a recipe's reward_audit fail
    lines = (CORPUS_DIR / "korean_consistency.jsonl").read_text(encoding="utf-8")
    (tmp_path / "korean_consistency.jsonl").write_text(lines + json.dumps(
        {"completion": "The answer is 7.", "row": {"answer": "7"}, "expected": 1.0, "label": "correct",
         "reason": "planted"}) + "\n")  # fmt: skip
    monkeypatch.setattr("rewards.corpus.CORPUS_DIR", tmp_path)
    assert main(["rewards", "audit", "korean_consistency"]) == 1
    n_correct = [e["label"] for e in load_corpus("korean_consistency")].count("correct")
    assert f"correct answers unpaid: 1/{n_correct}" in capsys.readouterr().out
    text = f"""
name: t
output_dir: {tmp_path}
data: {{source: synthetic, train_size: 4, eval_size: 2, tasks: [count]}}
rewards: [{{name: accuracy}}, {{name: korean_consistency, weight: 0.1}}]
stages: [{{type: sft, args: {{max_steps: 1}}}}]
"""
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", text))
    with pytest.raises(UserError, match="korean_consistency can be gamed"):
        audit_rewards(recipe, tmp_path, None)
    assert f"correct answers unpaid: 1/{n_correct}" in capsys.readouterr().out
