"""The pipeline: recipe -> run directory -> base eval -> stage 1 … stage N (each followed by the eval hook).

Each stage starts from the previous stage's model directory and hands back a ``StageResult``
(``align/stages/base.py``); the pipeline keeps what later stages may use in a typed ``RunState``. A stage that
fails stops the pipeline with a message naming it; everything earlier stays in the run directory. ``resume=``
continues an interrupted run instead (``align/resume.py``): finished stages are skipped, the interrupted one
continues from its last checkpoint.

Under ``accelerate launch`` every rank runs this same pipeline (``align/distributed.py``): rank 0 creates the run
directory and prepares model and data first; training stages run on every rank; evaluation, the comparison,
printing and the run directory's JSON files are rank 0's, and the other ranks wait for it.
"""

from __future__ import annotations

import json
import time
import traceback
from functools import partial
from pathlib import Path

from rich.table import Table

import rewards as registry
from align import distributed as dist
from align.compare import compare, lower_is_better, metric_order
from align.console import console, plain_library_output
from align.data import load_splits
from align.errors import DataError, StageError, UserError
from align.evaluate import EVAL_FILE, evaluate
from align.io import atomic_write_json, atomic_write_text
from align.models import resolve_model_path
from align.models.compose import compose
from align.recipe import dump_recipe
from align.report import write_report
from align.resume import check_same_recipe, resolve_run, stage_complete, update_manifest
from align.rundir import RunDir
from align.stages import STAGES, launch_problems
from align.stages.base import RunState, StageContext, StageResult
from align.training import on_gpu
from rewards.audit import audit_recipe

RESUME_HINT = "after fixing the cause, run the same command with --resume to continue from there"


def recipe_dir(recipe) -> Path | None:
    src = getattr(recipe, "__source__", None)
    return Path(src).resolve().parent if src else None


def plan(recipe) -> str:
    c = recipe.model.compose
    pool = f", pool {c.pool}" if c and c.pool else ""
    model = f"compose({c.vision} + {c.language}, {c.projector}{pool})" if c else recipe.model.path
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
                higher_is_better = not lower_is_better(key)
                cells.append(f"[bold]{cell}[/bold]" if higher_is_better and v == best and len(evals) > 1 else cell)
        table.add_row(key, *cells)
    return table


def check_run(recipe, on_gpu: bool) -> None:
    """At the start of ``align run``: the launched world matches the recipe's launch block, and the recipe can run
    on it. Catches launchers that silently started one process (``accelerate launch --cpu``)."""
    want = recipe.launch.processes * recipe.launch.nodes
    got = dist.launched_world_size()
    if want != got:
        raise UserError(
            f"the recipe's launch block asks for {want} process(es) ({recipe.launch.nodes} node(s) × "
            f"{recipe.launch.processes}), but this run has {got}",
            "start multi-process recipes with ./launch.sh or `align launch` (they run accelerate launch), or set "
            "launch.processes / launch.nodes to what you launched",
        )
    problems = launch_problems(recipe, got, on_gpu)
    if problems:
        raise UserError(*problems[0])


def _open_run(recipe, run: RunDir | None, resume: str | None) -> RunDir:
    if resume is not None:
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

    def progress(message: str) -> None:
        console.print(f"[dim]{message}[/dim]")

    spec = recipe.model.compose
    if spec is None:
        return resolve_model_path(recipe.model.path, progress=progress)
    out = run.path / "compose" / "model"
    if not (out / "config.json").exists():
        compose(spec.vision, spec.language, out, spec.projector, spec.pool, seed=recipe.seed, progress=progress,
                resnet_blocks=spec.resnet_blocks, resnet_kernel=spec.resnet_kernel,
                projector_hidden=spec.projector_hidden)  # fmt: skip
    return str(out)


