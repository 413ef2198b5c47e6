"""``code_tests``: run the completion's Python code against the row's tests in the sandbox (``rewards.sandbox``),
deciding every assert outside the solution's reach.

The program is every fenced Python block of the completion, in order (``extract_code``), imported statement by
statement (``solution_parts``: its ``__main__`` block does not run, a usage line that raises is skipped). Each test (an
entry of the row's ``tests``: assert statements, a HumanEval-style ``def check(candidate)`` with the row's
``entry_point``, or a self-checking script) is rewritten (``rewards.code_rewrite``): the solution calls in each assert
run in a sandboxed run of the completion and leave it as plain data; the other parts come from a sandboxed run that
never sees any solution (once per distinct test list, cached); the comparisons and wrapper calls around them
(``isinstance``, ``all``, ``math.isnan`` …) are evaluated here, in the reward process (``rewards.code_harness``). So
objects whose ``__eq__`` is always true, subclasses with patched methods, patched builtins or ``math``, frame
introspection (there is no expected value to find), ``sys.exit``/``os._exit`` and forged output earn nothing. A test
that cannot be rewritten (the solution used outside an assert, e.g. a prompt helper in the setup) still runs as
written inside the solution's interpreter: such tests are **not hack-proof**, and the reward says so once per reason
on stderr (``hack_proof_report`` lists them). Completions that score 0 without running (empty, no code, not parsing,
too long) and runs that time out or flood their output are counted by reason in ``SKIPPED``.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import sys
import threading
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor

from rewards.code_harness import decode as _decode
from rewards.code_harness import fresh_nonce, judge, program, records
from rewards.code_rewrite import Rewrite, rewrite
from rewards.common import MAX_CHARS, completion_text
from rewards.sandbox import run_python

_FENCE = re.compile(r"^[ \t]*```[ \t]*([^\n`]*)\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.DOTALL | re.MULTILINE)
_PYTHON = ("python", "py", "python3", "py3")
_CODE_START = re.compile(r"(?:def |class |import |from \S+ import |@|async def )")
MAX_OUTPUT = 1 << 20  # bytes of records a run may write (results of big return values)
MAX_CODE = 200_000  # characters of code a completion may hand to the sandbox
_CACHE_SIZE = 4096
_lock = threading.Lock()
_plans: OrderedDict = OrderedDict()  # (tests, entry) -> list[Rewrite]
_expected: OrderedDict = OrderedDict()  # (tests, entry) -> list[list[tuple[int, list]] | None]
_warned: set[str] = set()
SKIPPED: Counter = Counter()  # why completions scored 0 before or instead of running their tests


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def extract_code(text: str) -> str:
    """The completion's program: every fenced Python block that parses, in order (a solution, then its usage example;
    a second version redefines the first); without Python-tagged blocks, the untagged blocks that parse; without any
    fence, the code in the text (``_unfenced``). An unclosed last fence runs to the end; blocks in other languages
    (bash, text, output) are skipped."""
    blocks = _FENCE.findall(text)
    if not blocks:
        return _unfenced(text)
    langs = [(lang.strip().lower().split() or [""])[0] for lang, _ in blocks]
    tagged = [body for lang, (_, body) in zip(langs, blocks) if lang in _PYTHON]
    chosen = tagged or [body for lang, (_, body) in zip(langs, blocks) if not lang]
    usable = [body for body in chosen if _parses(body)]
    return "\n".join(b.rstrip("\n") for b in usable) + "\n" if usable else (chosen[-1] if chosen else "")


def _unfenced(text: str) -> str:
    """Code written without a fence: from the first line that starts a definition or an import, with the prose
    lines after it dropped (up to 20); the text itself when that does not parse either."""
    if _parses(text):
        return text
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return text
    for end in range(len(lines), max(start, len(lines) - 20), -1):
        code = "\n".join(lines[start:end]) + "\n"
        if _parses(code):
            return code
    return text


def solution_parts(code: str) -> list[str] | None:
    """The program's top-level statements as separate sources (``from __future__`` imports repeated in each), so a
    usage line that raises does not take the definitions with it; None when the program does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    lines = code.splitlines(keepends=True)
    starts = sorted({min([s.lineno, *(d.lineno for d in getattr(s, "decorator_list", []))]) for s in tree.body})
    starts[:1] = [1]  # leading comments stay with the first statement
    future = [s for s in tree.body if isinstance(s, ast.ImportFrom) and s.module == "__future__"]
    head = "".join(ast.unparse(s) + "\n" for s in future)
    parts = ["".join(lines[a - 1 : b - 1]) for a, b in zip(starts, starts[1:] + [len(lines) + 1])]
    return [head + p for p in parts if p.strip()]


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


