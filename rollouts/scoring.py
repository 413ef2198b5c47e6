"""Sample → score → rollout row, in one place: RFT's samples, GRPO's prompt-selection pre-pass, GRPO's rollout log
and the eval hook all score completions here, with the same reward functions.

A ``RolloutRow`` is one line of a stage's ``rollouts.jsonl`` (``rollouts/log.py`` reads them back): RFT writes
every sample (``id``, ``sample`` and ``finish_reason`` too), GRPO every completion of a training batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import rewards as registry
from align.io import append_jsonl
from align.models import model_reasoning_format
from rollouts import Sampling, make_engine


class RolloutRow(TypedDict, total=False):
    """One sampled completion with its scores (keys in this order in ``rollouts.jsonl``)."""

    step: int  # RFT: sampling batch; GRPO: training step
    id: str  # RFT: the prompt's row id (acceptance and pass rates group by it)
    prompt_id: str | None
    task: str | None
    sample: int  # RFT: which of the prompt's samples
    completion: str  # the text the rewards read (a reasoning model's canonical <think>…</think>answer form)
    tokens: int
    finish_reason: str | None  # RFT: 'stop' or 'length'
    rewards: dict[str, float | None]  # each reward's score; None where a reward does not apply
    total: float  # the recipe's weighted sum over the rewards that apply
    advantage: float  # total minus its group's mean (GRPO: TRL's advantage)


FIELDS = tuple(RolloutRow.__annotations__)


def as_completions(texts: list[str]) -> list[list[dict]]:
    """Completion texts in TRL's conversational form, as reward functions take them."""
    return [[{"role": "assistant", "content": t}] for t in texts]


def score(scorers, prompts: list, texts: list[str], columns: dict[str, list]) -> dict[str, list]:
    """Each reward's scores of ``texts`` (reward name -> one score or None per text)."""
    completions = as_completions(texts)
    return {r.name: r(prompts, completions, **columns) for r in scorers}


def weighted_total(scores: dict[str, float | None], weights) -> float:
    """The weighted sum of the scores that are not None; ``weights``: a mapping by reward name, or a list in the
    order of ``scores``."""
    if not isinstance(weights, dict):
        weights = dict(zip(scores, weights))
    return sum(weights.get(k, 0.0) * v for k, v in scores.items() if v is not None)


def rollout_row(**fields) -> RolloutRow:
    """A rollout row from its fields (in the log's key order)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"not rollout-row fields: {', '.join(sorted(unknown))}")
    return {k: fields[k] for k in FIELDS if k in fields}  # type: ignore[return-value]


def add_group_advantages(rows: list[RolloutRow], n: int) -> None:
    """Advantage as GRPO would see it: each row's total minus the mean of its group of ``n`` consecutive rows."""
    for g in range(0, len(rows), n):
        mean = sum(r["total"] for r in rows[g : g + n]) / n
        for r in rows[g : g + n]:
            r["advantage"] = r["total"] - mean


def scoring_rewards(ctx, names: list[str]):
    """The stage's rewards, plus any reward named (e.g. for RFT's acceptance) that the recipe does not list."""
    out = list(ctx.rewards)
    have = {r.name for r in out}
    for name in names:
        if name != "total" and name not in have:
            out.append(registry.resolve({"name": name, "weight": 0.0}, ctx.recipe_dir))
            have.add(name)
    return out


def sample_and_score(ctx, dataset, n: int, temperature: float, max_new_tokens: int, top_p: float = 1.0,
                     log_path: Path | None = None, batch_prompts: int = 64,
                     extra_rewards=()) -> tuple[list[RolloutRow], str]:  # fmt: skip
    """Sample ``n`` completions per row of ``dataset`` with the stage's rollout engine (``ctx``: a stage context) and
    score each with the rewards. Returns the rows (appended to ``log_path`` batch by batch) and the engine's name."""
    scorers = scoring_rewards(ctx, list(extra_rewards))
    weights = {r.name: r.weight for r in ctx.rewards}
    engine = make_engine(ctx.recipe.rollout, ctx.input_model, ctx.recipe.model, batch_size=max(1, 256 // max(1, n)),
                         seed=ctx.recipe.seed, log=ctx.log, shared_prompt=ctx.stage.shared_prompt)  # fmt: skip
    columns = [c for c in dataset.column_names if c not in ("prompt", "completion")]
    # reasoning models: completions in the canonical <think>…</think>answer form (align/models/reasoning.py), so
    # rewards read the answer and the accepted samples train the model's own reasoning layout
    fmt = model_reasoning_format(engine.processor, engine.family)
    out: list[RolloutRow] = []
    try:
        for start in range(0, len(dataset), batch_prompts):
            batch = dataset.select(range(start, min(start + batch_prompts, len(dataset))))
            prompts = list(batch["prompt"])
            images = list(batch["images"]) if "images" in batch.column_names else None
            sampling = Sampling(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                seed=ctx.recipe.seed + start)  # fmt: skip
            flat = [c for g in engine.generate(prompts, images, sampling) for c in g]
            texts = [fmt.split_ids(c.token_ids).canonical if fmt else c.text for c in flat]
            cols = {c: [v for v in batch[c] for _ in range(n)] for c in columns}
            scores = score(scorers, [p for p in prompts for _ in range(n)], texts, cols)
            rows = []
            for j, c in enumerate(flat):
                per = {name: s[j] for name, s in scores.items()}
                rows.append(rollout_row(step=start // batch_prompts, id=cols["id"][j], prompt_id=cols["id"][j],
                                        task=cols["task"][j] if "task" in cols else None, sample=j % n,
                                        completion=texts[j], tokens=len(c.token_ids), finish_reason=c.finish_reason,
                                        rewards=per, total=weighted_total(per, weights)))  # fmt: skip
            add_group_advantages(rows, n)
            if log_path is not None:
                append_jsonl(log_path, rows)
            out.extend(rows)
            ctx.log(f"sampled {min(start + batch_prompts, len(dataset))}/{len(dataset)} prompts")
    finally:
        engine.close()
    return out, engine.name