def _done_eval(folder: Path, resume: str | None) -> dict | None:
    """In a resumed run, the metrics an evaluation wrote before the interruption."""
    path = folder / EVAL_FILE
    if resume is None or not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _add_metrics(run: RunDir, checkpoint: str, metrics: dict[str, float], evals: dict) -> None:
    """Metrics a later stage measured about an earlier checkpoint (the rm stage's reward-model score of its input
    policy) join that checkpoint's eval.json."""
    path = run.path / checkpoint / EVAL_FILE
    if path.exists():
        atomic_write_json(path, {**json.loads(path.read_text(encoding="utf-8")), **metrics})
    if checkpoint in evals:
        evals[checkpoint].update(metrics)


def _run_stage(ctx: StageContext) -> StageResult:
    """One stage, with its failure recorded in the run directory and turned into one clear error."""
    stage, run = ctx.stage, ctx.run

    def failed(error: str) -> None:
        run.log_event(event="stage_failed", stage=stage.name, error=error)
        if dist.is_main():
            update_manifest(run.path, stage.name, status="failed")

    try:
        return STAGES[stage.type].run(ctx)
    except UserError as e:
        failed(str(e))
        raise StageError(
            f"stage '{stage.name}' failed: {e.message}",
            (e.hint + "; " if e.hint else "") + f"earlier results are kept in {run.path}; {RESUME_HINT}",
        ) from e
    except Exception as e:
        name = "error.txt" if dist.is_main() else f"error.rank{dist.rank()}.txt"
        atomic_write_text(ctx.stage_dir / name, traceback.format_exc())
        failed(f"{type(e).__name__}: {e}")
        raise StageError(
            f"stage '{stage.name}' failed: {type(e).__name__}: {e}",
            f"traceback in {ctx.stage_dir / 'error.txt'}; earlier results are kept in {run.path}; {RESUME_HINT}",
        ) from e


def audit_rewards(recipe, base_dir, rows) -> None:
    """``reward_audit``: red-team the rewards before training (``rewards/audit.py``); stop when one is gameable."""
    console.print(f"[bold]reward audit[/bold] (reward_audit: {recipe.reward_audit})")
    gameable = [r.name for r in audit_recipe(recipe, base_dir, rows, console) if r.gameable]
    if gameable and recipe.reward_audit == "error":
        raise UserError(f"reward audit: {', '.join(gameable)} can be gamed: GRPO would learn to be paid without "
                        "committing to the right answer (or, on its labelled corpus, it leaves correct answers unpaid)",
                        "`align rewards audit NAME` shows every case; fix the reward, "
                        "or set reward_audit: warn to train anyway")  # fmt: skip


def _write_report(run_path: Path) -> None:
    """The run's HTML report beside compare.md (``align report``); a failure here must not fail a finished run."""

    try:
        out, info = write_report([run_path])
    except Exception as e:  # noqa: BLE001
        console.print(f"[red]could not write the HTML report: {type(e).__name__}: {e}[/red] (retry: align report "
                      f"{run_path})")  # fmt: skip
        return
    console.print(f"[bold]report[/bold] {out} ({info['bytes'] / 1e6:.2f} MB)")


def _load_data(recipe, base_dir, run: RunDir):
    """The recipe's data; ``data_report.json`` is written whether loading succeeds or fails."""
    console.print(f"[dim]preparing data ({recipe.data.source})…[/dim]")
    path = run.path / "data_report.json"
    try:
        data = dist.main_first(lambda: load_splits(recipe.data, base_dir, recipe.seed))
    except DataError as e:
        if dist.is_main() and getattr(e, "report", None) is not None:
            atomic_write_json(
                path, {"source": recipe.data.source, "error": e.message, "hint": e.hint, **e.report.to_json()}
            )
            e.hint = (e.hint + "; " if e.hint else "") + f"what was read and skipped: {path}"
        raise
    if dist.is_main():
        atomic_write_json(path, {"source": data.source, **data.report.to_json()})
    return data


