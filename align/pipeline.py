"""The pipeline: recipe -> run directory -> base eval -> stage 1 … stage N (each followed by the eval hook).

Each stage starts from the previous stage's model directory. A stage that fails stops the pipeline with a message
naming it; everything earlier stays in the run directory. ``resume=`` continues an interrupted run instead
(``align/resume.py``): finished stages are skipped, the interrupted one continues from its last checkpoint.

Under ``accelerate launch`` every rank runs this same pipeline (``align/distributed.py``): rank 0 creates the run
directory and prepares model and data first; training stages run on every rank; evaluation, the comparison,
printing and the run directory's JSON files are rank 0's, and the other ranks wait for it.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from align.errors import StageError, UserError
from align.io import atomic_write_json
from align.recipe import dump_recipe
from align.rundir import RunDir

console = Console(highlight=False)
RESUME_HINT = "after fixing the cause, run the same command with --resume to continue from there"


@dataclass
class StageContext:
    """What a stage's ``run(ctx)`` gets."""

    recipe: Any
    stage: Any
    run: RunDir
    stage_dir: Path
    input_model: str
    data: Any  # align.data.Splits
    rewards: list
    recipe_dir: Path | None
    on_gpu: bool
    state: dict = field(default_factory=dict)  # shared between stages (e.g. RFT pass rates for GRPO)
    resume: bool = False  # continue from the stage's files and checkpoints (align/resume.py)

    def train_rows(self, limit: int | None = None):
        """The training rows this stage uses: its own ``data:`` or the recipe's train split, ``rows: [start, end)``
        of it, then ``limit``."""
        data = self.data.train
        if self.stage.data is not None:
            from align import distributed as dist
            from align.data import load_splits

            data = dist.main_first(lambda: load_splits(self.stage.data, self.recipe_dir, self.recipe.seed)).train
        if self.stage.rows is not None:
            start, end = self.stage.rows
            data = data.select(range(min(start, len(data)), min(end, len(data))))
        if limit is not None and len(data) > limit:
            data = data.select(range(limit))
        return data

    def log(self, message: str) -> None:
        console.print(f"  [dim]{self.stage.name}:[/dim] {message}")


def recipe_dir(recipe) -> Path | None:
    src = getattr(recipe, "__source__", None)
    return Path(src).resolve().parent if src else None


def plan(recipe) -> str:
    c = recipe.model.compose
    model = f"compose({c.vision} + {c.language}, {c.projector})" if c else recipe.model.path
    lines = [f"recipe {recipe.name}: model {model} ({recipe.model.family})",
             f"  data: {recipe.data.source}" + (f" tasks={','.join(recipe.data.tasks)}" if recipe.data.tasks else ""),
             f"  rewards: {', '.join(f'{r.name}×{r.weight:g}' for r in recipe.rewards) or 'none'}",
             f"  eval: {'base + after each stage' if recipe.eval.enabled else 'off'}"]  # fmt: skip
    for i, stage in enumerate(recipe.stages, 1):
        extra = f" args={stage.args}" if stage.args else ""
        lines.append(f"  stage {i}: {stage.name} ({stage.type}){extra}")
    if recipe.launch.processes * recipe.launch.nodes > 1:
        lines.append(f"  launch: {recipe.launch.nodes} node(s) × {recipe.launch.processes} process(es), "
                     f"{recipe.launch.backend}")  # fmt: skip
    return "\n".join(lines)


def metrics_table(evals: dict[str, dict[str, float]], title: str = "held-out evaluation") -> Table:
    table = Table(title=title)
    table.add_column("metric")
    for stage in evals:
        table.add_column(stage, justify="right")
    keys: list[str] = []
    for m in evals.values():
        keys += [k for k in m if k not in keys and k != "n"]
    from align.compare import metric_order

    keys.sort(key=metric_order)
    for key in keys:
        values = [m.get(key) for m in evals.values()]
        best = max((v for v in values if v is not None), default=None)
        cells = []
        for v in values:
            if v is None:
                cells.append("-")
            else:
                cell = f"{v:.3f}"
                higher_is_better = key not in ("completion_tokens", "truncated")
                cells.append(f"[bold]{cell}[/bold]" if higher_is_better and v == best and len(evals) > 1 else cell)
        table.add_row(key, *cells)
    return table


