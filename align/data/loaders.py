"""Loading user data into the common row schema (see ``align.data``).

Accepted row forms (JSONL, JSON list, or Parquet):

* prompt/completion: ``{"prompt": "...", "completion": "...", "answer": "...", "images": ["a.png"]}``; prompt and
  completion may also be lists of chat messages.
* messages: ``{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}],
  "images": [...]}``: the last assistant message is the completion.
* LLaVA: ``{"conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "..."}],
  "image": "a.png"}``.

Optional columns: ``id``, ``task`` (default ``"default"``), ``answer`` (default: the completion's text).
Image paths are resolved against ``data.image_folder``, else the data file's folder; when none is set and every
image of a file is found under one subfolder of it instead (LLaVA datasets keep them in ``images/``), that subfolder
is used and a note says so. A row with a missing or corrupt image, or with neither completion nor answer, is skipped
and reported by row number and reason (``RowProblem.reason``); ``FIXES`` holds what to do about each reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from align.chat import content_text
from align.errors import DataError

ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
SUFFIXES = (".jsonl", ".json", ".parquet")
FILE_FORMS = ".jsonl (one JSON object per line), .json (a list of rows, or an object with a 'data' list) or .parquet"
ROW_FORMS = ("'conversations' (LLaVA: [{from: human, value}, {from: gpt, value}]), 'messages' ([{role, content}, …]) "
             "or 'prompt' (or 'question') with 'completion' or 'answer'")  # fmt: skip

# Why a row was skipped, and what to do about it (the "image not found" fix is worked out per file when known).
NOT_FOUND, UNREADABLE, NOT_A_PATH = "image not found", "image unreadable", "image entry not a path"
UNKNOWN_FORM, UNKNOWN_ROLE, NO_ANSWER, MALFORMED = "unknown row form", "unknown role", "no answer", "malformed row"
FIXES = {
    NOT_FOUND: "set data.image_folder to the folder holding the images (relative paths in the data point into it, "
    "else next to the data file)",
    UNREADABLE: "replace or remove the corrupt images",
    NOT_A_PATH: "an image entry is a path (relative to data.image_folder), {path: …} or {bytes: …}",
    UNKNOWN_FORM: f"each row needs {ROW_FORMS}",
    MALFORMED: f"each row needs {ROW_FORMS}",
    UNKNOWN_ROLE: "roles are user, assistant, system and tool_list (LLaVA: human, gpt)",
    NO_ANSWER: "give each row an assistant reply (the last gpt/assistant turn, or 'completion') or an 'answer'",
}


class RowProblem(ValueError):
    """Why one row cannot be used; ``reason`` is one of the keys of ``FIXES`` (or ``MALFORMED``)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        raise DataError(f"data file {path} not found", "check data.source (paths are relative to the recipe)")
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type '{path.suffix}'", f"data files are {FILE_FORMS}")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{path}: cannot read Parquet: {e}") from None
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" or text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from None
        if isinstance(data, dict) and "data" in data:
            data = data["data"]
        if not isinstance(data, list):
            found = (
                f"an object with keys {', '.join(map(str, data))}" if isinstance(data, dict) else type(data).__name__
            )
            raise DataError(f"{path}: expected a JSON list of rows, found {found}", f"data files are {FILE_FORMS}")
        return data
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {lineno} is not valid JSON ({e.msg}); {len(rows)} rows read before it",
                            f"fix or remove that line; data files are {FILE_FORMS}") from None  # fmt: skip
    return rows


def open_rgb(image):
    """A PIL image as RGB from a path or image bytes ({"bytes": ...}, as Parquet stores images), or an image object."""
    if isinstance(image, (str, Path)) or (isinstance(image, dict) and image.get("bytes")):
        import io

        from PIL import Image

        with Image.open(io.BytesIO(image["bytes"]) if isinstance(image, dict) else image) as im:
            return im.convert("RGB")
    return image


def _as_messages(value: Any, role: str, key: str) -> list[dict]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list):
        bad = next((m for m in value if not isinstance(m, dict)), None)
        if bad is not None:
            raise ValueError(f"'{key}' holds a {type(bad).__name__}; each message is {{role, content}}")
        return [{"role": ROLE_MAP.get(m.get("role", role), m.get("role", role)), "content": content_text(m.get("content"))}
                for m in value]  # fmt: skip
    raise ValueError(f"'{key}' is a {type(value).__name__}; expected a string or a list of messages")


