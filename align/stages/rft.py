"""RFT stage: rejection-sampling fine-tuning.

1. sample ``samples`` completions per training prompt from the current model (rollout engine of ``rollouts/``);
2. score them with the recipe's rewards (``rollouts/scoring.py``: the same path GRPO and evaluation use);
3. accept those whose ``accept.reward`` (a reward name, or ``total`` for the weighted sum) reaches
   ``accept.threshold``; optionally the best first (``best_of``), at most ``max_per_prompt`` per prompt, without
   duplicates;
4. fine-tune on the accepted set with the SFT machinery.

Written to the stage folder: ``rollouts.jsonl`` (every sample with its rewards, appended as sampling goes),
``accepted.jsonl`` (the training rows, image paths not pixels), ``pass_rates.json`` (per prompt, for prompt
selection in a later GRPO stage) and ``summary.json`` (acceptance rate, pass@1 and pass@k per task).

Under a multi-process launch, rank 0 samples, scores and writes these files (one rollout engine); every rank then
fine-tunes on the accepted samples together (step 4 is the SFT stage's distributed training).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from align.distributed import main_only
from align.errors import StageError
from align.io import atomic_write_json, atomic_write_text
from align.spec import SharedPromptMode, StageSpec, Strict
from align.stages.base import PassRates, Stage, StageContext, StageResult
from align.stages.sft import train_sft
from rollouts.scoring import RolloutRow, as_completions, sample_and_score


class Accept(Strict):
    reward: str = Field("accuracy", description="Reward name whose score decides, or 'total' (weighted sum).")
    threshold: float = Field(1.0, description="Accept a sample when its score is at least this.")
    best_of: bool = Field(True, description="Prefer the highest-scoring samples of a prompt.")
    max_per_prompt: int = Field(1, ge=1, description="Accept at most this many samples per prompt.")
    dedupe: bool = Field(True, description="Drop repeated completions of the same prompt.")


class Config(StageSpec):
    type: Literal["rft"] = "rft"
    trl_config = "trl:SFTConfig"
    samples: int = Field(4, ge=1, description="Completions sampled per prompt (k).")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")
    max_new_tokens: int = Field(48, ge=1, description="Generation budget per completion.")
    prompts: int | None = Field(None, ge=1, description="Sample from at most this many training prompts.")
    batch_prompts: int = Field(64, ge=1, description="Prompts per sampling batch (progress is shown per batch).")
    shared_prompt: SharedPromptMode = Field(
        "auto",
        description="Transformers engine: prefill each prompt once for its samples (align/shared_prompt.py); auto "
        "falls back to a prefill per sample where unsupported, on stops instead.",
    )
    accept: Accept = Field(default_factory=Accept)


def accept(samples: list[RolloutRow], rule: Accept) -> tuple[list[RolloutRow], dict[str, float]]:
    """Apply the acceptance rule. Returns the accepted samples and each prompt's pass rate."""
    by_prompt: dict[str, list[dict]] = {}
    for s in samples:
        by_prompt.setdefault(s["id"], []).append(s)
    accepted, rates = [], {}
    for pid, group in by_prompt.items():

        def score(s):
            v = s["total"] if rule.reward == "total" else s["rewards"].get(rule.reward)
            return float("-inf") if v is None else v

        passing = [s for s in group if score(s) >= rule.threshold]
        rates[pid] = len(passing) / len(group)
        if rule.best_of:
            passing = sorted(passing, key=score, reverse=True)  # stable: ties keep sampling order
        seen, kept = set(), []
        for s in passing:
            key = " ".join(s["completion"].split())
            if rule.dedupe and key in seen:
                continue
            seen.add(key)
            kept.append(s)
            if len(kept) >= rule.max_per_prompt:
                break
        accepted.extend(kept)
    return accepted, rates


def summarize(samples: list[RolloutRow], accepted: list[RolloutRow], rates: dict[str, float]) -> dict:
    tasks: dict[str, dict] = {}
    task_of = {s["id"]: s.get("task") or "default" for s in samples}
    for pid, rate in rates.items():
        t = tasks.setdefault(task_of[pid], {"prompts": 0, "pass@1": 0.0, "pass@k": 0.0, "accepted": 0})
        t["prompts"] += 1
        t["pass@1"] += rate
        t["pass@k"] += float(rate > 0)
    for s in accepted:
        tasks[task_of[s["id"]]]["accepted"] += 1
    for t in tasks.values():
        t["pass@1"] /= max(1, t["prompts"])
        t["pass@k"] /= max(1, t["prompts"])
    n_prompts = len(rates)
    return {
        "prompts": n_prompts,
        "samples": len(samples),
        "accepted": len(accepted),
        "acceptance_rate": len(accepted) / max(1, len(samples)),
        "prompts_with_accepted": len({s["id"] for s in accepted}),
        "pass@1": sum(rates.values()) / max(1, n_prompts),
        "pass@k": sum(r > 0 for r in rates.values()) / max(1, n_prompts),
        "per_task": tasks,
    }


