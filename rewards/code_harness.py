"""The programs ``code_tests`` runs in the sandbox, and the comparison it makes outside.

Both programs are one harness (``HARNESS``) with different inputs: the **expected program** gets no solution and
evaluates the expected side of every rewritten test (``rewards.code_rewrite``); the **candidate program** runs the
solution first, then the solution's side of every rewritten test and, as written, the tests that could not be
rewritten. Each site's values are reduced to plain data (None, bool, int, float, complex, str, bytes and lists, tuples,
sets, frozensets, dicts of them; exact types only, so no subclass or object with its own ``__eq__`` gets out) and
written to stdout as ``<nonce>\\t<json>`` records. The reward process decodes them (``decode``: JSON, never pickle or
eval) and compares with strict, type-aware equality (``same``: ``True`` is not ``1``, a list is not a tuple).

Nothing the candidate program can do helps it: it never holds an expected value, so forging records (even with a
stolen nonce) or patching builtins can only report values it could have returned; a record seen twice, or none,
fails the test. Tests that could not be rewritten report a plain pass/fail from inside the solution's interpreter and
are not hack-proof.
"""

from __future__ import annotations

import json
import math
import random

HARNESS = r"""
def _align_main(solution, tests, entry):
    import builtins, json, os, random, sys
    write, exit_, exec_, compile_, type_, dumps = os.write, os._exit, exec, compile, type, json.dumps
    getstate, setstate, seed, import_, BaseEx = random.getstate, random.setstate, random.seed, __import__, BaseException
    int_repr, float_repr, bytes_hex, enumerate_, list_ = int.__repr__, float.__repr__, bytes.hex, enumerate, list
    PLAIN = ((type(None), "N"), (bool, "B"), (int, "I"), (float, "F"), (complex, "C"), (str, "S"), (bytes, "Y"),
             (list, "L"), (tuple, "T"), (set, "E"), (frozenset, "Z"), (dict, "D"))
    nonce = sys.stdin.readline().strip()

    def emit(record):
        write(1, ("\n" + nonce + "\t" + dumps(record) + "\n").encode())

    def enc(v, depth):
        t, tag = type_(v), None
        for k, name in PLAIN:
            if t is k:
                tag = name
        if tag is None or depth > 40:
            raise TypeError("not plain data")
        if tag == "N":
            return ["N"]
        if tag == "B":
            return ["B", 1 if v is True else 0]
        if tag == "I":
            return ["I", int_repr(v)]
        if tag == "F":
            return ["F", float_repr(v)]
        if tag == "C":
            return ["C", float_repr(v.real), float_repr(v.imag)]
        if tag == "S":
            return ["S", v]
        if tag == "Y":
            return ["Y", bytes_hex(v)]
        if tag == "D":
            return ["D", [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in list_(v.items())]]
        return [tag, [enc(x, depth + 1) for x in list_(v)]]

    cur = [0, 0]

    def site(sid, *thunks):
        state, values = getstate(), []
        for thunk in thunks:
            try:
                values.append(enc(thunk(), 0))
            except BaseEx:
                values.append(["!"])
        setstate(state)
        emit(["site", cur[0], cur[1], sid, values])
        cur[1] += 1

    g = {"__name__": "__main__", "__builtins__": builtins}
    if solution is not None:
        try:
            exec_(compile_(solution, "<solution>", "exec", 0, True, 0), g)
        except BaseEx as e:
            try:
                write(2, ("the solution raised " + type_(e).__name__ + "\n").encode())
            except BaseEx:
                pass
            emit(["solution-error"])
            exit_(0)
    for i, (mode, code, check, modules, names) in enumerate_(tests):
        cur[0], cur[1] = i, 0
        seed(1234 + i)
        try:
            if mode == "fallback":
                if solution is None:
                    continue
                exec_(compile_(code, "<test>", "exec", 0, True, 0), g)
                if check:
                    g[check](g[entry])
                emit(["pass", i])
                continue
            ns = {"__name__": "__test__", "__builtins__": builtins, "__align_site__": site}
            for m in modules:
                ns[m] = import_(m)
            if solution is not None:
                for name in names:
                    if name in g:
                        ns[name] = g[name]
            exec_(compile_(code, "<test>", "exec", 0, True, 0), ns)
            if check:
                ns[check](g.get(entry) if solution is not None else None)
            emit(["end", i, "ok"])
        except BaseEx:
            emit(["end", i, "error"])
    try:
        sys.stdout.flush()
    except BaseEx:
        pass
    emit(["done"])
    exit_(0)
"""


