"""Korean text benchmarks through lm-eval 0.4.13, in-process, on the checkpoint's language model.

``kmmlu`` (or ``tasks: [kmmlu_direct]``, ``[kmmlu_hard_math]`` …), ``haerae``, ``click`` and ``kobest`` run as lm-eval
defines them (prompts, choices, few-shot splits, metrics), except where the published figures differ: KMMLU runs
5-shot by default and its headline is ``acc_macro``, the mean over subjects, beside lm-eval's question-weighted
``acc`` (``summarise``). A vision-language checkpoint is scored text-only: the whole model is handed to lm-eval's
``HFLM`` and called without images, so its language model answers.

Data: by default lm-eval reads each task's hub dataset. For a local copy (``source: DIR``, a snapshot of the hub
repo with its README ``configs:``, e.g. ``hf download HAERAE-HUB/KMMLU --repo-type dataset --local-dir DIR``), every
task of the family is re-declared in a temporary lm-eval include directory as ``include: <lm-eval's own task
YAML>`` + ``dataset_path: DIR`` — lm-eval's documented task inheritance — so nothing else about the task changes
(plus ``dataset_kwargs`` that make ``datasets`` read the folder afresh: it caches local folders by path).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path

from align.benchmarks.common import BenchContext, key_part, proportion_se, write_rows
from align.benchmarks.sources import FRESH, resolve_local
from align.errors import UserError
from align.models import load_model_and_processor


def _tasks_root() -> Path:
    try:
        import lm_eval.tasks
    except ImportError:
        raise UserError("the Korean text benchmarks need lm-eval", "pip install 'korean-vlm-align[bench]'") from None
    return Path(lm_eval.tasks.__file__).parent


def override_dir(family: str, dataset_path: str, out: Path) -> Path:
    """Write ``include`` overrides pointing every task of lm-eval's ``family`` folder at ``dataset_path``."""
    from lm_eval.tasks._yaml_loader import load_yaml

    root = _tasks_root() / family
    for path in sorted(root.rglob("*.yaml")):
        try:
            cfg = load_yaml(path, resolve_func=False, recursive=True)
        except Exception:  # noqa: BLE001 - lm-eval itself skips YAMLs it cannot read
            cfg = {}
        if isinstance(cfg.get("task"), str) and "group" not in cfg:
            (out / f"{cfg['task']}.yaml").write_text(f"include: {path}\ndataset_path: {dataset_path}\n"
                                                     f"dataset_kwargs: {json.dumps(FRESH)}\n")  # fmt: skip
    return out


def task_manager(family: str, dataset_path: str | None, tmp: Path):
    from lm_eval.tasks import TaskManager

    paths = [str(_tasks_root() / family)]
    if dataset_path:
        paths.append(str(override_dir(family, dataset_path, tmp)))
    logging.getLogger("lm_eval.tasks._index").setLevel(logging.ERROR)  # "task X overrides task X" on purpose
    return TaskManager(include_path=paths, include_defaults=False)


def load_lm(model_dir: str, model_spec=None, batch_size: int = 8):
    """lm-eval's HFLM around the checkpoint (a VLM is called text-only)."""
    from lm_eval.models.huggingface import HFLM

    model, processor, _ = load_model_and_processor(model_dir, model_spec)
    model.eval()
    tokenizer = getattr(processor, "tokenizer", processor)
    return HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=batch_size)