def image_paths(dataset) -> list[list[str | None]]:
    from datasets import Image, Sequence

    if "images" not in dataset.column_names:
        return [[] for _ in range(len(dataset))]
    raw = dataset.cast_column("images", Sequence(Image(decode=False)))["images"]
    return [[(img or {}).get("path") for img in row] for row in raw]


def sample_and_accept(ctx, dataset) -> dict:
    """Steps 1-3: sample, score, accept; write the stage's files. Returns what fine-tuning needs."""
    stage = ctx.stage
    log = ctx.stage_dir / "rollouts.jsonl"
    log.unlink(missing_ok=True)
    ctx.log(f"sampling {stage.samples} completions for each of {len(dataset)} prompts")
    samples, engine = sample_and_score(ctx, dataset, stage.samples, stage.temperature, stage.max_new_tokens,
                                       stage.top_p, log, stage.batch_prompts, extra_rewards=[stage.accept.reward])  # fmt: skip
    accepted, rates = accept(samples, stage.accept)
    summary = {**summarize(samples, accepted, rates), "rollout_engine": engine}
    atomic_write_json(ctx.stage_dir / "pass_rates.json", rates)
    ctx.log(f"accepted {summary['accepted']} of {summary['samples']} samples "
            f"({summary['acceptance_rate']:.1%}); pass@1 {summary['pass@1']:.3f}, pass@{stage.samples} "
            f"{summary['pass@k']:.3f}")  # fmt: skip
    for task, t in sorted(summary["per_task"].items()):
        ctx.log(f"  {task:>8}: pass@1 {t['pass@1']:.3f}  pass@{stage.samples} {t['pass@k']:.3f}  "
                f"accepted {t['accepted']}")  # fmt: skip
    if not accepted:
        atomic_write_json(ctx.stage_dir / "summary.json", summary)
        raise StageError(
            f"no sample met the acceptance rule ({stage.accept.reward} >= {stage.accept.threshold}) "
            f"among {len(samples)} samples",
            "lower accept.threshold, sample more (samples, temperature), or train the model further first",
        )
    index = {pid: i for i, pid in enumerate(dataset["id"])}
    paths = image_paths(dataset)
    rows_out, picks, texts = [], [], []
    for s in accepted:
        i = index[s["id"]]
        picks.append(i)
        texts.append(s["completion"])
        row = dataset[i]
        rows_out.append({"id": s["id"], "task": row.get("task"), "prompt": row["prompt"],
                         "completion": [{"role": "assistant", "content": s["completion"]}],
                         "answer": row.get("answer"), "images": paths[i], "rewards": s["rewards"]})  # fmt: skip
    atomic_write_text(ctx.stage_dir / "accepted.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows_out))  # fmt: skip
    summary["reward_errors"] = {r.name: r.stats() for r in ctx.rewards}
    atomic_write_json(ctx.stage_dir / "summary.json", summary)
    return {"picks": picks, "texts": texts, "rates": rates}


def accepted_set(ctx, dataset) -> dict:
    """Sample and accept, keeping the result in ``selection.json``; a resumed run reuses it (sampling is not
    redone; a sampling pass that was interrupted starts again)."""
    path = ctx.stage_dir / "selection.json"
    if ctx.resume and path.exists():
        ctx.log(f"reusing the accepted set of the interrupted run ({path})")
        return json.loads(path.read_text(encoding="utf-8"))
    chosen = sample_and_accept(ctx, dataset)
    atomic_write_json(path, chosen)
    return chosen


def run(ctx: StageContext[Config]) -> StageResult:
    dataset = ctx.train_rows(ctx.stage.prompts)
    chosen = main_only(lambda: accepted_set(ctx, dataset))  # rank 0 samples; every rank gets the choice
    train = dataset.select(chosen["picks"])
    train = train.remove_columns("completion").add_column("completion", as_completions(chosen["texts"]))
    result = train_sft(ctx, train)
    result.pass_rates = PassRates(chosen["rates"], ctx.stage.accept.reward)
    return result


def restore(ctx: StageContext[Config], result: StageResult) -> StageResult:
    """A finished RFT stage skipped by a resumed run still hands its pass rates to a later GRPO stage."""
    path = ctx.stage_dir / "pass_rates.json"
    if path.exists():
        result.pass_rates = PassRates(json.loads(path.read_text(encoding="utf-8")), ctx.stage.accept.reward)
    return result


STAGE = Stage(
    type="rft",
    config=Config,
    run=run,
    restore=restore,
)
