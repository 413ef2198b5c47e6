"""Resuming an interrupted run (``align run RECIPE --resume [RUN_DIR]``) and ``align status RUN_DIR``.

The run directory's ``manifest.json`` (written atomically by rank 0) records per stage its status (``running``,
``done``, ``failed``), the last complete checkpoint and its step, and the stage's model. On resume:

* a stage whose manifest entry is ``done`` and whose ``model/`` folder is complete (model folders are written to a
  temporary name and renamed) is skipped; its ``eval.json`` is read instead of evaluating again;
* the interrupted stage restarts its TRL trainer from its last *complete* checkpoint (``resume_from_checkpoint``:
  weights, optimizer, scheduler, RNG, data position). Transformers writes ``checkpoint-N`` in place, so a kill while
  saving leaves a partial folder; a checkpoint counts only once the callback below has written its marker file
  after the trainer finished saving it. ``metrics.jsonl`` and GRPO's ``rollouts.jsonl`` are cut back to that step,
  so the continued logs have no duplicated or missing steps;
* RFT reuses its accepted set (``selection.json``) if sampling had finished; GRPO reuses RFT's ``pass_rates.json``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from align.distributed import barrier, main_only
from align.errors import UserError
from align.io import atomic_write_json, atomic_write_text, read_jsonl

MANIFEST = "manifest.json"
CHECKPOINT_DONE = "align_checkpoint_complete.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")


# ------------------------------------------------------------------------------------------------ manifest


def read_manifest(run_path: Path) -> dict:
    path = Path(run_path) / MANIFEST
    if not path.exists():
        return {"stages": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def update_manifest(run_path: Path, stage: str, **fields) -> None:
    manifest = read_manifest(run_path)
    manifest["stages"].setdefault(stage, {}).update(fields)
    atomic_write_json(Path(run_path) / MANIFEST, manifest)


def stage_complete(run_path: Path, stage: str) -> tuple[str, str] | None:
    """For a stage that finished: the model the next stage starts from and the stage's own output (they differ
    for the ``rm`` stage, whose output is a reward model); None otherwise."""
    entry = read_manifest(run_path)["stages"].get(stage, {})
    model, output = entry.get("model"), entry.get("output", entry.get("model"))
    if entry.get("status") == "done" and model and all((Path(p) / "config.json").exists() for p in (model, output)):
        return model, output
    return None


# --------------------------------------------------------------------------------------------- checkpoints


def checkpoint_step(path: Path) -> int:
    return int(_STEP.match(path.name).group(1))


def complete_checkpoints(folder: Path) -> list[Path]:
    """``checkpoint-N`` folders whose marker says the trainer finished writing them, oldest first."""
    if not Path(folder).is_dir():
        return []
    found = [p for p in Path(folder).iterdir() if _STEP.match(p.name) and (p / CHECKPOINT_DONE).exists()]
    return sorted(found, key=checkpoint_step)


def mark_complete(ctx, folder: Path, step: int) -> None:
    """The checkpoint in ``folder`` is fully written: mark it and record it in the manifest (rank 0)."""
    atomic_write_json(folder / CHECKPOINT_DONE, {"stage": ctx.stage.name, "step": step})
    update_manifest(ctx.run.path, ctx.stage.name, step=step, checkpoint=str(folder))


def cut_back(ctx, step: int, rollout_log: Path | None = None) -> int:
    """Drop log records after ``step``: metrics logged at a step <= it are kept (the end-of-training summary is
    logged again); a GRPO rollout logged at step s was generated for step s + 1. Returns how many were removed."""
    removed = trim_jsonl(ctx.stage_dir / "metrics.jsonl",
                         lambda r: r.get("step", 0) <= step and "train_runtime" not in r)  # fmt: skip
    if rollout_log is not None:
        removed += trim_jsonl(rollout_log, lambda r: r.get("step", 0) < step)
    return removed


def checkpoint_callback(ctx):
    """Marks each checkpoint complete once every rank has saved its part, and records it in the manifest."""
    from transformers import TrainerCallback

    class MarkCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            barrier()  # every rank has written its RNG state / shards
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and folder.is_dir():
                mark_complete(ctx, folder, state.global_step)

    return MarkCheckpoint()


def trim_jsonl(path: Path, keep) -> int:
    """Rewrite a JSONL log keeping the rows ``keep(row)`` accepts (a torn last line is dropped). Returns how many
    rows were removed."""
    if not path.exists():
        return 0
    rows = read_jsonl(path)
    kept = [r for r in rows if keep(r)]
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in kept))
    return len(rows) - len(kept)


def run_trainer(ctx, trainer, rollout_log: Path | None = None):
    """``trainer.train()`` for every TRL stage: checkpoints get a completion marker, and in a resumed run the
    trainer continues from the last complete checkpoint with the logs cut back to it."""

    trainer.add_callback(checkpoint_callback(ctx))
    checkpoint = None
    if ctx.resume:

        def pick_and_cut_logs() -> tuple[str | None, int]:
            folder = Path(trainer.args.output_dir)
            done = complete_checkpoints(folder)
            step = checkpoint_step(done[-1]) if done else 0
            for partial in set(folder.glob("checkpoint-*")) - set(done):  # half-written: the trainer rewrites them
                shutil.rmtree(partial, ignore_errors=True)
            return (str(done[-1]) if done else None), cut_back(ctx, step, rollout_log)

        checkpoint, removed = main_only(pick_and_cut_logs)  # rank 0 decides; every rank resumes from it
        where = f"{Path(checkpoint).name} (step {checkpoint_step(Path(checkpoint))})" if checkpoint else \
            "the start (no complete checkpoint)"  # fmt: skip
        ctx.log(f"resuming from {where}; {removed} log record(s) after it removed")
    return trainer.train(resume_from_checkpoint=checkpoint)


# ------------------------------------------------------------------------------------------- run directory


def resolve_run(recipe, where: str | None) -> Path:
    """``--resume`` with a run directory, or ``latest`` (the recipe's last run)."""
    path = Path(recipe.output_dir) / recipe.name / "latest" if where in (None, "latest") else Path(where)
    if not path.exists():
        raise UserError(f"--resume: no run directory at {path}",
                        "give the run directory (`--resume=RUN_DIR`), or run the recipe without --resume")  # fmt: skip
    path = path.resolve()
    if not (path / "recipe.yaml").exists():
        raise UserError(f"--resume: {path} is not a run directory (no recipe.yaml)",
                        "give a folder <output_dir>/<recipe name>/<timestamp>")  # fmt: skip
    return path


def check_same_recipe(path: Path, recipe_text: str) -> None:
    """Resuming with a different recipe would mix two experiments in one run directory."""
    import difflib

    saved = (path / "recipe.yaml").read_text(encoding="utf-8")
    if saved == recipe_text:
        return
    diff = [line for line in difflib.unified_diff(saved.splitlines(), recipe_text.splitlines(), "run", "now",
                                                   lineterm="", n=0) if not line.startswith("@@")]  # fmt: skip
    raise UserError(
        f"--resume: the recipe differs from the one {path} was started with:\n  " + "\n  ".join(diff[:20]),
        "resume with the same recipe and overrides, or start a new run without --resume",
    )


def status(run_path: Path) -> dict:
    """What a run directory holds and what ``--resume`` would do with it."""
    import yaml

    run_path = Path(run_path)
    if not (run_path / "recipe.yaml").exists():
        raise UserError(f"{run_path} is not a run directory (no recipe.yaml)",
                        "give a folder <output_dir>/<recipe name>/<timestamp>")  # fmt: skip
    recipe = yaml.safe_load((run_path / "recipe.yaml").read_text(encoding="utf-8"))
    manifest = read_manifest(run_path)
    events = read_jsonl(run_path / "events.jsonl")
    finished = bool(events) and events[-1].get("event") == "finished"
    stages, plan = [], []
    for stage in recipe.get("stages", []):
        name = stage.get("name") or stage["type"]
        entry = manifest["stages"].get(name, {})
        done = complete_checkpoints(run_path / name / "checkpoints")
        last = done[-1] if done else None
        row = {"stage": name, "type": stage["type"], "status": entry.get("status", "not started"),
               "step": checkpoint_step(last) if last else entry.get("step"),
               "last_checkpoint": str(last) if last else None, "model": entry.get("model")}  # fmt: skip
        stages.append(row)
        if stage_complete(run_path, name):
            evaluated = (run_path / name / "eval.json").exists()
            plan.append(f"skip {name} (done{', evaluated' if evaluated else ''})")
        elif last:
            plan.append(f"resume {name} from {last.name} (step {checkpoint_step(last)})")
        else:
            plan.append(f"run {name} from the start")
    if finished:
        plan = ["nothing: the run finished"]
    return {"run": str(run_path), "finished": finished, "stages": stages, "resume_would": plan}
