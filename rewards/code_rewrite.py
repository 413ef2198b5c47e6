"""Rewriting assert-style tests into call + expected form, so results are compared outside the solution's reach.

A test (one entry of a row's ``tests``: assert statements, or a HumanEval-style ``def check(candidate): …`` with the
row's ``entry_point``) becomes two programs that share its control flow:

* the **candidate program** runs after the solution, in the sandbox, and evaluates only the *solution's side* of each
  assert (``candidate(1.33)``, ``sorted(f(x))``); the values are reduced to plain data there and sent out. It holds no
  expected value: the other sides, the assert messages, and setup statements that only feed them are removed, so
  neither reading the program nor frame introspection finds what the answer should be;
* the **expected program** runs in a separate sandbox that never sees the solution and evaluates the other sides.

The reward process compares the two (``rewards.code_harness``). Solution names are the test's free names that are not
builtins or standard-library modules, plus ``check``'s parameter. Understood assert forms, at any depth of ``for``/
``while``/``if``/``with``/``try``: ``A <op> B`` with one comparison (``==``, ``!=``, ``<`` … ``in``, ``is None/True/
False``), ``abs(A - B) < tol``, ``math.isclose(A, B, …)``, ``A`` and ``not A`` with ``A`` a call of the solution.
A test is **not hack-proof** (it then runs as written, inside the solution's interpreter) when the solution is used
outside such an assert (``x = candidate(…)``; a prompt helper such as ``encode_cyclic(…)`` in the setup), a solution's
side holds a comparison or boolean operator, or the test does not parse.
"""

from __future__ import annotations

import ast
import builtins
import sys
from dataclasses import dataclass, field

SITE = "__align_site__"
STDLIB = frozenset(getattr(sys, "stdlib_module_names", ()))
_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.In: "in",
        ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}  # fmt: skip


class NotRewritable(Exception):
    pass


@dataclass
class Site:
    """One assert: how to compare the candidate's components with the expected ones."""

    kind: str  # "cmp", "truthy", "close", "isclose"
    op: str | None = None  # cmp: the operator; close: "<" or "<="
    cand: tuple[str, ...] = ()  # components the candidate program evaluates ("left", "right", "value")
    exp: tuple[str, ...] = ()  # components the expected program evaluates ("left", "right", "tol", "rel_tol" …)
    negate: bool = False


@dataclass
class Rewrite:
    source: str
    candidate_code: str | None = None
    expected_code: str | None = None
    check: str | None = None  # the check function to call with the solution's entry point
    sites: dict[int, Site] = field(default_factory=dict)
    modules: tuple[str, ...] = ()  # standard-library modules the test uses without importing them
    names: tuple[str, ...] = ()  # the solution's names the test uses (bound from the solution's globals)
    reason: str | None = None  # why the test is not hack-proof (None: rewritten)

    @property
    def hack_proof(self) -> bool:
        return self.reason is None


def _names(node) -> tuple[set[str], set[str]]:
    """(names loaded, names bound) anywhere under ``node``."""
    loads, binds = set(), set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            (loads if isinstance(n.ctx, ast.Load) else binds).add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            binds.add(n.name)
        elif isinstance(n, ast.arg):
            binds.add(n.arg)
        elif isinstance(n, ast.alias):
            binds.add((n.asname or n.name).split(".")[0])
        elif isinstance(n, ast.ExceptHandler) and n.name:
            binds.add(n.name)
    return loads, binds


def _tainted(node, solution: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in solution for n in ast.walk(node))


