"""Real multi-process training on CPU through `align launch` (accelerate launch + gloo): SFT and GRPO on the tiny
VLM with 2 processes under DDP, DeepSpeed ZeRO-2 and ZeRO-3, and on two simulated nodes over loopback.

Each run asserts the world size recorded in the run directory (`distributed.json`), that every rank finished each
stage with identical parameters, and the backend's own evidence (ZeRO-3 shards; ZeRO-2/3 losses, gradient norms
and saved weights match DDP on the same seed). Every launch runs under a timeout that stops the launcher and every
rank it started, so a hung rank cannot hang CI. The first DeepSpeed run compiles a C++ op (about a minute, cached
in ~/.cache/torch_extensions); the budget for this file is under 3 minutes after that.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, write_recipe

RECIPE = """
name: dist
seed: 7
data: {train_size: 48, eval_size: 4, seed: 5, tasks: [count, color, ocr]}
eval: {enabled: false}
rollout: {engine: hf}
rewards: [{name: accuracy}, {name: korean_consistency}]
launch: {processes: 2, main_port: 0}
stages:
  - type: sft
    args: {max_steps: 3, per_device_train_batch_size: 4, logging_steps: 1, learning_rate: 2.0e-3}
  - type: grpo
    lora: {r: 8, alpha: 16}
    args: {max_steps: 3, per_device_train_batch_size: 4, num_generations: 4, max_completion_length: 6,
           logging_steps: 1, learning_rate: 1.0e-3, disable_dropout: true}  # no dropout: the DDP run shares
                                                                               # prompts; ZeRO's policy pass is TRL's
"""

# The DDP reference run also ends with DPO (LoRA) on synthetic image preference pairs.
DPO_STAGE = """
  - type: dpo
    preferences: synthetic
    pairs: 32
    lora: {r: 8, alpha: 16}
    args: {max_steps: 2, per_device_train_batch_size: 4, per_device_eval_batch_size: 4, logging_steps: 1}
"""

# Mixed image and text-only rows (arith), evaluation after every stage, RFT and GRPO's prompt-selection pre-pass
# (both sample on rank 0 and share the result).
FULL = """
name: nodes
seed: 7
data: {train_size: 48, eval_size: 4, seed: 5}
eval: {max_new_tokens: 4}
rollout: {engine: hf}
rewards: [{name: accuracy}, {name: korean_consistency}]
stages:
  - type: sft
    args: {max_steps: 3, per_device_train_batch_size: 4, logging_steps: 1, learning_rate: 2.0e-3}
  - type: rft
    prompts: 4
    samples: 2
    max_new_tokens: 4
    accept: {reward: total, threshold: 0.0}
    eval: false
    args: {max_steps: 1, per_device_train_batch_size: 2, logging_steps: 1, warmup_steps: 0}
  - type: grpo
    prompts: 8
    select_prompts: {enabled: true, source: prepass, samples: 2, reward: korean_consistency}
    args: {max_steps: 2, per_device_train_batch_size: 4, num_generations: 4, max_completion_length: 6,
           logging_steps: 1, learning_rate: 1.0e-3}
