"""What every benchmark family shares: the run context, bad-row tallies, standard errors, batched generation with
a progress bar, and the per-row answers file."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from align.benchmarks.registry import BenchInfo
from align.io import atomic_write_text

ROWS_DIR = "bench"  # per-row answers: <stage dir>/bench/<name>.jsonl


@dataclass
class BenchContext:
    """One benchmark run on one checkpoint."""

    info: BenchInfo
    spec: Any  # align.recipe.BenchmarkSpec
    model_dir: str
    recipe: Any
    out_dir: Path
    base_dir: Path | None = None
    engine_factory: Callable[[], Any] | None = None  # shared rollout engine (created on first use)
    log: Callable[[str], None] = print

    def option(self, key: str, default=None):
        """A spec field if set, else the benchmark's default, else ``default``."""
        value = getattr(self.spec, key, None)
        return value if value is not None else self.info.options.get(key, default)

    def engine(self):
        return self.engine_factory()

    @property
    def rows_path(self) -> Path:
        return self.out_dir / ROWS_DIR / f"{self.info.name}.jsonl"


@dataclass
class Tally:
    """Rows a benchmark could not score, by reason, with the first few row ids of each (never a crash)."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, row_id: Any) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(str(row_id))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def metrics(self) -> dict[str, float]:
        out = {"bad_rows": float(self.total)}
        out.update({f"bad/{reason}": float(n) for reason, n in sorted(self.counts.items())})
        return out

    def summary(self) -> str:
        return ", ".join(f"{n} {reason} (e.g. {', '.join(self.examples[reason][:3])})"
                         for reason, n in self.counts.most_common())  # fmt: skip

    def report(self, ctx, metrics: dict) -> dict:
        """``metrics`` with the bad-row counts added; the skipped rows said in the log when there are any."""
        metrics.update(self.metrics())
        if self.total:
            ctx.log(f"  {ctx.info.name}: skipped {self.summary()}")
        return metrics


def mean(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def mean_se(values: Sequence[float]) -> float | None:
    """Standard error of the mean (sample standard deviation / √n)."""
    vals = [float(v) for v in values if v is not None]
    if len(vals) < 2:
        return None
    m = sum(vals) / len(vals)
    var = sum((v - m) ** 2 for v in vals) / (len(vals) - 1)
    return math.sqrt(var / len(vals))


def proportion_se(p: float, n: int) -> float | None:
    """Standard error of an accuracy: √(p(1−p)/n)."""
    return math.sqrt(p * (1 - p) / n) if n > 0 else None


def bootstrap_se(items: Sequence, statistic: Callable[[list], float | None], resamples: int = 200,
                 seed: int = 0) -> float | None:  # fmt: skip
    """Standard error of a statistic that is not a plain mean (a ratio, corpus BLEU) by resampling the rows."""
    if len(items) < 2:
        return None
    rng = random.Random(seed)
    stats = []
    for _ in range(resamples):
        sample = [items[rng.randrange(len(items))] for _ in items]
        value = statistic(sample)
        if value is not None:
            stats.append(value)
    if len(stats) < 2:
        return None
    m = sum(stats) / len(stats)
    return math.sqrt(sum((s - m) ** 2 for s in stats) / (len(stats) - 1))


@contextmanager
def progress(total: int, description: str):
    """A progress bar (rich); yields ``advance(n)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=False) as bar:  # fmt: skip
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def generate(ctx: BenchContext, prompts: list, images: list | None, sampling, description: str) -> list:
    """Greedy (or given) answers in batches of ``eval.batch_size`` with a progress bar; one list per prompt."""
    engine = ctx.engine()
    size = max(1, int(getattr(ctx.recipe.eval, "batch_size", 32) or 32))
    outs: list = []
    with progress(len(prompts), description) as advance:
        for start in range(0, len(prompts), size):
            chunk = slice(start, start + size)
            outs += engine.generate(prompts[chunk], images[chunk] if images is not None else None, sampling)
            advance(len(prompts[chunk]))
    return outs


def answer_budget(ctx: BenchContext) -> int:
    """New tokens per answer: the benchmark entry's ``max_new_tokens``, else the benchmark's own budget (long for
    open-ended answers, short for choices; ``eval.max_new_tokens`` is the held-out split's and does not apply). A
    recipe that sets less than the benchmark's budget is warned: long answers are cut and score low."""
    own = ctx.info.options.get("max_new_tokens")
    asked = ctx.spec.max_new_tokens
    if asked is None:
        return int(own or ctx.recipe.eval.max_new_tokens)
    if own and asked < own:
        ctx.log(
            f"  warning: {ctx.info.name}: max_new_tokens {asked} is below the benchmark's budget {own} "
            f"({ctx.info.options.get('budget_source', 'its default')}); longer answers are cut and score lower"
        )
    return int(asked)


def user_prompt(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Per-row answers, one JSON object per line (images left out)."""
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text)


def key_part(text: Any) -> str:
    """A category name made safe as a metric-key segment."""
    return str(text).strip().replace("/", "∕") or "none"


def ask_judge(ctx: BenchContext, judge, conversations: list[list[dict]]) -> list[str]:
    """Judge replies in batches of ``judge.batch_size`` with a progress bar; the judge is closed afterwards."""
    replies: list[str] = []
    try:
        size = max(1, ctx.spec.judge.batch_size)
        with progress(len(conversations), f"{ctx.info.name} judge ({judge.name})") as advance:
            for start in range(0, len(conversations), size):
                replies += judge(conversations[start : start + size])
                advance(len(conversations[start : start + size]))
    finally:
        judge.close()
    return replies
