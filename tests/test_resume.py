"""Fault injection: a real `align run` process is SIGKILLed during SFT, during RFT sampling and during GRPO, then
continued with `--resume`; the resumed run must have every stage, the same steps as an uninterrupted run (no step
logged twice or missing), the same losses (optimizer, scheduler, RNG and data position restored), and eval results.
Also: a disk-full error while a checkpoint is written, a partial checkpoint folder, `align status`, and a resume
with a changed recipe."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from align.io import read_jsonl
from tests.conftest import ROOT, write_recipe
from tests.test_distributed import RECIPE as DIST_RECIPE
from tests.test_distributed import _descendants

RECIPE = """
name: rs
seed: 3
data: {train_size: 64, eval_size: 8, seed: 5}
eval: {max_new_tokens: 4, samples: 0}
rollout: {engine: hf}
rewards: [{name: accuracy}, {name: korean_consistency}]
stages:
  - type: sft
    args: {max_steps: 24, save_steps: 4, per_device_train_batch_size: 4, logging_steps: 1, learning_rate: 2.0e-3}
  - type: rft
    prompts: 24
    samples: 2
    max_new_tokens: 4
    accept: {reward: total, threshold: 0.0}
    args: {max_steps: 4, save_steps: 2, per_device_train_batch_size: 2, logging_steps: 1}
  - type: grpo
    args: {max_steps: 8, save_steps: 2, per_device_train_batch_size: 4, num_generations: 4, max_completion_length: 6,
           logging_steps: 1, learning_rate: 1.0e-3}
