"""`align launch` / launch.sh: the commands a recipe's launch: block turns into, and the vLLM-server lifecycle
(start, wait for health, train, always stop) with real processes. A real `vllm serve` needs GPUs (TRL syncs
weights to it over NCCL) and is not started here; a small HTTP server process stands in for it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from align.errors import RecipeError, UserError
from align.launcher import check, run_with_server, server_gpus, training_command
from align.recipe import load_recipe
from tests.conftest import ROOT, write_recipe

RECIPE = """
name: l
stages:
  - type: grpo
    args: {max_steps: 1}
"""


def _recipe(tmp_path, overrides=()):
    return load_recipe(write_recipe(tmp_path / "r.yaml", RECIPE), list(overrides))


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_training_commands(tmp_path):
    one = training_command(_recipe(tmp_path), "r.yaml", [])
    assert one[1:] == ["-m", "align.cli", "run", "r.yaml"]
    two = training_command(_recipe(tmp_path, ["launch.processes=2"]), "r.yaml", ["launch.processes=2"], on_gpu=False)
    assert two[1:3] == ["-m", "accelerate.commands.launch"] and _flag(two, "--num_processes") == "2"
    assert _flag(two, "--config_file") == str(ROOT / "recipes/accelerate/ddp.yaml")
    assert _flag(two, "--mixed_precision") == "no" and _flag(two, "--num_machines") == "1"
    assert "--cpu" not in two  # accelerate's --cpu starts ONE process whatever --num_processes says
    assert two[-5:] == ["-m", "align.cli", "run", "r.yaml", "launch.processes=2"]
    resumed = training_command(_recipe(tmp_path, ["launch.processes=2"]), "r.yaml", [], on_gpu=False, resume="latest")
    assert resumed[-5:] == ["-m", "align.cli", "run", "r.yaml", "--resume=latest"]  # every rank resumes
    assert training_command(_recipe(tmp_path), "r.yaml", [], resume="/runs/x")[-1] == "--resume=/runs/x"
    zero3 = training_command(_recipe(tmp_path, ["launch.processes=2", "launch.backend=deepspeed_zero3",
                                                "launch.offload=true"]), "r.yaml", [], on_gpu=True)  # fmt: skip
    assert _flag(zero3, "--config_file").endswith("recipes/accelerate/zero3.yaml")
    assert _flag(zero3, "--offload_param_device") == "cpu" and _flag(zero3, "--mixed_precision") == "bf16"
    zero2 = training_command(_recipe(tmp_path, ["launch.processes=2", "launch.backend=deepspeed_zero2",
                                                "launch.offload=true"]), "r.yaml", [], on_gpu=True)  # fmt: skip
    assert _flag(zero2, "--offload_optimizer_device") == "cpu" and "--offload_param_device" not in zero2  # ZeRO-2
    nodes = training_command(_recipe(tmp_path, ["launch.nodes=2", "launch.node_rank=1", "launch.processes=2",
                                                "launch.main_address=10.0.0.1"]), "r.yaml", [])  # fmt: skip
    assert _flag(nodes, "--num_processes") == "4" and _flag(nodes, "--machine_rank") == "1"
    assert _flag(nodes, "--main_process_ip") == "10.0.0.1" and _flag(nodes, "--num_machines") == "2"
    for name in ("ddp", "zero2", "zero3", "fsdp"):  # the config files accelerate reads
        from accelerate.commands.config.config_args import ClusterConfig

        ClusterConfig.from_yaml_file(ROOT / "recipes" / "accelerate" / f"{name}.yaml")


@pytest.mark.parametrize(
    ("overrides", "on_gpu", "message"),
    [
        (["launch.processes=2", "launch.backend=fsdp"], False, "fsdp does not run on CPU"),
        (["launch.nodes=2", "launch.processes=2"], False, "needs launch.main_address"),
        (["launch.processes=2", "launch.offload=true"], True, "offload is a DeepSpeed option"),
        (["launch.processes=2", "launch.backend=deepspeed_zero3", "launch.offload=true"], False, "nothing to offload"),
        (["launch.processes=3", "grpo.args.per_device_train_batch_size=2", "grpo.args.num_generations=4"], False,
         (r"generation batch \(per_device_train_batch_size 2 × 3 process\(es\) × 1 step\(s\) per generation = 6\) "
          "is not divisible by num_generations 4")),
        (["launch.processes=2", "grpo.args.use_cpu=false"], False, "each of the 2 processes train its own copy"),
        (["launch.processes=2", "grpo.args.log_multimodal=true"], False, "log_multimodal: true hangs"),
        (["launch.processes=2", "launch.backend=fsdp", "model.lora.r=8"], True, "fsdp with LoRA"),
        (["launch.nodes=2", "launch.main_address=10.0.0.1", "launch.main_port=0"], False, "works on one node only"),
        (["launch.nodes=2", "launch.main_address=10.0.0.1", "rollout.vllm_mode=server", "launch.vllm_server.gpus=1"],
         True, "server_host 127.0.0.1 is not reachable from the other nodes"),
    ],
)  # fmt: skip
def test_bad_launch_settings_are_refused_before_anything_starts(tmp_path, overrides, on_gpu, message):
    with pytest.raises(UserError, match=message):
        check(_recipe(tmp_path, ["grpo.args.per_device_train_batch_size=8", *overrides]), on_gpu)
    check(_recipe(tmp_path, ["grpo.args.per_device_train_batch_size=8", "launch.processes=2"]), False)  # fine


def test_single_process_stage_refused_on_several_processes(tmp_path):
    r = load_recipe(write_recipe(tmp_path / "rm.yaml", "name: r\nlaunch: {processes: 2}\nstages:\n  - type: rm\n"))
    with pytest.raises(UserError, match=r"stage 'rm' \(rm\) runs as a single process"):
        check(r, False)
    with pytest.raises(RecipeError, match="node_rank 2 is not below nodes"):
        _recipe(tmp_path, ["launch.nodes=2", "launch.node_rank=2"])


def test_server_gpu_reservation(tmp_path):
    r = _recipe(tmp_path, ["launch.vllm_server.gpus=2", "launch.processes=6"])
    assert server_gpus(r, list(range(8))) == ([6, 7], [0, 1, 2, 3, 4, 5])
    r = _recipe(tmp_path, ["launch.vllm_server.gpus=2", "launch.processes=4"])
    assert server_gpus(r, list(range(8))) == ([6, 7], [0, 1, 2, 3])  # launch.processes GPUs train
    with pytest.raises(UserError, match="launch.processes 7 needs that many GPUs, but only 6"):
        server_gpus(_recipe(tmp_path, ["launch.vllm_server.gpus=2", "launch.processes=7"]), list(range(8)))
    r = _recipe(tmp_path, ["launch.vllm_server.gpus=[0]"])
    assert server_gpus(r, [0, 1]) == ([0], [1])
    with pytest.raises(UserError, match="none is left for training"):
        server_gpus(_recipe(tmp_path, ["launch.vllm_server.gpus=2"]), [0, 1])


def test_launch_sh_dry_run_prints_server_topology(tmp_path):
    f = write_recipe(tmp_path / "s.yaml", RECIPE + "rollout: {vllm_mode: server, server_port: 8123}\n"
                     "launch: {processes: 3, vllm_server: {gpus: 1}}\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "align.cli", "launch", str(f), "--dry-run"], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": "0,1,2,3"}, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "CUDA_VISIBLE_DEVICES=3 vllm serve tiny-korean-vlm" in out.stdout
    assert "--weight-transfer-config" in out.stdout and "--port 8123" in out.stdout
    assert "training (GPUs [0, 1, 2]): CUDA_VISIBLE_DEVICES=0,1,2" in out.stdout and "--num_processes 3" in out.stdout
    assert "stop the server" in out.stdout


SERVER = textwrap.dedent("""
    import http.server, sys, time
    time.sleep(float(sys.argv[2]))
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404); self.end_headers()
        def log_message(self, *a):
            print("request", self.path, flush=True)
    print("serving", flush=True)
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
""")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_lifecycle_healthy_then_stopped(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    port = _free_port()
    marker = tmp_path / "trained"
    url = f"http://127.0.0.1:{port}/health"
    train = [
        sys.executable,
        "-c",
        f"import urllib.request as u; u.urlopen({url!r}); open({str(marker)!r}, 'w').write('ok')",
    ]
    said = []
    code = run_with_server([sys.executable, str(script), str(port), "1"], dict(os.environ), train, dict(os.environ),
                           f"http://127.0.0.1:{port}/health", 30, tmp_path / "server.log", said.append)  # fmt: skip
    assert code == 0 and marker.read_text() == "ok"  # training ran while the server was up
    assert "serving" in (tmp_path / "server.log").read_text()
    time.sleep(0.5)
    out = subprocess.run(["pgrep", "-f", str(script)], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == ""  # server stopped after training


def test_server_that_never_gets_healthy_stops_with_its_log(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    port = _free_port()
    start = time.monotonic()
    with pytest.raises(UserError, match="not healthy after 3 s") as err:
        run_with_server([sys.executable, str(script), str(port), "60"], dict(os.environ),
                        [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ),
                        f"http://127.0.0.1:{port}/health", 3, tmp_path / "server.log", print)  # fmt: skip
    assert time.monotonic() - start < 30
    assert "server.log" in str(err.value)
    out = subprocess.run(["pgrep", "-f", str(script)], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == ""


def test_server_stopped_when_training_fails(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    port = _free_port()
    code = run_with_server([sys.executable, str(script), str(port), "0"], dict(os.environ),
                           [sys.executable, "-c", "raise SystemExit(7)"], dict(os.environ),
                           f"http://127.0.0.1:{port}/health", 30, tmp_path / "server.log", print)  # fmt: skip
    assert code == 7
    out = subprocess.run(["pgrep", "-f", str(script)], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == ""


def _dry_run(recipe: str, *overrides: str, gpus: int | None = None) -> list[str]:
    from align.launcher import launch

    said: list[str] = []
    assert launch(str(ROOT / "recipes" / recipe), list(overrides), dry_run=True, say=said.append, gpus=gpus) == 0
    return said


def _accelerate(line: str) -> list[str]:
    cmd = line.split(": ", 1)[1].split()
    return cmd[cmd.index("accelerate.commands.launch") - 2 :]


def test_dry_run_cpu_layouts():
    """The layouts that run on CPU here (tests/test_distributed.py runs them for real)."""
    ddp = _accelerate(_dry_run("quickstart.yaml", "launch.processes=2", gpus=0)[0])
    assert _flag(ddp, "--config_file").endswith("recipes/accelerate/ddp.yaml") and "--cpu" not in ddp
    assert _flag(ddp, "--num_processes") == "2" and _flag(ddp, "--mixed_precision") == "no"
    zero3 = _accelerate(_dry_run("quickstart.yaml", "launch.processes=2", "launch.backend=deepspeed_zero3", gpus=0)[0])
    assert _flag(zero3, "--config_file").endswith("recipes/accelerate/zero3.yaml")
    node1 = _accelerate(_dry_run("quickstart.yaml", "launch.nodes=2", "launch.node_rank=1",
                                 "launch.main_address=127.0.0.1", "launch.main_port=29611", gpus=0)[0])  # fmt: skip
    assert [_flag(node1, f) for f in ("--num_processes", "--num_machines", "--machine_rank", "--main_process_ip",
                                      "--main_process_port")] == ["2", "2", "1", "127.0.0.1", "29611"]  # fmt: skip


def test_dry_run_gpu_layouts_of_grpo_vision():
    """recipes/grpo_vision*.yaml: 1 GPU, 8 GPUs (ZeRO-3 + colocate), 2 nodes x 8 GPUs (ZeRO-3 + vLLM server)."""
    one = _dry_run("grpo_vision.yaml", gpus=1)
    assert one == [f"training: {sys.executable} -m align.cli run {ROOT / 'recipes/grpo_vision.yaml'}"]

    eight = _accelerate(_dry_run("grpo_vision_8gpu.yaml", gpus=8)[0])
    assert _flag(eight, "--config_file").endswith("recipes/accelerate/zero3.yaml")
    assert [_flag(eight, f) for f in ("--num_processes", "--num_machines", "--mixed_precision")] == ["8", "1", "bf16"]

    node = ["launch.main_address=10.1.0.1", "rollout.server_host=10.1.0.1"]
    with pytest.raises(UserError, match="needs launch.main_address"):
        _dry_run("grpo_vision_2x8gpu.yaml", "rollout.server_host=10.1.0.1", gpus=8)
    said = _dry_run("grpo_vision_2x8gpu.yaml", *node, gpus=8)
    assert said[0].startswith("vLLM server (GPUs [6, 7]): VLLM_SERVER_DEV_MODE=1 CUDA_VISIBLE_DEVICES=6,7 vllm serve ")
    assert "--tensor-parallel-size 2" in said[0] and "http://10.1.0.1:8000/health" in said[1]
    assert said[2].startswith("training (GPUs [0, 1, 2, 3, 4, 5]): CUDA_VISIBLE_DEVICES=0,1,2,3,4,5 ")
    train = _accelerate(said[2])
    assert [_flag(train, f) for f in ("--num_processes", "--num_machines", "--machine_rank", "--main_process_ip")] \
        == ["12", "2", "0", "10.1.0.1"]  # fmt: skip
    said = _dry_run("grpo_vision_2x8gpu.yaml", *node, "launch.node_rank=1", gpus=8)
    assert said[0].startswith("node 1: no vLLM server here")
    assert _flag(_accelerate(said[1]), "--machine_rank") == "1"


def test_cli_dry_run_plans_for_gpus_from_a_cpu_machine():
    cmd = [sys.executable, "-m", "align.cli", "launch", str(ROOT / "recipes/grpo_vision_8gpu.yaml"), "--gpus", "8"]
    out = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    assert "recipes/accelerate/zero3.yaml --num_processes 8" in out.stdout
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 2 and "works with --dry-run only" in out.stderr
