"""The eval hook: ``evaluate(model_dir, recipe, stage) -> dict[str, float]``, written to ``<stage>/eval.json``.

Built-in: greedy answers to the held-out rows, scored by the same reward functions as training (``accuracy`` plus
the recipe's rewards unless ``eval.metrics`` names others), averaged overall and per task (``accuracy/count``), and
``hedge_rate``: the share of answers that commit to more than one candidate (``rewards.answer``).
Each row's scores (greedy, and the mean of the sampled answers) go to ``<stage>/eval_scores.jsonl``, so
``align compare`` can give the standard error of the paired difference between two checkpoints.
External hooks add their metrics under their name: a Python callable ``(model_dir, recipe, stage) -> dict``, or a
shell command with ``{model}`` and ``{output}`` placeholders that writes a JSON object to ``{output}``.
Benchmarks (``eval.benchmarks``, ``align/benchmarks/``) add ``bench/<name>/<metric>`` and write their per-row
answers to ``<stage>/bench/<name>.jsonl``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import rewards as registry
from align.benchmarks.run import run_benchmarks
from align.data import load_splits
from align.errors import UserError
from align.eval_trackers import log_eval_samples, save_sample_images
from align.io import atomic_write_json, atomic_write_text
from align.models import model_reasoning_format
from align.rundir import EVAL_FILE
from align.spec import RewardSpec
from rewards.answer import hedge_rate
from rollouts import Sampling, make_engine
from rollouts.scoring import score

SAMPLES_FILE = "eval_samples.jsonl"
SCORES_FILE = "eval_scores.jsonl"


def metric_rewards(recipe, base_dir=None, outputs: dict | None = None):
    """The eval metrics as rewards. A metric whose args name ``stage:NAME`` (e.g. a reward model an ``rm`` stage
    trains) is bound to that stage's output, and left out of evaluations that run before the stage exists."""

    specs = recipe.eval.metrics
    if specs is None:
        specs = [RewardSpec(name="accuracy")] + [r for r in recipe.rewards if r.name != "accuracy"]
    specs = [s if isinstance(s, RewardSpec) else RewardSpec(**s) for s in specs]
    return registry.resolve_all(registry.bind_stage_outputs(specs, outputs or {}, skip_missing=True), base_dir)


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _score(scorers, prompts, texts, columns, tasks, metrics, prefix: str) -> dict[str, list]:
    """Score texts with each reward (``rollouts/scoring.py``); put overall and per-task means into ``metrics``."""
    scores = score(scorers, prompts, texts, columns)
    for name, values in scores.items():
        overall = _mean(values)
        if overall is not None:
            metrics[prefix + name] = overall
        per_task = {t: _mean(v for v, tt in zip(values, tasks) if tt == t) for t in sorted(set(tasks))}
        per_task = {t: m for t, m in per_task.items() if m is not None}
        if len(per_task) > 1:  # a reward that applies to one task only needs no breakdown
            for t, m in per_task.items():
                metrics[f"{prefix}{name}/{t}"] = m
    return scores


def _reasoning_format(engine):
    """How the engine's model splits reasoning from answer (None: not a reasoning model, or an engine that loaded no
    model of a known family)."""
    processor, family = getattr(engine, "processor", None), getattr(engine, "family", None)
    if processor is None or family is None:
        return None
    return model_reasoning_format(processor, family)


def _texts(completions, fmt, metrics: dict, prefix: str) -> tuple[list[str], dict]:
    """Completion texts as the rewards read them and, for a reasoning model, the canonical form
    (``<think>…</think>answer``) with per-checkpoint means of reasoning and answer tokens and the share of answers
    whose reasoning never finished (no answer at all)."""
    if fmt is None or not completions:
        return [c.text for c in completions], {}
    splits = [fmt.split_ids(c.token_ids) for c in completions]
    n = len(splits)
    metrics[prefix + "reasoning_tokens"] = sum(s.reasoning_tokens for s in splits) / n
    metrics[prefix + "answer_tokens"] = sum(s.answer_tokens for s in splits) / n
    metrics[prefix + "reasoning_unfinished"] = sum(s.reasoning is not None and not s.closed for s in splits) / n
    counts = {"reasoning_tokens": [s.reasoning_tokens for s in splits],
              "answer_tokens": [s.answer_tokens for s in splits]}  # fmt: skip
    return [s.canonical for s in splits], counts


