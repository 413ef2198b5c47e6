"""Throughput of the math reward on 1,000 completions: sequential vs parallel processes.

    python scripts/bench_math_rewards.py [--n 1000] [--workers N]

Prints completions per second for each mode and the ratio. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import random
import time

from rewards.math_rewards import math_accuracy

FORMS = [
    ("\\boxed{{{v}}}", "{v}"),
    ("풀이: {a} + {b} = {v}\n답: {v}", "{v}"),
    ("정답은 {v}개입니다.", "{v}"),
    ("따라서 \\boxed{{\\frac{{{v2}}}{{2}}}}", "{half}"),
    ("<think>{a}+{b}</think><answer>\\boxed{{{a}+{b}}}</answer>", "{v}"),
    ("$x = \\sqrt{{{sq}}}$ 이므로 답: $\\sqrt{{{sq}}}$", "\\sqrt{{{sq}}}"),
    ("답: {wrong}", "{v}"),
]


def make(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    completions, answers = [], []
    for _ in range(n):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        v = a + b
        fields = {"a": a, "b": b, "v": v, "v2": 2 * v, "half": v, "sq": rng.randint(2, 50), "wrong": v + 1}
        comp, ans = rng.choice(FORMS)
        completions.append(comp.format(**fields))
        answers.append(ans.format(**fields))
    return completions, answers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    completions, answers = make(args.n)
    results = {}
    for label, workers in (("sequential", 1), (f"parallel ({args.workers} processes)", args.workers)):
        math_accuracy(None, completions[:20], answer=answers[:20], workers=1)  # warm caches / imports
        t = time.perf_counter()
        scores = math_accuracy(None, completions, answer=answers, workers=workers)
        dt = time.perf_counter() - t
        results[label] = (args.n / dt, sum(scores) / len(scores))
    print(f"math_accuracy on {args.n} completions ({len(FORMS)} answer forms, {os.cpu_count()} cores)")
    for label, (rate, mean) in results.items():
        print(f"  {label:<28} {rate:8.1f} completions/s   mean score {mean:.3f}")
    (seq, _), (par, _) = results.values()
    print(f"  parallel / sequential: {par / seq:.2f}x")


if __name__ == "__main__":
    main()
