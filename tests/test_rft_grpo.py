"""RFT filtering, GRPO on the tiny VLM with weighted and custom rewards, prompt selection, the pipeline hand-off,
and `align compare`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from align.errors import StageError
from align.io import read_jsonl
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from align.stages.rft import Accept, accept, summarize
from tests.conftest import write_recipe


def _s(pid, sample, text, acc, total=None, task="count"):
    return {"id": pid, "task": task, "sample": sample, "completion": text, "rewards": {"accuracy": acc},
            "total": acc if total is None else total}  # fmt: skip


def test_accept_threshold_best_of_max_per_prompt_and_dedupe():
    samples = [
        _s("a", 0, "3개", 1.0), _s("a", 1, "3 개", 1.0), _s("a", 2, "3개", 1.0), _s("a", 3, "4개", 0.0),
        _s("b", 0, "x", 0.0), _s("b", 1, "y", 0.0),
        _s("c", 0, "low", 1.0, total=0.5), _s("c", 1, "high", 1.0, total=2.0),
    ]  # fmt: skip
    kept, rates = accept(samples, Accept(max_per_prompt=2))
    assert [(s["id"], s["completion"]) for s in kept] == [("a", "3개"), ("a", "3 개"), ("c", "low"), ("c", "high")]
    assert rates == {"a": 0.75, "b": 0.0, "c": 1.0}
    kept, _ = accept(samples, Accept(max_per_prompt=5, dedupe=False))
    assert sum(s["id"] == "a" for s in kept) == 3  # duplicates kept when asked
    kept, _ = accept(samples, Accept(reward="total", threshold=1.0, best_of=True, max_per_prompt=1))
    assert [(s["id"], s["completion"]) for s in kept] == [("a", "3개"), ("c", "high")]
    kept, _ = accept(samples, Accept(reward="total", threshold=0.4, best_of=False, max_per_prompt=1))
    assert [(s["id"], s["completion"]) for s in kept] == [("a", "3개"), ("c", "low")]
    summary = summarize(samples, kept, rates)
    assert summary["pass@1"] == pytest.approx((0.75 + 0 + 1) / 3) and summary["pass@k"] == pytest.approx(2 / 3)
    assert summary["acceptance_rate"] == pytest.approx(2 / 8)


BASE = """
name: t
output_dir: {out}
data: {{train_size: 40, eval_size: 10, seed: 5}}
eval: {{max_new_tokens: 8, samples: 1}}
"""


def test_rft_with_empty_accepted_set_fails_clearly(tmp_path, tiny_model):
    f = write_recipe(
        tmp_path / "r.yaml",
        BASE.format(out=tmp_path)
        + """
eval: {enabled: false}
stages:
  - type: rft
    samples: 2
    max_new_tokens: 6
""",
    )
    with pytest.raises(StageError) as e:
        run_pipeline(load_recipe(f))
    assert "no sample met the acceptance rule (accuracy >= 1.0)" in str(e.value)
    run = (tmp_path / "t" / "latest").resolve()
    assert len(read_jsonl(run / "rft" / "rollouts.jsonl")) == 80  # the samples are kept for inspection


def test_rft_then_grpo_with_custom_rewards_and_prompt_selection(tmp_path, tiny_model):
    (tmp_path / "my_rewards.py").write_text(
        "def short(prompts, completions, limit=4, **kw):\n"
        "    return [1.0 if len(c[0]['content']) <= limit else 0.0 for c in completions]\n"
        "def hangul_first(prompts, completions, **kw):\n"
        "    return [float(bool(c[0]['content']) and '\\uac00' <= c[0]['content'][0] <= '\\ud7a3') for c in completions]\n"
    )
    f = write_recipe(
        tmp_path / "r.yaml",
        BASE.format(out=tmp_path)
        + """
rewards:
  - {name: accuracy, weight: 1.0}
  - {name: korean_consistency, weight: 0.5}
  - {name: ./my_rewards.py:short, weight: 0.25, args: {limit: 6}}
stages:
  - type: rft
    samples: 4
    max_new_tokens: 6
    accept: {reward: "./my_rewards.py:hangul_first", threshold: 1.0, max_per_prompt: 1}
    args: {max_steps: 2, per_device_train_batch_size: 4}
  - type: grpo
    select_prompts: {enabled: true, reward: "./my_rewards.py:hangul_first"}
    filter_zero_variance: true
    args: {max_steps: 2, num_generations: 4, per_device_train_batch_size: 8, max_completion_length: 6,
           learning_rate: 1.0e-3, logging_steps: 1, beta: 0.0}