def builtin_metrics(model_dir: str, recipe, rows, base_dir=None, engine=None, outputs: dict | None = None,
                    per_row: list | None = None) -> tuple[dict[str, float], list[dict]]:  # fmt: skip
    """Greedy (and sampled) answers to ``rows`` scored by the eval metrics. ``per_row``: a list that receives one
    record per row: its id, task and each metric's score (``sampled/…``: the mean over the row's sampled answers)."""

    if recipe.eval.limit is not None and len(rows) > recipe.eval.limit:
        rows = rows.select(range(recipe.eval.limit))
    own_engine = engine is None
    engine = engine or make_engine(
        recipe.rollout, model_dir, recipe.model, batch_size=recipe.eval.batch_size, seed=recipe.seed
    )
    prompts, images = list(rows["prompt"]), list(rows["images"]) if "images" in rows.column_names else None
    try:
        outs = engine.generate(
            prompts, images, Sampling(n=1, temperature=0.0, max_new_tokens=recipe.eval.max_new_tokens)
        )
        sampled = None
        if recipe.eval.sampled.k > 0:
            s = recipe.eval.sampled
            sampled = engine.generate(prompts, images, Sampling(n=s.k, temperature=s.temperature, top_p=s.top_p,
                                      max_new_tokens=recipe.eval.max_new_tokens, seed=recipe.seed))  # fmt: skip
    finally:
        if own_engine:
            engine.close()
    # reasoning models: each answer read after its reasoning, split with the model's own markers
    fmt = _reasoning_format(engine)
    metrics: dict[str, float] = {"n": float(len(rows))}
    texts, counts = _texts([o[0] for o in outs], fmt, metrics, prefix="")
    sampled_texts, sampled_counts = None, {}
    if sampled is not None:
        sampled_texts, sampled_counts = _texts([c for o in sampled for c in o], fmt, metrics, "sampled/")
    columns = {c: list(rows[c]) for c in rows.column_names if c != "prompt"}
    tasks = columns.get("task") or ["default"] * len(rows)
    scorers = metric_rewards(recipe, base_dir, outputs)
    scores = _score(scorers, prompts, texts, {**columns, **counts}, tasks, metrics, prefix="")
    sampled_scores = {}
    if sampled is not None:
        k = recipe.eval.sampled.k
        rep = {c: [v for v in vals for _ in range(k)] for c, vals in columns.items()}
        sampled_scores = _score(scorers, [p for p in prompts for _ in range(k)], sampled_texts,
                                {**rep, **sampled_counts}, [t for t in tasks for _ in range(k)], metrics,
                                prefix="sampled/")  # fmt: skip
    if per_row is not None:
        ids = columns.get("id") or list(range(len(rows)))
        for i in range(len(rows)):
            record = {"id": ids[i], "task": tasks[i], **{name: v[i] for name, v in scores.items()}}
            for name, v in sampled_scores.items():
                record["sampled/" + name] = _mean(v[i * k : (i + 1) * k])
            per_row.append(record)
    # share of answers that commit to more than one candidate (rewards/answer.py): rises when a policy games its reward
    answers = columns.get("answer") or [None] * len(rows)
    if texts:
        metrics["hedge_rate"] = hedge_rate(texts, tasks, answers)
    if sampled is not None and texts:
        k = recipe.eval.sampled.k
        metrics["sampled/hedge_rate"] = hedge_rate(sampled_texts, [t for t in tasks for _ in range(k)],
                                                   [a for a in answers for _ in range(k)])  # fmt: skip
    lengths = [len(o[0].token_ids) for o in outs]
    metrics["completion_tokens"] = sum(lengths) / max(1, len(lengths))
    metrics["truncated"] = sum(o[0].finish_reason == "length" for o in outs) / max(1, len(outs))
    per_task_kept: dict[str, int] = {}
    samples = []
    for i, text in enumerate(texts):
        task = tasks[i]
        if per_task_kept.get(task, 0) >= recipe.eval.samples:
            continue
        per_task_kept[task] = per_task_kept.get(task, 0) + 1
        samples.append({
            "id": columns.get("id", [None] * len(rows))[i], "task": task,
            "prompt": prompts[i][-1]["content"] if prompts[i] else "", "answer": columns.get("answer", [None] * len(rows))[i],
            "completion": text, "scores": {k: v[i] for k, v in scores.items()},
            "_images": list(images[i] or []) if images else [],  # saved as thumbnails by evaluate(), then dropped
        })  # fmt: skip
    return metrics, samples


