"""Shared fixtures: an isolated cache with the tiny model and a small synthetic dataset, built once per session."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one of ./launch.sh test's worker processes: one core each, as are the
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # CLI runs it starts (they inherit this)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "demo: a demo recipe run end to end (20 min or more); only with ALIGN_DEMO_TESTS=1"
    )


def pytest_collection_modifyitems(config, items):
    """The end-to-end runs of several minutes first, so that the other worker takes the rest meanwhile. The demo
    recipes' own runs (marker ``demo``, 20 minutes and more on 2 cores) only with ALIGN_DEMO_TESTS=1."""
    if os.environ.get("ALIGN_DEMO_TESTS") != "1":
        demos = [item for item in items if item.get_closest_marker("demo")]
        if demos:
            config.hook.pytest_deselected(items=demos)
            items[:] = [item for item in items if not item.get_closest_marker("demo")]
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def align_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("align_cache")
    old = os.environ.get("ALIGN_CACHE")
    os.environ["ALIGN_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("ALIGN_CACHE", None)
    else:
        os.environ["ALIGN_CACHE"] = old


# What TRL's vLLM colocate mode and accelerate's multi-process state write into os.environ. Left behind by a test or
# a module fixture that builds a trainer in this process, they make every later trainer (in-process or a CLI
# subprocess, which inherits them) believe it is a rank of a distributed launch and bind the same rendezvous port.
# After each test they are put back as they were when the session started.
DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
SESSION_DIST_ENV = {k: os.environ.get(k) for k in DIST_ENV}


@pytest.fixture(autouse=True)
def _restore_dist_env():
    yield
    for k, v in SESSION_DIST_ENV.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_model(align_cache) -> str:
    from align.models import resolve_model_path

    return resolve_model_path("tiny-korean-vlm", progress=None)


@pytest.fixture(scope="session")
def small_data(align_cache):
    from align.data import load_splits
    from align.recipe import DataSpec

    return load_splits(DataSpec(train_size=60, eval_size=20, seed=3))


def run_shipped_recipe(name: str, out: Path, align_cache: Path, timeout: int):
    """``align run recipes/NAME.yaml`` as a user runs it (a subprocess in ``out``, results under ``out``); the
    finished process and the run folder. Fails with the output's tail when the run does not exit 0."""
    env = {**os.environ, "ALIGN_CACHE": str(align_cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "align.cli", "run", str(ROOT / "recipes" / f"{name}.yaml"), f"output_dir={out}"],
        capture_output=True, check=False, text=True, env=env, cwd=out, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, (out / name / "latest").resolve()


def write_recipe(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def copy_with_chat_template(src, dst: Path, template: str | None) -> Path:
    """Copy a model folder, replacing its chat template (``None``: remove it)."""
    import json
    import shutil

    shutil.copytree(src, dst)
    config = json.loads((dst / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    if template is not None:
        config["chat_template"] = template
    (dst / "tokenizer_config.json").write_text(json.dumps(config))
    (dst / "chat_template.jinja").unlink(missing_ok=True)
    return dst


def load_script(name: str):
    """``scripts/<name>.py`` as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
