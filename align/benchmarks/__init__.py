"""Benchmarks as eval components: the eval hook runs ``eval.benchmarks`` on the base model and after every stage.

    eval:
      benchmarks:
        - {name: k-mmbench, source: NCSOFT/K-MMBench, limit: 500}
        - {name: k-llava-w, judge: {url: http://localhost:8000/v1}}
        - {name: kmmlu, source: ./data/KMMLU, num_fewshot: 5}

Each benchmark's numbers go into the checkpoint's ``eval.json`` as ``bench/<name>/<metric>`` (with
``<metric>_stderr``, ``n`` and the bad-row counts), and its per-row answers into ``<stage>/bench/<name>.jsonl``.
One module per family: ``choice`` (K-MMBench, K-SEED, K-MMStar, K-DTCBench), ``llava_w`` (K-LLaVA-W with a local
judge), ``text_tasks`` (KMMLU, HAE-RAE, CLIcK, KoBEST through lm-eval), ``caption``, ``latency``.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from align.benchmarks.common import BenchContext
from align.benchmarks.registry import BENCHMARKS, BenchInfo, family_of, lookup

__all__ = ["BENCHMARKS", "PREFIX", "BenchInfo", "evaluate_benchmarks", "family_of", "lookup", "run_benchmarks"]

PREFIX = "bench/"
RUNNERS = {"choice": "align.benchmarks.choice", "judged": "align.benchmarks.llava_w",
           "text": "align.benchmarks.text_tasks", "caption": "align.benchmarks.caption",
           "latency": "align.benchmarks.latency"}  # fmt: skip


def run_benchmarks(model_dir: str, recipe, out_dir: str | Path, base_dir=None, engine=None, specs=None,
                   log=print) -> dict[str, float]:  # fmt: skip
    """Run ``specs`` (default: ``recipe.eval.benchmarks``) on ``model_dir``; flat ``bench/<name>/<metric>`` dict.
    The rollout engine is created on first need and shared by the benchmarks (``engine``: reuse the caller's)."""
    from rollouts import make_engine

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
            metrics = importlib.import_module(RUNNERS[info.family]).run(ctx)
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
    import json

    from align.evaluate import EVAL_FILE
    from align.io import atomic_write_json

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