def _strip_image_tags(messages: list[dict]) -> list[dict]:
    return [{**m, "content": m["content"].replace("<image>\n", "").replace("<image>", "").strip()} for m in messages]


def normalize_row(row: dict) -> dict:
    """Convert one row of any accepted form to the common schema (images left as given)."""
    if not isinstance(row, dict):
        raise RowProblem(UNKNOWN_FORM, f"row is a JSON {type(row).__name__}, not an object")
    if "conversations" in row:
        turns = row["conversations"]
        if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
            raise ValueError("'conversations' must be a list of turns {from, value}")
        msgs = [{"role": ROLE_MAP.get(t.get("from"), t.get("from")), "content": t.get("value", "")}
                for t in row["conversations"]]  # fmt: skip
        prompt, completion = _split_last_assistant(msgs)
    elif "messages" in row:
        prompt, completion = _split_last_assistant(_as_messages(row["messages"], "user", "messages"))
    elif "prompt" in row or "question" in row:
        key = "prompt" if "prompt" in row else "question"
        prompt = _as_messages(row[key], "user", key)
        completion = _as_messages(row.get("completion"), "assistant", "completion")
    else:
        keys = ", ".join(map(str, row)) or "none"
        message = f"row has none of 'prompt', 'question', 'messages' or 'conversations' (its keys: {keys})"
        raise RowProblem(UNKNOWN_FORM, message)
    # tool_list: HyperCLOVAX-SEED's turn listing the tools a model may call (its chat template renders it)
    bad_roles = [
        m["role"] for m in prompt + completion if m["role"] not in ("user", "assistant", "system", "tool_list")
    ]
    if bad_roles:
        raise RowProblem(UNKNOWN_ROLE, f"unknown role '{bad_roles[0]}' (use user, assistant, system or tool_list)")
    images = row.get("images")
    if images is None:
        images = row.get("image")
    if images is None or images == "":
        images = []
    elif not isinstance(images, list):
        images = [images]
    answer = row.get("answer")
    if answer is None and completion:
        answer = completion[-1]["content"]
    out = {
        "id": str(row.get("id", "")),
        "task": str(row.get("task") or "default"),
        "prompt": _strip_image_tags(prompt),
        "completion": completion,
        "answer": None if answer is None else str(answer),
        "images": images,
    }
    # HyperCLOVAX-SEED-Vision's per-image text: OCR output and (local) lens keywords; a string (every image) or a
    # list with one entry per image. Kept as JSON in an `image_info` column, only in datasets that have any.
    info = {k: row[k] for k in IMAGE_INFO_FIELDS if row.get(k)}
    if info:
        out["image_info"] = json.dumps(info, ensure_ascii=False)
    if row.get("scene"):  # a scene's ground truth (the synthetic describe task), for measures that read it
        out["scene"] = row["scene"] if isinstance(row["scene"], str) else json.dumps(row["scene"], ensure_ascii=False)
    return out


IMAGE_INFO_FIELDS = ("ocr", "lens_keywords", "lens_local_keywords")


def _split_last_assistant(msgs: list[dict]) -> tuple[list[dict], list[dict]]:
    for i in range(len(msgs) - 1, -1, -1):
        if msgs[i]["role"] == "assistant":
            return msgs[:i], msgs[i : i + 1]
    return msgs, []


def check_image(image: Any, folder: Path) -> Any:
    """Return a loadable image reference (absolute path, bytes dict or PIL image) or raise ValueError."""
    from PIL import Image, UnidentifiedImageError

    if hasattr(image, "size") and hasattr(image, "mode"):
        return image
    if isinstance(image, dict) and image.get("bytes"):
        return image
    if isinstance(image, dict):
        image = image.get("path")
    if not isinstance(image, str) or not image:
        raise RowProblem(NOT_A_PATH, f"image entry {image!r} is not a path")
    path = Path(image)
    if not path.is_absolute():
        path = folder / path
    if not path.exists():
        raise RowProblem(NOT_FOUND, f"image '{image}' not found in {folder}")
    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise RowProblem(UNREADABLE, f"image '{image}' is corrupt or not an image ({type(e).__name__})") from None
    return str(path)


