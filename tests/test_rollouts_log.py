"""`align rollouts show` (the RFT and GRPO rollout logs as a table) and the engine choice when vLLM is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from align.errors import UserError
from align.io import append_jsonl, read_jsonl
from rollouts.log import rollout_files, select
from tests.conftest import ROOT


def _rows(step, totals):
    return [{"step": step, "prompt_id": f"p{step}-{i}", "task": "count", "completion": f"답: {i}개", "tokens": 4,
             "rewards": {"accuracy": t}, "total": t, "advantage": t - sum(totals) / len(totals)}
            for i, t in enumerate(totals)]  # fmt: skip


def test_select_and_show(tmp_path):
    run = tmp_path / "run"
    append_jsonl(run / "grpo" / "rollouts.jsonl", _rows(0, [0.0, 1.0, 0.5]))
    append_jsonl(run / "grpo" / "rollouts.jsonl", _rows(1, [0.2, 0.9]))
    rows = read_jsonl(run / "grpo" / "rollouts.jsonl")
    assert rollout_files(run) == [run / "grpo" / "rollouts.jsonl"]
    assert [r["prompt_id"] for r in select(rows, step=1)] == ["p1-0", "p1-1"]
    assert [r["total"] for r in select(rows, worst=2)] == [0.0, 0.2]
    assert [r["total"] for r in select(rows, best=1)] == [1.0]
    out = subprocess.run([sys.executable, "-m", "align.cli", "rollouts", "show", str(run), "--step", "0",
                          "--worst", "1"], capture_output=True, text=True, cwd=ROOT, check=False,
                         env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "p0-0" in out.stdout and "p0-1" not in out.stdout and "p1-0" not in out.stdout
    assert "accuracy" in out.stdout and "5 rollouts, steps 0–1" in out.stdout


def test_missing_log_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no rollouts.jsonl"):
        rollout_files(tmp_path)


def test_engine_choice_without_vllm_installed(monkeypatch, tiny_model):
    import rollouts.vllm_engine as ve
    from align.recipe import RolloutSpec
    from rollouts import resolve_engine

    monkeypatch.setattr(ve, "vllm_installed", lambda: False)
    assert resolve_engine(RolloutSpec(engine="auto"), tiny_model) == "hf"
    with pytest.raises(UserError, match="vLLM is not installed") as err:
        resolve_engine(RolloutSpec(engine="vllm"), tiny_model)
    assert "install_vllm_cpu.sh" in str(err.value) and "ALIGN_EXTRAS=vllm" in str(err.value)