def _open_run(recipe, run: RunDir | None, resume: str | None) -> RunDir:
    if resume is not None:
        from align.resume import check_same_recipe, resolve_run

        path = resolve_run(recipe, resume)
        check_same_recipe(path, dump_recipe(recipe))
        run = RunDir(path)
        run.log_event(event="resumed")
        return run
    run = run or RunDir.create(recipe.output_dir, recipe.name)
    run.write_recipe(dump_recipe(recipe))
    run.write_environment(recipe.seed)
    return run


def base_model(recipe, run: RunDir) -> str:
    """The base model's directory: ``model.path`` (the tiny model is built on demand), or the model that
    ``model.compose`` describes, composed into ``<run>/compose/model`` once (a resumed run reuses it)."""
    from align.models import resolve_model_path

    progress = lambda m: console.print(f"[dim]{m}[/dim]")  # noqa: E731
    spec = recipe.model.compose
    if spec is None:
        return resolve_model_path(recipe.model.path, progress=progress)
    out = run.path / "compose" / "model"
    if not (out / "config.json").exists():
        from align.models.compose import compose

        compose(spec.vision, spec.language, out, spec.projector, spec.pool, seed=recipe.seed, progress=progress)
    return str(out)


def _done_eval(folder: Path, resume: str | None) -> dict | None:
    """In a resumed run, the metrics an evaluation wrote before the interruption."""
    from align.evaluate import EVAL_FILE

    path = folder / EVAL_FILE
    if resume is None or not path.exists():
        return None
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def _write_report(run_path: Path) -> None:
    """The run's HTML report beside compare.md (``align report``); a failure here must not fail a finished run."""
    from align.report import write_report

    try:
        out, info = write_report([run_path])
    except Exception as e:  # noqa: BLE001
        console.print(f"[red]could not write the HTML report: {type(e).__name__}: {e}[/red] (retry: align report "
                      f"{run_path})")  # fmt: skip
        return
    console.print(f"[bold]report[/bold] {out} ({info['bytes'] / 1e6:.2f} MB)")