def to_dataset(raw_rows: list, split: str, report, image_folder: Path, origin: str, data_file: Path | None = None,
               auto_folder: bool = False, hint_root: Path | None = None):  # fmt: skip
    """The usable rows of one file (``data_file``, else a hub split named ``origin``) as a ``datasets.Dataset``;
    the others go to ``report`` with their row number and reason. With ``data_file``, missing images are looked
    for in nearby folders: ``auto_folder`` uses one that holds every image, else the report gets the fix."""
    from datasets import Dataset, Image, Sequence

    name = data_file.name if data_file else origin
    report.files[split], report.read[split] = str(data_file or origin), len(raw_rows)
    problems, parsed = [], []
    for i, raw in enumerate(raw_rows, 1):
        try:
            row = normalize_row(raw)
        except RowProblem as e:
            problems.append((i, e.reason, str(e)))
            continue
        except (ValueError, TypeError, AttributeError) as e:
            problems.append((i, MALFORMED, str(e)))
            continue
        if not row["completion"] and row["answer"] is None:
            problems.append((i, NO_ANSWER, "no answer and no assistant reply"))
            continue
        parsed.append((i, row))
    if data_file is not None:
        paths = [p for _, row in parsed for p in _relative_paths(row["images"])]
        image_folder, note, fix = locate_images(paths, image_folder, data_file, auto_folder, hint_root or Path.cwd())
        report.image_folders[split] = {"path": str(image_folder), "auto": note is not None}
        if note:
            report.notes.append(note)
        if fix:
            report.fixes.setdefault(split, {})[NOT_FOUND] = fix
    rows = []
    for i, row in parsed:
        try:
            row["images"] = [check_image(img, image_folder) for img in row["images"]]
        except RowProblem as e:
            problems.append((i, e.reason, str(e)))
            continue
        row["id"] = row["id"] or f"{split}-{i}"
        rows.append(row)
    for i, reason, message in sorted(problems, key=lambda p: p[0]):
        report.skip(split, f"{name} row {i}: {message}", reason)
    report.rows[split] = len(rows)
    if not rows:
        return Dataset.from_dict({k: [] for k in ("id", "task", "prompt", "completion", "answer", "images")})
    for extra in ("image_info", "scene"):
        if any(extra in row for row in rows):
            for row in rows:
                row.setdefault(extra, "")
    ds = Dataset.from_list(rows)
    return ds.cast_column("images", Sequence(Image()))


def _relative_paths(images: list) -> list[str]:
    refs = [img.get("path") if isinstance(img, dict) and not img.get("bytes") else img for img in images]
    return [r for r in refs if isinstance(r, str) and r and not Path(r).is_absolute()]


def _nearby_folders(folder: Path, data_dir: Path) -> list[Path]:
    """Where misplaced images may be: the data file's folder and its subfolders, and the subfolders of ``folder``."""
    found = [data_dir]
    for parent in dict.fromkeys((data_dir, folder)):
        if parent.is_dir():
            found += sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [p for p in dict.fromkeys(found) if p != folder]


def locate_images(paths: list[str], folder: Path, data_file: Path, auto: bool, hint_root: Path):
    """(the folder to resolve ``paths`` against, a note when it is not ``folder``, the fix when images are
    elsewhere). Another folder is used only when ``auto`` and it holds every one of ``paths``."""
    missing = [p for p in paths if not (folder / p).exists()]
    if not missing:
        return folder, None, None
    best, best_n = None, 0
    for candidate in _nearby_folders(folder, data_file.parent):
        if not any((candidate / p).exists() for p in missing[:50]):  # a sample first: big datasets, many folders
            continue
        n = sum((candidate / p).exists() for p in missing)
        if n > best_n:
            best, best_n = candidate, n
    if best is None:
        return folder, None, None
    shown = os.path.relpath(best, hint_root)  # as data.image_folder names it (relative to the recipe's folder)
    if auto and best_n == len(missing) and all((best / p).exists() for p in paths):
        note = (f"{data_file}: the images are not next to the data file but all {len(paths)} are under {shown}, so "
                f"that folder is used (to make it explicit, set data.image_folder: {shown})")  # fmt: skip
        return best, note, None
    where = "next to the data file" if folder == data_file.parent else f"in data.image_folder ({folder})"
    found = f"{best_n} of the {len(missing)} missing are under {shown}"
    return folder, None, f"images are not {where}; {found}: set data.image_folder: {shown}"