"""


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        out += children
        todo += children
    return out


def _stop(proc: subprocess.Popen) -> None:
    """Stop a launcher and every rank under it (torchrun starts each rank in its own session)."""
    tree = _descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # torchrun's agent stops its workers on SIGTERM
        proc.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    for pid in [proc.pid, *tree]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _start(recipe: Path, *overrides: str) -> subprocess.Popen:
    return _popen([sys.executable, "-m", "align.cli", "launch", str(recipe), *overrides])


def _popen(cmd: list[str]) -> subprocess.Popen:
    """In its own process group (stopped as a whole on timeout), output captured."""
    out = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    return subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, **out)


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    """Wait for every launcher; on timeout stop all of them (and their ranks) and fail with their output."""
    deadline, outputs = time.monotonic() + timeout, []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outputs.append(out)
    except subprocess.TimeoutExpired:
        for proc in procs:
            _stop(proc)
        tails = ["\n".join((p.communicate()[0] or "").splitlines()[-30:]) for p in procs]
        pytest.fail(f"launch did not finish within {timeout:g} s (stopped); last output:\n" + "\n---\n".join(tails))
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, "\n".join(out.splitlines()[-40:])
    return outputs


def _launch(recipe: Path, *overrides: str, timeout: float = 180) -> str:
    return _finish([_start(recipe, *overrides)], timeout)[0]


def _run(out_dir: Path, name: str) -> Path:
    return (out_dir / name / "latest").resolve()


def _record(run: Path) -> dict:
    return json.loads((run / "distributed.json").read_text())


def _metrics(run: Path, stage: str, key: str) -> list[float]:
    rows = [json.loads(line) for line in (run / stage / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if key in r]


def _weights(run: Path, stage: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted((run / stage / "model").glob("*.safetensors")):
        out.update(load_file(f))
    return out


def _assert_distributed(run: Path, stages=("sft", "grpo"), world: int = 2) -> dict:
    """World size recorded, every rank in every stage trained in one world and ended with identical parameters."""
    record = _record(run)
    assert record["world_size"] == world and record["launched_world_size"] == world
    assert record["process_group_backend"] == "gloo"
    assert [r["rank"] for r in record["ranks"]] == list(range(world))
    for stage in stages:
        entry = record["stages"][stage]
        assert entry["world_size"] == world and entry["identical"], entry
        assert [r["trainer_processes"] for r in entry["ranks"]] == [world] * world
        assert len({r["checksum"] for r in entry["ranks"]}) == 1
        assert (run / stage / "model" / "config.json").exists()
    assert max(_metrics(run, "grpo", "grad_norm")) > 0  # GRPO really updated the policy
    return record


def _deepspeed():
    if os.environ.get("ALIGN_EXPECT_DEEPSPEED") == "1":
        import deepspeed  # noqa: F401 - fail loudly: launch.sh test installs it
    else:
        pytest.importorskip("deepspeed", reason="DeepSpeed not installed (./launch.sh test installs it)")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, tiny_model) -> Path:
    """SFT then GRPO (LoRA) with 2 processes under DDP: the reference the DeepSpeed runs are compared with; then DPO."""
    out = tmp_path_factory.mktemp("ddp")
    recipe = write_recipe(out / "dist.yaml", RECIPE + DPO_STAGE)
    _launch(recipe, f"output_dir={out}")
    return _run(out, "dist")


def test_ddp_two_processes(ddp_run):
    record = _assert_distributed(ddp_run, stages=("sft", "grpo", "dpo"))
    assert record["backend"] == "ddp" and "ACCELERATE_USE_DEEPSPEED" not in record["accelerate"]
    assert record["timeout_minutes"] == 180  # ranks wait this long for rank 0 (e.g. while it evaluates)
    assert json.loads((ddp_run / "dpo" / "summary.json").read_text())["steps"] == 2
    shared = json.loads((ddp_run / "grpo" / "summary.json").read_text())["shared_prompt"]
    assert shared["path"] == "shared" and shared["log_prob_passes"]["trl"] == 0  # the policy pass through DDP too
    for stage in ("sft", "grpo", "dpo"):
        for r in record["stages"][stage]["ranks"]:
            assert r["distributed_type"] == "MULTI_CPU" and r["local_parameters"] == r["parameters"]
    events = [json.loads(x)["event"] for x in (ddp_run / "events.jsonl").read_text().splitlines()]
    assert events.count("stage_done") == 3 and events[-1] == "finished"  # rank 0 alone writes the events


@pytest.mark.parametrize("backend", ["deepspeed_zero2", "deepspeed_zero3"])
def test_deepspeed_matches_ddp(backend, ddp_run, tmp_path):
    _deepspeed()
    recipe = write_recipe(tmp_path / "dist.yaml", RECIPE)
    _launch(recipe, f"output_dir={tmp_path}", f"launch.backend={backend}", timeout=300)
    run = _run(tmp_path, "dist")
    record = _assert_distributed(run)
    stage = backend[-1]
    assert record["accelerate"]["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == stage
    for name in ("sft", "grpo"):
        ranks = record["stages"][name]["ranks"]
        assert all(r["distributed_type"] == "DEEPSPEED" for r in ranks)
        total = ranks[0]["parameters"]
        if stage == "3":  # parameters sharded: each rank holds about half of them
            assert all(r["zero3"] and r["local_parameters"] < 0.6 * total for r in ranks)
            assert sum(r["local_parameters"] for r in ranks) >= total
        else:  # ZeRO-2 shards optimizer state and gradients; parameters stay whole on every rank
            assert all(not r["zero3"] and r["local_parameters"] == total for r in ranks)
    # the same training as DDP: losses, gradient norms and the saved (merged) weights agree
    assert _metrics(run, "sft", "loss") == pytest.approx(_metrics(ddp_run, "sft", "loss"), rel=1e-4)
    assert _metrics(run, "grpo", "grad_norm") == pytest.approx(_metrics(ddp_run, "grpo", "grad_norm"), rel=1e-3)
    ours, ref = _weights(run, "grpo"), _weights(ddp_run, "grpo")
    assert ours.keys() == ref.keys()
    assert max((ours[k] - ref[k]).abs().max().item() for k in ref) < 1e-4


def test_two_simulated_nodes(tmp_path, tiny_model):
    """Two launchers on one machine as node 0 and node 1 (one process each), rendezvous on 127.0.0.1; the full
    pipeline on mixed image/text data: SFT, RFT (rank 0 samples), GRPO after a prompt-selection pre-pass (rank 0
    samples), evaluation and comparison on rank 0."""
    from tests.test_launcher import _free_port

    recipe = write_recipe(tmp_path / "nodes.yaml", FULL)
    common = [f"output_dir={tmp_path}", "launch.processes=1", "launch.nodes=2", "launch.main_address=127.0.0.1",
              f"launch.main_port={_free_port()}"]  # fmt: skip
    procs = [_start(recipe, *common, f"launch.node_rank={rank}") for rank in (0, 1)]
    _finish(procs, timeout=180)
    run = _run(tmp_path, "nodes")
    record = _assert_distributed(run, stages=("sft", "rft", "grpo"))
    assert record["nodes"] == 2 and [r["node_rank"] for r in record["ranks"]] == [0, 1]
    for stage in ("base", "sft", "grpo"):
        assert (run / stage / "eval.json").exists()
    assert (run / "rft" / "accepted.jsonl").exists() and (run / "compare.md").exists()
    summary = json.loads((run / "grpo" / "summary.json").read_text())
    assert summary["pass_rates_from"] == "prepass" and 0 < summary["prompts_after"] <= 8


def test_ranks_with_different_parameters_fail_naming_them(tmp_path):
    """The check itself, across two real processes: ranks whose parameters differ stop with a StageError."""
    script = tmp_path / "replicas.py"
    script.write_text(
        "import sys, torch\n"
        "from align import distributed as dist\n"
        "from align.errors import StageError\n"
        "dist.init(on_gpu=False)\n"
        "torch.manual_seed(dist.rank() if sys.argv[1] == 'differ' else 0)\n"
        "infos = dist.replica_infos(torch.nn.Linear(4, 4), trainer_processes=dist.world_size())\n"
        "try:\n"
        "    dist.compare_ranks('toy', infos, dist.launched_world_size())\n"
        "    print(f'rank {dist.rank()}: identical', flush=True)\n"
        "except StageError as e:\n"
        "    print(f'rank {dist.rank()}: {e.message}', flush=True)\n"
        "dist.shutdown()\n"
    )
    outs = {}
    for mode in ("same", "differ"):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "recipes/accelerate/ddp.yaml"), "--num_processes", "2", "--main_process_port", "0",
               "--mixed_precision", "no", str(script), mode]  # fmt: skip
        outs[mode] = _finish([_popen(cmd)], timeout=120)[0]
    assert "rank 0: identical" in outs["same"] and "rank 1: identical" in outs["same"]
    for rank in (0, 1):
        assert f"rank {rank}: stage 'toy': the trained parameters differ across ranks (rank(s) [0]:" in outs["differ"]
    assert "rank(s) [1]:" in outs["differ"]


def test_one_process_started_for_a_two_process_recipe_is_refused(tmp_path, tiny_model):
    """`accelerate launch --cpu --num_processes 2` silently starts ONE process: the run notices and stops."""
    recipe = write_recipe(tmp_path / "dist.yaml", RECIPE)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "-m", "align.cli",
           "run", str(recipe), f"output_dir={tmp_path}"]  # fmt: skip
    proc = _popen(cmd)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        _stop(proc)
        pytest.fail("timed out")
    assert proc.returncode != 0
    assert "asks for 2 process(es) (1 node(s) × 2), but this run has 1" in out
    assert not (tmp_path / "dist").exists()  # stopped before creating a run directory


def test_compose_then_align_sft_grpo_on_two_processes(tmp_path):
    """A composed model (tests/assets/compose_tiny.yaml: the aiku connector; rank 0 composes it, the other rank waits
    and loads it) through the align stage (connector only), LoRA SFT and GRPO under 2-process DDP: one world per
    stage, identical parameters."""
    _launch(ROOT / "tests" / "assets" / "compose_tiny.yaml", f"output_dir={tmp_path}", "launch.processes=2",
            "launch.main_port=0", "eval.enabled=false", "align.args.max_steps=3", "sft.args.max_steps=2",
            "grpo.args.per_device_train_batch_size=2", "grpo.args.logging_steps=1", "grpo.args.max_steps=2",
            "rewards=[{name: accuracy}, {name: korean_consistency}]")  # fmt: skip
    run = _run(tmp_path, "compose_tiny")
    _assert_distributed(run, stages=("align", "sft", "grpo"))
    assert (run / "compose" / "model" / "composed_from.json").exists()
