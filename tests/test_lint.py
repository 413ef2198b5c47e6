"""The repository stays `ruff check` and `ruff format --check` clean (settings in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff(command):
    venv_ruff = Path(sys.executable).parent / "ruff"
    ruff = str(venv_ruff) if venv_ruff.exists() else shutil.which("ruff") or "ruff"
    out = subprocess.run([ruff, *command, "."], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, (
        f"ruff {' '.join(command)} found problems (run it and fix them):\n{out.stdout}{out.stderr}"
    )
