"""``align launch``: turn a recipe's ``launch:`` and ``rollout:`` blocks into processes (what ``launch.sh`` runs).

* one process: ``align run RECIPE ...`` in this process;
* more processes or nodes: ``accelerate launch --config_file recipes/accelerate/<backend>.yaml`` with the counts,
  ranks, main address/port and mixed precision as command-line flags, running ``python -m align.cli run RECIPE ...``
  on every rank. The config files: ``ddp.yaml`` (DDP; gloo on CPU), ``zero2.yaml`` / ``zero3.yaml`` (DeepSpeed,
  CPU or GPU), ``fsdp.yaml`` (GPUs only);
* GRPO in vLLM server mode (``rollout.vllm_mode: server`` with ``launch.vllm_server``): a ``vllm serve`` with the
  flags TRL 1.16 needs for weight sync is started on the GPUs reserved for it, the launcher waits for its
  ``/health`` endpoint, runs training on the remaining GPUs, and stops the server (whole process group) on
  success, failure or Ctrl-C. If the server is not healthy within ``rollout.server_timeout`` seconds the launch
  stops and prints the server log's last lines; the run directory is untouched.

Settings that would fail late or silently degrade are refused before any process starts (``check``): FSDP or CPU
offload on a machine without GPUs (accelerate silently falls back to DDP there), offload without DeepSpeed, a GRPO
generation batch that the process count leaves indivisible by ``num_generations``, several nodes without
``main_address``, stages that run as a single process. CPU runs never use ``accelerate launch --cpu`` (it starts
ONE process whatever ``--num_processes`` says): they use the DDP/DeepSpeed invocation, and the workbench puts
``use_cpu: true`` into the TRL config (without it each process trains its own copy).

The exact command is printed before it runs; ``--dry-run`` prints it (and the vLLM server plan) and stops.
"""

from __future__ import annotations

import importlib.util
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
from align.models import resolve_model_path
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from align.stages import STAGES, launch_problems

ACCELERATE_CONFIGS = Path(__file__).resolve().parent.parent / "recipes" / "accelerate"
CONFIG_FILES = {"ddp": "ddp.yaml", "deepspeed_zero2": "zero2.yaml", "deepspeed_zero3": "zero3.yaml",
                "fsdp": "fsdp.yaml"}  # fmt: skip
LOOPBACK = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


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
    if recipe.launch.processes > len(train):
        raise UserError(f"launch.processes {recipe.launch.processes} needs that many GPUs, but only {len(train)} of "
                        f"this node's {gpus} are left after the vLLM server's {want}",
                        f"set launch.processes to at most {len(train)}")  # fmt: skip
    return want, train[: recipe.launch.processes]


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


def world_size(recipe) -> int:
    return recipe.launch.processes * recipe.launch.nodes


def mixed_precision(recipe, on_gpu: bool) -> str:
    """accelerate's --mixed_precision, agreeing with the trainers' own setting (TRL defaults to bf16 on GPUs)."""
    if not on_gpu:
        return "no"
    args = [s.args for s in recipe.stages]
    if any(a.get("fp16") for a in args):
        return "fp16"
    if any(a.get("bf16") is False for a in args):
        return "no"
    return "bf16"


