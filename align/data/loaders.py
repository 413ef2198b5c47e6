"""Loading user data into the common row schema (see ``align.data``).

Accepted row forms (JSONL, JSON list, or Parquet):

* prompt/completion: ``{"prompt": "...", "completion": "...", "answer": "...", "images": ["a.png"]}``; prompt and
  completion may also be lists of chat messages.
* messages: ``{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}],
  "images": [...]}``: the last assistant message is the completion.
* LLaVA: ``{"conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "..."}],
  "image": "a.png"}``.

Optional columns: ``id``, ``task`` (default ``"default"``), ``answer`` (default: the completion's text).
Image paths are resolved against ``data.image_folder``, else the data file's folder. A row with a missing or
corrupt image, or with neither completion nor answer, is skipped and reported by row number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from align.chat import content_text
from align.errors import DataError

ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
SUFFIXES = (".jsonl", ".json", ".parquet")


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        raise DataError(f"data file {path} not found", "check data.source (paths are relative to the recipe)")
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
            raise DataError(f"{path}: expected a list of rows")
        return data
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {lineno} is not valid JSON ({e.msg})", "fix or remove that line") from None
    return rows


def open_rgb(image):
    """A PIL image as RGB from a path or image bytes ({"bytes": ...}, as Parquet stores images), or an image object."""
    if isinstance(image, (str, Path)) or (isinstance(image, dict) and image.get("bytes")):
        import io

        from PIL import Image

        with Image.open(io.BytesIO(image["bytes"]) if isinstance(image, dict) else image) as im:
            return im.convert("RGB")
    return image


def _as_messages(value: Any, role: str) -> list[dict]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list):
        return [{"role": ROLE_MAP.get(m.get("role", role), m.get("role", role)), "content": content_text(m.get("content"))}
                for m in value]  # fmt: skip
    raise ValueError(f"expected a string or a list of messages, got {type(value).__name__}")


def _strip_image_tags(messages: list[dict]) -> list[dict]:
    return [{**m, "content": m["content"].replace("<image>\n", "").replace("<image>", "").strip()} for m in messages]


def normalize_row(row: dict) -> dict:
    """Convert one row of any accepted form to the common schema (images left as given)."""
    if "conversations" in row:
        msgs = [{"role": ROLE_MAP.get(t.get("from"), t.get("from")), "content": t.get("value", "")}
                for t in row["conversations"]]  # fmt: skip
        prompt, completion = _split_last_assistant(msgs)
    elif "messages" in row:
        prompt, completion = _split_last_assistant(_as_messages(row["messages"], "user"))
    elif "prompt" in row or "question" in row:
        prompt = _as_messages(row["prompt"] if "prompt" in row else row["question"], "user")
        completion = _as_messages(row.get("completion"), "assistant")
    else:
        raise ValueError("row has none of 'prompt', 'question', 'messages' or 'conversations'")
    # tool_list: HyperCLOVAX-SEED's turn listing the tools a model may call (its chat template renders it)
    bad_roles = [
        m["role"] for m in prompt + completion if m["role"] not in ("user", "assistant", "system", "tool_list")
    ]
    if bad_roles:
        raise ValueError(f"unknown role '{bad_roles[0]}' (use user, assistant, system or tool_list)")
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
        raise ValueError(f"image entry {image!r} is not a path")
    path = Path(image)
    if not path.is_absolute():
        path = folder / path
    if not path.exists():
        raise ValueError(f"image '{image}' not found in {folder}")
    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"image '{image}' is corrupt or not an image ({type(e).__name__})") from None
    return str(path)


def to_dataset(raw_rows: list[dict], split: str, report, image_folder: Path, origin: str):
    from datasets import Dataset, Image, Sequence

    rows = []
    for i, raw in enumerate(raw_rows, 1):
        where = f"{origin} row {i}"
        try:
            row = normalize_row(raw)
            row["images"] = [check_image(img, image_folder) for img in row["images"]]
        except (ValueError, TypeError, AttributeError) as e:
            report.skip(split, f"{where}: {e}")
            continue
        if not row["completion"] and row["answer"] is None:
            report.skip(split, f"{where}: no answer and no assistant reply")
            continue
        row["id"] = row["id"] or f"{split}-{i}"
        rows.append(row)
    if not rows:
        return Dataset.from_dict({k: [] for k in ("id", "task", "prompt", "completion", "answer", "images")})
    if any("image_info" in row for row in rows):
        for row in rows:
            row.setdefault("image_info", "")
    ds = Dataset.from_list(rows)
    return ds.cast_column("images", Sequence(Image()))


def load_file(path: Path, split: str, report, image_folder: Path | None = None):
    path = Path(path)
    return to_dataset(_read_rows(path), split, report, Path(image_folder or path.parent), str(path))


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
        if path.is_dir():
            train_file = _find(path, (spec.train_split, "train"))
            if train_file is None:
                raise DataError(f"{path} holds no train.jsonl/.json/.parquet", "name the file in data.source")
            eval_file = _find(path, (spec.eval_split, "eval", "test", "validation"))
        else:
            train_file, eval_file = path, None
        if spec.eval_source:
            eval_file = _resolve_path(spec.eval_source, base_dir)
            if eval_file is None:
                raise DataError(f"data.eval_source: {spec.eval_source} not found")
        train = load_file(train_file, "train", report, folder or train_file.parent)
        if eval_file is not None:
            evals = load_file(eval_file, "eval", report, folder or eval_file.parent)
        else:
            parts = train.train_test_split(test_size=spec.eval_fraction, seed=seed)
            train, evals = parts["train"], parts["test"]
        return train, evals, str(path)
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
    train = to_dataset(list(ds[spec.train_split]), "train", report, image_folder, spec.source)
    eval_name = next((s for s in (spec.eval_split, "eval", "test", "validation") if s in ds), None)
    if eval_name:
        evals = to_dataset(list(ds[eval_name]), "eval", report, image_folder, spec.source)
    else:
        parts = train.train_test_split(test_size=spec.eval_fraction, seed=seed)
        train, evals = parts["train"], parts["test"]
    return train, evals, spec.source
