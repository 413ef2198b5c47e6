"""SFT on the tiny VLM (full and LoRA with a frozen vision tower), the eval hook, and the run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from align.errors import StageError
from align.io import read_jsonl
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from tests.conftest import ROOT, write_recipe

SMALL = """
name: small
output_dir: {out}
data: {{train_size: 60, eval_size: 20, seed: 3}}
eval: {{max_new_tokens: 12, samples: 1, sampled: {{k: 2}}}}
"""


def test_completion_only_labels_cover_the_answer_and_the_stop(tiny_model, small_data):
    from transformers import AutoProcessor
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    proc = AutoProcessor.from_pretrained(tiny_model)
    rows = [dict(small_data.train[i]) for i in range(4)]
    batch = DataCollatorForVisionLanguageModeling(processor=proc, completion_only_loss=True)(
        [{k: r[k] for k in ("prompt", "completion", "images")} for r in rows]
    )
    tok = proc.tokenizer
    for i, row in enumerate(rows):
        labelled = batch["labels"][i][batch["labels"][i] != -100].tolist()
        text = tok.decode(labelled)
        assert text == row["completion"][0]["content"] + "<|im_end|><|endofturn|>"
    image_id = tok.convert_tokens_to_ids("<image>")
    assert (batch["labels"] == image_id).sum() == 0


def test_sft_full_run_directory_and_eval(tmp_path, tiny_model):
    f = write_recipe(
        tmp_path / "r.yaml",
        SMALL.format(out=tmp_path / "runs")
        + """
stages:
  - type: sft
    args: {learning_rate: 1.0e-3, max_steps: 6, per_device_train_batch_size: 8, logging_steps: 2}
""",
    )
    run = run_pipeline(load_recipe(f))
    assert (tmp_path / "runs" / "small" / "latest").resolve() == run.path.resolve()
    assert (run.path / "recipe.yaml").exists()
    env = json.loads((run.path / "environment.json").read_text())
    assert env["seed"] == 42 and env["packages"]["trl"] == "1.16.0" and "commit" in env["git"]
    report = json.loads((run.path / "data_report.json").read_text())
    assert report["rows"] == {"train": 60, "eval": 20}
    metrics = read_jsonl(run.path / "sft" / "metrics.jsonl")
    assert [m["step"] for m in metrics if "loss" in m] == [2, 4, 6]
    for stage in ("base", "sft"):
        ev = json.loads((run.path / stage / "eval.json").read_text())
        assert ev["n"] == 20 and 0.0 <= ev["accuracy"] <= 1.0
        assert {f"accuracy/{t}" for t in ("count", "color", "ocr", "arith", "bbox")} <= set(ev)
        assert 0.0 <= ev["sampled/accuracy"] <= 1.0 and "sampled/accuracy/count" in ev
        samples = read_jsonl(run.path / stage / "eval_samples.jsonl")
        assert len(samples) == 5 and all("completion" in s for s in samples)
        scores = read_jsonl(run.path / stage / "eval_scores.jsonl")  # each row's scores: paired standard errors
        assert len(scores) == 20 and len({r["id"] for r in scores}) == 20
        for key in ("accuracy", "sampled/accuracy"):
            assert abs(sum(r[key] for r in scores) / 20 - ev[key]) < 1e-9
    from transformers import AutoModelForImageTextToText

    trained = AutoModelForImageTextToText.from_pretrained(run.path / "sft" / "model")
    before = load_file(f"{tiny_model}/model.safetensors")
    after = {k: v for k, v in trained.state_dict().items()}
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert changed, "training changed no weights"


def test_sft_lora_with_frozen_vision_tower(tmp_path, tiny_model):
    """Also logs to wandb, offline (no account, no network): the run leaves a wandb run folder."""
    f = write_recipe(
        tmp_path / "r.yaml",
        SMALL.format(out=tmp_path / "runs")
        + """
eval: {enabled: false}
report_to: [wandb]
model:
  lora: {r: 4, alpha: 8, target_modules: all-linear}
  freeze: [vision_tower, connector]