def _remember(cache: OrderedDict, key, make):
    with _lock:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    value = make()
    with _lock:
        cache[key] = value
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    return value


def plans(tests: tuple[str, ...], entry: str | None) -> list[Rewrite]:
    return _remember(_plans, (tests, entry), lambda: [rewrite(t, entry) for t in tests])


def hack_proof_report(tests, entry_point: str | None = None) -> list[dict]:
    """Per test: whether it is hack-proof (rewritten into call + expected form) and, if not, why."""
    specs = _as_tests(tests) or ()
    return [{"test": p.source[:80], "hack_proof": p.hack_proof, "reason": p.reason} for p in plans(specs, entry_point)]


def _warn(row_plans: list[Rewrite]) -> None:
    for p in row_plans:
        if p.reason and p.reason not in _warned:
            with _lock:
                _warned.add(p.reason)
            print(f"[code_tests] a test is not hack-proof (it runs inside the solution's interpreter): {p.reason}",
                  file=sys.stderr)  # fmt: skip


def _spec(p: Rewrite, expected_ok: bool, expected_run: bool) -> tuple:
    if p.hack_proof and expected_ok:
        code = p.expected_code if expected_run else p.candidate_code
        return ("rewritten", code, p.modules, p.names)
    return ("fallback", p.fallback_code, (), ())


def _skip(reason: str) -> float:
    with _lock:
        SKIPPED[reason] += 1
    return 0.0


def _run(solution: list[str] | None, tests: list[tuple], timeout: float) -> list[list] | None:
    nonce = fresh_nonce()
    res = run_python(program(solution, tests), stdin=nonce + "\n", timeout=timeout,
                     cpu_seconds=max(1, math.ceil(timeout)), max_output_bytes=MAX_OUTPUT)  # fmt: skip
    if res.timed_out or res.reason == "output limit exceeded":
        if solution is not None:
            _skip("timeout" if res.timed_out else "output limit exceeded")
        return None
    recs = records(res.stdout, nonce)
    if recs is None and solution is not None:
        _skip("malformed records")
    return recs


def _sites_by_test(recs: list[list], n: int) -> tuple[dict, dict, dict, bool]:
    """Site records, end statuses and passes per test; ``False`` when any record is repeated or malformed."""
    sites: dict[int, list] = {i: [] for i in range(n)}
    ends: dict[int, str] = {}
    passes: dict[int, int] = {}
    seen: set = set()
    for rec in recs:
        kind = rec[0]
        key = json.dumps(rec[:3] if kind == "site" else rec[:2])
        if kind in ("site", "end", "pass") and (key in seen or not (len(rec) > 1 and rec[1] in sites)):
            return sites, ends, passes, False
        seen.add(key)
        if kind == "site" and len(rec) == 5 and rec[2] == len(sites[rec[1]]) and isinstance(rec[4], list):
            sites[rec[1]].append((rec[3], rec[4]))
        elif kind == "end" and len(rec) == 3:
            ends[rec[1]] = rec[2]
        elif kind == "pass":
            passes[rec[1]] = passes.get(rec[1], 0) + 1
        elif kind not in ("done", "solution-error"):
            return sites, ends, passes, False
    return sites, ends, passes, True


def expected_values(tests: tuple[str, ...], entry: str | None, timeout: float) -> list:
    """Per test: its expected values as [(site id, plain values)], or None when it runs as written (not rewritten,
    or the expected program failed on it). Computed once per (tests, entry) in a sandbox without any solution."""

    def make():
        row_plans = plans(tests, entry)
        if not any(p.hack_proof for p in row_plans):
            return [None] * len(tests)
        recs = _run(None, [_spec(p, True, True) for p in row_plans], timeout) or []
        sites, ends, _passes, ok = _sites_by_test(recs, len(tests))
        out = []
        for i, p in enumerate(row_plans):
            good = ok and p.hack_proof and ends.get(i) == "ok" and all(["!"] not in v for _, v in sites[i])
            try:
                out.append([(sid, [_decode(x) for x in v]) for sid, v in sites[i]] if good else None)
            except ValueError:
                out.append(None)
        return out

    return _remember(_expected, (tests, entry, timeout), make)


