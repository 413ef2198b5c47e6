"""The quickstart end to end, as a user runs it: the embedded model and data, trained and evaluated on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

TASKS = ("count", "color", "ocr", "arith", "bbox")


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path, align_cache):
    env = {**os.environ, "ALIGN_CACHE": str(align_cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "align.cli", "run", str(ROOT / "recipes/quickstart.yaml"), f"output_dir={tmp_path}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1500,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = (tmp_path / "quickstart" / "latest").resolve()
    base = json.loads((run / "base" / "eval.json").read_text())
    sft = json.loads((run / "sft" / "eval.json").read_text())
    assert "held-out evaluation" in proc.stdout and "accuracy/count" in proc.stdout
    assert sft["accuracy"] >= base["accuracy"] + 0.2, (base, sft)
    improved = [t for t in TASKS if sft[f"accuracy/{t}"] > base[f"accuracy/{t}"]]
    assert len(improved) >= 4, (base, sft)
    assert (run / "sft" / "model" / "config.json").exists()
