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

import ast
import collections
import functools
import json
import math
import random

HARNESS = r"""
def _align_main(solution, tests):
    import builtins, json, os, random, sys, types
    write, exit_, exec_, compile_, type_, dumps = os.write, os._exit, exec, compile, type, json.dumps
    getstate, setstate, seed, import_, BaseEx, Exc = random.getstate, random.setstate, random.seed, __import__, BaseException, Exception
    int_repr, float_repr, bytes_hex, enumerate_, list_, issub = int.__repr__, float.__repr__, bytes.hex, enumerate, list, issubclass
    str_str, c_real, c_imag, items = str.__str__, complex.real.__get__, complex.imag.__get__, dict.items
    MemoryError_, isinstance_ = MemoryError, isinstance
    ITER = {"L": list.__iter__, "T": tuple.__iter__, "E": set.__iter__, "Z": frozenset.__iter__}
    PLAIN = ((type(None), "N"), (bool, "B"), (int, "I"), (float, "F"), (complex, "C"), (str, "S"), (bytes, "Y"),
             (list, "L"), (tuple, "T"), (set, "E"), (frozenset, "Z"), (dict, "D"))
    import collections
    mro_of, dict_of = type.__dict__["__mro__"].__get__, type.__dict__["__dict__"].__get__
    STDLIB = (collections.Counter, collections.OrderedDict, collections.defaultdict, object)
    BASE_NAMES = {k: frozenset(dir(k)) for k, _ in PLAIN}
    HARMLESS = frozenset(("__new__", "__init__", "__repr__", "__getnewargs__", "__doc__", "__module__", "__qualname__",
                          "__slots__", "__match_args__", "__annotations__", "__orig_bases__", "__dict__", "__weakref__",
                          "__reduce__", "__reduce_ex__", "__copy__", "__deepcopy__", "__getstate__", "__setstate__",
                          "__init_subclass__", "__class_getitem__", "__firstlineno__", "__static_attributes__"))
    nonce = sys.stdin.readline().strip()

    def trusted(t, base):
        # Counter, OrderedDict, defaultdict, namedtuple and NamedTuple classes; a class of the solution that
        # overrides a method of its builtin base (__eq__, __len__, count, items ...) is a trick object
        for c in mro_of(t):
            if c is base or any(c is x for x in STDLIB):  # identity: a metaclass may lie in ==
                continue
            for key in dict_of(c):
                if type_(key) is not str or (key in BASE_NAMES[base] and key not in HARMLESS):
                    return False
        return True

    def emit(record):
        write(1, ("\n" + nonce + "\t" + dumps(record) + "\n").encode())

    def enc(v, depth):
        # exact plain types, and trusted subclasses (Counter, namedtuple ...) read through their base type's own
        # methods: what leaves is the data, never a subclass's __eq__, __iter__ or items
        t, tag = type_(v), None
        for k, name in PLAIN:
            if t is k:
                tag = name
                break
        if tag is None:
            for k, name in PLAIN[2:]:
                if issub(t, k):
                    tag = name if trusted(t, k) else None
                    break
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
            return ["C", float_repr(c_real(v)), float_repr(c_imag(v))]
        if tag == "S":
            return ["S", str_str(v)]
        if tag == "Y":
            return ["Y", bytes_hex(v)]
        if tag == "D":
            return ["D", [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in list_(items(v))]]
        return [tag, [enc(x, depth + 1) for x in list_(ITER[tag](v))]]

    cur = [0, 0]

    def site(sid, *thunks):
        state, values = getstate(), []
        for thunk in thunks:  # each part sees the same random state in both programs
            setstate(state)
            try:
                values.append(enc(thunk(), 0))
            except BaseEx:
                values.append(["!"])
        setstate(state)
        emit(["site", cur[0], cur[1], sid, values])
        cur[1] += 1

    # the solution is imported, not run as a script: its `if __name__ == "__main__":` block does not run; a top-level
    # statement that raises (a usage example reading input()) is skipped; SystemExit or MemoryError ends everything
    module = types.ModuleType("__solution__")
    sys.modules["__solution__"] = module
    g = module.__dict__
    g["__builtins__"] = builtins
    for part in solution or ():
        try:
            exec_(compile_(part, "<solution>", "exec", 0, True, 0), g)
        except BaseEx as e:
            fatal = not isinstance_(e, Exc) or isinstance_(e, MemoryError_)
            try:
                write(2, ("the solution raised " + type_(e).__name__ + (" (skipped)\n", "\n")[fatal]).encode())
            except BaseEx:
                pass
            if fatal:
                emit(["solution-error"])
                exit_(0)
    for i, (mode, code, modules, names) in enumerate_(tests):
        cur[0], cur[1] = i, 0
        seed(1234 + i)
        try:
            if mode == "fallback":
                if solution is None:
                    continue
                exec_(compile_(code, "<test>", "exec", 0, True, 0), g)
                emit(["pass", i])
                continue
            ns = {"__name__": "__test__", "__builtins__": builtins, "__align_site__": site}
            for m in modules:
                ns[m] = import_(m)
            for name in names:
                if solution is None:
                    ns[name] = None
                elif name in g:
                    ns[name] = g[name]
            exec_(compile_(code, "<test>", "exec", 0, True, 0), ns)
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


def program(solution: list[str] | None, tests: list[tuple]) -> str:
    """The sandboxed program: the harness, then its call (the solution's top-level statements and the tests as
    literals; the nonce on stdin)."""
    return f"{HARNESS}\n_align_main({solution!r}, {tests!r})\n"


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
    if tag == "!" and depth == 0:
        return RAISED
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
_DICTS = {collections.Counter: dict, collections.OrderedDict: dict}  # built by the glue (Counter(f(x)))


def same(a, b) -> bool:
    """Strict, type-aware equality of plain data: numbers compare by value across int/float/complex, but a bool only
    equals a bool; a list only a list, a tuple only a tuple (elementwise, recursively); sets and frozensets as sets."""
    ta, tb = _DICTS.get(type(a), type(a)), _DICTS.get(type(b), type(b))
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


def _contains(item, container) -> bool:
    if isinstance(container, (str, bytes)):
        return type(item) is type(container) and item in container
    if isinstance(container, range):
        return type(item) is int and item in container
    if isinstance(container, (dict, list, tuple, set, frozenset, type({}.keys()), type({}.values()), type({}.items()))):
        return any(same(item, x) for x in container)
    raise TypeError("not a container")


def compare(op: str, a, b) -> bool:
    if op == "==":
        return same(a, b)
    if op == "!=":
        return not same(a, b)
    if op in ("is", "is not"):  # None, True, False and types (type(x) is int)
        hit = a is b and (a is None or type(a) in (bool, type))
        return hit if op == "is" else not hit
    if op in ("in", "not in"):
        hit = _contains(a, b)
        return hit if op == "in" else not hit
    if type(a) is bool or type(b) is bool:
        raise TypeError("ordering with a bool")
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


# ------------------------------------------------------------------------------------------------ the glue evaluator
# An assert's template (``rewards.code_rewrite``) is evaluated here, in the reward process, on plain data: a small
# interpreter over a fixed set of node types, builtins, ``math`` and methods of plain values. The values come from the
# solution (at most ``MAX_OUTPUT`` bytes), the code from the test; operations that could blow a small value up
# (``"x" * n``, ``2 ** n``, ``range(n)``, ``str.center(n)``, ``math.factorial(n)``) are bounded, and so is the
# number of steps.

LIMIT = 10_000_000  # items or characters an amplifying operation may produce
STEPS = 1_000_000  # nodes one assert may evaluate


class Raised:
    """The value of a solution call that raised in the sandbox: using it fails the assert."""


RAISED = Raised()


def _bounded(n) -> int:
    if type(n) is int and n > LIMIT:
        raise OverflowError("too large for the harness")
    return n


def _range(*args):
    r = range(*args)
    _bounded(len(r))
    return r


def _power(a, b, *mod):
    if not mod and type(a) is int and type(b) is int and b > 0 and abs(a) > 1:
        _bounded(a.bit_length() * b // 8)
    return pow(a, b, *mod)


def _bytes(*args):
    if args and type(args[0]) is int:
        _bounded(args[0])
    return bytes(*args)


def _type(obj):
    return type(obj)


_type.__name__ = "type"
_FUNCS = {f.__name__: f for f in (abs, all, any, ascii, bin, bool, callable, chr, complex, dict, divmod, enumerate,
                                  filter, float, frozenset, hash, hex, int, isinstance, issubclass, iter, len, list,
                                  map, max, min, next, oct, ord, repr, reversed, round, set, slice, sorted, str, sum,
                                  tuple, zip, _type)}  # fmt: skip
_FUNCS.update(range=_range, pow=_power, bytes=_bytes)
GLUE = frozenset(_FUNCS) | {"math", "collections"}
_PLAIN_TYPES = (str, bytes, list, tuple, dict, set, frozenset, int, float, complex, bool, range, slice,
                type({}.keys()), type({}.values()), type({}.items()))  # fmt: skip
_DENY = {"format", "format_map"}


def _width(index: int):  # str.center(width) …: the width is bounded
    def check(args):
        if len(args) > index:
            _bounded(args[index])

    return check


_GUARDS = {"center": _width(0), "ljust": _width(0), "rjust": _width(0), "zfill": _width(0),
           "expandtabs": lambda a: a and _bounded(a[0] * 1_000_000), "factorial": lambda a: a and _bounded(a[0] * 500),
           "comb": lambda a: a and _bounded(a[0] * 500), "perm": lambda a: a and _bounded(a[0] * 500),
           "ldexp": lambda a: None}  # fmt: skip


class _Module:
    """A module as the template sees it: the attributes listed in ``GLUE_MODULES``."""

    def __init__(self, module, names):
        self.module, self.names = module, names


GLUE_MODULES = {"math": frozenset(n for n in dir(math) if not n.startswith("_")),
                "collections": frozenset(("Counter", "OrderedDict"))}  # fmt: skip
_MODULES = {name: _Module(__import__(name), names) for name, names in GLUE_MODULES.items()}


def _guarded(fn, name, base):
    guard = _GUARDS.get(name)
    if name == "replace" and isinstance(base, (str, bytes)):
        guard = lambda a: len(a) > 1 and _bounded(len(base) * max(1, len(a[1])))
    if guard is None:
        return fn

    def call(*args, **kwargs):
        guard(args)
        return fn(*args, **kwargs)

    return call


def _attribute(base, name: str):
    if name.startswith("_") or name in _DENY:
        raise AttributeError(name)
    if isinstance(base, _Module):
        if name not in base.names:
            raise AttributeError(name)
        return _guarded(getattr(base.module, name), name, None)
    if isinstance(base, _PLAIN_TYPES) or base in _PLAIN_TYPES:
        return _guarded(getattr(base, name), name, base)
    raise AttributeError(name)


class _Lambda:
    def __init__(self, ev, node: ast.Lambda, env: dict):
        self.ev, self.node, self.env = ev, node, env

    def __call__(self, *args):
        params = [a.arg for a in self.node.args.args]
        if len(args) != len(params):
            raise TypeError("wrong number of arguments")
        return self.ev.eval(self.node.body, {**self.env, **dict(zip(params, args))})


_BIN = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Div: lambda a, b: a / b,
        ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b, ast.BitAnd: lambda a, b: a & b,
        ast.BitOr: lambda a, b: a | b, ast.BitXor: lambda a, b: a ^ b, ast.RShift: lambda a, b: a >> b,
        ast.Pow: _power, ast.LShift: lambda a, b: _lshift(a, b),
        ast.Mult: lambda a, b: _mult(a, b)}  # fmt: skip
_UNARY = {ast.Not: lambda v: not v, ast.USub: lambda v: -v, ast.UAdd: lambda v: +v, ast.Invert: lambda v: ~v}
_CMP = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.In: "in",
        ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}  # fmt: skip


def _lshift(a, b):
    _bounded(b // 8)
    return a << b


def _mult(a, b):
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, (str, bytes, list, tuple)) and type(n) in (int, bool):
            _bounded(len(seq) * n)
    return a * b


GLUE_NODES = (ast.Compare, ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.Subscript, ast.Slice, ast.Attribute, ast.Tuple,
              ast.List, ast.Set, ast.Dict, ast.IfExp, ast.Starred)  # fmt: skip


class _Eval:
    def __init__(self):
        self.steps = 0

    def eval(self, node, env: dict):
        self.steps += 1
        if self.steps > STEPS:
            raise OverflowError("the assert takes too many steps")
        return getattr(self, "n_" + type(node).__name__)(node, env)

    def n_Expression(self, node, env):
        return self.eval(node.body, env)

    def n_Constant(self, node, env):
        return node.value

    def n_Name(self, node, env):
        if node.id in env:
            if env[node.id] is RAISED:
                raise RuntimeError("the solution raised")
            return env[node.id]
        if node.id in _MODULES:
            return _MODULES[node.id]
        return _FUNCS[node.id]

    def n_Attribute(self, node, env):
        return _attribute(self.eval(node.value, env), node.attr)

    def items(self, nodes, env) -> list:
        out = []
        for n in nodes:
            if isinstance(n, ast.Starred):
                out.extend(self.eval(n.value, env))
            else:
                out.append(self.eval(n, env))
        return out

    def n_Call(self, node, env):
        fn, kwargs = self.eval(node.func, env), {}
        for k in node.keywords:
            if k.arg is None:
                kwargs.update(self.eval(k.value, env))
            else:
                kwargs[k.arg] = self.eval(k.value, env)
        return fn(*self.items(node.args, env), **kwargs)

    def n_Compare(self, node, env):
        left = self.eval(node.left, env)
        for op, comp in zip(node.ops, node.comparators):
            right = self.eval(comp, env)
            if not compare(_CMP[type(op)], left, right):
                return False
            left = right
        return True

    def n_BoolOp(self, node, env):
        value = None
        for v in node.values:
            value = self.eval(v, env)
            if bool(value) != isinstance(node.op, ast.And):
                return value
        return value

    def n_UnaryOp(self, node, env):
        return _UNARY[type(node.op)](self.eval(node.operand, env))

    def n_BinOp(self, node, env):
        return _BIN[type(node.op)](self.eval(node.left, env), self.eval(node.right, env))

    def n_Subscript(self, node, env):
        return self.eval(node.value, env)[self.eval(node.slice, env)]

    def n_Slice(self, node, env):
        return slice(*(None if x is None else self.eval(x, env) for x in (node.lower, node.upper, node.step)))

    def n_Tuple(self, node, env):
        return tuple(self.items(node.elts, env))

    def n_List(self, node, env):
        return self.items(node.elts, env)

    def n_Set(self, node, env):
        return set(self.items(node.elts, env))

    def n_Dict(self, node, env):
        out = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                out.update(self.eval(v, env))
            else:
                out[self.eval(k, env)] = self.eval(v, env)
        return out

    def n_IfExp(self, node, env):
        return self.eval(node.body if self.eval(node.test, env) else node.orelse, env)

    def n_Lambda(self, node, env):
        return _Lambda(self, node, env)

    def bind(self, target, value, env: dict) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = list(value)
            if len(values) != len(target.elts):
                raise ValueError("cannot unpack")
            for t, v in zip(target.elts, values):
                self.bind(t, v, env)
        else:
            raise TypeError("unsupported target")

    def scopes(self, gens, env):
        if not gens:
            yield env
            return
        g = gens[0]
        for item in self.eval(g.iter, env):
            self.steps += 1
            inner = dict(env)
            self.bind(g.target, item, inner)
            if all(self.eval(c, inner) for c in g.ifs):
                yield from self.scopes(gens[1:], inner)

    def n_GeneratorExp(self, node, env):
        return (self.eval(node.elt, e) for e in self.scopes(node.generators, env))

    def n_ListComp(self, node, env):
        return list(self.n_GeneratorExp(node, env))

    def n_SetComp(self, node, env):
        return set(self.n_GeneratorExp(node, env))

    def n_DictComp(self, node, env):
        return {self.eval(node.key, e): self.eval(node.value, e) for e in self.scopes(node.generators, env)}


@functools.lru_cache(maxsize=4096)
def _template(source: str) -> ast.Expression:
    return ast.parse(source, mode="eval")


def judge(site, cand: list, exp: list) -> bool:
    """Does one assert hold? Its template evaluated on the plain values of its solution calls and expected parts."""
    env = {f"__c{i}": v for i, v in enumerate(cand)} | {f"__e{i}": v for i, v in enumerate(exp)}
    if len(cand) != site.cand or len(exp) != site.exp:
        return False
    try:
        return bool(_Eval().eval(_template(site.template), env))
    except Exception:  # noqa: BLE001 - an assert that raises fails
        return False


def fresh_nonce() -> str:
    return f"{random.SystemRandom().getrandbits(128):032x}"
