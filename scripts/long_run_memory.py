"""Long-run stability: GRPO on the embedded tiny model for thousands of steps, resident memory recorded as it goes.

    python scripts/long_run_memory.py --steps 3000 --every 100 [--out DIR]

Runs the real pipeline (one GRPO stage with the workbench's default checkpointing, rollout log and metrics log) and
records the process's resident set size (VmRSS) every ``--every`` steps into ``memory.csv`` in the run directory,
then prints the figures: RSS after the warm-up (the first 10% of steps), at the end, the maximum, and the growth per
1000 steps fitted over the post-warm-up samples. Flat means the growth is a few MiB per 1000 steps at most.
Not a test: it takes minutes to hours.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RECIPE = """
name: long_run_memory
seed: 1
data: {{train_size: 2000, eval_size: 8, seed: 7}}
eval: {{enabled: false}}
rollout: {{engine: hf}}
rewards: [{{name: accuracy}}, {{name: korean_consistency}}]
stages:
  - type: grpo
    args: {{max_steps: {steps}, per_device_train_batch_size: 8, num_generations: 4, max_completion_length: 8,
           logging_steps: 10, learning_rate: 1.0e-5}}
"""


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--every", type=int, default=100, help="record memory every N steps")
    p.add_argument("--out", help="output directory (default: a temporary one)")
    args = p.parse_args()

    from transformers import Trainer

    from align.pipeline import run_pipeline
    from align.recipe import load_recipe

    samples: list[tuple[int, float, float]] = []
    t0 = time.time()
    training_step = Trainer.training_step

    def measured_step(self, *a, **kw):  # wraps the real step: measure, then train
        step = self.state.global_step
        if step % args.every == 0 and (not samples or samples[-1][0] != step):
            samples.append((step, round(time.time() - t0, 1), round(rss_mib(), 1)))
            print(f"step {step:>6}  RSS {samples[-1][2]:8.1f} MiB  ({samples[-1][1]:.0f} s)", flush=True)
        return training_step(self, *a, **kw)

    Trainer.training_step = measured_step
    out = Path(args.out or tempfile.mkdtemp(prefix="align-memory-"))
    recipe_path = out / "recipe.yaml"
    out.mkdir(parents=True, exist_ok=True)
    recipe_path.write_text(RECIPE.format(steps=args.steps), encoding="utf-8")
    run = run_pipeline(load_recipe(recipe_path, [f"output_dir={out}"]))
    samples.append((args.steps, round(time.time() - t0, 1), round(rss_mib(), 1)))

    with open(run.path / "memory.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "seconds", "rss_mib"])
        w.writerows(samples)
    warm = [s for s in samples if s[0] >= args.steps * 0.1] or samples
    xs, ys = [s[0] for s in warm], [s[2] for s in warm]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs) or 1.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var
    print(f"\n{args.steps} GRPO steps in {samples[-1][1]:.0f} s; memory.csv in {run.path}")
    print(f"RSS after warm-up {warm[0][2]:.1f} MiB (step {warm[0][0]}), end {samples[-1][2]:.1f} MiB, "
          f"max {max(s[2] for s in samples):.1f} MiB; growth {slope * 1000:+.1f} MiB per 1000 steps")  # fmt: skip


if __name__ == "__main__":
    main()
