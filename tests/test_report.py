"""`align report`: the run's self-contained HTML page, built from a tiny real run (base -> SFT -> GRPO), checked in
headless Chromium; and the eval samples the trackers receive (tensorboard image/text summaries, a wandb table)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from align.io import read_jsonl
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from align.report import build_report
from tests.conftest import ROOT, write_recipe

RECIPE = """
name: tiny-report
output_dir: {out}
report_to: [tensorboard]
data: {{train_size: 40, eval_size: 10, seed: 5}}
eval: {{max_new_tokens: 6, samples: 2}}
stages:
  - type: sft
    args: {{max_steps: 3, per_device_train_batch_size: 8, learning_rate: 3.0e-3, logging_steps: 1}}
  - type: grpo
    args: {{max_steps: 2, num_generations: 4, per_device_train_batch_size: 8, max_completion_length: 6,
           learning_rate: 1.0e-3, logging_steps: 1, beta: 0.0}}
"""
STAGES = ("base", "sft", "grpo")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]  # fmt: skip  (closed network: no background calls)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model) -> Path:
    out = tmp_path_factory.mktemp("report_run")
    return run_pipeline(load_recipe(write_recipe(out / "r.yaml", RECIPE.format(out=out)))).path


def _copy_run(run: Path, dst: Path) -> Path:
    """The run directory without its model weights and checkpoints (what the report reads)."""
    return Path(shutil.copytree(run, dst, ignore=shutil.ignore_patterns("model", "checkpoints", "tensorboard")))


def test_run_keeps_thumbnails_and_logs_samples_to_tensorboard(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert (tiny_run / "report.html").exists()  # written at the end of the run, beside compare.md
    for stage in STAGES:
        samples = read_jsonl(tiny_run / stage / "eval_samples.jsonl")
        assert {s["task"] for s in samples} == {"count", "color", "ocr", "arith", "bbox"}
        for s in samples:
            assert "_images" not in s and len(s["images"]) == (0 if s["task"] == "arith" else 1), s
            for ref in s["images"]:
                assert (tiny_run / stage / ref).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        events = EventAccumulator(str(tiny_run / stage / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
        events.Reload()
        with_image = {f"eval_samples/{s['task']}/{s['id']}" for s in samples if s["images"]}
        assert set(events.Tags()["images"]) == with_image
        (text,) = events.Tensors("eval_samples/answers/text_summary")
        table = text.tensor_proto.string_val[0].decode()
        assert all(s["id"] in table for s in samples) and "| id | task | question | reference | answer |" in table
        if stage != "base":  # at the stage's last training step, the end of its curves in tensorboard
            assert text.step == max(m["step"] for m in read_jsonl(tiny_run / stage / "metrics.jsonl"))


def test_wandb_gets_a_table_with_the_images(tiny_run, tmp_path, monkeypatch):
    from align.eval_trackers import log_eval_samples

    monkeypatch.delenv("WANDB_DATA_DIR", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline by default
    stage = Path(shutil.copytree(tiny_run / "sft" / "eval_images", tmp_path / "sft" / "eval_images")).parent
    samples = read_jsonl(tiny_run / "sft" / "eval_samples.jsonl")
    recipe = load_recipe(tiny_run / "recipe.yaml", ["report_to=[wandb]"])
    log_eval_samples(recipe, "sft", stage, samples, images=[])
    (table_file,) = stage.glob("wandb/offline-run-*/files/media/table/eval_samples_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][:6] == ["id", "task", "image", "question", "reference", "answer"]
    assert [r[0] for r in table["data"]] == [s["id"] for s in samples]
    assert [r[3] for r in table["data"]] == [s["prompt"] for s in samples]  # Korean questions, as written
    staged = [f for f in stage.glob("wandb/data/artifacts/staging/*") if f.read_bytes()[:4] == b"\x89PNG"]
    assert len(staged) == sum(bool(s["images"]) for s in samples)  # the images travel with the offline run


def test_report_cli_bench_regressions_cap_and_older_runs(tiny_run, tmp_path):
    run = _copy_run(tiny_run, tmp_path / "run")
    for stage, value in zip(STAGES, (0.5, 0.625, 0.25)):  # a benchmark another component adds: best sft, grpo fell
        ev = json.loads((run / stage / "eval.json").read_text())
        (run / stage / "eval.json").write_text(json.dumps({**ev, "bench/k_mmbench/accuracy": value}))
    out = tmp_path / "r.html"
    proc = subprocess.run([sys.executable, "-m", "align.cli", "report", str(run), "--out", str(out)],
                          capture_output=True, text=True, check=False, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {out}" in proc.stdout
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and '<html lang="ko">' in page and "Report Hangul" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page must not load anything from outside"
    bench = page[page.index('id="bench"') : page.index('id="gallery"')]
    row = re.search(r"<tr><th>bench/k_mmbench/accuracy</th>(.*?)</tr>", bench).group(1)
    cells = re.findall(r'<td class="([^"]*)"[^>]*>([^<]*)</td>', row)
    assert cells == [("num", "0.500"), ("num best", "0.625 ★"), ("num regress", "0.250 ▼")]
    assert "bench/" not in page[page.index('id="metrics"') : page.index('id="curves"')]
    assert page.count('<article class="card"') == 10 and page.count("<img") == 1 + 8  # curves + 8 thumbnails

    # a size cap leaves gallery cards and rollout steps out, and says so
    full, info = build_report([run])
    assert not info["capped"] and info["steps"] == info["steps_total"] == 2
    cap = len(full.encode()) - 3000
    capped, info = build_report([run], max_bytes=cap)
    assert info["capped"] and info["cards"] < info["cards_total"] == 10 and info["bytes"] == len(capped.encode()) <= cap
    assert f"leaves out {10 - info['cards']} of 10 held-out prompts" in capped

    # a run evaluated before thumbnails were kept: no "images" in eval_samples.jsonl
    for stage in STAGES:
        rows = [{k: v for k, v in s.items() if k != "images"} for s in read_jsonl(run / stage / "eval_samples.jsonl")]
        (run / stage / "eval_samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        shutil.rmtree(run / stage / "eval_images")
    old, _ = build_report([run])
    assert old.count("no image recorded") == 10 and old.count("<img") == 1


def _chromium() -> str:
    """The system Chromium, else skip (or fail where ./launch.sh test installed it: ALIGN_EXPECT_CHROMIUM=1)."""
    found = [c for c in (os.environ.get("ALIGN_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                         shutil.which("chromium-browser"), shutil.which("google-chrome")) if c and Path(c).exists()]  # fmt: skip
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[test]')"
    if not found:
        reason = "no Chromium on this machine: scripts/install_chromium.sh installs Debian's chromium (needs root)"
    if reason and os.environ.get("ALIGN_EXPECT_CHROMIUM") == "1":
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    return found[0]


def test_report_in_headless_chromium(tiny_run, tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    report = tiny_run / "report.html"
    samples = read_jsonl(tiny_run / "base" / "eval_samples.jsonl")
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
            page.goto(report.as_uri(), wait_until="load")
            page.evaluate("document.fonts.ready")
            shot = page.screenshot(path=str(tmp_path / "report.png"), full_page=True)

            images = page.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth, i.alt])")
            header = page.eval_on_selector_all("table.metrics thead th", "ths => ths.map(t => t.textContent)")
            hangul = page.evaluate("""() => [document.fonts.check('16px "Report Hangul"', '도형'),
                                             [...document.fonts].map(f => f.family + ' ' + f.status)]""")
            cards = lambda: page.eval_on_selector_all(
                "#gallery .card", "cs => cs.map(c => [c.dataset.task, c.offsetParent !== null])"
            )
            shown_all = cards()
            page.click('#filters button[data-task="count"]')
            shown_count = cards()
            pressed = page.get_attribute('#filters button[data-task="count"]', "aria-pressed")
            page.click('#filters button[data-task="all"]')
            shown_again = cards()
        finally:
            browser.close()
    assert problems == [], problems
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 50_000
    assert len(images) == 1 + sum(bool(s["images"]) for s in samples)  # curves + one thumbnail per image sample
    assert all(complete and width > 0 for complete, width, _ in images), images
    assert header == ["metric", *STAGES]  # every checkpoint has its column
    assert hangul == [True, ["Report Hangul loaded"]]  # the embedded Hangul face, used and loaded
    assert len(shown_all) == 10 and all(visible for _, visible in shown_all)
    assert pressed == "true" and [t for t, visible in shown_count if visible] == ["count", "count"]
    assert all(visible for _, visible in shown_again)
    text = report.read_text()
    assert all(html.escape(s["prompt"]) in text for s in samples)


def test_thumbnail_sizes():
    from PIL import Image

    from align.eval_trackers import encode_thumbnail, thumbnail

    small = thumbnail(Image.new("RGB", (64, 48), "red"))
    assert small.size == (64, 48)  # never enlarged
    photo = Image.frombytes("RGB", (800, 600), os.urandom(800 * 600 * 3))
    thumb = thumbnail(photo)
    assert thumb.size == (192, 144)
    data, suffix = encode_thumbnail(thumb)
    assert suffix == ".jpg" and data[:2] == b"\xff\xd8"  # noise does not compress: a photo-like image goes JPEG
    data, suffix = encode_thumbnail(small)
    assert suffix == ".png" and data[:4] == b"\x89PNG"