def run_hook(hook, model_dir: str, recipe, stage: str, out_dir: Path, base_dir=None) -> dict[str, float]:
    prefix = hook.name or (hook.callable or hook.command.split()[0]).rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    if hook.callable:
        fn = registry.load_function(hook.callable, base_dir)
        result = fn(model_dir, recipe, stage)
    else:
        output = out_dir / f"hook_{prefix}.json"
        cmd = hook.command.format(model=shlex.quote(str(model_dir)), output=shlex.quote(str(output)))
        try:
            proc = subprocess.run(cmd, shell=True, capture_output=True, check=False, text=True, timeout=hook.timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"eval hook '{prefix}' timed out after {hook.timeout:.0f}s: {cmd}") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise UserError(f"eval hook '{prefix}' exited with {proc.returncode}: {cmd}\n  " + "\n  ".join(tail))
        if not output.exists():
            raise UserError(f"eval hook '{prefix}' wrote nothing to {{output}} ({output})")
        try:
            result = json.loads(output.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"eval hook '{prefix}': {output} is not JSON ({e.msg})") from None
    if not isinstance(result, dict):
        raise UserError(f"eval hook '{prefix}' returned {type(result).__name__}, expected a dict of numbers")
    out = {}
    for k, v in result.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}/{k}"] = float(v)
    return out


def evaluate(model_dir: str, recipe, stage: str, out_dir: str | Path | None = None, rows=None, base_dir=None,
             engine=None, outputs: dict | None = None) -> dict[str, float]:  # fmt: skip
    """Evaluate ``model_dir`` and write ``eval.json`` (and ``eval_samples.jsonl``) into ``out_dir``."""
    if rows is None:
        rows = load_splits(recipe.data, base_dir, recipe.seed).eval
    out = Path(out_dir) if out_dir else Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    own_engine = engine is None and bool(recipe.eval.benchmarks)
    if own_engine:  # one engine for the held-out rows and the benchmarks
        engine = make_engine(recipe.rollout, str(model_dir), recipe.model, batch_size=recipe.eval.batch_size,
                             seed=recipe.seed)  # fmt: skip
    per_row: list[dict] = []
    try:
        metrics, samples = builtin_metrics(str(model_dir), recipe, rows, base_dir, engine=engine, outputs=outputs,
                                           per_row=per_row)  # fmt: skip
        for hook in recipe.eval.hooks:
            metrics.update(run_hook(hook, str(model_dir), recipe, stage, out, base_dir))
        if recipe.eval.benchmarks:
            metrics.update(run_benchmarks(str(model_dir), recipe, out, base_dir, engine=engine))
    finally:
        if own_engine:
            engine.close()
    images = save_sample_images(samples, out)
    log_eval_samples(recipe, stage, out, samples, images)
    atomic_write_json(out / EVAL_FILE, metrics)
    atomic_write_text(out / SAMPLES_FILE, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    atomic_write_text(out / SCORES_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in per_row))
    return metrics
