"""``align rewards audit`` on built-in rewards and planted plugins, the recipe's ``reward_audit`` gate, and the hedge
rate in ``align compare``'s reward hacking watch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from align.cli import main
from align.errors import UserError
from align.pipeline import audit_rewards, run_pipeline
from align.recipe import load_recipe
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