def check(recipe, on_gpu: bool, dry_run: bool = False) -> None:
    """Refuse, before any process starts, settings that would fail on some rank or silently degrade."""

    launch, world = recipe.launch, world_size(recipe)
    problems = list(launch_problems(recipe, world, on_gpu))

    def refuse(message: str, hint: str) -> None:
        problems.append((message, hint))

    if launch.nodes > 1 and not launch.main_address:
        refuse(
            "launch.nodes > 1 needs launch.main_address (the address of node 0)",
            "e.g. launch.main_address=$(scontrol show hostnames | head -1) under SLURM",
        )
    if launch.nodes > 1 and launch.main_port == 0:
        refuse("launch.main_port 0 (any free port) works on one node only", "give node 0's port")
    if launch.backend == "fsdp" and not on_gpu:
        refuse(
            "launch.backend fsdp does not run on CPU: accelerate enables FSDP only on GPUs and would silently fall "
            "back to DDP",
            "use ddp or deepspeed_zero2/3 on CPU",
        )
    if launch.backend == "fsdp" and any(s.lora or (s.lora is None and recipe.model.lora) for s in recipe.stages):
        refuse(
            "launch.backend fsdp with LoRA: the workbench saves FSDP runs from the full state dict and cannot merge "
            "adapters there",
            "use deepspeed_zero3 with LoRA",
        )
    if launch.offload and not launch.backend.startswith("deepspeed"):
        refuse(
            f"launch.offload is a DeepSpeed option; backend {launch.backend} has none",
            "use deepspeed_zero2 (optimizer offload) or deepspeed_zero3 (optimizer + parameters)",
        )
    elif launch.offload and not on_gpu:
        refuse(
            "launch.offload moves optimizer state (and ZeRO-3 parameters) from GPU to CPU memory; without GPUs there "
            "is nothing to offload",
            "remove launch.offload",
        )
    if uses_server(recipe) and launch.nodes > 1 and recipe.rollout.server_host in LOOPBACK:
        refuse(
            f"rollout.server_host {recipe.rollout.server_host} is not reachable from the other nodes",
            "set rollout.server_host to node 0's address (e.g. the same as launch.main_address)",
        )
    deepspeed_missing = not dry_run and not importlib.util.find_spec("deepspeed")
    if world > 1 and launch.backend.startswith("deepspeed") and deepspeed_missing:
        refuse(
            "launch.backend needs DeepSpeed, which is not installed",
            "ALIGN_EXTRAS=deepspeed ./launch.sh ... (or pip install deepspeed==0.19.8)",
        )
    if problems:
        message, hint = problems[0]
        more = "".join(f"\n  also: {m}" for m, _ in problems[1:])
        raise UserError(message + more, hint)


def training_command(
    recipe, recipe_path: str, overrides: list[str], on_gpu: bool | None = None, resume: str | None = None
) -> list[str]:
    """The command that trains on this node: ``align run`` for one process, else ``accelerate launch`` with a
    config from recipes/accelerate/ and the counts and addresses as flags."""
    launch = recipe.launch
    on_gpu = has_gpu() if on_gpu is None else on_gpu
    run = [sys.executable, "-m", "align.cli", "run", recipe_path, *overrides]
    if resume is not None:
        run.append(f"--resume={resume}")
    world = world_size(recipe)
    if world == 1:
        return run
    config = ACCELERATE_CONFIGS / CONFIG_FILES[launch.backend]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
           "--num_processes", str(world), "--num_machines", str(launch.nodes), "--machine_rank", str(launch.node_rank),
           "--main_process_port", str(launch.main_port), "--mixed_precision", mixed_precision(recipe, on_gpu),
           "--dynamo_backend", "no"]  # fmt: skip
    if launch.nodes > 1:
        cmd += ["--main_process_ip", launch.main_address]
    if launch.offload:
        cmd += ["--offload_optimizer_device", "cpu"]
        if launch.backend == "deepspeed_zero3":
            cmd += ["--offload_param_device", "cpu"]
    return cmd + ["-m", *run[2:]]


def uses_server(recipe) -> bool:
    """Whether a stage trains against a `vllm serve` (GRPO with rollout.vllm_mode: server)."""
    served = any(STAGES[s.type].rollout_server for s in recipe.stages)
    return served and recipe.rollout.engine != "hf" and recipe.rollout.vllm_mode == "server"


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