def run_pipeline(recipe, run: RunDir | None = None, resume: str | None = None) -> RunDir:
    """Run every stage of ``recipe``; ``resume``: a run directory (or ``latest``) to continue instead."""
    import rewards as registry
    from align import distributed as dist
    from align.data import load_splits
    from align.evaluate import evaluate
    from align.resume import stage_complete, update_manifest
    from align.stages import stage_module
    from align.training import on_gpu

    dist.check_run(recipe, on_gpu())
    dist.init(on_gpu(), recipe.launch.timeout_minutes)
    console.quiet = not dist.is_main()
    base_dir = recipe_dir(recipe)
    run = dist.main_only(lambda: _open_run(recipe, run, resume))  # one run directory: rank 0's
    if not dist.is_main():
        run = RunDir(run.path, main=False)
        run.path.mkdir(parents=True, exist_ok=True)  # nodes without a shared file system
    dist.record_world(run.path, recipe)
    console.print(f"[bold]run directory[/bold] {run.path}")
    console.print(plan(recipe))

    t0 = time.time()
    model_path = dist.main_first(lambda: base_model(recipe, run))
    console.print(f"[dim]preparing data ({recipe.data.source})…[/dim]")
    data = dist.main_first(lambda: load_splits(recipe.data, base_dir, recipe.seed))
    dist.check_data(recipe, data.train, model_path)
    if dist.is_main():
        atomic_write_json(run.path / "data_report.json", {"source": data.source, **data.report.to_json()})
    console.print(f"data: {data.report.summary()}")
    for msgs in data.report.skipped.values():
        for msg in msgs[:5]:
            console.print(f"  [yellow]skipped[/yellow] {msg}")
        if len(msgs) > 5:
            console.print(f"  [yellow]… {len(msgs) - 5} more in {run.path / 'data_report.json'}[/yellow]")
    stage_rewards = registry.resolve_all(recipe.rewards, base_dir)

    evals: dict[str, dict[str, float]] = {}
    if recipe.eval.enabled:
        console.print("[bold]eval[/bold] base model")

        def base_eval():
            metrics = evaluate(model_path, recipe, "base", run.stage_dir("base"), data.eval, base_dir)
            atomic_write_json(run.path / "base" / "model.json", {"path": model_path})
            return metrics

        evals["base"] = dist.main_only(lambda: _done_eval(run.path / "base", resume) or base_eval())
    run.log_event(event="base", seconds=round(time.time() - t0, 1))

    current, state = model_path, {}
    for i, stage in enumerate(recipe.stages, 1):
        console.print(f"[bold]stage {i}/{len(recipe.stages)}: {stage.name}[/bold] ({stage.type})")
        stage_dir = run.stage_dir(stage.name)
        outputs = state.setdefault("outputs", {})
        rewards = registry.resolve_all(registry.bind_stage_outputs(stage.rewards, outputs), base_dir) \
            if stage.rewards is not None else stage_rewards  # fmt: skip
        ctx = StageContext(recipe, stage, run, stage_dir, current, data, rewards, base_dir, on_gpu(), state,
                           resume=resume is not None)  # fmt: skip
        finished = dist.main_only(lambda: stage_complete(run.path, stage.name)) if resume is not None else None
        if finished:
            current, outputs[stage.name] = finished
            console.print(f"  done before the resume -> {current}")
            if recipe.eval.enabled and stage.eval:
                evaluate_stage = partial(evaluate, current, recipe, stage.name, stage_dir, data.eval, base_dir,
                                         outputs=outputs)  # fmt: skip
                evals[stage.name] = dist.main_only(lambda: _done_eval(stage_dir, resume) or evaluate_stage())
            continue
        started = time.time()
        run.log_event(event="stage_start", stage=stage.name, input_model=current)
        if dist.is_main():
            update_manifest(run.path, stage.name, status="running", input_model=current)
        try:
            out = stage_module(stage.type).run(ctx)
        except UserError as e:
            run.log_event(event="stage_failed", stage=stage.name, error=str(e))
            if dist.is_main():
                update_manifest(run.path, stage.name, status="failed")
            raise StageError(
                f"stage '{stage.name}' failed: {e.message}",
                (e.hint + "; " if e.hint else "") + f"earlier results are kept in {run.path}; {RESUME_HINT}",
            ) from e
        except Exception as e:
            (stage_dir / ("error.txt" if dist.is_main() else f"error.rank{dist.rank()}.txt")).write_text(
                traceback.format_exc()
            )
            run.log_event(event="stage_failed", stage=stage.name, error=f"{type(e).__name__}: {e}")
            if dist.is_main():
                update_manifest(run.path, stage.name, status="failed")
            raise StageError(
                f"stage '{stage.name}' failed: {type(e).__name__}: {e}",
                f"traceback in {stage_dir / 'error.txt'}; earlier results are kept in {run.path}; {RESUME_HINT}",
            ) from e
        current = str(out)
        outputs.setdefault(stage.name, current)
        run.log_event(event="stage_done", stage=stage.name, model=current, seconds=round(time.time() - started, 1))
        if dist.is_main():
            update_manifest(run.path, stage.name, status="done", model=current, output=outputs[stage.name])
        console.print(f"  {stage.name} done in {time.time() - started:.0f}s -> {current}")
        if recipe.eval.enabled and stage.eval:
            console.print(f"[bold]eval[/bold] {stage.name}")
            evaluate_stage = partial(
                evaluate, current, recipe, stage.name, stage_dir, data.eval, base_dir, outputs=outputs
            )
            evals[stage.name] = dist.main_only(evaluate_stage)
    if evals:
        from align.compare import compare

        dist.main_only(lambda: compare([run.path], console=console), share=False)
        dist.main_only(lambda: _write_report(run.path), share=False)
    console.print(f"finished in {time.time() - t0:.0f}s; results in {run.path}")
    run.log_event(event="finished", seconds=round(time.time() - t0, 1))
    dist.shutdown()
    return run