def _float(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _score_key(values: dict) -> str | None:
    """The per-question score a task reports: ``acc`` (log-likelihood tasks) or ``exact_match`` (generative ones,
    e.g. ``kmmlu_direct``)."""
    names = {key.partition(",")[0] for key in values}
    return next((m for m in ("acc", "exact_match") if m in names), None)


def summarise(result: dict, tasks: list[str]) -> dict[str, float]:
    """Flat metrics from lm-eval's results: the group's (or single task's) metrics, each sub-task's under
    ``task/<name>/``; ``acc`` always present (a generative task's ``exact_match`` is its accuracy; several tasks:
    their question-weighted mean, lm-eval's own averaging) and ``acc_macro``, the plain mean over the leaf tasks
    (KMMLU's subjects), which is how the KMMLU paper averages."""
    results = result["results"]
    main = tasks[0] if len(tasks) == 1 else None
    metrics: dict[str, float] = {}
    for name, values in results.items():
        for key, value in values.items():
            metric, _, _filter = key.partition(",")
            if _float(value) is None or metric in ("sample_len", "sample_count"):
                continue
            prefix = "" if name == main else f"task/{key_part(name)}/"
            metrics.setdefault(f"{prefix}{metric}", float(value))
    leaves = {}
    for task, samples in result["samples"].items():
        key = _score_key(results.get(task, {}))
        value = metrics.get(f"task/{key_part(task)}/{key}") if task != main else metrics.get(key or "")
        if key and value is not None:
            leaves[task] = (value, len(samples))
    if "acc" not in metrics and leaves:
        if main is not None and "exact_match" in metrics:
            metrics["acc"] = metrics["exact_match"]
            if "exact_match_stderr" in metrics:
                metrics["acc_stderr"] = metrics["exact_match_stderr"]
        else:  # several tasks (or a group without an aggregate): question-weighted mean
            metrics["acc"] = sum(v * n for v, n in leaves.values()) / sum(n for _, n in leaves.values())
    if leaves:  # the mean of k subject accuracies; its standard error from theirs, √(Σ p(1−p)/n) / k
        metrics["acc_macro"] = sum(v for v, _ in leaves.values()) / len(leaves)
        metrics["acc_macro_stderr"] = math.sqrt(sum(v * (1 - v) / n for v, n in leaves.values() if n)) / len(leaves)
    return metrics


def run(ctx: BenchContext) -> dict[str, float]:
    import lm_eval

    family = ctx.option("task")
    tasks = list(ctx.spec.tasks or [family])
    shots = ctx.spec.num_fewshot if ctx.spec.num_fewshot is not None else ctx.info.options.get("num_fewshot")
    source = ctx.spec.source
    local = resolve_local(source, ctx.base_dir) if source else None
    if source and local is None and source != ctx.info.source:
        raise UserError(f"{ctx.info.name}: source {source} is neither a local folder nor the task's hub dataset "
                        f"({ctx.info.source})", "point source at a local snapshot of the hub dataset")  # fmt: skip
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")  # lm-eval's f1 looks for a hub metric; do not wait on it
    with tempfile.TemporaryDirectory(prefix="align-lmeval-") as tmp:
        manager = task_manager(family, str(local) if local else None, Path(tmp))
        unknown = [t for t in tasks if t not in manager.all_tasks]
        if unknown:
            raise UserError(f"{ctx.info.name}: lm-eval has no task {unknown[0]} in its {family} folder",
                            f"tasks known there: {', '.join(sorted(manager.all_groups)[:12])} …")  # fmt: skip
        ctx.log(f"  {ctx.info.name}: lm-eval {', '.join(tasks)} on {local or ctx.info.source}")
        try:
            loaded = manager.load(tasks)  # reads every task's data: a missing copy fails here, before the model
            built = [loaded["groups"].get(t) or loaded["tasks"][t] for t in tasks]
            lm = load_lm(ctx.model_dir, ctx.recipe.model, batch_size=ctx.recipe.eval.batch_size)
            result = lm_eval.simple_evaluate(model=lm, tasks=built, task_manager=manager, limit=ctx.spec.limit,
                                             num_fewshot=shots, log_samples=True, bootstrap_iters=1000,
                                             random_seed=ctx.recipe.seed)  # fmt: skip
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - the data could not be read: say where it was looked for
            where = local or ctx.info.source
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            hint = (f"download it where the hub is reachable (`hf download {ctx.info.source} --repo-type dataset "
                    f"--local-dir DIR`) and set `source: DIR` (eval.benchmarks, name: {ctx.info.name}) or "
                    f"`align eval MODEL --bench {ctx.info.name} --source DIR`")  # fmt: skip
            raise UserError(f"{ctx.info.name}: lm-eval could not run on {where} ({type(e).__name__}: {msg})",
                            hint if local is None else "check that the folder has the hub repo's README configs "
                            "and data files, or run only the tasks your copy has (`tasks: [...]`)") from None  # fmt: skip
    metrics = summarise(result, tasks)
    metrics["num_fewshot"] = float(shots or 0)
    rows: list[dict] = []
    for task, samples in result["samples"].items():
        for s in samples:
            scores = [r[0] if isinstance(r, (list, tuple)) else r for r in s.get("filtered_resps", [])]
            pred = max(range(len(scores)), key=lambda i: scores[i]) if scores and all(
                isinstance(x, (int, float)) for x in scores) else None  # fmt: skip
            rows.append({"task": task, "doc_id": s.get("doc_id"), "target": s.get("target"), "prediction": pred,
                         "scores": scores, "acc": s.get("acc", s.get("exact_match")), "prompt": (s.get("arguments") or [[None]])[0][0]})  # fmt: skip
    write_rows(ctx.rows_path, rows)
    metrics["n"] = float(len(rows))
    if "acc" in metrics and "acc_stderr" not in metrics and rows:  # lm-eval gives none for some groups
        metrics["acc_stderr"] = proportion_se(metrics["acc"], len(rows))
    return metrics
