"""Preference pairs for V-RLHF (the ``rm`` and ``dpo`` stages): image(s), prompt, chosen, rejected, optional margin.

Sources: ``synthetic`` (built from the recipe's synthetic Korean tasks, below) or a local JSONL/Parquet file with
``prompt`` (text or chat messages), ``chosen``, ``rejected``, optional ``image``/``images`` (paths relative to
the file or ``image_folder``) and ``margin``. Bad rows are skipped and reported like any other data.

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

from align.data.synthetic import COLORS, OCR_WORDS
from align.errors import UserError

ENGLISH_COLORS = dict(zip(COLORS, ("red", "blue", "green", "yellow", "purple", "orange", "black")))
ENGLISH_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
PAIR_TASKS = ("count", "color", "ocr", "arith")


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


def load_pairs(path: str | Path, image_folder: str | Path | None = None, report=None) -> list[dict]:
    """Local JSONL or Parquet preference rows; rows missing a field or an image are skipped (and reported)."""
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise UserError(f"preference data {path} does not exist", "check the stage's `preferences:` path")
    if path.suffix == ".parquet":
        import pandas as pd

        records = pd.read_parquet(path).to_dict("records")
    else:
        records = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    records.append({"_error": f"{path}:{n}: not JSON ({e.msg})"})
    folder = Path(image_folder) if image_folder else path.parent
    out = []
    for n, r in enumerate(records, 1):
        problem = r.get("_error") or next((f"{path}:{n}: no '{k}'" for k in ("prompt", "chosen", "rejected")
                                           if not r.get(k)), None)  # fmt: skip
        images = r.get("images") or ([r["image"]] if r.get("image") else [])
        loaded = []
        for rel in [] if problem else images:
            try:
                with Image.open(folder / rel) as im:
                    loaded.append(str(folder / rel))
                    im.verify()
            except (OSError, SyntaxError) as e:
                problem = f"{path}:{n}: image {rel}: {e}"
        if problem:
            if report is not None:
                report.append(problem)
            continue
        prompt = r["prompt"] if isinstance(r["prompt"], list) else [{"role": "user", "content": r["prompt"]}]
        out.append({"id": str(r.get("id", f"pref-{n}")), "task": r.get("task"), "prompt": prompt, "images": loaded,
                    "chosen": str(r["chosen"]), "rejected": str(r["rejected"]), "margin": float(r.get("margin") or 0)})  # fmt: skip
    if not out:
        raise UserError(f"no usable preference rows in {path}", "rows need prompt, chosen and rejected")
    return out
