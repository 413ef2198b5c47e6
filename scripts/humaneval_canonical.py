"""All 164 HumanEval canonical solutions through ``code_tests`` (the test suite runs a fixed sample).

    python scripts/humaneval_canonical.py [--workers N] [--timeout S]

Prints how many tests were rewritten into call + expected form (hack-proof), how many canonical solutions pass, how
many prompts with a wrong body (``return None``) pass, and the wall time of each batch (the first batch also computes
the expected values; the second reuses them, as GRPO's groups of one prompt do).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests" / "assets" / "human_eval" / "HumanEval.jsonl.gz"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args()

    from rewards.code_rewards import code_tests, hack_proof_report

    with gzip.open(DATA, "rt") as f:
        rows = [json.loads(line) for line in f]
    tests, entries = [r["test"] for r in rows], [r["entry_point"] for r in rows]
    reports = [hack_proof_report([r["test"]], r["entry_point"])[0] for r in rows]
    not_proof = [(r["task_id"], rep["reason"]) for r, rep in zip(rows, reports) if not rep["hack_proof"]]
    print(f"{len(rows)} problems; {len(rows) - len(not_proof)} tests rewritten (hack-proof); run as written:")
    for task_id, reason in not_proof:
        print(f"  {task_id}: {reason}")
    for label, body in (("canonical", None), ("wrong body", "    return None\n")):
        completions = [r["prompt"] + (body or r["canonical_solution"]) for r in rows]
        start = time.time()
        scores = code_tests(None, completions, tests=tests, entry_point=entries, timeout=args.timeout,
                            workers=args.workers)  # fmt: skip
        failed = [r["task_id"] for r, s in zip(rows, scores) if s != 1.0]
        print(f"{label}: {sum(s == 1.0 for s in scores)}/{len(rows)} pass in {time.time() - start:.1f} s"
              + (f"; not passing: {', '.join(failed[:10])}{' …' if len(failed) > 10 else ''}" if label == "canonical"
                 and failed else ""))  # fmt: skip


if __name__ == "__main__":
    main()
