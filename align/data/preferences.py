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

Describe pairs (the ``describe`` task, open-ended descriptions no rule scores for the policy): the chosen answer is a
fresh natural description of the row's scene (``scene`` column), the rejected one a description of the scene with
one controlled error (``ERRORS``): a wrong colour, a wrong count, a wrong position, a missing group, an invented
group, a group said twice (in an empty column: what a policy gaming a reward model wrote), a sentence repeated, or
padding sentences that add nothing (excessive length). Half the content errors come in another template and word forms
than the chosen description, so that the wording alone does not separate them. The pair's ``error`` names it
(the ``rm`` stage reports held-out accuracy per error).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from align.chat import messages_text
from align.data.loaders import check_image, open_rgb
from align.data.synthetic import COLORS, OCR_WORDS, POSITIONS, SHAPE_NAMES, describe_text
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


ERRORS = ("wrong_color", "wrong_count", "wrong_position", "missing_object", "invented_object", "duplicated_object",
          "repetition", "excessive_length")  # fmt: skip
PADDING = ("배경은 흰색입니다.", "도형들은 서로 겹치지 않습니다.", "전체적으로 단순하고 깔끔한 그림입니다.",
           "각 도형은 선명한 색으로 칠해져 있습니다.", "도형들의 크기는 모두 비슷합니다.",
           "그림에는 글자나 숫자가 없습니다.", "더 궁금한 점이 있으면 말씀해 주세요.",
           "이상으로 그림에 대한 설명을 마치겠습니다.")  # fmt: skip


def describe_pair(objects: list[dict], rng: random.Random) -> tuple[str, str, str]:
    """(chosen, rejected, error) for a describe scene: the same template and word forms, one controlled error."""
    style = rng.random()
    chosen = describe_text(objects, random.Random(style))
    shapes, colors = {o["shape"] for o in objects}, {o["color"] for o in objects}
    errors = [e for e in ERRORS if not (e == "missing_object" and len(objects) < 2)
              and not (e == "invented_object" and len(shapes) == len(SHAPE_NAMES))
              and not (e == "duplicated_object" and len(objects) == len(POSITIONS))]  # fmt: skip
    error = rng.choice(errors)
    if error in ("repetition", "excessive_length"):
        sep = "\n" if "\n" in chosen else " "  # after a markdown list: on lines of their own
        if error == "repetition":  # one sentence (or list line) said 2-3 more times, as a looping model does
            units = [u for u in re.split(r"(?<=\.) |\n", chosen) if u.strip()]
            return chosen, chosen + (sep + rng.choice(units[1:] or units)) * rng.randint(2, 3), error
        return chosen, chosen + sep + sep.join(rng.sample(PADDING, rng.randint(3, 5))), error
    wrong = [dict(o) for o in objects]
    i = rng.randrange(len(wrong))
    if error == "wrong_color":
        wrong[i]["color"] = rng.choice([c for c in COLORS if c not in colors])
    elif error == "wrong_count":
        wrong[i]["count"] = rng.choice([n for n in (1, 2, 3, 4) if n != wrong[i]["count"]])
    elif error == "wrong_position":
        wrong[i]["position"] = rng.choice([p for p in POSITIONS if p != wrong[i]["position"]])
    elif error == "missing_object":
        del wrong[i]
    elif error == "duplicated_object":  # a group said again in an empty column (a policy gaming an early RM did so)
        free = [p for p in POSITIONS if p not in {o["position"] for o in objects}]
        wrong.append({**wrong[i], "position": rng.choice(free)})
        wrong.sort(key=lambda o: POSITIONS.index(o["position"]))
    else:  # invented_object
        used = {o["position"] for o in objects}
        free = [p for p in POSITIONS if p not in used] or list(POSITIONS)
        wrong.append({"shape": rng.choice([s for s in SHAPE_NAMES.values() if s not in shapes]),
                      "color": rng.choice([c for c in COLORS if c not in colors]), "count": rng.randint(1, 3),
                      "position": rng.choice(free)})  # fmt: skip
    # half the time in another template and word forms: wording alone must not tell chosen from rejected
    return chosen, describe_text(wrong, random.Random(style if rng.random() < 0.5 else rng.random())), error


def synthetic_pairs(rows, seed: int = 0) -> list[dict]:
    """Preference rows from synthetic task rows (a datasets.Dataset or list of dicts)."""
    out = []
    for row in rows:
        rng, error = random.Random(f"{seed}/{row['id']}"), None
        if row["task"] == "describe":
            *pair, error = describe_pair(json.loads(row["scene"])["objects"], rng)
        else:
            pair = chosen_and_rejected(row["task"], row["answer"], rng)
        if pair is None or pair[0] == pair[1]:
            continue
        out.append({"id": row["id"], "task": row["task"], "prompt": row["prompt"], "images": row["images"],
                    "answer": row["answer"], "chosen": pair[0], "rejected": pair[1],
                    **({"error": error} if error else {})})  # fmt: skip
    return out


def policy_pairs(samples: list[dict], judge: str, min_gap: float, per_prompt: int) -> list[dict]:
    """Preference pairs from a policy's own samples (rollout rows: ``prompt_id``, ``completion``, ``rewards``), ranked
    by the ``judge`` reward, as annotators rank a model's answers in RLHF: a prompt's best sample against its worst,
    the second best against the second worst, … (at most ``per_prompt`` pairs), each pair at least ``min_gap`` apart.
    Returns ``{"id", "chosen", "rejected", "gap"}`` rows; repeated samples count once."""
    by_prompt: dict[str, dict[str, float]] = {}
    for s in samples:
        value = s["rewards"].get(judge)
        if value is not None:
            by_prompt.setdefault(s["prompt_id"], {}).setdefault(s["completion"], value)
    out = []
    for pid, scored in by_prompt.items():
        ranked = sorted(scored.items(), key=lambda kv: -kv[1])
        for i in range(min(per_prompt, len(ranked) // 2)):
            (good, a), (bad, b) = ranked[i], ranked[-1 - i]
            if a - b >= min_gap:
                out.append({"id": pid, "chosen": good, "rejected": bad, "gap": a - b})
    return out


def split_pairs(pairs: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(held-out, training) pairs: a seeded share of the images (pair ``id``s) held out with all their pairs, so no
    held-out image was seen in training."""
    ids = list(dict.fromkeys(p.get("id") for p in pairs))
    random.Random(seed).shuffle(ids)
    held = set(ids[: max(1, int(len(ids) * eval_fraction))])
    return [p for p in pairs if p.get("id") in held], [p for p in pairs if p.get("id") not in held]


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