def _passed(p: Rewrite, exp, sites: list, end: str | None, passes: int) -> bool:
    if exp is None:
        return passes == 1 and end is None and not sites
    if end != "ok" or passes or len(sites) != len(exp):
        return False
    for (sid, values), (exp_sid, exp_values) in zip(sites, exp):
        if sid != exp_sid or sid not in p.sites:
            return False
        try:
            cand = [_decode(v) for v in values]
        except ValueError:
            return False
        if not judge(p.sites[sid], cand, exp_values):
            return False
    return True


def _score(code: str, tests: tuple[str, ...], entry: str | None, mode: str, timeout: float) -> float:
    if not code.strip():
        return _skip("no code")
    if len(code) > MAX_CODE:
        return _skip("code too long")
    parts = solution_parts(code)
    if parts is None:
        return _skip("code does not parse")
    row_plans = plans(tests, entry)
    _warn(row_plans)
    expected = expected_values(tests, entry, timeout)
    specs = [_spec(p, e is not None, False) for p, e in zip(row_plans, expected)]
    recs = _run(parts, specs, timeout)
    if not recs:
        return 0.0 if recs is None else _skip("no records (the solution ended the process)")
    sites, ends, passes, ok = _sites_by_test(recs, len(tests))
    if not ok:
        return _skip("malformed or repeated records")
    if any(r[0] == "solution-error" for r in recs):
        return _skip("the solution exited (SystemExit)")
    passed = sum(_passed(p, e, sites[i], ends.get(i), passes.get(i, 0))
                 for i, (p, e) in enumerate(zip(row_plans, expected)))  # fmt: skip
    if mode == "all":
        return float(passed == len(tests))
    return passed / len(tests)


def _column(value, n: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) and len(value) == n else [value] * n


def code_tests(prompts, completions, tests=None, entry_point=None, mode="fraction", timeout=5.0, workers=None,
               **kwargs) -> list[float | None]:  # fmt: skip
    """Fraction of the row's ``tests`` the completion's Python code passes (``mode="all"``: 1.0 only if all pass),
    results compared outside the solution's reach (see the module docstring).

    ``tests`` is the dataset column (one entry per completion: a list of assert statements, or a string of test
    code, e.g. one self-checking script that defines and calls its checkers; HumanEval's ``def check(candidate)``
    needs ``entry_point``, a column or a bound argument); anything else
    (e.g. one list of asserts bound in the recipe) is used for every row. Rows without tests score None; anything that
    goes wrong in the sandbox scores 0.0. Completions run in parallel, one sandboxed process each (``workers``
    defaults to the CPU count)."""
    if mode not in ("fraction", "all"):
        raise ValueError(f"code_tests: mode must be 'fraction' or 'all', not {mode!r}")
    n = len(completions)
    per_row = isinstance(tests, (list, tuple)) and len(tests) == n
    specs = [_as_tests(t) for t in tests] if per_row else [_as_tests(tests)] * n
    entries = [e if isinstance(e, str) and e.strip() else None for e in _column(entry_point, n)]
    if n == 0:
        return []
    timeout = float(timeout)

    def expected(key) -> None:
        try:
            expected_values(key[0], key[1], timeout)
        except Exception:  # noqa: BLE001, S110 - the candidate runs will treat the tests as not rewritten
            pass

    def one(i: int) -> float | None:
        if specs[i] is None:
            return None
        try:
            text = completion_text(completions[i])
            if len(text) >= MAX_CHARS:  # cut by completion_text: not the program the model wrote
                return _skip(f"completion of {MAX_CHARS}+ characters")
            return _score(extract_code(text), specs[i], entries[i], mode, timeout)
        except Exception as e:  # noqa: BLE001 - a failing sandbox scores 0, it never stops training
            return _skip(f"error: {type(e).__name__}")

    keys = list(dict.fromkeys((s, e) for s, e in zip(specs, entries) if s is not None))
    with ThreadPoolExecutor(max_workers=max(1, min(n, workers or os.cpu_count() or 1))) as pool:
        list(pool.map(expected, keys))
        return list(pool.map(one, range(n)))
