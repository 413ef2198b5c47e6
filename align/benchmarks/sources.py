"""Benchmark data from a hub id (``datasets.load_dataset``) or a local copy, in the columns the sets are published in.

Local copies may be:

* a hub snapshot folder (``hf download NCSOFT/K-MMBench --repo-type dataset --local-dir DIR``), read by
  ``datasets.load_dataset(DIR)``, or a folder written by ``Dataset.save_to_disk``;
* a ``.parquet`` / ``.jsonl`` / ``.json`` / ``.csv`` file (image columns as HF image dicts, bytes, or paths relative
  to the file);
* a VLMEvalKit ``.tsv`` (``MMBench_DEV_KO.tsv`` …): images base64-encoded, or, in circular copies, the ``index`` of
  the row that holds the image.

Nothing here downloads unless the source is a hub id; when the hub is unreachable the run stops with a message that
names the source and says how to point at a local copy.
"""

from __future__ import annotations

import base64
import bisect
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from align.errors import UserError

LOCAL_SUFFIXES = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}
# datasets 5.2 caches a local folder by its path and serves the old rows after the files change (seen here): read
# local folders afresh every time (the split sizes recorded with the old copy would fail the checks otherwise)
FRESH = {"download_mode": "force_redownload", "verification_mode": "no_checks"}


def _hint(bench: str, source: str) -> str:
    return (f"download it where the hub is reachable (`hf download {source} --repo-type dataset --local-dir DIR`, "
            f"or VLMEvalKit's .tsv) and point the benchmark at it: `source: DIR` in eval.benchmarks "
            f"(name: {bench}) or `align eval MODEL --bench {bench} --source DIR`")  # fmt: skip


class LazyRows(Sequence):
    """A dataset's rows read one at a time, with image columns left encoded (``{"bytes", "path"}``): nothing is
    decoded or held in memory until a benchmark asks for that row (``datasets`` keeps the table memory-mapped)."""

    def __init__(self, data):
        from datasets import Image

        for name, feature in data.features.items():
            if isinstance(feature, Image) and feature.decode:
                data = data.cast_column(name, Image(decode=False))
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.data[i] for i in range(*index.indices(len(self)))]
        return self.data[index]

    def __iter__(self):
        return iter(self.data)


class ParquetRows(Sequence):
    """Rows of parquet files read one row group at a time (only the group last asked for is kept): a split's
    images, still encoded, are never all in memory, and nothing is converted into a ``datasets`` cache first."""

    def __init__(self, files: list[Path]):
        import pyarrow.parquet as pq

        self.files = [pq.ParquetFile(f) for f in files]
        self.groups: list[tuple[int, int, int]] = []  # (first row, file, row group)
        start = 0
        for fi, f in enumerate(self.files):
            for rg in range(f.metadata.num_row_groups):
                self.groups.append((start, fi, rg))
                start += f.metadata.row_group(rg).num_rows
        self.total, self._cached = start, (None, [])

    def __len__(self) -> int:
        return self.total

    def _group(self, g: int) -> list[dict]:
        if self._cached[0] != g:
            _, fi, rg = self.groups[g]
            self._cached = (None, [])  # drop the previous group before reading the next
            self._cached = (g, self.files[fi].read_row_group(rg).to_pylist())
        return self._cached[1]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not 0 <= index < self.total:
            raise IndexError(index)
        g = bisect.bisect_right([s for s, _, _ in self.groups], index) - 1
        return self._group(g)[index - self.groups[g][0]]

    def __iter__(self):
        for g in range(len(self.groups)):
            yield from self._group(g)


def _readme_splits(folder: Path) -> dict[str, list[Path]] | None:
    """Split -> files from a hub README's ``configs:`` (the default or only config), when there is one."""
    import yaml

    readme = folder / "README.md"
    text = readme.read_text(errors="ignore") if readme.exists() else ""
    if not text.startswith("---"):
        return None
    try:
        meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return None
    configs = meta.get("configs") or [] if isinstance(meta, dict) else []
    config = next((c for c in configs if c.get("default")), configs[0] if len(configs) == 1 else None)
    files = config.get("data_files") if isinstance(config, dict) else None
    if isinstance(files, str):
        files = [{"split": "train", "path": files}]
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        return None
    out: dict[str, list[Path]] = {}
    for entry in files:
        paths = entry.get("path")
        for pattern in paths if isinstance(paths, list) else [paths]:
            out.setdefault(str(entry.get("split", "train")), []).extend(sorted(folder.glob(str(pattern))))
    return out


def parquet_split(folder: Path, split: str | None) -> list[Path] | None:
    """The parquet files of ``split`` in a hub snapshot folder: as its README ``configs:`` name them, else by the
    hub's file names (``data/<split>-00000-of-00001.parquet`` or ``<split>/…parquet``); the only split's when
    ``split`` is not there. None when the folder is laid out otherwise (then ``datasets`` reads it)."""
    splits = _readme_splits(folder)
    if splits is None:
        splits = {}
        for f in sorted(folder.glob("**/*.parquet")):
            name = f.parent.name if f.parent != folder and f.parent.name != "data" else f.name.split("-")[0]
            splits.setdefault(name.split(".")[0], []).append(f)
    files = splits.get(split) if split in splits else next(iter(splits.values())) if len(splits) == 1 else None
    if not files or any(f.suffix != ".parquet" for f in files):
        return None
    return files


