"""Datasets for every stage, in one schema.

Each row has ``id``, ``task``, ``prompt`` (chat messages before the answer), ``completion`` (the assistant's answer
as messages), ``answer`` (the reference used by rewards) and ``images`` (a list of images; empty for text rows).
This is TRL's conversational prompt-completion format, so SFT, GRPO and DPO read it unchanged.

Sources (``data.source`` in a recipe):
* ``synthetic``: the generated Korean tasks (``align data build``), cached under ``$ALIGN_CACHE/data``.
* a local ``.jsonl`` / ``.json`` / ``.parquet`` file or a folder holding ``train.*`` and ``eval.*`` (or ``test.*``),
  rows in LLaVA ``conversations`` form, ``messages`` form, or prompt/completion form (see ``loaders.py``).
* a hub dataset id (needs network access).
Bad rows (missing or corrupt images, no answer) are skipped, counted and reported with their row numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from align.data import loaders
from align.data.synthetic import ALL_TASKS, TASKS, SyntheticSpec, build_synthetic
from align.errors import DataError, did_you_mean
from align.io import cache_dir


@dataclass
class DataReport:
    """What loading kept and skipped, per split."""

    rows: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, split: str, message: str) -> None:
        self.skipped.setdefault(split, []).append(message)

    def summary(self) -> str:
        parts = []
        for split, n in self.rows.items():
            bad = self.skipped.get(split, [])
            parts.append(f"{split}: {n} rows" + (f", {len(bad)} skipped" if bad else ""))
        return "; ".join(parts)

    def to_json(self) -> dict:
        return {"rows": self.rows, "skipped": {k: {"count": len(v), "rows": v[:50]} for k, v in self.skipped.items()}}


@dataclass
class Splits:
    train: object  # datasets.Dataset
    eval: object
    report: DataReport
    source: str


def synthetic_dir(spec) -> Path:
    syn = synthetic_spec(spec)
    return cache_dir() / "data" / f"synthetic-ko-{syn.fingerprint()}"


def synthetic_spec(spec) -> SyntheticSpec:
    tasks = tuple(spec.tasks) if spec.tasks else TASKS
    unknown = [t for t in tasks if t not in ALL_TASKS]
    if unknown:
        raise DataError(f"data.tasks: unknown synthetic task '{unknown[0]}'; {did_you_mean(unknown[0], ALL_TASKS)}")
    return SyntheticSpec(
        tasks=tasks, train_size=spec.train_size, eval_size=spec.eval_size, seed=spec.seed,
        image_size=spec.image_size, max_count=spec.max_count, max_operand=spec.max_operand, ocr_words=spec.ocr_words,
    )  # fmt: skip


def build_synthetic_data(spec, progress=None) -> Path:
    return build_synthetic(synthetic_dir(spec), synthetic_spec(spec), progress=progress)


def load_splits(spec, base_dir: str | Path | None = None, seed: int = 0, progress=None) -> Splits:
    """Load train and eval rows for a recipe's ``data`` block."""
    report = DataReport()
    if spec.source == "synthetic":
        folder = build_synthetic_data(spec, progress=progress)
        train = loaders.load_file(folder / "train.jsonl", "train", report, image_folder=folder)
        evals = loaders.load_file(folder / "eval.jsonl", "eval", report, image_folder=folder)
        source = str(folder)
    else:
        train, evals, source = loaders.load_source(spec, base_dir, report, seed)
    if spec.tasks and spec.source != "synthetic":
        keep = set(spec.tasks)
        train = train.filter(lambda r: r["task"] in keep)
        evals = evals.filter(lambda r: r["task"] in keep)
    if spec.max_rows is not None and len(train) > spec.max_rows:
        train = train.select(range(spec.max_rows))
    if len(train) == 0:
        raise DataError(f"no usable training rows in {source} ({report.summary()})")
    report.rows = {"train": len(train), "eval": len(evals)}
    return Splits(train=train, eval=evals, report=report, source=source)
