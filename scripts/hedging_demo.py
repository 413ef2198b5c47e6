"""Proof in training: GRPO on the embedded tiny model learns to hedge when its reward pays for hedges, and unlearns
hedging when the reward is the fixed ``accuracy``.

    python scripts/hedging_demo.py [--out runs/hedging_demo] [--sft-steps 400] [--grpo-steps 150] [--hedged 0.3]

1. Data: the synthetic ``count`` and ``arith`` tasks. In the SFT slice, a fraction (``--hedged``) of the answers is
   replaced by a hedge holding the right answer and a neighbour in random order ('3개 또는 4개', '답: 6 또는 7'), so
   that the policy samples hedges and GRPO can find out what they earn. The reference ``answer`` column is unchanged.
2. SFT once; then two GRPO runs from that model on the same fresh prompts and seed: one with a deliberately gameable
   reward (``tests/assets/gameable_rewards.py:any_candidate``, the naive "any number matches" check: a hedge pays
   when either candidate is right), one with the fixed ``accuracy`` (a hedge scores 0).
3. The hedge rate of the sampled rollouts per window of steps (``rewards.answer.hedge_rate``, the detector the rewards
   use), and held-out accuracy / hedge rate after each stage, printed and written to ``<out>/hedging_demo.json``.
Runs on CPU in a few minutes per stage; nothing here is part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
GAMEABLE = str(ROOT / "tests" / "assets" / "gameable_rewards.py") + ":any_candidate"


def hedge(answer: str, task: str, rng: random.Random) -> str:
    v = int(answer.rstrip("개").split(":")[-1])
    other = v + rng.choice([-1, 1]) if v > 1 else v + 1
    a, b = (v, other) if rng.random() < 0.5 else (other, v)
    return f"{a}개 또는 {b}개" if task == "count" else f"답: {a} 또는 {b}"


def build_data(out: Path, train: int, sft_rows: int, hedged: float, seed: int) -> Path:
    from align.data.synthetic import SyntheticSpec, build_synthetic

    src = build_synthetic(out / "synthetic", SyntheticSpec(tasks=("count", "arith"), train_size=train, eval_size=200,
                                                          seed=seed))  # fmt: skip
    data = out / "data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    (data / "images").symlink_to((src / "images").resolve())
    shutil.copy(src / "eval.jsonl", data / "eval.jsonl")
    rng, rows, n = random.Random(seed), [], 0
    for i, line in enumerate((src / "train.jsonl").read_text(encoding="utf-8").splitlines()):
        row = json.loads(line)
        if i < sft_rows and rng.random() < hedged:
            row["completion"] = [{"role": "assistant", "content": hedge(row["answer"], row["task"], rng)}]
            n += 1
        rows.append(row)
    (data / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    print(f"data: {len(rows)} training rows, {n} of the first {sft_rows} (the SFT slice) hedged")
    return data


def recipe(out: Path, name: str, model: str, data: Path, rewards: list, stages: list, audit: str = "error") -> Path:
    text = {"name": name, "seed": 7, "output_dir": str(out / "runs"), "model": {"path": model},
            "data": {"source": str(data)}, "rewards": rewards, "reward_audit": audit, "rollout": {"engine": "hf"},
            "eval": {"max_new_tokens": 16, "limit": 120, "metrics": [{"name": "accuracy"}], "sampled": {"k": 4}},
            "stages": stages}  # fmt: skip
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(text, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def rollout_hedges(run: Path, window: int) -> list[dict]:
    from align.io import read_jsonl
    from rewards.answer import hedge_rate

    rows = read_jsonl(run / "grpo" / "rollouts.jsonl")
    out = []
    for start in range(0, max(r["step"] for r in rows) + 1, window):
        chunk = [r for r in rows if start <= r["step"] < start + window]
        if chunk:
            out.append({"steps": f"{start}-{start + window - 1}", "rollouts": len(chunk),
                        "hedge_rate": hedge_rate([r["completion"] for r in chunk], [r["task"] for r in chunk]),
                        "reward": sum(r["total"] for r in chunk) / len(chunk)})  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/hedging_demo")
    p.add_argument("--train", type=int, default=3000, help="synthetic training rows (count + arith)")
    p.add_argument("--sft-rows", type=int, default=1500, help="rows of the SFT slice (the rest are GRPO prompts)")
    p.add_argument("--hedged", type=float, default=0.3, help="share of SFT answers replaced by a hedge")
    p.add_argument("--sft-steps", type=int, default=400)
    p.add_argument("--grpo-steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=3e-4, help="GRPO learning rate")
    p.add_argument("--window", type=int, default=10, help="steps per row of the rollout table")
    args = p.parse_args()

    from rich.console import Console
    from rich.table import Table

    from align.pipeline import run_pipeline
    from align.recipe import load_recipe

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = build_data(out, args.train, args.sft_rows, args.hedged, seed=11)
    t0 = time.time()
    sft = recipe(out, "hedge_sft", "tiny-korean-vlm", data, [{"name": "accuracy"}],
                 [{"type": "sft", "rows": [0, args.sft_rows], "args": {"learning_rate": 2e-3, "max_steps": args.sft_steps,
                  "per_device_train_batch_size": 32, "warmup_steps": 20, "logging_steps": 50}}])  # fmt: skip
    sft_run = run_pipeline(load_recipe(sft)).path
    results = {"args": vars(args), "sft": json.loads((sft_run / "sft" / "eval.json").read_text()),
               "base": json.loads((sft_run / "base" / "eval.json").read_text()), "sft_seconds": time.time() - t0}  # fmt: skip
    grpo = {"type": "grpo", "rows": [args.sft_rows, args.train], "filter_zero_variance": True,
            "args": {"learning_rate": args.lr, "max_steps": args.grpo_steps, "num_generations": 8,
                     "per_device_train_batch_size": 64, "max_completion_length": 16, "logging_steps": 10}}  # fmt: skip
    for arm, reward, audit in (("gameable", GAMEABLE, "warn"), ("fixed", "accuracy", "error")):
        t = time.time()
        path = recipe(out, f"hedge_grpo_{arm}", str(sft_run / "sft" / "model"), data, [{"name": reward}], [grpo], audit)
        run = run_pipeline(load_recipe(path)).path
        results[arm] = {"reward": reward, "run": str(run), "eval": json.loads((run / "grpo" / "eval.json").read_text()),
                        "rollouts": rollout_hedges(run, args.window), "seconds": time.time() - t}  # fmt: skip
    (out / "hedging_demo.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")

    console = Console(highlight=False)
    table = Table(title="hedge rate of GRPO rollouts (share of sampled answers that list several candidates)")
    table.add_column("steps")
    for arm in ("gameable", "fixed"):
        table.add_column(f"{arm}: hedge rate", justify="right")
        table.add_column(f"{arm}: mean reward", justify="right")
    for a, b in zip(results["gameable"]["rollouts"], results["fixed"]["rollouts"]):
        table.add_row(a["steps"], f"{a['hedge_rate']:.3f}", f"{a['reward']:.3f}", f"{b['hedge_rate']:.3f}",
                      f"{b['reward']:.3f}")  # fmt: skip
    console.print(table)
    table = Table(title="held-out eval (greedy; sampled: 4 answers at T=1)")
    table.add_column("checkpoint")
    keys = ("accuracy", "hedge_rate", "sampled/accuracy", "sampled/hedge_rate")
    for k in keys:
        table.add_column(k, justify="right")
    for label, m in (("base", results["base"]), ("sft", results["sft"]), ("grpo gameable", results["gameable"]["eval"]),
                     ("grpo fixed", results["fixed"]["eval"])):  # fmt: skip
        table.add_row(label, *(f"{m[k]:.3f}" if m.get(k) is not None else "-" for k in keys))
    console.print(table)
    console.print(f"written {out / 'hedging_demo.json'}")


if __name__ == "__main__":
    main()