def run_pipeline(recipe, run: RunDir | None = None, resume: str | None = None) -> RunDir:
    """Run every stage of ``recipe``; ``resume``: a run directory (or ``latest``) to continue instead."""
    check_run(recipe, on_gpu())
    dist.init(on_gpu(), recipe.launch.timeout_minutes)
    console.quiet = not dist.is_main()
    plain_library_output()
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
    data = _load_data(recipe, base_dir, run)
    dist.check_data(recipe, data.train, model_path)
    console.print(f"data: {data.report.summary()}")
    for note in data.report.notes:
        console.print(f"  [yellow]note[/yellow] {note}")
    for msgs in data.report.skipped.values():
        for msg in msgs[:5]:
            console.print(f"  [yellow]skipped[/yellow] {msg}")
        if len(msgs) > 5:
            console.print(f"  [yellow]… {len(msgs) - 5} more in {run.path / 'data_report.json'}[/yellow]")
    stage_rewards = registry.resolve_all(recipe.rewards, base_dir)
    if recipe.reward_audit != "off" and recipe.stages:
        dist.main_only(lambda: audit_rewards(recipe, base_dir, data.train))
    state = RunState(models={"base": model_path})

    def evaluation(model: str, name: str, folder: Path) -> None:
        console.print(f"[bold]eval[/bold] {'base model' if name == 'base' else name}")

        def measure():
            metrics = evaluate(model, recipe, name, folder, data.eval, base_dir, outputs=state.outputs)
            if name == "base":
                atomic_write_json(folder / "model.json", {"path": model})
            return metrics

        evals[name] = dist.main_only(lambda: _done_eval(folder, resume) or measure())

    evals: dict[str, dict[str, float]] = {}
    if recipe.eval.enabled:
        evaluation(model_path, "base", run.stage_dir("base"))
    run.log_event(event="base", seconds=round(time.time() - t0, 1))

    current = model_path
    for i, stage in enumerate(recipe.stages, 1):
        console.print(f"[bold]stage {i}/{len(recipe.stages)}: {stage.name}[/bold] ({stage.type})")
        stage_dir = run.stage_dir(stage.name)
        rewards = stage_rewards
        if stage.rewards is not None:
            rewards = registry.resolve_all(registry.bind_stage_outputs(stage.rewards, state.outputs), base_dir)
        ctx = StageContext(recipe, stage, run, stage_dir, current, data, rewards, base_dir, on_gpu(), state,
                           resume=resume is not None)  # fmt: skip
        finished = dist.main_only(partial(stage_complete, run.path, stage.name)) if resume is not None else None
        started = time.time()
        if finished:
            result = StageResult(model=finished[0], output=finished[1])
            restore = STAGES[stage.type].restore
            result = restore(ctx, result) if restore else result
            console.print(f"  done before the resume -> {result.model}")
        else:
            run.log_event(event="stage_start", stage=stage.name, input_model=current)
            if dist.is_main():
                update_manifest(run.path, stage.name, status="running", input_model=current)
            result = _run_stage(ctx)
            if result.input_metrics and dist.is_main():
                _add_metrics(run, state.producer(current), result.input_metrics, evals)
        state.record(stage.name, result)
        current = result.model
        if not finished:
            seconds = round(time.time() - started, 1)
            run.log_event(event="stage_done", stage=stage.name, model=current, seconds=seconds)
            if dist.is_main():
                update_manifest(run.path, stage.name, status="done", model=current, output=state.outputs[stage.name])
            console.print(f"  {stage.name} done in {seconds:.0f}s -> {current}")
        if recipe.eval.enabled and stage.eval:
            evaluation(current, stage.name, stage_dir)
    if evals:
        dist.main_only(lambda: compare([run.path], console=console), share=False)
        dist.main_only(lambda: _write_report(run.path), share=False)
    console.print(f"finished in {time.time() - t0:.0f}s; results in {run.path}")
    run.log_event(event="finished", seconds=round(time.time() - t0, 1))
    dist.shutdown()
    return run