def program(solution: str | None, tests: list[tuple], entry: str | None) -> str:
    """The sandboxed program: the harness, then its call (the solution and tests as literals; the nonce on stdin)."""
    return f"{HARNESS}\n_align_main({solution!r}, {tests!r}, {entry!r})\n"


def records(stdout: str, nonce: str) -> list[list] | None:
    """The harness's records, in order; None when one is malformed (the output was tampered with)."""
    out = []
    head = nonce + "\t"
    for line in stdout.splitlines():
        if line.startswith(head):
            try:
                rec = json.loads(line[len(head) :])
            except ValueError:
                return None
            if not isinstance(rec, list) or not rec or not isinstance(rec[0], str):
                return None
            out.append(rec)
    return out


# ------------------------------------------------------------------------------------------------ plain data


class Undecodable(ValueError):
    pass


def decode(obj, depth: int = 0):
    """A plain value from the harness's tagged JSON (``["I", "3"]`` -> 3, ``["T", [...]]`` -> tuple …)."""
    if depth > 60 or not isinstance(obj, list) or not obj or not isinstance(obj[0], str):
        raise Undecodable("malformed value")
    tag, rest = obj[0], obj[1:]
    try:
        if tag == "N":
            return None
        if tag == "B":
            return bool(rest[0])
        if tag == "I":
            return int(rest[0])
        if tag == "F":
            return float(rest[0])
        if tag == "C":
            return complex(float(rest[0]), float(rest[1]))
        if tag == "S" and isinstance(rest[0], str):
            return rest[0]
        if tag == "Y":
            return bytes.fromhex(rest[0])
        if tag in "LTEZ" and isinstance(rest[0], list):
            items = [decode(x, depth + 1) for x in rest[0]]
            return {"L": list, "T": tuple, "E": set, "Z": frozenset}[tag](items)
        if tag == "D" and isinstance(rest[0], list):
            return {decode(k, depth + 1): decode(v, depth + 1) for k, v in rest[0]}
    except (TypeError, ValueError, IndexError, OverflowError) as e:
        raise Undecodable(str(e)) from None
    raise Undecodable(f"unknown tag {tag!r}")


_NUMBERS = (int, float, complex)


def same(a, b) -> bool:
    """Strict, type-aware equality of plain data: numbers compare by value across int/float/complex, but a bool only
    equals a bool; a list only a list, a tuple only a tuple (elementwise, recursively); sets and frozensets as sets."""
    ta, tb = type(a), type(b)
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if ta in _NUMBERS and tb in _NUMBERS:
        return a == b
    if {ta, tb} <= {set, frozenset}:
        return a == b
    if ta is not tb:
        return False
    if ta in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if ta is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def _number(v) -> bool:
    return type(v) in (int, float)


def _contains(item, container) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, dict):
        container = list(container)
    if isinstance(container, (list, tuple, set, frozenset)):
        return any(same(item, x) for x in container)
    raise TypeError("not a container")


def compare(op: str, a, b) -> bool:
    if op == "==":
        return same(a, b)
    if op == "!=":
        return not same(a, b)
    if op in ("is", "is not"):  # the expected side is None, True or False
        hit = type(a) is type(b) and type(a) in (type(None), bool) and a == b
        return hit if op == "is" else not hit
    if op in ("in", "not in"):
        hit = _contains(a, b)
        return hit if op == "in" else not hit
    if type(a) is bool or type(b) is bool:
        raise TypeError("ordering with a bool")
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def judge(site, cand: list, exp: list) -> bool:
    """Does one assert hold, given the plain values of its candidate and expected components?"""
    values = dict(zip(site.cand, cand)) | dict(zip(site.exp, exp))
    try:
        if site.kind == "truthy":
            ok = bool(values["value"])
        elif site.kind == "cmp":
            ok = compare(site.op, values["left"], values["right"])
        elif site.kind == "close":
            v, target, tol = values["value"], values["target"], values["tol"]
            if not (_number(v) and _number(target) and _number(tol)):
                return False
            ok = abs(v - target) < tol if site.op == "<" else abs(v - target) <= tol
        elif site.kind == "isclose":
            v, target = values["value"], values["target"]
            if not (_number(v) and _number(target)):
                return False
            kw = {k.removeprefix("kw:"): values[k] for k in site.exp if k.startswith("kw:")}
            if any(not _number(x) for x in kw.values()):
                return False
            ok = math.isclose(v, target, **kw)
        else:
            return False
    except (TypeError, ValueError, KeyError, OverflowError):
        return False
    return ok != site.negate


def fresh_nonce() -> str:
    return f"{random.SystemRandom().getrandbits(128):032x}"
