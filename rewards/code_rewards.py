"""``code_tests``: run the completion's Python code against the row's tests in the sandbox (``rewards.sandbox``).

One sandboxed program per completion: the solution runs first, then every test (an assert statement, or any test code)
in the solution's globals; the program ends by printing ``<nonce> <bitmask of passed tests>`` on stdout, with a random
nonce it reads from stdin before the solution runs. A missing marker (crash, ``sys.exit``, ``os._exit``, timeout,
output flood …) scores 0. The harness keeps its own references to ``exec``/``compile``/``os.write`` so monkeypatching
builtins does not help, but solution and tests share one interpreter, so a solution written to cheat (frame
introspection to find the nonce, objects whose ``__eq__`` is always true) is not stopped by this reward alone.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from concurrent.futures import ThreadPoolExecutor

from rewards.common import completion_text
from rewards.sandbox import run_python

_FENCE = re.compile(r"```[ \t]*([^\n`]*)\n(.*?)(?:```|\Z)", re.DOTALL)

_HARNESS = """\
def _harness(src, tests):
    import os, sys
    nonce = sys.stdin.readline().strip()
    write, exit_, exec_, compile_, exc = os.write, os._exit, exec, compile, BaseException
    settrace, out = sys.settrace, sys.stdout
    passed, i, n, g = 0, 0, len(tests), globals()
    del g["_harness"]
    exec_(compile_(src, "<solution>", "exec", 0, True, 0), g)
    while i < n:
        settrace(None)
        try:
            exec_(compile_(tests[i], "<test>", "exec", 0, True, 0), g)
            passed |= 1 << i
        except exc:
            pass
        i += 1
    try:
        out.flush()
    except exc:
        pass
    write(1, ("\\n%s %d\\n" % (nonce, passed)).encode())
    exit_(0)
"""


def extract_code(text: str) -> str:
    """The last ```python block, else the last ``` block (an unclosed last fence runs to the end), else the text."""
    blocks = _FENCE.findall(text)
    python = [body for lang, body in blocks if lang.strip().lower() in ("python", "py", "python3")]
    if python:
        return python[-1]
    return blocks[-1][1] if blocks else text


def _as_tests(spec) -> tuple[str, ...] | None:
    """A row's tests: a list of statements, one string of test code, or a JSON list in a string."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec.strip().startswith("["):
            try:
                spec = json.loads(spec)
            except ValueError:
                pass
        if isinstance(spec, str):
            return (spec,) if spec.strip() else None
    try:
        tests = tuple(str(t) for t in spec if t is not None and str(t).strip())
    except TypeError:  # not a list of tests: the row has none we can run
        return None
    return tests or None


def _score(code: str, tests: tuple[str, ...], mode: str, timeout: float) -> float:
    nonce = secrets.token_hex(16)
    program = f"{_HARNESS}_harness({code!r}, {tests!r})\n"
    res = run_python(program, stdin=nonce + "\n", timeout=timeout, cpu_seconds=max(1, math.ceil(timeout)))
    if res.returncode != 0 or res.timed_out:
        return 0.0
    for line in reversed(res.stdout.splitlines()):
        head, _, mask = line.partition(" ")
        if head == nonce and mask.isdigit():
            passed = (int(mask) & ((1 << len(tests)) - 1)).bit_count()
            if mode == "all":
                return float(passed == len(tests))
            return passed / len(tests)
    return 0.0


def code_tests(
    prompts, completions, tests=None, mode="fraction", timeout=5.0, workers=None, **kwargs
) -> list[float | None]:
    """Fraction of the row's ``tests`` the completion's Python code passes (``mode="all"``: 1.0 only if all pass).

    ``tests`` is the dataset column (one entry per completion: a list of assert statements, or a string of test
    code); anything else (e.g. one list of asserts bound in the recipe) is used for every row. Rows without tests
    score None; anything that goes wrong in the sandbox scores 0.0. Completions run in parallel, one sandboxed
    process each (``workers`` defaults to the CPU count)."""
    if mode not in ("fraction", "all"):
        raise ValueError(f"code_tests: mode must be 'fraction' or 'all', not {mode!r}")
    n = len(completions)
    per_row = isinstance(tests, (list, tuple)) and len(tests) == n
    specs = [_as_tests(t) for t in tests] if per_row else [_as_tests(tests)] * n

    def one(i: int) -> float | None:
        if specs[i] is None:
            return None
        try:
            return _score(extract_code(completion_text(completions[i])), specs[i], mode, float(timeout))
        except Exception:  # noqa: BLE001 - a failing sandbox scores 0, it never stops training
            return 0.0

    if n == 0:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(n, workers or os.cpu_count() or 1))) as pool:
        return list(pool.map(one, range(n)))