class _Rewriter:
    def __init__(self, solution: set[str]):
        self.solution = solution
        self.sites: dict[int, Site] = {}
        self.components: dict[int, dict[str, ast.expr]] = {}

    # -------------------------------------------------------------------------------- asserts

    def classify(self, e: ast.expr, negate: bool = False) -> tuple[Site, dict[str, ast.expr]]:
        t = lambda n: _tainted(n, self.solution)
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.Not):
            return self.classify(e.operand, not negate)
        if isinstance(e, ast.Compare) and len(e.ops) == 1:
            op, left, right = _OPS.get(type(e.ops[0])), e.left, e.comparators[0]
            close = self._close(left, right, op)
            if close is not None:
                return Site("close", op, ("value",), ("target", "tol"), negate), close
            if op in ("is", "is not"):
                const = right if isinstance(right, ast.Constant) else left if isinstance(left, ast.Constant) else None
                if const is None or const.value not in (None, True, False):
                    raise NotRewritable("'is' with something other than None/True/False")
            comps = {"left": left, "right": right}
            cand = tuple(k for k, v in comps.items() if t(v))
            exp = tuple(k for k, v in comps.items() if not t(v))
            self._check_solution_side(*(comps[k] for k in cand))
            return Site("cmp", op, cand, exp, negate), comps
        if isinstance(e, ast.Call) and self._is_isclose(e.func) and len(e.args) == 2:
            a, b = e.args
            if t(a) == t(b) or any(t(k.value) for k in e.keywords):
                raise NotRewritable("isclose() without exactly one side from the solution")
            value, target = (a, b) if t(a) else (b, a)
            self._check_solution_side(value)
            comps = {"value": value, "target": target} | {f"kw:{k.arg}": k.value for k in e.keywords}
            return Site("isclose", None, ("value",), tuple(c for c in comps if c != "value"), negate), comps
        if isinstance(e, (ast.Call, ast.Subscript, ast.Attribute, ast.Name)):
            self._check_solution_side(e)
            return Site("truthy", None, ("value",), (), negate), {"value": e}
        raise NotRewritable(f"assert form not understood: {ast.unparse(e)[:60]}")

    def _close(self, left, right, op):
        """``abs(A - B) < tol`` (or ``math.fabs``) with one of A, B from the solution."""
        if op not in ("<", "<=") or not isinstance(left, ast.Call) or len(left.args) != 1:
            return None
        f = left.func
        if not ((isinstance(f, ast.Name) and f.id == "abs") or (isinstance(f, ast.Attribute) and f.attr == "fabs")):
            return None
        inner = left.args[0]
        if not (isinstance(inner, ast.BinOp) and isinstance(inner.op, ast.Sub)):
            return None
        a, b = inner.left, inner.right
        t = lambda n: _tainted(n, self.solution)
        if t(a) == t(b) or t(right):
            return None
        value, target = (a, b) if t(a) else (b, a)
        self._check_solution_side(value)
        return {"value": value, "target": target, "tol": right}

    @staticmethod
    def _is_isclose(f) -> bool:
        return (isinstance(f, ast.Name) and f.id == "isclose") or (isinstance(f, ast.Attribute) and f.attr == "isclose")

    @staticmethod
    def _check_solution_side(*nodes) -> None:
        for node in nodes:
            for n in ast.walk(node):
                if isinstance(n, (ast.Compare, ast.BoolOp, ast.Lambda, ast.NamedExpr)):
                    raise NotRewritable(f"the solution's side holds {type(n).__name__}: {ast.unparse(node)[:60]}")

    def site_call(self, sid: int, comps: dict[str, ast.expr], which: tuple[str, ...]) -> ast.stmt:
        thunks = [ast.Lambda(ast.arguments([], [], None, [], [], None, []), comps[k]) for k in which]
        call = ast.Call(ast.Name(SITE, ast.Load()), [ast.Constant(sid), *thunks], [])
        return ast.Expr(call)

    # -------------------------------------------------------------------------------- statements

    def body(self, stmts: list[ast.stmt]) -> tuple[list[ast.stmt], list[ast.stmt]]:
        cand, exp = [], []
        for s in stmts:
            c, e = self.stmt(s)
            cand += c
            exp += e
        return cand or [ast.Pass()], exp or [ast.Pass()]

    def stmt(self, s: ast.stmt) -> tuple[list[ast.stmt], list[ast.stmt]]:
        t = lambda n: _tainted(n, self.solution)
        if isinstance(s, ast.Assert):
            if not t(s.test):
                return [], [s]
            site, comps = self.classify(s.test)
            sid = len(self.sites)
            self.sites[sid] = site
            return [self.site_call(sid, comps, site.cand)], [self.site_call(sid, comps, site.exp)]
        if isinstance(s, (ast.For, ast.While, ast.If)):
            head = s.iter if isinstance(s, ast.For) else s.test
            if t(head) or (isinstance(s, ast.For) and t(s.target)):
                raise NotRewritable(f"the solution is used in control flow: {ast.unparse(head)[:60]}")
            cb, eb = self.body(s.body)
            co, eo = self.body(s.orelse) if s.orelse else ([], [])
            return [self._copy(s, body=cb, orelse=co)], [self._copy(s, body=eb, orelse=eo)]
        if isinstance(s, ast.With):
            if any(t(i) for i in s.items):
                raise NotRewritable(f"the solution is used in a with statement: {ast.unparse(s)[:60]}")
            cb, eb = self.body(s.body)
            return [self._copy(s, body=cb)], [self._copy(s, body=eb)]
        if isinstance(s, ast.Try):
            cb, eb = self.body(s.body)
            handlers_c, handlers_e = [], []
            for h in s.handlers:
                if h.type is not None and t(h.type):
                    raise NotRewritable("the solution is used in an except clause")
                hc, he = self.body(h.body)
                handlers_c.append(self._copy(h, body=hc))
                handlers_e.append(self._copy(h, body=he))
            co, eo = self.body(s.orelse) if s.orelse else ([], [])
            cf, ef = self.body(s.finalbody) if s.finalbody else ([], [])
            return ([self._copy(s, body=cb, handlers=handlers_c, orelse=co, finalbody=cf)],
                    [self._copy(s, body=eb, handlers=handlers_e, orelse=eo, finalbody=ef)])  # fmt: skip
        if t(s):
            raise NotRewritable(f"the solution is used outside an assert: {ast.unparse(s).splitlines()[0][:60]}")
        return [s], [s]

    @staticmethod
    def _copy(node, **fields):
        new = type(node)(**{**{f: getattr(node, f) for f in node._fields}, **fields})
        return ast.copy_location(new, node)


