"""scripts/real_size.py at CI size: HyperCLOVAX-SEED-Vision-Instruct-3B's published widths, vocabulary and image
geometry with one decoder layer and one vision block, one 640x480 image, one sampled token (the full sweep is the
script: docs/scaling.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "real_size.py"


@pytest.fixture(scope="module")
def result(tmp_path_factory, align_cache):
    out = tmp_path_factory.mktemp("real_size")
    env = {**os.environ, "ALIGN_CACHE": str(align_cache), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(SCRIPT), "--family", "hyperclovax_vision", "--layers", "1", "--images", "640x480",
           "--parts", "gen", "--G", "1", "--tokens", "2", "--dtype", "bfloat16", "--out", str(out), "--timeout", "300"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "hyperclovax_vision.json").read_text()), proc.stdout


def test_the_published_widths_and_vocabulary_are_kept_and_only_depth_is_cut(result, align_cache):
    res, _ = result
    folder = next((align_cache / "real_size").glob("hyperclovax_vision-L1-V1-bfloat16"))
    config = json.loads((folder / "config.json").read_text())
    text = config["text_config"]
    assert (text["hidden_size"], text["vocab_size"], text["num_hidden_layers"]) == (3072, 110592, 1)
    assert config["vision_config"]["num_hidden_layers"] == 1 and config["vision_config"]["image_size"] == 378
    tok = json.loads((folder / "tokenizer.json").read_text())
    assert max(tok["model"]["vocab"].values()) + 1 == 110592  # padded to the published vocabulary
    layer = res["parts"]["gen"]["per_layer"]
    # one Llama layer at 3072 wide, 24 heads / 8 KV heads of 128, MLP 7168: attention + MLP + two norms
    assert layer["text_layer"] == 2 * 3072 * 3072 + 2 * 3072 * 1024 + 3 * 3072 * 7168 + 2 * 3072
    assert layer["embed"] == 110592 * 3072


def test_a_640x480_image_gives_the_published_visual_token_count(result):
    res, stdout = result
    row = res["parts"]["gen"]["sizes"]["640x480"]
    assert row["visual_tokens"] == 347  # canvas 756x756: 5 grids of 81 queries after unpadding, plus row newlines
    assert row["prompt_tokens"] > row["visual_tokens"]
    assert row["vision_s"] > 0 and row["generate_s"] >= row["vision_s"] and row["peak_mib"] > 0
    assert "640x480" in stdout and "347" in stdout


def test_the_cost_curve_merges_the_runs_of_one_g_and_the_summary_keeps_the_per_family_g():
    # on the committed sweep (docs/grpo_speed.md): the G = 4 steps come from several folders, the first run's step
    # kept where two measured the same size (G4max's first step, at 324 tokens, holds the shared path's check)
    real_size = load_script("real_size")
    curve = ROOT / "docs" / "real_size" / "curve"
    points, second, family = real_size.curve_points(curve)
    assert family == "qwen2_5_vl" and second == {2: 324, 4: 324, 8: 324}
    assert sorted(points[(4, "shared")]) == [81, 324, 1296, 2916, 5184, 16384]
    g4 = json.loads((curve / "G4" / "qwen2_5_vl.json").read_text())
    assert points[(4, "shared")][324] == g4["parts"]["grpo_shared"]["steps"][1]
    assert sorted(points[(8, "trl")]) == [81, 324, 1296]
    rows = real_size.summary_rows(ROOT / "docs" / "real_size", 4).splitlines()
    qwen = [r for r in rows if r.startswith("| qwen2_5_vl ")]
    assert len(qwen) == 1 and "G 4 " in qwen[0]  # the per-family run, not the G2 / G8 sweep's first in path order
    assert [r.split(" | ")[0] for r in real_size.summary_rows(ROOT / "docs" / "real_size", 8).splitlines()[2:]] == [
        "| qwen2_5_vl"
    ]
