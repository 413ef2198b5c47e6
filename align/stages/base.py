"""The stage contract: what a stage declares, what it gets, and what it hands back.

A stage module ends with one ``STAGE = Stage(...)`` naming its recipe block (``config``, a ``StageSpec`` subclass),
its entry point ``run(ctx) -> StageResult``, and whether it runs on every rank of a multi-process launch. The
pipeline gives ``run`` a ``StageContext``: the recipe, the stage's own folder, the input model, the data, the
rewards, and the typed ``RunState`` earlier stages left. A stage writes only into ``ctx.stage_dir``; what later
stages may use goes back in its ``StageResult`` (the next policy, the output ``stage:NAME`` names, RFT's pass
rates, metrics about the input policy) and the pipeline records it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from align import distributed as dist
from align.console import console
from align.data import Splits, load_splits
from align.rundir import RunDir
from align.spec import Recipe, StageSpec
from rewards import Reward

C = TypeVar("C", bound=StageSpec)  # a stage's own recipe block (its ``Config``)


@dataclass
class PassRates:
    """Per-prompt pass rates measured by an RFT stage (GRPO selects prompts by difficulty with them)."""

    rates: dict[str, float]
    reward: str  # the reward whose score decided a pass


@dataclass
class StageResult:
    model: str  # the policy the next stage starts from: a model folder transformers and vLLM load
    output: str | None = None  # what later stages reach as ``stage:NAME`` (default: ``model``)
    pass_rates: PassRates | None = None  # RFT: for a later GRPO stage's prompt selection
    # metrics about the stage's *input* policy (the rm stage scores it with its new reward model); the pipeline
    # adds them to the eval.json of the checkpoint that policy came from
    input_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class RunState:
    """What finished stages left for later ones."""

    outputs: dict[str, str] = field(default_factory=dict)  # stage name -> its output (``stage:NAME``)
    models: dict[str, str] = field(default_factory=dict)  # stage name ('base' too) -> the policy it left
    pass_rates: PassRates | None = None

    def record(self, name: str, result: StageResult) -> None:
        self.models[name] = result.model
        self.outputs[name] = result.output or result.model
        if result.pass_rates is not None:
            self.pass_rates = result.pass_rates

    def producer(self, model: str) -> str:
        """The checkpoint whose evaluation describes ``model``: the first stage that left it ('base' for the base
        model; a stage that passes its input through, like ``rm``, did not produce it)."""
        return next((n for n, p in self.models.items() if p == model), "base")


@dataclass
class StageContext(Generic[C]):
    """What a stage's ``run(ctx)`` gets; ``StageContext[Config]`` types ``ctx.stage`` as the stage's own block."""

    recipe: Recipe
    stage: C
    run: RunDir
    stage_dir: Path
    input_model: str
    data: Splits
    rewards: list[Reward]
    recipe_dir: Path | None
    on_gpu: bool
    state: RunState = field(default_factory=RunState)
    resume: bool = False  # continue from the stage's files and checkpoints (align/resume.py)

    def train_rows(self, limit: int | None = None):
        """The training rows this stage uses: its own ``data:`` or the recipe's train split, ``rows: [start, end)``
        of it, then ``limit``."""
        data = self.data.train
        if self.stage.data is not None:
            data = dist.main_first(lambda: load_splits(self.stage.data, self.recipe_dir, self.recipe.seed)).train
        if self.stage.rows is not None:
            start, end = self.stage.rows
            data = data.select(range(min(start, len(data)), min(end, len(data))))
        if limit is not None and len(data) > limit:
            data = data.select(range(limit))
        return data

    def log(self, message: str) -> None:
        console.print(f"  [dim]{self.stage.name}:[/dim] {message}")


@dataclass(frozen=True)
class Stage:
    """A stage type, as its module declares it."""

    type: str  # the recipe's `type:`
    config: type[StageSpec]  # the recipe block: shared StageSpec fields plus the stage's own
    run: Callable[[StageContext], StageResult]
    multi_process: bool = True  # runs on every rank of a multi-process launch (else refused there)
    # a finished stage that a resumed run skips: rebuild its result from its folder (default: the manifest's
    # model and output)
    restore: Callable[[StageContext, StageResult], StageResult] | None = None
    # settings of the stage that fail or hang on ``world`` > 1 processes: (message, hint) pairs, checked by the
    # launcher before any process starts and by every rank at the start of a run
    launch_rules: Callable[[Recipe, StageSpec, int], list[tuple[str, str]]] | None = None
    # trains against a `vllm serve` when rollout.vllm_mode is 'server' (the launcher starts it first)
    rollout_server: bool = False
