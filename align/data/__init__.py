"""Datasets for every stage, in one schema.

Each row has ``id``, ``task``, ``prompt`` (chat messages before the answer), ``completion`` (the assistant's answer
as messages), ``answer`` (the reference used by rewards) and ``images`` (a list of images; empty for text rows).
This is TRL's conversational prompt-completion format, so SFT, GRPO and DPO read it unchanged.

Sources (``data.source`` in a recipe):
* ``synthetic``: the generated Korean tasks (``align data build``), cached under ``$ALIGN_CACHE/data``.
* a local ``.jsonl`` / ``.json`` / ``.parquet`` file or a folder holding ``train.*`` and ``eval.*`` (or ``test.*``),
  rows in LLaVA ``conversations`` form, ``messages`` form, or prompt/completion form (see ``loaders.py``).
* a hub dataset id (needs network access).
Bad rows (missing or corrupt images, no answer) are skipped, counted per reason and reported with their row numbers;
when no usable row is left, the ``DataError`` names the file, the counts, the first reasons and the fix when known,
and carries the report (``error.report``) so that the run directory gets ``data_report.json`` all the same.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from align.data import loaders
from align.data.synthetic import ALL_TASKS, TASKS, SyntheticSpec, build_synthetic
from align.errors import DataError, did_you_mean
from align.io import cache_dir

SHOWN, SAVED = 5, 200  # skipped rows named in an error message, listed in data_report.json (per split)


@dataclass
class DataReport:
    """What loading read, kept and skipped (and why), per split; ``data_report.json`` holds its ``to_json()``."""

    rows: dict[str, int] = field(default_factory=dict)  # usable rows
    skipped: dict[str, list[str]] = field(default_factory=dict)  # "train.json row 3: why", in row order
    reasons: dict[str, Counter] = field(default_factory=dict)  # reason -> skipped rows
    read: dict[str, int] = field(default_factory=dict)  # rows in the file
    files: dict[str, str] = field(default_factory=dict)
    image_folders: dict[str, dict] = field(default_factory=dict)  # {"path": …, "auto": chosen by the loader}
    notes: list[str] = field(default_factory=list)  # what the loader decided that the user should know
    fixes: dict[str, dict[str, str]] = field(default_factory=dict)  # reason -> the fix found for this data

    def skip(self, split: str, message: str, reason: str = loaders.MALFORMED) -> None:
        self.skipped.setdefault(split, []).append(message)
        self.reasons.setdefault(split, Counter())[reason] += 1

    def counts(self, split: str) -> str:
        return ", ".join(f"{reason}: {n}" for reason, n in self.reasons.get(split, Counter()).most_common())

    def fix_list(self, split: str) -> list[str]:
        found = self.fixes.get(split, {})
        fixes = [found.get(r) or loaders.FIXES.get(r) for r, _ in self.reasons.get(split, Counter()).most_common()]
        return [f for f in dict.fromkeys(fixes) if f]

    def summary(self) -> str:
        parts = []
        for split, n in self.rows.items():
            bad = self.skipped.get(split, [])
            read = f" of {self.read[split]} read" if split in self.read and bad else ""
            parts.append(f"{split}: {n} rows" + (f"{read}, {len(bad)} skipped ({self.counts(split)})" if bad else ""))
        return "; ".join(parts)

    def unusable(self, split: str) -> DataError:
        """The error for a split with rows but none usable: file, counts per reason, first reasons, fixes."""
        bad = self.skipped.get(split, [])
        what = "training" if split == "train" else split
        lines = [f"no usable {what} rows in {self.files.get(split, split)}: read {self.read.get(split, 0)} rows"
                 + (f", skipped {len(bad)} ({self.counts(split)})" if bad else "")]  # fmt: skip
        lines += [f"  {message}" for message in bad[:SHOWN]]
        if len(bad) > SHOWN:
            lines.append(f"  … {len(bad) - SHOWN} more")
        fixes = self.fix_list(split) or ([] if bad else [f"the file has no rows; data files are {loaders.FILE_FORMS}"])
        return DataError("\n".join(lines), "; ".join(fixes) or None)

    def to_json(self) -> dict:
        skipped = {k: {"count": len(v), "reasons": dict(self.reasons[k].most_common()), "fixes": self.fix_list(k),
                       "rows": v[:SAVED]} for k, v in self.skipped.items()}  # fmt: skip
        return {"rows": self.rows, "read": self.read, "files": self.files, "image_folders": self.image_folders,
                "notes": self.notes, "skipped": skipped}  # fmt: skip


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
    """Load train and eval rows for a recipe's ``data`` block; a ``DataError`` carries the report as ``.report``."""
    report = DataReport()
    try:
        return _load_splits(spec, base_dir, seed, progress, report)
    except DataError as e:
        e.report = report
        raise


def _load_splits(spec, base_dir, seed, progress, report: DataReport) -> Splits:
    if spec.source == "synthetic":
        folder = build_synthetic_data(spec, progress=progress)
        train = loaders.load_file(folder / "train.jsonl", "train", report, image_folder=folder)
        evals = loaders.load_file(folder / "eval.jsonl", "eval", report, image_folder=folder)
        source = str(folder)
    else:
        train, evals, source = loaders.load_source(spec, base_dir, report, seed)
    for split in ("train", "eval"):
        if split in report.read and report.rows.get(split) == 0:
            raise report.unusable(split)
    if spec.tasks and spec.source != "synthetic":
        keep, present = set(spec.tasks), sorted(set(train["task"]))
        train = train.filter(lambda r: r["task"] in keep)
        evals = evals.filter(lambda r: r["task"] in keep)
        if len(train) == 0:
            raise DataError(f"no training rows of data.tasks {', '.join(spec.tasks)} in {source}",
                            f"its rows' tasks are: {', '.join(present)}")  # fmt: skip
    if spec.max_rows is not None and len(train) > spec.max_rows:
        train = train.select(range(spec.max_rows))
    report.rows = {"train": len(train), "eval": len(evals)}
    return Splits(train=train, eval=evals, report=report, source=source)