"""
STAGES = ("sft", "rft", "grpo")


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "align.cli", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout, check=False)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _kill_when(recipe: Path, out: Path, ready, timeout: float = 240, name: str = "rs") -> Path:
    """Start `align run`, SIGKILL its whole process group as soon as ``ready(run_dir)`` is true."""
    proc = subprocess.Popen([sys.executable, "-m", "align.cli", "run", str(recipe), f"output_dir={out}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    run, deadline = out / name / "latest", time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if run.exists() and ready(run):
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended ({proc.returncode}) before the kill point"
    return run.resolve()


def _alive(pid: int) -> bool:
    """Not yet reaped counts as dead (a zombie holds no files and does no work)."""
    time.sleep(0.2)
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _status(run: Path) -> dict:
    return json.loads(_cli("status", str(run), "--json").stdout)


def _loss_steps(run: Path, stage: str) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_jsonl(run / stage / "metrics.jsonl") if "loss" in r]


def _rollout_steps(run: Path) -> Counter:
    return Counter(r["step"] for r in read_jsonl(run / "grpo" / "rollouts.jsonl"))


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, tiny_model) -> Path:
    return write_recipe(tmp_path_factory.mktemp("recipe") / "rs.yaml", RECIPE)


@pytest.fixture(scope="module")
def reference(recipe, tmp_path_factory) -> Path:
    """The same recipe, uninterrupted."""
    out = tmp_path_factory.mktemp("reference")
    _cli("run", str(recipe), f"output_dir={out}")
    return (out / "rs" / "latest").resolve()


def _assert_same_as_reference(run: Path, reference: Path) -> None:
    events = [e["event"] for e in read_jsonl(run / "events.jsonl")]
    assert events.count("resumed") == 1 and events[-1] == "finished"
    status = _status(run)
    assert [s["status"] for s in status["stages"]] == ["done"] * 3 and status["finished"]
    for stage in STAGES:
        assert (run / stage / "model" / "config.json").exists() and (run / stage / "eval.json").exists()
        got, want = _loss_steps(run, stage), _loss_steps(reference, stage)
        assert [s for s, _ in got] == [s for s, _ in want], stage  # every step once, none missing
        assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], abs=1e-4), stage
    assert _rollout_steps(run) == _rollout_steps(reference)
    completions = [[r["completion"] for r in read_jsonl(d / "grpo" / "rollouts.jsonl")] for d in (run, reference)]
    assert completions[0] == completions[1]  # the resumed policy samples what the uninterrupted one sampled
    assert len(read_jsonl(run / "rft" / "rollouts.jsonl")) == len(read_jsonl(reference / "rft" / "rollouts.jsonl"))


def test_kill_during_sft_then_resume(recipe, reference, tmp_path):
    def mid_sft(run: Path) -> bool:
        return (run / "sft" / "checkpoints" / "checkpoint-8" / "align_checkpoint_complete.json").exists()

    run = _kill_when(recipe, tmp_path, mid_sft)
    status = _status(run)
    assert status["stages"][0]["status"] == "running" and not status["finished"]
    step = status["stages"][0]["step"]
    assert 8 <= step < 24
    # a checkpoint folder the kill left half-written (no completion marker) is never resumed from
    partial = run / "sft" / "checkpoints" / "checkpoint-20"
    partial.mkdir(exist_ok=True)
    (partial / "model.safetensors").write_bytes(b"torn")
    assert status["resume_would"][0].startswith("resume sft from checkpoint-") and "checkpoint-20" not in str(status)
    out = _cli("run", str(recipe), f"output_dir={tmp_path}", "--resume")
    assert f"resuming from checkpoint-{step} (step {step})" in out.stdout
    assert not partial.exists() or (partial / "align_checkpoint_complete.json").exists()  # removed, or rewritten
    _assert_same_as_reference(run, reference)


def test_kill_during_rft_sampling_then_resume(recipe, reference, tmp_path):
    def sampling(run: Path) -> bool:
        return (run / "rft" / "rollouts.jsonl").exists() and not (run / "rft" / "selection.json").exists()

    run = _kill_when(recipe, tmp_path, sampling)
    assert [s["status"] for s in _status(run)["stages"]] == ["done", "running", "not started"]
    out = _cli("run", str(recipe), f"output_dir={tmp_path}", f"--resume={run}")
    assert "done before the resume" in out.stdout  # SFT not trained again
    _assert_same_as_reference(run, reference)


@pytest.mark.parametrize("after", [1, 5])
def test_kill_during_grpo_then_resume(recipe, reference, tmp_path, after):
    def mid_grpo(run: Path) -> bool:
        return len([r for r in read_jsonl(run / "grpo" / "metrics.jsonl") if "loss" in r]) >= after

    run = _kill_when(recipe, tmp_path, mid_grpo)
    assert _status(run)["stages"][2]["status"] == "running"
    _cli("run", str(recipe), f"output_dir={tmp_path}", "--resume")
    _assert_same_as_reference(run, reference)


def test_disk_full_while_checkpointing_then_resume(tmp_path, tiny_model, monkeypatch):
    """The disk fills while checkpoint-8 is written: the stage fails naming the error and how to continue; the
    half-written checkpoint is skipped and the resumed run continues from checkpoint-4."""
    from transformers import Trainer

    from align.errors import StageError
    from align.pipeline import run_pipeline
    from align.recipe import load_recipe

    text = RECIPE.replace("name: rs", f"name: full\noutput_dir: {tmp_path}").split("  - type: rft")[0]
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", text))
    original = Trainer._save_rng_state

    def disk_full(self, output_dir):
        if self.state.global_step == 8:
            raise OSError(28, "No space left on device")
        return original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", disk_full)
    with pytest.raises(StageError, match="No space left on device") as err:
        run_pipeline(recipe)
    assert "--resume" in err.value.hint
    run = (tmp_path / "full" / "latest").resolve()
    assert (run / "sft" / "checkpoints" / "checkpoint-8" / "model.safetensors").exists()  # written, not complete
    monkeypatch.setattr(Trainer, "_save_rng_state", original)
    run_pipeline(recipe, resume=str(run))
    steps = [s for s, _ in _loss_steps(run, "sft")]
    assert steps == list(range(1, 25))
    assert json.loads((run / "manifest.json").read_text())["stages"]["sft"]["status"] == "done"


def test_resume_refuses_a_changed_recipe_and_a_missing_run(recipe, reference, tmp_path):
    from align.errors import UserError
    from align.pipeline import run_pipeline
    from align.recipe import load_recipe

    changed = load_recipe(recipe, [f"output_dir={reference.parent.parent}", "stages.2.args.max_steps=9"])
    with pytest.raises(UserError, match="max_steps: 9"):
        run_pipeline(changed, resume=str(reference))
    with pytest.raises(UserError, match="no run directory"):
        run_pipeline(load_recipe(recipe, [f"output_dir={tmp_path}"]), resume="latest")
    assert _status(reference)["resume_would"] == ["nothing: the run finished"]


def test_resume_flag_parsing():
    from align.cli import _resume_arg, build_parser

    args = build_parser().parse_args(["run", "r.yaml", "seed=1", "--resume", "seed=3"])
    _resume_arg(args)  # argparse read the override as the run directory
    assert args.overrides == ["seed=1", "seed=3"] and args.resume == "latest"
    args = build_parser().parse_args(["launch", "r.yaml", "--resume=/runs/x"])
    assert args.resume == "/runs/x" and build_parser().parse_args(["run", "r.yaml"]).resume is None


# test_distributed's 2-process recipe (SFT, then GRPO with LoRA), longer and with checkpoints every 2 steps
DDP = (
    DIST_RECIPE.replace("name: dist", "name: rs")
    .replace("max_steps: 3,", "max_steps: 4, save_steps: 2,", 1)
    .replace("max_steps: 3,", "max_steps: 8, save_steps: 2,", 1)
)


def test_kill_a_two_process_run_during_grpo_then_resume(tmp_path, tiny_model):
    """2-process DDP through `align launch`: SIGKILL the launcher and both ranks mid-GRPO, resume with every rank
    from the same checkpoint; the ranks end with identical parameters and every step is logged once."""
    recipe = write_recipe(tmp_path / "ddp.yaml", DDP)

    def mid_grpo(run: Path) -> bool:
        return (run / "grpo" / "checkpoints" / "checkpoint-4" / "align_checkpoint_complete.json").exists()

    proc = subprocess.Popen([sys.executable, "-m", "align.cli", "launch", str(recipe), f"output_dir={tmp_path}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    run, deadline = tmp_path / "rs" / "latest", time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if run.exists() and mid_grpo(run):
            break
        time.sleep(0.01)
    ranks = _descendants(proc.pid)  # torchrun starts each rank in its own session: kill the whole tree at once
    for pid in [proc.pid, *ranks]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before the kill point"
    assert ranks and not any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in ranks)
    run = run.resolve()
    assert _status(run)["stages"][1]["status"] == "running"
    out = _cli("launch", str(recipe), f"output_dir={tmp_path}", "--resume", timeout=180)
    assert "--resume=latest" in out.stdout + out.stderr  # every rank got the flag
    record = json.loads((run / "distributed.json").read_text())
    assert record["world_size"] == 2 and record["stages"]["grpo"]["identical"], record["stages"]
    assert [s for s, _ in _loss_steps(run, "sft")] == [1, 2, 3, 4]
    assert [s for s, _ in _loss_steps(run, "grpo")] == list(range(1, 9))
    assert sorted(_rollout_steps(run)) == list(range(8))


def test_kill_during_rm_then_during_grpo_with_its_reward(tmp_path, tiny_model):
    """V-RLHF: killed while the reward model trains (resumed from its own checkpoint), then killed in the GRPO stage
    that uses it (the finished rm stage is skipped and GRPO still scores with the reward model, not the policy)."""
    from tests.test_vrlhf import RECIPE as VRLHF

    text = (VRLHF.replace("logging_steps: 5", "logging_steps: 3\n    save_steps: 6").replace("epochs: 4", "epochs: 2")
            .replace("args: {{max_steps: 2,", "args: {{max_steps: 4, save_steps: 2, logging_steps: 1,"))  # fmt: skip
    reference = tmp_path / "reference"
    _cli("run", str(write_recipe(tmp_path / "ref.yaml", text.format(out=reference))))
    reference = (reference / "v" / "latest").resolve()
    recipe = write_recipe(tmp_path / "r.yaml", text.format(out=tmp_path / "out"))

    def mid_rm(run: Path) -> bool:
        return (run / "rm" / "checkpoints" / "checkpoint-6" / "align_checkpoint_complete.json").exists()

    run = _kill_when(recipe, tmp_path / "out", mid_rm, name="v")
    assert _status(run)["stages"][0]["status"] == "running"
    proc = subprocess.Popen([sys.executable, "-m", "align.cli", "run", str(recipe), "--resume"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if (run / "grpo" / "checkpoints" / "checkpoint-2" / "align_checkpoint_complete.json").exists():
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    first_resume = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL and "resuming from checkpoint-6 (step 6)" in first_resume
    out = _cli("run", str(recipe), "--resume").stdout
    assert "done before the resume" in out and "grpo: resuming from checkpoint-" in out
    for stage in ("rm", "grpo"):
        got, want = _loss_steps(run, stage), _loss_steps(reference, stage)
        assert [s for s, _ in got] == [s for s, _ in want], stage
        assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], abs=1e-4), stage
    rollouts = read_jsonl(run / "grpo" / "rollouts.jsonl")
    assert len(rollouts) == 4 * 8 and all(r["rewards"]["reward_model"] is not None for r in rollouts)
    assert [r["rewards"]["reward_model"] for r in rollouts] == pytest.approx(
        [r["rewards"]["reward_model"] for r in read_jsonl(reference / "grpo" / "rollouts.jsonl")], abs=1e-4
    )
