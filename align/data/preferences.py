"""Preference pairs for V-RLHF (the ``rm`` and ``dpo`` stages): image(s), prompt, chosen, rejected, optional margin.

Sources: ``synthetic`` (built from the recipe's synthetic Korean tasks, below) or a local JSONL/Parquet file with
``prompt`` (or ``question``; text or chat messages), ``chosen``, ``rejected`` (text or assistant messages), optional
``image``/``images`` (paths relative to the file or ``image_folder``, or image bytes) and ``margin``; also a folder
datasets can read or a hub dataset id (``owner/name[:split]``, e.g. openbmb/RLAIF-V-Dataset). Rows missing a field
or an image, or whose chosen and rejected answers are the same, are skipped and reported.

Synthetic pairs: for a counting, colour or OCR image (and arithmetic text) the chosen answer is the correct
Korean one; the rejected answer is, in turn, a wrong count / colour / word, or the right answer in the wrong
language (English), so a reward model must look at the image and at the language. (A first version phrased
the chosen answer as a sentence, "도형이 3개 있습니다."; GRPO with that reward model then rewrote OCR answers
into that sentence form and OCR accuracy fell from 0.21 to 0.)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from align.chat import messages_text
from align.data.loaders import check_image, open_rgb
from align.data.synthetic import COLORS, OCR_WORDS
from align.errors import UserError

ENGLISH_COLORS = dict(zip(COLORS, ("red", "blue", "green", "yellow", "purple", "orange", "black")))
ENGLISH_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def chosen_and_rejected(task: str, answer: str, rng: random.Random) -> tuple[str, str] | None:
    """The chosen answer is the task's correct Korean answer in the form the verifiable reward reads (so a reward
    model and the verifiable reward agree on format and RL does not trade one for the other); the rejected one is
    wrong about the image, or right but in English."""
    wrong_language = rng.random() < 0.3
    if task == "count":
        n = int(answer.rstrip("개"))
        if wrong_language and n < len(ENGLISH_NUMBERS):
            return answer, ENGLISH_NUMBERS[n]
        return answer, f"{rng.choice([m for m in range(1, 10) if m != n])}개"
    if task == "color":
        if wrong_language:
            return answer, ENGLISH_COLORS[answer]
        return answer, rng.choice([c for c in COLORS if c != answer])
    if task == "ocr":
        return answer, rng.choice([w for w in OCR_WORDS if w != answer])
    if task == "arith":
        n = int(answer.split(":")[1])
        return answer, f"답: {n + rng.choice([-2, -1, 1, 2]) if n > 2 else n + 1}"
    return None


def synthetic_pairs(rows, seed: int = 0) -> list[dict]:
    """Preference rows from synthetic task rows (a datasets.Dataset or list of dicts)."""
    out = []
    for row in rows:
        pair = chosen_and_rejected(row["task"], row["answer"], random.Random(f"{seed}/{row['id']}"))
        if pair is None:
            continue
        out.append({"id": row["id"], "task": row["task"], "prompt": row["prompt"], "images": row["images"],
                    "answer": row["answer"], "chosen": pair[0], "rejected": pair[1]})  # fmt: skip
    return out


def split_pairs(pairs: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(held-out, training) pairs after a seeded shuffle."""
    pairs = list(pairs)
    random.Random(seed).shuffle(pairs)
    n_eval = max(1, int(len(pairs) * eval_fraction))
    return pairs[:n_eval], pairs[n_eval:]


def _records(source: str | Path) -> tuple[list[dict], str]:
    """Raw rows from a JSONL/Parquet file, a folder datasets can read, or a hub dataset id (``owner/name[:split]``)."""
    path = Path(source)
    if path.is_file() and path.suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path).to_dict("records"), str(path)
    if path.is_file():
        records = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    records.append({"_error": f"{path}:{n}: not JSON ({e.msg})"})
        return records, str(path)
    name, _, split = str(source).partition(":")
    if not path.is_dir() and name.count("/") != 1:
        raise UserError(f"preference data {source} does not exist",
                        "check the stage's `preferences:` path (a file, a folder, or a hub id owner/name)")  # fmt: skip
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as e:  # datasets raises many kinds; all mean "cannot read this source"
        raise UserError(f"cannot load preference data {source}: {type(e).__name__}: {e}",
                        "a local JSONL/Parquet file or folder, or a hub dataset reachable from this machine") from e  # fmt: skip
    return list(ds), name


def load_pairs(source: str | Path, image_folder: str | Path | None = None, report=None) -> list[dict]:
    """Preference rows from a local JSONL/Parquet file or folder, or a hub dataset id. Rows missing a field,
    with an unreadable image, or with identical chosen and rejected answers are skipped (and reported)."""
    records, where = _records(source)
    folder = Path(image_folder) if image_folder else Path(source).parent if Path(source).is_file() else Path(source)
    out = []
    for n, r in enumerate(records, 1):
        if not r.get("prompt") and r.get("question"):  # RLAIF-V / VLFeedback style
            r = {**r, "prompt": r["question"]}
        problem = r.get("_error") or next((f"{where}:{n}: no '{k}'" for k in ("prompt", "chosen", "rejected")
                                           if not r.get(k)), None)  # fmt: skip
        if not problem and messages_text(r["chosen"]).strip() == messages_text(r["rejected"]).strip():
            problem = f"{where}:{n}: chosen and rejected are the same answer"
        images = r.get("images")
        images = list(images) if images is not None and len(images) else [r["image"]] if r.get("image") else []
        loaded = []
        for image in [] if problem else images:
            try:  # paths stay paths; decoded images and image bytes become RGB images (corrupt bytes fail here)
                ref = check_image(image, folder)
                loaded.append(ref if isinstance(ref, str) else open_rgb(ref).convert("RGB"))
            except (ValueError, OSError) as e:
                problem = f"{where}:{n}: {e}"
        if problem:
            if report is not None:
                report.append(problem)
            continue
        prompt = r["prompt"] if isinstance(r["prompt"], list) else [{"role": "user", "content": r["prompt"]}]
        out.append({"id": str(r.get("id", f"pref-{n}")), "task": r.get("task"), "prompt": prompt, "images": loaded,
                    "chosen": messages_text(r["chosen"]), "rejected": messages_text(r["rejected"]), "margin": float(r.get("margin") or 0)})  # fmt: skip
    if not out:
        raise UserError(f"no usable preference rows in {where}", "rows need prompt, chosen and rejected")
    return out