stages:
  - type: sft
    args: {learning_rate: 5.0e-3, max_steps: 4, per_device_train_batch_size: 8}
""",
    )
    run = run_pipeline(load_recipe(f))
    before = load_file(f"{tiny_model}/model.safetensors")
    after = load_file(str(run.path / "sft" / "model" / "model.safetensors"))
    assert not any("lora" in k for k in after), "adapters must be merged into the saved model"
    vision = [k for k in before if "vision_model" in k or "connector" in k]
    text = [k for k in before if "text_model.layers" in k and "proj" in k]
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)
    assert any(not torch.equal(before[k], after[k]) for k in text)
    logged = list((run.path / "sft" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(logged) == 1 and logged[0].stat().st_size > 0


def test_stage_failure_keeps_earlier_results(tmp_path, tiny_model):
    f = write_recipe(
        tmp_path / "r.yaml",
        SMALL.format(out=tmp_path / "runs")
        + """
model: {freeze: [no_such_module]}
stages:
  - type: sft
    args: {max_steps: 2}
""",
    )
    with pytest.raises(StageError) as e:
        run_pipeline(load_recipe(f))
    assert "stage 'sft' failed" in str(e.value) and "no_such_module" in str(e.value)
    run_dir = (tmp_path / "runs" / "small" / "latest").resolve()
    assert (run_dir / "base" / "eval.json").exists()  # the base evaluation is not lost
    events = read_jsonl(run_dir / "events.jsonl")
    assert events[-1]["event"] == "stage_failed"


def test_eval_hooks_callable_and_command(tmp_path, tiny_model, small_data):
    from align.evaluate import evaluate

    (tmp_path / "hooks.py").write_text(
        "def my_eval(model_dir, recipe, stage):\n    return {'score': 0.5, 'stage_is_x': float(stage == 'x')}\n"
    )
    (tmp_path / "ext.py").write_text(
        "import json, sys\njson.dump({'ppl': 3.0, 'model': sys.argv[1]}, open(sys.argv[2], 'w'))\n"
    )
    cmd = f"{sys.executable} {tmp_path / 'ext.py'} {{model}} {{output}}"
    f = write_recipe(
        tmp_path / "r.yaml",
        f"""
name: hooks
eval:
  limit: 5
  hooks:
    - callable: ./hooks.py:my_eval
    - name: ext
      command: "{cmd}"
""",
    )
    recipe = load_recipe(f)
    metrics = evaluate(tiny_model, recipe, "x", tmp_path / "out", small_data.eval, base_dir=tmp_path)
    assert metrics["my_eval/score"] == 0.5 and metrics["my_eval/stage_is_x"] == 1.0
    assert metrics["ext/ppl"] == 3.0 and metrics["n"] == 5
    assert json.loads((tmp_path / "out" / "eval.json").read_text()) == metrics


def test_align_eval_cli(tmp_path, tiny_model):
    env = {**os.environ}
    proc = subprocess.run(
        [sys.executable, "-m", "align.cli", "eval", "tiny-korean-vlm", "--recipe", str(ROOT / "recipes/quickstart.yaml"),
         "eval.limit=10", "--out", str(tmp_path)], capture_output=True, check=False, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "eval.json").read_text())["n"] == 10
    assert "accuracy" in proc.stdout


def test_paired_difference_and_its_standard_error():
    from align.compare import Checkpoint, paired_differences

    rows = lambda accs: [{"id": f"r{i}", "accuracy": a} for i, a in enumerate(accs)]
    cps = [Checkpoint("sft", Path("."), {}, scores=rows([1, 0, 1, 0])),
           Checkpoint("rft", Path("."), {}, scores=rows([1, 1, 1, 0]) + [{"id": "other", "accuracy": 1}])]  # fmt: skip
    # row differences 0, 1, 0, 0 (the row only one checkpoint scored is left out): mean 0.25, sd 0.5, SE 0.5 / √4
    (d,) = paired_differences(cps, keys=("accuracy", "sampled/accuracy"))
    assert (d["from"], d["to"], d["n"], d["diff"], d["se"]) == ("sft", "rft", 4, 0.25, 0.25)
