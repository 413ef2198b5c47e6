"""What each evaluation keeps for people to look at: a thumbnail of every kept sample's image beside
``eval_samples.jsonl`` (``<stage>/eval_images/``, read by ``align report``), and the images with the answers sent to
the trackers the recipe names in ``report_to``: tensorboard (an image summary per sample and a text table of the
answers, in ``<stage>/tensorboard`` beside the training curves) and wandb (a table with the images in a run of its
own under ``<stage>/wandb``, offline unless ``WANDB_MODE`` says otherwise)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from align.data.loaders import open_rgb
from align.errors import UserError
from align.io import read_jsonl

IMAGE_DIR = "eval_images"
THUMB_SIDE = 192  # pixels, longest side; smaller images are kept as they are
PNG_LIMIT = 24_000  # bytes: a thumbnail larger than this as PNG (a photo) is stored as JPEG instead


def thumbnail(image, side: int = THUMB_SIDE):
    """An RGB copy of ``image`` (PIL image, path or bytes dict) whose longest side is at most ``side``."""

    im = open_rgb(image).convert("RGB")
    im.thumbnail((side, side))
    return im


def encode_thumbnail(im) -> tuple[bytes, str]:
    """PNG bytes for drawings and small images, JPEG for photos: ``(data, suffix)``."""
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    if buf.tell() <= PNG_LIMIT:
        return buf.getvalue(), ".png"
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue(), ".jpg"


def save_sample_images(samples: list[dict], out: Path) -> list[list]:
    """Write each sample's images (``_images``, taken out of the sample) as thumbnails into ``out/eval_images`` and
    record their paths, relative to ``out``, in the sample's ``images``. Returns the thumbnails per sample."""
    folder = Path(out) / IMAGE_DIR
    shutil.rmtree(folder, ignore_errors=True)
    thumbs = []
    for j, sample in enumerate(samples):
        ims = [thumbnail(im) for im in sample.pop("_images", None) or []]
        sample["images"] = []
        stem = re.sub(r"[^\w.-]", "_", str(sample.get("id") if sample.get("id") is not None else f"sample{j}"))
        for k, im in enumerate(ims):
            data, suffix = encode_thumbnail(im)
            name = f"{stem}-{k}{suffix}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
            sample["images"].append(f"{IMAGE_DIR}/{name}")
        thumbs.append(ims)
    return thumbs


def _last_step(out: Path) -> int:
    """The stage's last training step (from its metrics.jsonl), so the eval lands at the end of its curves."""
    steps = [m.get("step") for m in read_jsonl(out / "metrics.jsonl")] if (out / "metrics.jsonl").exists() else []
    return max((s for s in steps if isinstance(s, int)), default=0)


def _cell(value) -> str:
    text = "" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
    return " ".join(text.split()).replace("|", "\\|")


def answers_markdown(samples: list[dict]) -> str:
    """The samples as a markdown table (tensorboard's text dashboard renders it)."""
    names = sorted({k for s in samples for k in s.get("scores") or {}})
    lines = ["| id | task | question | reference | answer | " + " | ".join(names) + " |",
             "|---" * (5 + len(names)) + "|"]  # fmt: skip
    for s in samples:
        scores = s.get("scores") or {}
        cells = [s.get("id"), s.get("task"), s.get("prompt"), s.get("answer"), s.get("completion")]
        lines.append("| " + " | ".join(_cell(c) for c in cells + [scores.get(n) for n in names]) + " |")
    return "\n".join(lines)


def _tensorboard(stage: str, out: Path, samples: list[dict], images: list[list]) -> None:
    import numpy as np

    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise UserError(f"report_to names tensorboard but it cannot be used ({e})",
                        "pip install tensorboard==2.21.0 (the `test` extra has it), or drop it from report_to") from None  # fmt: skip
    step = _last_step(out)
    writer = SummaryWriter(log_dir=str(out / "tensorboard"), filename_suffix=".eval")
    try:
        for sample, ims in zip(samples, images):
            for k, im in enumerate(ims):
                tag = f"eval_samples/{sample.get('task')}/{sample.get('id')}" + (f"/{k}" if k else "")
                writer.add_image(tag, np.asarray(im), step, dataformats="HWC")
        writer.add_text("eval_samples/answers", f"**{stage}**\n\n" + answers_markdown(samples), step)
    finally:
        writer.close()


def _wandb(recipe, stage: str, out: Path, samples: list[dict]) -> None:
    """A wandb run ``<recipe>/<stage>/eval`` holding the table ``eval_samples`` (image, question, reference, answer,
    scores), written by a child process: wandb's first ``init`` in a process freezes its environment (WANDB_DIR,
    WANDB_MODE), and the trainers' own wandb runs must keep reading what align/training.py sets for each stage."""
    if importlib.util.find_spec("wandb") is None:
        raise UserError("report_to names wandb but wandb is not installed",
                        "pip install 'korean-vlm-align[wandb]' (wandb==0.31.0), or drop it from report_to")  # fmt: skip
    names = sorted({k for s in samples for k in s.get("scores") or {}})
    rows = [[s.get("id"), s.get("task"), str(out / s["images"][0]) if s.get("images") else None, s.get("prompt"),
             s.get("answer"), s.get("completion"), *((s.get("scores") or {}).get(n) for n in names)] for s in samples]  # fmt: skip
    job = {"project": os.environ.get("WANDB_PROJECT", recipe.name), "name": f"{recipe.name}/{stage}/eval",
           "stage": stage, "dir": str(out), "columns": ["id", "task", "image", "question", "reference", "answer", *names],
           "rows": rows}  # fmt: skip
    # offline unless the user says otherwise (as for training); the table's images are staged for `wandb sync` under
    # WANDB_DATA_DIR (default ~/.local/share/wandb): unless the user chose it, in the stage folder, so the run is whole
    root = str(Path(__file__).resolve().parents[1])  # the child imports this module, installed or not
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
           "WANDB_DATA_DIR": os.environ.get("WANDB_DATA_DIR") or str(out / "wandb" / "data"),
           "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "align.eval_trackers"], input=json.dumps(job, ensure_ascii=False),
                          capture_output=True, text=True, env=env, timeout=600, check=False)  # fmt: skip
    if proc.returncode != 0:
        tail = "\n  ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise UserError(f"logging the eval samples of '{stage}' to wandb failed:\n  {tail}")


def _wandb_child() -> None:
    """``python -m align.eval_trackers`` < job.json: log one eval table to wandb (see ``_wandb``)."""
    import wandb

    job = json.load(sys.stdin)
    table = wandb.Table(columns=job["columns"])
    for row in job["rows"]:
        table.add_data(*row[:2], wandb.Image(row[2]) if row[2] else None, *row[3:])
    run = wandb.init(project=job["project"], name=job["name"], job_type="eval", dir=job["dir"],
                     config={"stage": job["stage"]}, settings=wandb.Settings(silent=True))  # fmt: skip
    run.log({"eval_samples": table})
    run.finish()


def log_eval_samples(recipe, stage: str, out: Path, samples: list[dict], images: list[list]) -> None:
    """Send the evaluation's samples (and their thumbnails) to the trackers ``recipe.report_to`` names."""
    trackers = set(getattr(recipe, "report_to", None) or [])
    if not samples:
        return
    if "tensorboard" in trackers:
        _tensorboard(stage, Path(out), samples, images)
    if "wandb" in trackers:
        _wandb(recipe, stage, Path(out), samples)


if __name__ == "__main__":
    _wandb_child()