""",
    )
    run = run_pipeline(load_recipe(f)).path
    # RFT: every sample scored by every reward, the accepted set, pass rates and per-task summary
    rollouts = read_jsonl(run / "rft" / "rollouts.jsonl")
    assert len(rollouts) == 160
    assert set(rollouts[0]["rewards"]) == {"accuracy", "korean_consistency", "./my_rewards.py:short",
                                           "./my_rewards.py:hangul_first"}  # fmt: skip
    summary = json.loads((run / "rft" / "summary.json").read_text())
    rates = json.loads((run / "rft" / "pass_rates.json").read_text())
    accepted = read_jsonl(run / "rft" / "accepted.jsonl")
    assert summary["accepted"] == len(accepted) > 0 and len(rates) == 40
    assert set(summary["per_task"]) <= {"count", "color", "ocr", "arith", "bbox"}
    for row in accepted:
        assert row["rewards"]["./my_rewards.py:hangul_first"] == 1.0
        assert all(isinstance(p, str) and p.endswith(".png") for p in row["images"])  # references, not pixels
    # GRPO: prompts selected from RFT pass rates (never/always solved dropped)
    gsum = json.loads((run / "grpo" / "summary.json").read_text())
    expected_kept = sum(0 < r < 1 for r in rates.values())
    assert gsum["pass_rates_from"] == "rft" and gsum["prompts_after"] == expected_kept
    assert gsum["dropped"]["never_solved"] == sum(r == 0 for r in rates.values())
    assert gsum["dropped"]["always_solved"] == sum(r == 1 for r in rates.values())
    assert gsum["steps"] == 2 and gsum["groups"] == 4
    # rollout log: one row per completion, every reward, total and advantage
    grollouts = read_jsonl(run / "grpo" / "rollouts.jsonl")
    assert len(grollouts) == 16 and {r["step"] for r in grollouts} == {0, 1}
    r0 = grollouts[0]
    assert set(r0["rewards"]) == {"accuracy", "korean_consistency", "short"}
    weights = {"accuracy": 1.0, "korean_consistency": 0.5, "short": 0.25}
    assert r0["total"] == pytest.approx(sum(weights[k] * v for k, v in r0["rewards"].items() if v is not None))
    assert all(isinstance(r["advantage"], float) and isinstance(r["tokens"], int) for r in grollouts)
    metrics = read_jsonl(run / "grpo" / "metrics.jsonl")
    assert any("rewards/short/mean" in m for m in metrics)
    # hand-off: each stage started from the previous one's model
    starts = [e for e in read_jsonl(run / "events.jsonl") if e["event"] == "stage_start"]
    assert starts[1]["input_model"] == str(run / "rft" / "model")
    rft_w = load_file(str(run / "rft" / "model" / "model.safetensors"))
    grpo_w = load_file(str(run / "grpo" / "model" / "model.safetensors"))
    assert any(not torch.equal(rft_w[k], grpo_w[k]) for k in rft_w)
    for stage in ("base", "rft", "grpo"):
        assert (run / stage / "eval.json").exists()
    # the comparison the pipeline ends with
    md = (run / "compare.md").read_text()
    assert "| metric | base | rft | grpo |" in md and (run / "compare.png").stat().st_size > 10_000


def test_grpo_prepass_selection_and_filter_config(tmp_path, tiny_model):
    f = write_recipe(
        tmp_path / "r.yaml",
        BASE.format(out=tmp_path)
        + """
eval: {enabled: false}
rewards: [{name: korean_consistency}]
stages:
  - type: grpo
    select_prompts: {enabled: true, samples: 2, reward: korean_consistency, threshold: 0.5}
    args: {max_steps: 1, num_generations: 2, per_device_train_batch_size: 4, max_completion_length: 4}
""",
    )
    try:
        run = run_pipeline(load_recipe(f)).path
    except StageError as e:  # a random model may solve no prompt in the pre-pass: the error must say so
        assert "prompt selection left no prompt" in str(e)
        return
    gsum = json.loads((run / "grpo" / "summary.json").read_text())
    assert gsum["pass_rates_from"] == "prepass" and gsum["prompts_before"] == 40
    bad = write_recipe(tmp_path / "bad.yaml", "name: b\nstages:\n  - type: grpo\n    filter_zero_variance: true\n"
                                              "    args: {loss_type: grpo}\n")  # fmt: skip
    from align.errors import RecipeError

    with pytest.raises(RecipeError, match="filter_zero_variance works with loss_type"):
        load_recipe(bad)


def test_grpo_reward_that_does_not_resolve(tmp_path):
    from align.errors import UserError

    f = write_recipe(
        tmp_path / "r.yaml",
        BASE.format(out=tmp_path)
        + """
rewards: [{name: acuracy}]
stages: [{type: grpo, args: {max_steps: 1}}]
""",
    )
    with pytest.raises(UserError, match="unknown reward 'acuracy'; did you mean 'accuracy'"):
        run_pipeline(load_recipe(f))


def test_compare_cli_across_runs(tmp_path, tiny_model):
    f = write_recipe(
        tmp_path / "r.yaml",
        BASE.format(out=tmp_path)
        + """
stages:
  - type: sft
    args: {max_steps: 3, per_device_train_batch_size: 8, learning_rate: 3.0e-3}
""",
    )
    run_a = run_pipeline(load_recipe(f)).path
    run_b = run_pipeline(load_recipe(f, ["seed=7"])).path
    out = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, "-m", "align.cli", "compare", str(run_a), str(run_b / "sft"),
                           "--out", str(out)], capture_output=True, check=False, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = (out / "compare.md").read_text()
    assert f"| metric | {run_a.name}/base | {run_a.name}/sft | {run_b.name}/sft |" in md
    assert "accuracy/count" in md and "side by side" in md and (out / "compare.png").exists()
    assert "checkpoint comparison" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "align.cli", "compare", str(tmp_path / "nope")],
                         capture_output=True, check=False, text=True)  # fmt: skip
    assert bad.returncode == 2 and "does not exist" in bad.stderr
