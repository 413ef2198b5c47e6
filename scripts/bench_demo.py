"""Every benchmark in the eval hook on fixtures: the tiny VLM through SFT in two stages, benchmarks after each.

    python scripts/bench_demo.py [--out runs-bench-demo] [--rows 28] [--steps 40 120]

Builds the fixtures of tests/bench_fixtures.py (each set's published columns, generated images, colour questions),
SFT rows in the same prompt formats about other images (tests/bench_fixtures.training_jsonl), a tiny judge and a tiny
sentence-embedding model, writes a recipe with every benchmark in ``eval.benchmarks``, runs it (base, sft,
sft_more; the run ends with ``align compare``). No hub, no GPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RECIPE = """
name: bench_demo
output_dir: {out}/runs
rollout: {{engine: hf}}
data: {{source: {train}, eval_fraction: 0.1}}
eval:
  max_new_tokens: 12
  samples: 1
  benchmarks:
    - {{name: k-mmbench, source: {fx[k-mmbench]}}}
    - {{name: k-seed, source: {fx[k-seed]}}}
    - {{name: k-mmstar, source: {fx[k-mmstar]}}}
    - {{name: k-dtcbench, source: {fx[k-dtcbench]}}}
    - {{name: k-llava-w, source: {fx[k-llava-w]}, max_new_tokens: 12, judge: {{model: {judge}, max_new_tokens: 8}}}}
    - {{name: kmmlu, source: {fx[kmmlu]}, tasks: [kmmlu_accounting, kmmlu_korean_history]}}
    - {{name: haerae, source: {fx[haerae]}}}
    - {{name: click, source: {fx[click]}}}
    - {{name: kobest, source: {fx[kobest]}}}
    - {{name: caption, source: {fx[caption]}, sbert: {sbert}}}
    - {{name: latency, limit: 4, max_new_tokens: 16}}
stages:
  - type: sft
    args: {{learning_rate: 2.0e-3, max_steps: {s1}, per_device_train_batch_size: 16, logging_steps: 10}}
  - type: sft
    name: sft_more
    args: {{learning_rate: 2.0e-3, max_steps: {s2}, per_device_train_batch_size: 16, logging_steps: 10}}
"""


def main() -> int:
    from align.pipeline import run_pipeline
    from align.recipe import load_recipe
    from tests import bench_fixtures as fx

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs-bench-demo")
    p.add_argument("--rows", type=int, default=28, help="questions per multiple-choice set")
    p.add_argument("--steps", type=int, nargs=2, default=(50, 150), help="SFT steps of the two stages")
    p.add_argument("--train-rows", type=int, default=600, help="SFT rows in the benchmarks' formats")
    args = p.parse_args()
    out = Path(args.out).resolve()
    root = out / "fixtures"
    sources = fx.build_all(root)
    n = args.rows
    sources["k-mmbench"] = fx.kmmbench_parquet(root / "K-MMBench", n=n).parent.parent
    sources["k-seed"] = fx.kseed_parquet(root / "K-SEED", n=n).parent.parent
    sources["k-mmstar"] = fx.kmmstar_parquet(root / "K-MMStar", n=n).parent.parent
    sources["k-dtcbench"] = fx.kdtc_parquet(root / "K-DTCBench", n=n).parent.parent
    train = fx.training_jsonl(out / "train", n=args.train_rows)
    judge = fx.tiny_judge(out / "judge")
    sbert = fx.tiny_sbert(out / "sbert")
    text = RECIPE.format(out=out, fx=sources, judge=judge, sbert=sbert, train=train, s1=args.steps[0], s2=args.steps[1])
    (out / "bench_demo.yaml").write_text(text)
    run_pipeline(load_recipe(out / "bench_demo.yaml"))  # ends with `align compare` of the run
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