def load_file(path: Path, split: str, report, image_folder: Path | None = None, hint_root: Path | None = None):
    """One data file's usable rows; images next to it unless ``image_folder`` is given (then it is not searched)."""
    path = Path(path)
    return to_dataset(_read_rows(path), split, report, Path(image_folder or path.parent), str(path), data_file=path,
                      auto_folder=image_folder is None, hint_root=hint_root)  # fmt: skip


def _find(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for suffix in SUFFIXES:
            if (folder / f"{name}{suffix}").exists():
                return folder / f"{name}{suffix}"
    return None


def _resolve_path(source: str, base_dir) -> Path | None:
    for root in ([Path(base_dir)] if base_dir else []) + [Path.cwd()]:
        p = (root / source).expanduser()
        if p.exists():
            return p.resolve()
    p = Path(source).expanduser()
    return p.resolve() if p.exists() else None


def load_source(spec, base_dir, report, seed: int):
    """Local file or folder, else a hub dataset id."""
    path = _resolve_path(spec.source, base_dir)
    folder = Path(spec.image_folder) if spec.image_folder else None
    if folder is not None and not folder.is_absolute() and base_dir:
        folder = Path(base_dir) / folder
    if path is not None:
        if folder is not None and not folder.is_dir():
            raise DataError(f"data.image_folder: {folder} is not a folder", "paths are relative to the recipe's folder")
        if path.is_dir():
            train_file = _find(path, (spec.train_split, "train"))
            if train_file is None:
                held = ", ".join(sorted(p.name for p in path.iterdir() if not p.name.startswith("."))[:10]) or "nothing"
                raise DataError(f"{path} holds no {spec.train_split}.jsonl/.json/.parquet (it holds: {held})",
                                f"name the file in data.source; data files are {FILE_FORMS}")  # fmt: skip
            eval_file = _find(path, (spec.eval_split, "eval", "test", "validation"))
        else:
            train_file, eval_file = path, None
        if spec.eval_source:
            eval_file = _resolve_path(spec.eval_source, base_dir)
            if eval_file is None:
                raise DataError(f"data.eval_source: {spec.eval_source} not found")
        root = Path(base_dir) if base_dir else None
        train = load_file(train_file, "train", report, folder, root)
        if eval_file is not None:
            return train, load_file(eval_file, "eval", report, folder, root), str(path)
        return *_hold_out(train, spec, report, seed), str(path)
    if spec.source.startswith((".", "/", "~")) or spec.source.endswith(SUFFIXES):
        raise DataError(f"data.source: {spec.source} not found", "paths are relative to the recipe's folder")
    return _load_hub(spec, report, folder, seed)


def _load_hub(spec, report, folder, seed):
    try:
        from datasets import load_dataset

        ds = load_dataset(spec.source)
    except Exception as e:  # noqa: BLE001
        raise DataError(
            f"data.source: '{spec.source}' is not a local path and could not be loaded from the hub "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200]})",
            "on a machine without network access, download the dataset elsewhere and point data.source at the file",
        ) from None
    image_folder = folder or Path.cwd()
    if spec.train_split not in ds:
        raise DataError(f"hub dataset {spec.source} has no split '{spec.train_split}' (it has {', '.join(ds)})")
    train = to_dataset(list(ds[spec.train_split]), "train", report, image_folder, f"{spec.source}:{spec.train_split}")
    eval_name = next((s for s in (spec.eval_split, "eval", "test", "validation") if s in ds), None)
    if eval_name:
        evals = to_dataset(list(ds[eval_name]), "eval", report, image_folder, f"{spec.source}:{eval_name}")
        return train, evals, spec.source
    return *_hold_out(train, spec, report, seed), spec.source


def _hold_out(train, spec, report, seed):
    """(train, eval): ``data.eval_fraction`` of the training rows held out, once there are any."""
    if len(train) == 0:
        raise report.unusable("train")
    parts = train.train_test_split(test_size=spec.eval_fraction, seed=seed)
    return parts["train"], parts["test"]
