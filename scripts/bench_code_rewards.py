"""Throughput of the ``code_tests`` reward (sandboxed, parallel) against a naive unsandboxed runner.

    python scripts/bench_code_rewards.py            # 200 trivial programs, 3 asserts each
    python scripts/bench_code_rewards.py --n 50

Runners: ``code_tests`` with workers=os.cpu_count(); a naive loop doing one plain
``subprocess.run([sys.executable, "-c", code])`` per program, sequentially (no sandbox, no limits); ``code_tests`` with
workers=1. Every runner must give every program full marks, or the numbers would not be comparable.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rewards.code_rewards import code_tests
from rewards.sandbox import isolation


def programs(n: int) -> tuple[list[str], list[list[str]]]:
    completions = [f"```python\ndef f(x):\n    return x + 1  # program {i}\n```" for i in range(n)]
    tests = [["assert f(1) == 2", "assert f(2) == 3", f"assert f({i}) == {i + 1}"] for i in range(n)]
    return completions, tests


def naive(completions: list[str], tests: list[list[str]]) -> list[float]:
    out = []
    for completion, t in zip(completions, tests):
        code = completion.split("```python\n")[1].split("```")[0] + "\n".join(t)
        out.append(
            float(subprocess.run([sys.executable, "-c", code], capture_output=True, check=False).returncode == 0)
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="number of programs (default 200)")
    n = parser.parse_args().n
    completions, tests = programs(n)
    cpus = os.cpu_count() or 1
    mode, python = isolation()  # detection is a one-off cost, kept out of the timings
    print(f"{n} programs, {cpus} CPUs, sandbox isolation: {mode} ({python})")
    runners = [
        (f"code_tests workers={cpus}", lambda: code_tests(None, completions, tests=tests, workers=cpus)),
        ("naive subprocess.run, sequential", lambda: naive(completions, tests)),
        ("code_tests workers=1", lambda: code_tests(None, completions, tests=tests, workers=1)),
    ]
    rates = {}
    print(f"\n{'runner':<34} {'seconds':>8} {'programs/s':>11} {'mean reward':>12}")
    for name, run in runners:
        start = time.perf_counter()
        scores = run()
        seconds = time.perf_counter() - start
        rates[name] = n / seconds
        print(f"{name:<34} {seconds:>8.2f} {rates[name]:>11.1f} {sum(scores) / n:>12.3f}")
        if sum(scores) != n:
            print(f"  warning: {name} did not give every program full marks")
    parallel, plain, single = (rates[name] for name, _ in runners)
    print(f"\ncode_tests workers={cpus} vs naive sequential: {parallel / plain:.2f}x")
    print(f"code_tests workers={cpus} vs workers=1:       {parallel / single:.2f}x")
    print(f"code_tests workers=1 vs naive sequential:    {single / plain:.2f}x  (cost of the sandbox per program)")


if __name__ == "__main__":
    main()
