"""Running the recipe's benchmarks on a checkpoint (the eval hook) or one benchmark alone (``align eval --bench``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from align.benchmarks import caption, choice, koffvqa, konet, korean_mc, latency, llava_w, text_tasks
from align.benchmarks.common import BenchContext
from align.benchmarks.registry import lookup
from align.io import atomic_write_json
from align.rundir import EVAL_FILE
from rollouts import make_engine

PREFIX = "bench/"
RUNNERS = {"choice": choice, "judged": llava_w, "text": text_tasks, "caption": caption, "latency": latency}
RUNNERS.update({"mcq": korean_mc, "text-gen": korean_mc})  # issue 32: generative multiple choice (korean_mc.py)
BY_NAME = {"koffvqa": koffvqa, "konet": konet}  # judged sets with their own protocol (a judge is still required)


def run_benchmarks(model_dir: str, recipe, out_dir: str | Path, base_dir=None, engine=None, specs=None,
                   log=print) -> dict[str, float]:  # fmt: skip
    """Run ``specs`` (default: ``recipe.eval.benchmarks``) on ``model_dir``; flat ``bench/<name>/<metric>`` dict.
    The rollout engine is created on first need and shared by the benchmarks (``engine``: reuse the caller's)."""
    specs = list(recipe.eval.benchmarks if specs is None else specs)
    if not specs:
        return {}
    state = {"engine": engine}

    def shared_engine():
        if state["engine"] is None:
            state["engine"] = make_engine(recipe.rollout, model_dir, recipe.model, batch_size=recipe.eval.batch_size,
                                          seed=recipe.seed, log=log)  # fmt: skip
        return state["engine"]

    out: dict[str, float] = {}
    try:
        for spec in specs:
            info = lookup(spec.name)
            label = info.name
            ctx = BenchContext(info, spec, str(model_dir), recipe, Path(out_dir), Path(base_dir) if base_dir else None,
                               shared_engine, log)  # fmt: skip
            started = time.time()
            metrics = BY_NAME.get(info.name, RUNNERS[info.family]).run(ctx)
            main = metrics.get(info.main)
            log(f"  bench {label}: {info.main} = {'-' if main is None else f'{main:.4f}'}"
                f" ({time.time() - started:.0f}s; answers in {ctx.rows_path})")  # fmt: skip
            out.update({f"{PREFIX}{label}/{k}": float(v) for k, v in metrics.items() if v is not None})
    finally:
        if engine is None and state["engine"] is not None:
            state["engine"].close()
    return out


def evaluate_benchmarks(model_dir: str, recipe, specs, out_dir: str | Path, base_dir=None, log=print) -> dict:
    """``align eval MODEL --bench NAME``: run ``specs`` alone and merge their results into ``out_dir/eval.json``
    (other metrics already there are kept, the benchmark's own are replaced)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = run_benchmarks(model_dir, recipe, out, base_dir, specs=specs, log=log)
    path = out / EVAL_FILE
    existing = json.loads(path.read_text()) if path.exists() else {}
    names = {f"{PREFIX}{lookup(s.name).name}/" for s in specs}
    merged = {k: v for k, v in existing.items() if not any(k.startswith(n) for n in names)}
    merged.update(metrics)
    atomic_write_json(path, merged)
    return metrics
