"""All 164 HumanEval canonical solutions through ``code_tests``, in every test format and answer shape it accepts.

    python scripts/humaneval_canonical.py [--workers N] [--timeout S] [--formats check,script,asserts,assert_list]

Test formats, all made from each problem's published ``test`` (the test suite runs a fixed sample of them):

* ``check``: ``def check(candidate)`` as published, with the row's ``entry_point``;
* ``script``: one self-checking script, the published test followed by ``if __name__ == "__main__":`` that calls
  ``check(<entry point>)`` and prints a success line; no entry point given;
* ``asserts``: one string of test code, ``check``'s body with ``candidate`` renamed to the entry point;
* ``assert_list``: a list of tests, one per top-level assert (or loop of asserts) of ``check``'s body, each with the
  setup statements before it.

Answer shapes: ``bare`` (the prompt and the body, as HumanEval's harness concatenates them) and ``chat`` (a Korean
sentence, the code in a fence, a usage-example block calling the function, an ``if __name__ == "__main__":`` block
and a closing pleasantry, as chat models answer). For each format and shape it prints how many tests were rewritten
(hack-proof), how many canonical solutions pass, how many of the same prompts with ``return None`` as the body pass,
and the wall time (the first batch of a format also computes the expected values).
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DATA = Path(__file__).resolve().parent.parent / "tests" / "assets" / "human_eval" / "HumanEval.jsonl.gz"
FORMATS = ("check", "script", "asserts", "assert_list")


def load() -> list[dict]:
    with gzip.open(DATA, "rt") as f:
        return [json.loads(line) for line in f]


def _check_parts(row: dict) -> tuple[list[ast.stmt], list[ast.stmt]]:
    """(module-level statements other than ``check``, ``check``'s body with ``candidate`` renamed to the entry point)."""
    tree = ast.parse(row["test"])
    check = next(s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == "check")
    param, entry = check.args.args[0].arg, row["entry_point"]
    for node in ast.walk(check):
        if isinstance(node, ast.Name) and node.id == param:
            node.id = entry
    return [s for s in tree.body if s is not check], check.body


def tests_for(row: dict, fmt: str) -> tuple[object, str | None]:
    """(the ``tests`` cell, the ``entry_point`` cell) of one problem in one format."""
    entry = row["entry_point"]
    if fmt == "check":
        return row["test"], entry
    if fmt == "script":
        return (
            f'{row["test"]}\n\nif __name__ == "__main__":\n    check({entry})\n    print("모든 테스트 통과!")\n',
            None,
        )
    preamble, body = _check_parts(row)
    if fmt == "asserts":
        return ast.unparse(ast.Module(preamble + body, [])) + "\n", None
    tests, setup = [], list(preamble)
    for s in body:
        if any(isinstance(n, ast.Assert) for n in ast.walk(s)):
            tests.append(ast.unparse(ast.Module(setup + [s], [])))
        else:
            setup.append(s)
    return tests, None


def answer(row: dict, body: str, shape: str) -> str:
    code = row["prompt"] + body
    if shape == "bare":
        return code
    entry = row["entry_point"]
    call = next((n for n in ast.walk(ast.parse(row["test"])) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name) and n.func.id == "candidate"), None)  # fmt: skip
    example = f"print({entry}({', '.join(ast.unparse(a) for a in call.args)}))" if call else f"print({entry})"
    return (f"`{entry}` 함수를 다음과 같이 구현할 수 있습니다.\n\n```python\n{code.rstrip()}\n```\n\n"
            f"사용 예시:\n\n```python\n{example}\n```\n\n직접 실행할 때는 아래처럼 확인해 보세요.\n\n```python\n"
            f'if __name__ == "__main__":\n    {example}\n    print(input("값을 입력하세요: "))\n```\n\n'
            f"도움이 되었기를 바랍니다! 더 궁금한 점이 있으면 언제든지 물어보세요.")  # fmt: skip


def run(rows: list[dict], fmt: str, shape: str, body: str | None, timeout: float, workers: int | None):
    """Scores of every row (the canonical body when ``body`` is None)."""
    from rewards.code_rewards import code_tests

    cells = [tests_for(r, fmt) for r in rows]
    completions = [answer(r, r["canonical_solution"] if body is None else body, shape) for r in rows]
    return code_tests(None, completions, tests=[c[0] for c in cells], entry_point=[c[1] for c in cells],
                      timeout=timeout, workers=workers)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--shapes", default="bare,chat")
    args = p.parse_args()

    from rewards.code_rewards import hack_proof_report

    rows = load()
    for fmt in args.formats.split(","):
        reports = []
        for r in rows:
            tests, entry = tests_for(r, fmt)
            reports.append(hack_proof_report(tests if isinstance(tests, list) else [tests], entry))
        not_proof = [(r["task_id"], x["reason"]) for r, rep in zip(rows, reports) for x in rep if not x["hack_proof"]]
        n_tests = sum(len(rep) for rep in reports)
        print(f"[{fmt}] {len(rows)} problems, {n_tests} tests; {n_tests - len(not_proof)} rewritten (hack-proof)"
              + ("; run as written: " + ", ".join(sorted({t for t, _ in not_proof})) if not_proof else ""))  # fmt: skip
        for shape in args.shapes.split(","):
            for label, body in (("canonical", None), ("return None", "    return None\n")):
                start = time.time()
                scores = run(rows, fmt, shape, body, args.timeout, args.workers)
                full = [r["task_id"] for r, s in zip(rows, scores) if s == 1.0]
                odd = [r["task_id"] for r, s in zip(rows, scores) if (s == 1.0) != (body is None)]
                print(f"  {shape:<5} {label:<11} {len(full):>3}/{len(rows)} pass in {time.time() - start:5.1f} s"
                      + (f"; unexpected: {', '.join(odd[:10])}" if odd else ""))  # fmt: skip


if __name__ == "__main__":
    main()