def resolve_local(source: str, base_dir: Path | None) -> Path | None:
    """A source that names an existing local file or folder (relative to the recipe's folder, then the cwd)."""
    p = Path(source).expanduser()
    candidates = [p] if p.is_absolute() else [*([base_dir / p] if base_dir else []), p]
    for cand in candidates:
        if cand.exists():
            return cand.resolve()
    if source.startswith((".", "/", "~")) or source.count("/") > 1 or Path(source).suffix in {*LOCAL_SUFFIXES, ".tsv"}:
        raise UserError(f"benchmark source {source} does not exist", "check the path (relative to the recipe's folder)")
    return None


def _pick_split(data, split: str | None, source: str):
    """A Dataset from what load_dataset returned (a DatasetDict: the named split, else the only one)."""
    from datasets import DatasetDict

    if not isinstance(data, DatasetDict):
        return data
    if split and split in data:
        return data[split]
    if len(data) == 1:
        return next(iter(data.values()))
    raise UserError(f"{source} has splits {sorted(data)}; none is '{split}'", "set `split:` on the benchmark")


def load_rows(source: str, split: str | None, bench: str, base_dir: Path | None = None) -> tuple[Sequence[dict], Path]:
    """Rows as dicts (read lazily, images still encoded: ``to_image`` decodes one when it is needed) and the folder
    relative image paths point to."""
    local = resolve_local(source, base_dir)
    if local is None:
        return _load_hub(source, split, bench), Path.cwd()
    if local.is_file():
        if local.suffix == ".tsv":
            return _load_tsv(local), local.parent
        kind = LOCAL_SUFFIXES.get(local.suffix)
        if kind is None:
            raise UserError(f"{local}: unknown file type", "use .parquet, .jsonl, .json, .csv or VLMEvalKit's .tsv")
        if kind == "parquet":
            return ParquetRows([local]), local.parent
        from datasets import load_dataset

        data = load_dataset(kind, data_files=str(local), split="train")
        return LazyRows(data), local.parent
    from datasets import load_dataset, load_from_disk

    if (local / "state.json").exists() or (local / "dataset_dict.json").exists():
        data = _pick_split(load_from_disk(str(local)), split, str(local))
    else:
        tsvs = sorted(local.glob("*.tsv"))
        if tsvs and not any(local.glob("**/*.parquet")):
            return _load_tsv(tsvs[0]), local
        files = parquet_split(local, split)
        if files:
            return ParquetRows(files), local
        data = _pick_split(load_dataset(str(local), **FRESH), split, str(local))
    return LazyRows(data), local


def _load_hub(source: str, split: str | None, bench: str) -> LazyRows:
    from datasets import load_dataset

    try:
        data = load_dataset(source, split=split) if split else load_dataset(source)
    except Exception as e:  # noqa: BLE001 - offline, gated, renamed: all mean "get a local copy"
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"benchmark {bench}: cannot load {source} from the hub ({reason})", _hint(bench, source)) \
            from None  # fmt: skip
    return LazyRows(_pick_split(data, split, source))


def _load_tsv(path: Path) -> list[dict]:
    import pandas as pd

    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    return [{k: (None if v == "" else v) for k, v in row.items()} for row in frame.to_dict("records")]


def image_map(rows: Sequence[dict], column: str = "image") -> dict[str, Any]:
    """VLMEvalKit TSVs store each image once; other rows name the ``index`` of the row that has it (the map holds
    the TSV's own base64 strings, already in memory; other sources have no such rows and give an empty map)."""
    if isinstance(rows, (LazyRows, ParquetRows)):
        return {}
    return {str(r.get("index")): r.get(column) for r in rows if isinstance(r.get(column), str) and len(r[column]) > 64}


def has_image(value: Any, images: dict | None = None) -> bool:
    """Whether a row's image column names an image at all (decoding is left for when it is used)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if isinstance(value, dict):
        return bool(value.get("bytes") or value.get("path"))
    if isinstance(value, (list, tuple)):
        return bool(value) and has_image(value[0], images)
    return not isinstance(value, str) or bool(value.strip())


@dataclass(frozen=True, eq=False)
class ImageRef:
    """Where a row's image is, decoded only by ``load()`` (a split's images are never all in memory at once)."""

    rows: Sequence[dict]
    pos: int
    folder: Path | None = None
    images: dict | None = None
    column: str = "image"

    def load(self):
        return to_image(self.rows[self.pos].get(self.column), self.folder, self.images)


class LazyImages(Sequence):
    """One ``[image]`` per query, decoded when a generation batch slices them."""

    def __init__(self, refs: Sequence[ImageRef]):
        self.refs = refs

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [[ref.load()] for ref in self.refs[index]]
        return [self.refs[index].load()]


def to_image(value: Any, folder: Path | None = None, images: dict | None = None):
    """A PIL RGB image from whatever a benchmark's image column holds; None when it holds nothing usable."""
    from PIL import Image

    if value is None:
        return None
    if isinstance(value, list):
        return to_image(value[0], folder, images) if value else None
    try:
        if isinstance(value, Image.Image):
            return value.convert("RGB")
        if isinstance(value, dict):
            if value.get("bytes"):
                return Image.open(io.BytesIO(value["bytes"])).convert("RGB")
            return to_image(value.get("path"), folder, images)
        if isinstance(value, (bytes, bytearray)):
            return Image.open(io.BytesIO(value)).convert("RGB")
        if isinstance(value, str):
            if images is not None and len(value) <= 64 and value in images:
                return to_image(images[value], folder, None)
            path = Path(value) if Path(value).is_absolute() or folder is None else folder / value
            if len(value) < 1024 and path.exists():
                return Image.open(path).convert("RGB")
            if len(value) > 64:
                return Image.open(io.BytesIO(base64.b64decode(value))).convert("RGB")
    except Exception:  # noqa: BLE001 - a corrupt image is a bad row, counted by the caller
        return None
    return None
