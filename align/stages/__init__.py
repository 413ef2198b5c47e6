"""The stages a recipe can list, one module each (its ``STAGE`` declares the contract: ``align/stages/base.py``).

Adding a stage: a module with ``Config``, ``run(ctx) -> StageResult`` and ``STAGE = Stage(...)`` (a TRL-based one
trains through ``align/training.py``), one line below, its tests and a row in ``docs/recipes.md``.
"""

from __future__ import annotations

from align.stages import connector, dpo, grpo, rft, rm, sft
from align.stages.base import Stage

STAGES: dict[str, Stage] = {s.type: s for s in (sft.STAGE, rft.STAGE, grpo.STAGE, rm.STAGE, dpo.STAGE, connector.STAGE)}


def launch_problems(recipe, world: int, on_gpu: bool) -> list[tuple[str, str]]:
    """Stage settings that fail or silently degrade with ``world`` processes: (message, hint) pairs, empty if fine.
    Used by the launcher (before any process starts) and by every rank at the start of a run."""
    problems: list[tuple[str, str]] = []
    if world <= 1:
        return problems
    for stage in recipe.stages:
        where = f"stage '{stage.name}'"
        if not STAGES[stage.type].multi_process:
            message = f"{where} ({stage.type}) runs as a single process and cannot run on {world} processes"
            problems.append((message, "run it in a recipe with launch.processes: 1 and launch.nodes: 1"))
        if STAGES[stage.type].launch_rules is not None:  # the stage's own rules
            problems += STAGES[stage.type].launch_rules(recipe, stage, world)
        if not on_gpu and stage.args.get("use_cpu") is False:
            message = (
                f"{where}: args.use_cpu: false on a machine without GPUs makes each of the {world} processes train "
                "its own copy"
            )
            problems.append((message, "remove use_cpu from args"))
    return problems
