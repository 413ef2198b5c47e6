"""The quickstart end to end, as a user runs it: the embedded model and data, trained and evaluated on CPU."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_shipped_recipe

TASKS = ("count", "color", "ocr", "arith", "bbox")


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path, align_cache):
    # under ./launch.sh test on one torch thread (the worker's OMP_NUM_THREADS): the floats, and so the exact figures,
    # differ from a 2-thread run; what is asserted below held in every run, on either
    proc, run = run_shipped_recipe("quickstart", tmp_path, align_cache, timeout=2400)
    assert "\r" not in proc.stdout + proc.stderr  # progress redraws only on a terminal; a log gets lines
    ev = {s: json.loads((run / s / "eval.json").read_text()) for s in ("base", "sft", "rft", "grpo")}
    assert "checkpoint comparison" in proc.stdout and "side by side" in (run / "compare.md").read_text()
    # each stage's change from the previous one, with the standard error of the paired difference (eval_scores.jsonl)
    assert "accuracy sft → rft:" in proc.stdout and "(paired SE, 800 rows" in proc.stdout
    # SFT teaches the tasks: greedy accuracy far above the untrained model on most tasks
    assert ev["sft"]["accuracy"] >= ev["base"]["accuracy"] + 0.2, ev
    assert sum(ev["sft"][f"accuracy/{t}"] > ev["base"][f"accuracy/{t}"] for t in TASKS) >= 4, ev
    # RFT and GRPO each train the policy they sample from past SFT's on held-out prompts (pass@1 of 4 answers at T=1,
    # 3,200 answers); greedy accuracy after them stays within a few points of SFT's on this 1.4M-parameter model
    sampled = [ev[s]["sampled/accuracy"] for s in ("base", "sft", "rft", "grpo")]
    assert sampled[0] < sampled[1] and min(sampled[2:]) >= sampled[1] + 0.02, sampled
    # GRPO raises the reward it is trained on: the accuracy of its rollouts, first 50 steps vs last 100
    rollouts = [json.loads(line) for line in (run / "grpo" / "rollouts.jsonl").read_text().splitlines()]
    early = [r["rewards"]["accuracy"] for r in rollouts if r["step"] < 50]
    late = [r["rewards"]["accuracy"] for r in rollouts if r["step"] >= 300]
    assert sum(late) / len(late) >= sum(early) / len(early) + 0.03
    # and no stage learned to hedge (several candidate answers score 0: rewards/answer.py)
    assert all(ev[s]["hedge_rate"] == 0 for s in ("sft", "rft", "grpo")), ev
    for stage in ("sft", "rft", "grpo"):
        assert (run / stage / "model" / "config.json").exists()