_COMPOUND = (ast.For, ast.While, ast.If, ast.With, ast.Try)


def _scope(body: list[ast.stmt], out: list[ast.stmt]) -> list[ast.stmt]:
    """Statements of the module and of ``check`` (through control flow), not inside other functions or classes."""
    for s in body:
        out.append(s)
        if _is_check(s) or isinstance(s, _COMPOUND):
            for name in ("body", "orelse", "finalbody"):
                _scope(getattr(s, name, None) or [], out)
            for h in getattr(s, "handlers", []):
                _scope(h.body, out)
    return out


def _is_check(s) -> bool:
    return isinstance(s, ast.FunctionDef) and s.name == "check"


def _is_simple(s) -> bool:
    """A statement the candidate program may do without: it only binds or touches names."""
    if isinstance(s, ast.Expr):
        return not _is_site(s)
    simple = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
              ast.Delete)  # fmt: skip
    return isinstance(s, simple) and not _is_check(s)


def _header_loads(s) -> set[str]:
    if isinstance(s, ast.For):
        return _names(s.iter)[0]
    if isinstance(s, (ast.While, ast.If)):
        return _names(s.test)[0]
    if isinstance(s, ast.With):
        return set().union(*(_names(i)[0] for i in s.items))
    if isinstance(s, ast.Try):
        return set().union(set(), *(_names(h.type)[0] for h in s.handlers if h.type is not None))
    if _is_check(s):
        return set()
    return _names(s)[0]


def _slice(stmts: list[ast.stmt]) -> list[ast.stmt]:
    """Drop simple statements (assignments, defs, imports, expression statements) that nothing in the candidate program
    needs: setup that only feeds expected values (``odd_sum = …``, a reference implementation) must not be there."""
    items = _scope(stmts, [])
    needed = {"check"}.union(*(_header_loads(s) for s in items if not _is_simple(s)))
    keep: set[int] = set()
    changed = True
    while changed:
        changed = False
        for s in items:
            if not _is_simple(s) or id(s) in keep:
                continue
            loads, binds = _names(s)
            if isinstance(s, ast.Expr):
                binds = loads  # a call may change what it touches
            if binds & needed:
                keep.add(id(s))
                needed |= loads
                changed = True

    def prune(body: list[ast.stmt], required: bool) -> list[ast.stmt]:
        out = []
        for s in body:
            if _is_simple(s) and id(s) not in keep:
                continue
            if _is_check(s) or isinstance(s, _COMPOUND):
                for name in ("body", "orelse", "finalbody"):
                    if getattr(s, name, None):
                        setattr(s, name, prune(getattr(s, name), name == "body"))
                for h in getattr(s, "handlers", []):
                    h.body = prune(h.body, True)
            out.append(s)
        return out or ([ast.Pass()] if required else [])

    return prune(stmts, False)


def _is_site(n: ast.stmt) -> bool:
    return isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Name) and n.value.func.id == SITE


def rewrite(source: str, entry_point: str | None = None) -> Rewrite:
    """Plan for one test (see the module docstring); ``reason`` says why it is not hack-proof."""
    plan = Rewrite(source)
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        plan.reason = f"does not parse: {e.msg}"
        return plan
    body = list(tree.body)
    check = next((s for s in body if isinstance(s, ast.FunctionDef) and s.name == "check" and s.args.args), None)
    if check is not None:  # HumanEval shape; a module-level `check(entry)` call is ours to make
        calls = [s for s in body if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
                 and isinstance(s.value.func, ast.Name) and s.value.func.id == "check"]  # fmt: skip
        for s in calls:
            body.remove(s)
            arg = s.value.args[0] if s.value.args else None
            entry_point = entry_point or (arg.id if isinstance(arg, ast.Name) else None)
        plan.check = "check"
        if entry_point is None:
            plan.reason = "a check(candidate) test needs the row's entry_point"
            return plan
    loads, binds = _names(ast.Module(body, []))
    free = loads - binds - set(dir(builtins))
    plan.modules = tuple(sorted(n for n in free if n in STDLIB))
    solution = (free - set(plan.modules)) | ({check.args.args[0].arg} if check else set())
    plan.names = tuple(sorted(free - set(plan.modules)))
    rw = _Rewriter(solution)
    try:
        cand, exp = [], []
        for s in body:
            if s is check:
                cb, eb = rw.body(check.body)
                cand.append(rw._copy(check, body=cb, decorator_list=[]))
                exp.append(rw._copy(check, body=eb, decorator_list=[]))
            else:
                c, e = rw.stmt(s)
                cand += c
                exp += e
    except NotRewritable as e:
        plan.reason = str(e)
        return plan
    plan.candidate_code = ast.unparse(ast.fix_missing_locations(ast.Module(_slice(cand), [])))
    plan.expected_code = ast.unparse(ast.fix_missing_locations(ast.Module(exp, [])))
    plan.sites = rw.sites
    return plan
