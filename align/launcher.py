"""``align launch``: turn a recipe's ``launch:`` and ``rollout:`` blocks into processes (what ``launch.sh`` runs).

* one process: ``align run RECIPE ...`` in this process;
* more processes or nodes: ``accelerate launch`` with accelerate's own flags (gloo on CPU, DeepSpeed via
  ``--use_deepspeed --zero_stage``), running ``python -m align.cli run RECIPE ...`` on every rank;
* GRPO in vLLM server mode (``rollout.vllm_mode: server`` with ``launch.vllm_server``): a ``vllm serve`` with the
  flags TRL 1.16 needs for weight sync is started on the GPUs reserved for it, the launcher waits for its
  ``/health`` endpoint, runs training on the remaining GPUs, and stops the server (whole process group) on
  success, failure or Ctrl-C. If the server is not healthy within ``rollout.server_timeout`` seconds the launch
  stops and prints the server log's last lines; the run directory is untouched.

``--dry-run`` prints the exact commands and environment without starting anything.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from align.errors import UserError


def has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def visible_gpus(n: int | None = None) -> list[int]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        return [int(x) for x in env.split(",") if x.strip()]
    if n is None:
        import torch

        n = torch.cuda.device_count()
    return list(range(n))


def server_gpus(recipe, gpus: list[int]) -> tuple[list[int], list[int]]:
    """(GPUs for the vLLM server, GPUs for training) on this node."""
    server = recipe.launch.vllm_server
    want = server.gpus if isinstance(server.gpus, list) else gpus[-server.gpus :] if server.gpus else []
    missing = [g for g in want if g not in gpus]
    if missing:
        raise UserError(f"launch.vllm_server.gpus names GPU(s) {missing}, but this node has {gpus}",
                        "list GPUs this node has, or give a count")  # fmt: skip
    train = [g for g in gpus if g not in want]
    if not train:
        raise UserError("launch.vllm_server takes every GPU of this node; none is left for training",
                        "reserve fewer GPUs for the server")  # fmt: skip
    return want, train


def server_command(recipe, model_path: str) -> list[str]:
    """``vllm serve`` as ``trl vllm-serve`` (TRL 1.16) runs it: weight transfer over NCCL, processed log-probs."""
    r, s = recipe.rollout, recipe.launch.vllm_server
    cmd = ["vllm", "serve", model_path, "--host", "0.0.0.0", "--port", str(r.server_port),
           "--tensor-parallel-size", str(s.tensor_parallel_size), "--data-parallel-size", "1",
           "--gpu-memory-utilization", "0.9", "--dtype", r.dtype,
           "--enable-scale-out", "--weight-transfer-config", '{"backend": "nccl"}',
           "--logprobs-mode", "processed_logprobs", "--max-logprobs", "-1"]  # fmt: skip
    if r.max_model_len:
        cmd += ["--max-model-len", str(r.max_model_len)]
    if recipe.model.trust_remote_code:
        cmd.append("--trust-remote-code")
    return cmd


def training_command(recipe, recipe_path: str, overrides: list[str], n_train_gpus: int | None = None) -> list[str]:
    launch = recipe.launch
    run = [sys.executable, "-m", "align.cli", "run", recipe_path, *overrides]
    per_node = n_train_gpus if n_train_gpus else launch.processes
    world = per_node * launch.nodes
    if world == 1:
        return run
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(world),
           "--num_machines", str(launch.nodes), "--machine_rank", str(launch.node_rank),
           "--main_process_port", str(launch.main_port)]  # fmt: skip
    if launch.nodes > 1:
        if not launch.main_address:
            raise UserError("launch.nodes > 1 needs launch.main_address (the address of node 0)")
        cmd += ["--main_process_ip", launch.main_address]
    if launch.backend.startswith("deepspeed"):
        cmd += ["--use_deepspeed", "--zero_stage", launch.backend[-1]]
        if launch.offload:
            cmd += ["--offload_optimizer_device", "cpu", "--offload_param_device", "cpu"]
    elif launch.backend == "fsdp":
        if not has_gpu():
            raise UserError("launch.backend fsdp does not run on CPU", "use ddp or deepspeed_zero2/3 on CPU")
        cmd += ["--use_fsdp"]
    else:
        cmd += ["--multi_gpu"] if has_gpu() else []
    if not has_gpu():
        cmd += ["--cpu"]  # gloo; without it accelerate would start one process per (absent) GPU
    return cmd + ["-m", "align.cli", "run", recipe_path, *overrides]


def uses_server(recipe) -> bool:
    grpo = any(s.type == "grpo" for s in recipe.stages)
    return grpo and recipe.rollout.engine != "hf" and recipe.rollout.vllm_mode == "server"


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float, poll: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(poll)
    return False


def stop(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """Stop a process and everything it started (its own process group)."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def run_with_server(server_cmd, server_env, train_cmd, train_env, health_url: str, timeout: float,
                    log_path: Path, say=print) -> int:  # fmt: skip
    """Start the server, wait for health, run training, always stop the server. Returns training's exit code."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    server = None
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    for s in previous:
        signal.signal(s, interrupted)
    try:
        with open(log_path, "ab") as log:
            say(f"starting vLLM server: {shlex.join(server_cmd)} (log: {log_path})")
            server = subprocess.Popen(server_cmd, env=server_env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)  # fmt: skip
        if not wait_healthy(health_url, server, timeout):
            state = "exited" if server.poll() is not None else f"not healthy after {timeout:g} s"
            raise UserError(f"the vLLM server {state}; last lines of {log_path}:\n{tail(log_path)}",
                            "check the model path and the GPUs in launch.vllm_server, or raise rollout.server_timeout")  # fmt: skip
        say(f"vLLM server healthy at {health_url}; training: {shlex.join(train_cmd)}")
        return subprocess.call(train_cmd, env=train_env)
    finally:
        stop(server)
        for s, h in previous.items():
            signal.signal(s, h)


def launch(recipe_path: str, overrides: list[str], dry_run: bool = False, say=print) -> int:
    from align.models import resolve_model_path
    from align.recipe import load_recipe

    recipe = load_recipe(recipe_path, overrides)
    if not uses_server(recipe):
        single = recipe.launch.processes * recipe.launch.nodes == 1
        cmd = training_command(recipe, recipe_path, overrides)
        if dry_run or not single:
            say(f"training: {shlex.join(cmd)}")
        if dry_run:
            return 0
        if single:  # no child process: run the pipeline here
            from align.pipeline import run_pipeline

            run_pipeline(recipe)
            return 0
        return subprocess.call(cmd)
    if recipe.launch.vllm_server is None:
        raise UserError("rollout.vllm_mode is 'server' but the recipe has no launch.vllm_server block",
                        "add launch.vllm_server: {gpus: 1} (GPUs of node 0 for `vllm serve`), or use colocate")  # fmt: skip
    if not dry_run and not has_gpu():
        raise UserError("GRPO in vLLM server mode needs GPUs (TRL syncs weights to the server over NCCL)",
                        "on CPU use rollout.vllm_mode: colocate")  # fmt: skip
    gpus = visible_gpus(None if has_gpu() else 8)  # a dry run on a machine without GPUs plans for an 8-GPU node
    s_gpus, t_gpus = server_gpus(recipe, gpus)
    model = recipe.model.path if dry_run else resolve_model_path(recipe.model.path)
    server_cmd = server_command(recipe, model)
    train_cmd = training_command(recipe, recipe_path, overrides, n_train_gpus=len(t_gpus))
    server_env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "CUDA_VISIBLE_DEVICES": ",".join(map(str, s_gpus))}
    train_env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(map(str, t_gpus))}
    url = f"http://{recipe.rollout.server_host}:{recipe.rollout.server_port}/health"
    if dry_run:
        say(f"vLLM server (GPUs {s_gpus}): VLLM_SERVER_DEV_MODE=1 CUDA_VISIBLE_DEVICES={server_env['CUDA_VISIBLE_DEVICES']} "
            f"{shlex.join(server_cmd)}")
        say(f"wait for {url} (up to {recipe.rollout.server_timeout:g} s), then")
        say(f"training (GPUs {t_gpus}): CUDA_VISIBLE_DEVICES={train_env['CUDA_VISIBLE_DEVICES']} {shlex.join(train_cmd)}")
        say("then stop the server (also on failure or Ctrl-C)")
        return 0
    if recipe.launch.node_rank != 0:  # the server runs on node 0; other nodes only train
        return subprocess.call(train_cmd, env=train_env)
    log = Path(recipe.output_dir) / recipe.name / "vllm_server.log"
    return run_with_server(server_cmd, server_env, train_cmd, train_env, url, recipe.rollout.server_timeout, log, say)