def launch(recipe_path: str, overrides: list[str], dry_run: bool = False, say=print,
           gpus: int | None = None, resume: str | None = None) -> int:  # fmt: skip
    """Run (or with ``dry_run`` only print) what the recipe's launch block asks for. ``gpus`` plans for a node with
    that many GPUs (a dry run on a machine without them, e.g. a cluster's login node)."""

    recipe = load_recipe(recipe_path, overrides)
    if gpus is not None and not dry_run:
        raise UserError("--gpus plans a launch for other hardware and works with --dry-run only")
    on_gpu = bool(gpus) if gpus is not None else has_gpu()
    if dry_run and not on_gpu and uses_server(recipe):  # server mode is GPU-only: plan for an 8-GPU node
        on_gpu, gpus = True, 8
        say("(no GPU here: planning for a node with 8 GPUs, or those in CUDA_VISIBLE_DEVICES)")
    check(recipe, on_gpu, dry_run)
    if not uses_server(recipe):
        cmd = training_command(recipe, recipe_path, overrides, on_gpu, resume)
        say(f"training: {shlex.join(cmd)}")
        if dry_run:
            return 0
        if world_size(recipe) == 1:  # no child process: run the pipeline here
            run_pipeline(recipe, resume=resume)
            return 0
        return subprocess.call(cmd)
    if recipe.launch.vllm_server is None:
        raise UserError(
            "rollout.vllm_mode is 'server' but the recipe has no launch.vllm_server block",
            "add launch.vllm_server: {gpus: 1} (GPUs of node 0 for `vllm serve`), or use colocate",
        )
    if recipe.model.compose is not None:
        raise UserError(
            "rollout.vllm_mode 'server' starts `vllm serve` before the run composes its model (model.compose)",
            "compose first (align model compose … --out DIR) and set model.path: DIR, or use vllm_mode: colocate",
        )
    if not on_gpu:
        raise UserError(
            "GRPO in vLLM server mode needs GPUs (TRL syncs weights to the server over NCCL)",
            "on CPU use rollout.vllm_mode: colocate (or plan a GPU node with --dry-run --gpus 8)",
        )
    node_gpus = visible_gpus(gpus)
    s_gpus, t_gpus = server_gpus(recipe, node_gpus)
    if recipe.launch.node_rank != 0:
        s_gpus = []  # the server runs on node 0; the other nodes train on the same GPU ids
    model = recipe.model.path if dry_run else resolve_model_path(recipe.model.path)
    server_cmd = server_command(recipe, model)
    train_cmd = training_command(recipe, recipe_path, overrides, on_gpu, resume)
    server_env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "CUDA_VISIBLE_DEVICES": ",".join(map(str, s_gpus))}
    train_env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(map(str, t_gpus))}
    url = f"http://{recipe.rollout.server_host}:{recipe.rollout.server_port}/health"
    if dry_run:
        if s_gpus:
            say(f"vLLM server (GPUs {s_gpus}): VLLM_SERVER_DEV_MODE=1 "
                f"CUDA_VISIBLE_DEVICES={server_env['CUDA_VISIBLE_DEVICES']} {shlex.join(server_cmd)}")  # fmt: skip
            say(f"wait for {url} (up to {recipe.rollout.server_timeout:g} s), then")
        else:
            say(f"node {recipe.launch.node_rank}: no vLLM server here (node 0 runs it at {url})")
        say(f"training (GPUs {t_gpus}): CUDA_VISIBLE_DEVICES={train_env['CUDA_VISIBLE_DEVICES']} "
            f"{shlex.join(train_cmd)}")  # fmt: skip
        if s_gpus:
            say("then stop the server (also on failure or Ctrl-C)")
        return 0
    if not s_gpus:
        say(f"training (GPUs {t_gpus}): {shlex.join(train_cmd)}")
        return subprocess.call(train_cmd, env=train_env)
    log = Path(recipe.output_dir) / recipe.name / "vllm_server.log"
    return run_with_server(server_cmd, server_env, train_cmd, train_env, url, recipe.rollout.server_timeout, log, say)
