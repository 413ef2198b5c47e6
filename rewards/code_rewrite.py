"""Rewriting assert-style tests so that every value an assert inspects is computed by the solution as plain data and
everything else about the assert is decided outside the solution's reach.

A test (one entry of a row's ``tests``: assert statements; a HumanEval-style ``def check(candidate): …`` with the
row's ``entry_point``; or a complete self-checking script that defines checker functions and calls them, also under
``if __name__ == "__main__":``) becomes two programs that share its control flow, plus one template per assert:

* each assert's expression is split into **solution calls** (``candidate(x)``, ``f(a, b)``, ``Solution().solve(s)``,
  ``f(x).field``: a chain of calls and attributes rooted at a name the solution defines), **expected parts** (maximal
  sub-expressions that do not involve the solution: ``[1, 2]``, ``x + 1``, a reference result) and the **glue**
  around them (comparisons, ``and``/``or``/``not``, arithmetic, subscripts, ``isinstance``, ``all``, ``any``, ``len``,
  ``sorted``, ``set``, ``abs``, ``round``, ``math.*``, methods of plain values, comprehensions and lambdas);
* the **candidate program** runs after the solution, in the sandbox, and evaluates only the solution calls; their
  values are reduced to plain data there and sent out. It holds no expected value: the expected parts, the assert
  messages, and setup statements that only feed them are removed, so neither reading the program nor frame
  introspection finds what the answer should be;
* the **expected program** runs in a separate sandbox that never sees the solution and evaluates the expected parts;
* the **template** (the glue, with ``__c<i>``/``__e<i>`` standing for the two kinds of parts) is evaluated by the
  reward process itself on the plain values (``rewards.code_harness.judge``), so a solution cannot patch the
  comparison, ``isinstance``, ``all`` or ``math.isnan`` that decides its assert.

Solution names are the test's free names that are not builtins or standard-library modules, plus the parameters of a
checker that receive one. A test is **not hack-proof** (it then runs as written, inside the solution's interpreter)
when the solution is used outside an assert (``x = candidate(…)``; a prompt helper such as ``encode_cyclic(…)`` in the
setup; control flow over a solution value), when a solution value goes through a function of the test
(``assert is_valid(f(x))``), when a solution call inside a comprehension depends on the comprehension's variable, or
when the test does not parse.
"""

from __future__ import annotations

import ast
import builtins
import sys
from dataclasses import dataclass, field

from rewards.code_harness import GLUE, GLUE_MODULES, GLUE_NODES

SITE = "__align_site__"
STDLIB = frozenset(getattr(sys, "stdlib_module_names", ()))


class NotRewritable(Exception):
    pass


@dataclass
class Site:
    """One assert: the glue template the reward process evaluates, and how many values each program sends for it."""

    template: str  # an expression over __c<i> (solution calls) and __e<i> (expected parts)
    cand: int = 0
    exp: int = 0


@dataclass
class Rewrite:
    source: str
    fallback_code: str = ""  # the test as it runs inside the solution's interpreter when it is not rewritten
    candidate_code: str | None = None
    expected_code: str | None = None
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


def _uses(node, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def _constructor(f) -> bool:
    """``Solution`` / ``mod.Solution``: a class by naming convention, whose instance's methods are solution code."""
    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
    return name[:1].isupper()


_COMPS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


class _Split:
    """Splits one assert's expression into solution calls, expected parts and the glue template (module docstring)."""

    def __init__(self, solution: set[str], glue: frozenset[str], aliases: dict[str, str]):
        self.solution, self.glue, self.aliases = solution, glue, aliases
        self.cand: list[ast.expr] = []
        self.exp: list[ast.expr] = []
        self.local: set[str] = set()  # names the template binds itself (comprehension targets, lambda parameters)
        self.per_item: list[ast.expr] | None = None  # solution calls made once per item of the comprehension at hand
        self.item_targets: set[str] = set()
        self.items = 0

    def tainted(self, node) -> bool:
        return _uses(node, self.solution | self.local)

    def leaf(self, node) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.solution
        if isinstance(node, ast.Attribute):
            return self.leaf(node.value)
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Call) and not _constructor(f.value.func):
                return False  # a method of a returned value (f(x).count('a')): the glue calls it on plain data
            return self.leaf(f)
        return False

    def pure_glue(self, node) -> bool:
        """A builtin the reward process provides itself (``int``, ``math.isnan``, ``(int, float)``, ``str.lower``,
        ``Counter``)."""
        if isinstance(node, ast.Name):
            return node.id in self.glue or "." in self.aliases.get(node.id, "")
        if isinstance(node, ast.Attribute):
            base = node.value
            return (isinstance(base, ast.Name) and (base.id in self.glue or base.id in self.aliases)
                    and not node.attr.startswith("_"))  # fmt: skip
        if isinstance(node, ast.Tuple):
            return bool(node.elts) and all(self.pure_glue(e) for e in node.elts)
        return False

    def glue_node(self, node):
        """``isclose`` from ``from math import isclose`` -> ``math.isclose``; with ``import math as m``: ``m.pi`` ->
        ``math.pi``."""
        if isinstance(node, ast.Name) and "." in self.aliases.get(node.id, ""):
            module, attr = self.aliases[node.id].split(".")
            return ast.Attribute(ast.Name(module, ast.Load()), attr, ast.Load())
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in self.aliases:
            return ast.Attribute(ast.Name(self.aliases[node.value.id], ast.Load()), node.attr, ast.Load())
        if isinstance(node, ast.Tuple):
            return ast.Tuple([self.glue_node(e) for e in node.elts], ast.Load())
        return node

    def slot(self, parts: list, prefix: str, node: ast.expr) -> ast.Name:
        parts.append(node)
        return ast.Name(f"{prefix}{len(parts) - 1}", ast.Load())

    def split(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.Lambda):
            return self.lambda_(node)
        if not self.tainted(node):
            if isinstance(node, ast.Constant) or self.pure_glue(node):
                return self.glue_node(node)
            return self.slot(self.exp, "__e", node)
        if self.leaf(node):
            if self.per_item is not None and _uses(node, self.item_targets):
                if _uses(node, self.local - self.item_targets):
                    raise NotRewritable(
                        f"a solution call depends on a lambda or outer variable: {ast.unparse(node)[:60]}"
                    )
                self.per_item.append(node)
                self.items += 1
                return ast.Name(f"__k{self.items - 1}", ast.Load())
            if _uses(node, self.local):
                raise NotRewritable(f"a solution call depends on a comprehension variable: {ast.unparse(node)[:60]}")
            if any(isinstance(n, (ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)) for n in ast.walk(node)):
                raise NotRewritable(f"a solution call binds a name: {ast.unparse(node)[:60]}")
            return self.slot(self.cand, "__c", node)
        if isinstance(node, ast.Name):  # a comprehension variable or lambda parameter
            return node
        if isinstance(node, _COMPS):
            return self.comprehension(node)
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and self.tainted(f.value):
                func = ast.Attribute(self.split(f.value), f.attr, ast.Load())
            elif self.pure_glue(f):
                func = self.glue_node(f)
            else:
                raise NotRewritable(f"a solution value goes through {ast.unparse(f)[:40]}(), a function of the test")
            args = [self.split(x) for x in node.args]
            return ast.Call(func, args, [ast.keyword(k.arg, self.split(k.value)) for k in node.keywords])
        if not isinstance(node, GLUE_NODES):
            raise NotRewritable(f"{type(node).__name__} around a solution value: {ast.unparse(node)[:60]}")
        fields = {}
        for name in node._fields:
            value = getattr(node, name)
            if isinstance(value, ast.expr):
                value = self.split(value)
            elif isinstance(value, list):
                value = [self.split(v) if isinstance(v, ast.expr) else v for v in value]
            fields[name] = value
        return type(node)(**fields)

    def lambda_(self, node: ast.Lambda) -> ast.Lambda:
        a = node.args
        if a.posonlyargs or a.vararg or a.kwonlyargs or a.kwarg or a.defaults:
            raise NotRewritable("a lambda with more than plain parameters in an assert on the solution")
        saved, self.local = self.local, self.local | {x.arg for x in a.args}
        body = self.split(node.body)
        self.local = saved
        return ast.Lambda(a, body)

    def comprehension(self, node):
        if not any(self.tainted(g.iter) or any(self.tainted(c) for c in g.ifs) for g in node.generators):
            return self.per_item_comprehension(node)
        saved, gens = self.local, []
        for g in node.generators:
            if g.is_async:
                raise NotRewritable("an async comprehension")
            if self.tainted(g.iter):
                it = self.split(g.iter)
            else:  # materialised in the expected program (a range, a generator, a test list)
                x = ast.Name("__x", ast.Store())
                it = self.slot(self.exp, "__e", ast.ListComp(ast.Name("__x", ast.Load()),
                                                             [ast.comprehension(x, g.iter, [], 0)]))  # fmt: skip
            self.local = self.local | _names(g.target)[1]
            gens.append(ast.comprehension(g.target, it, [self.split(c) for c in g.ifs], 0))
        if isinstance(node, ast.DictComp):
            out = ast.DictComp(self.split(node.key), self.split(node.value), gens)
        else:
            out = type(node)(self.split(node.elt), gens)
        self.local = saved
        return out

    def per_item_comprehension(self, node):
        """``all(f(x) == x + 1 for x in range(5))``: the expected program lists the items (``[(x,) for x in …]``), the
        candidate program the solution calls made for each (``[(f(x),) for x in …]``); the template zips them."""
        gens = node.generators
        targets = set().union(*(_names(g.target)[1] for g in gens))
        load = lambda t: ast.parse(ast.unparse(t), mode="eval").body
        items = ast.Tuple([load(g.target) for g in gens], ast.Load())
        listed = self.slot(self.exp, "__e", ast.ListComp(items, gens))
        saved = self.local, self.per_item, self.item_targets
        self.local, self.per_item, self.item_targets = self.local | targets, [], targets
        if isinstance(node, ast.DictComp):
            parts = (self.split(node.key), self.split(node.value))
        else:
            parts = (self.split(node.elt),)
        calls = self.per_item
        first = self.items - len(calls)
        self.local, self.per_item, self.item_targets = saved
        target = ast.Tuple([g.target for g in gens], ast.Store())
        if calls:
            made = self.slot(self.cand, "__c", ast.ListComp(ast.Tuple(calls, ast.Load()), gens))
            names = ast.Tuple([ast.Name(f"__k{first + i}", ast.Store()) for i in range(len(calls))], ast.Store())
            # strict: a solution that shortens its list (a patched range) cannot empty an all() or a not any()
            it = ast.Call(ast.Name("zip", ast.Load()), [listed, made], [ast.keyword("strict", ast.Constant(True))])
            gen = [ast.comprehension(ast.Tuple([target, names], ast.Store()), it, [], 0)]
        else:
            gen = [ast.comprehension(target, listed, [], 0)]
        return ast.DictComp(*parts, gen) if isinstance(node, ast.DictComp) else type(node)(parts[0], gen)


class _Rewriter:
    def __init__(self, solution: set[str], glue: frozenset[str], aliases: dict[str, str], checkers: set[str]):
        self.solution, self.glue, self.aliases, self.checkers = solution, glue, aliases, checkers
        self.sites: dict[int, Site] = {}

    def site_call(self, sid: int, parts: list[ast.expr]) -> ast.stmt:
        thunks = [ast.Lambda(ast.arguments([], [], None, [], [], None, []), p) for p in parts]
        return ast.Expr(ast.Call(ast.Name(SITE, ast.Load()), [ast.Constant(sid), *thunks], []))

    def body(self, stmts: list[ast.stmt]) -> tuple[list[ast.stmt], list[ast.stmt]]:
        cand, exp = [], []
        for s in stmts:
            c, e = self.stmt(s)
            cand += c
            exp += e
        return cand or [ast.Pass()], exp or [ast.Pass()]

    def stmt(self, s: ast.stmt) -> tuple[list[ast.stmt], list[ast.stmt]]:
        t = lambda n: _uses(n, self.solution)
        if isinstance(s, ast.Assert):
            if not t(s.test):
                return [], [s]
            sp = _Split(self.solution, self.glue, self.aliases)
            template = ast.unparse(ast.fix_missing_locations(sp.split(s.test)))
            sid = len(self.sites)
            self.sites[sid] = Site(template, len(sp.cand), len(sp.exp))
            return [self.site_call(sid, sp.cand)], [self.site_call(sid, sp.exp)]
        if _checker_call(s, self.checkers):  # check(candidate): the solution is passed on, not used
            return [s], [s]
        if isinstance(s, (ast.For, ast.While, ast.If)):
            head = s.iter if isinstance(s, ast.For) else s.test
            if t(head) or (isinstance(s, ast.For) and t(s.target)):
                raise NotRewritable(f"the solution is used in control flow: {ast.unparse(head)[:60]}")
            cb, eb = self.body(s.body)
            co, eo = self.body(s.orelse) if s.orelse else ([], [])
            return [_copy(s, body=cb, orelse=co)], [_copy(s, body=eb, orelse=eo)]
        if isinstance(s, ast.With):
            if any(t(i) for i in s.items):
                raise NotRewritable(f"the solution is used in a with statement: {ast.unparse(s)[:60]}")
            cb, eb = self.body(s.body)
            return [_copy(s, body=cb)], [_copy(s, body=eb)]
        if isinstance(s, ast.Try):
            cb, eb = self.body(s.body)
            handlers_c, handlers_e = [], []
            for h in s.handlers:
                if h.type is not None and t(h.type):
                    raise NotRewritable("the solution is used in an except clause")
                hc, he = self.body(h.body)
                handlers_c.append(_copy(h, body=hc))
                handlers_e.append(_copy(h, body=he))
            co, eo = self.body(s.orelse) if s.orelse else ([], [])
            cf, ef = self.body(s.finalbody) if s.finalbody else ([], [])
            return ([_copy(s, body=cb, handlers=handlers_c, orelse=co, finalbody=cf)],
                    [_copy(s, body=eb, handlers=handlers_e, orelse=eo, finalbody=ef)])  # fmt: skip
        if isinstance(s, ast.FunctionDef) and s.name in self.checkers:
            cb, eb = self.body(s.body)
            return [_copy(s, body=cb, decorator_list=[])], [_copy(s, body=eb, decorator_list=[])]
        if t(s):
            raise NotRewritable(f"the solution is used outside an assert: {ast.unparse(s).splitlines()[0][:60]}")
        return [s], [s]


def _copy(node, **fields):
    new = type(node)(**{**{f: getattr(node, f) for f in node._fields}, **fields})
    return ast.copy_location(new, node)


def _checker_call(s, checkers: set[str]) -> bool:
    """``check(candidate)`` / ``test_add()`` as a statement: a checker called with plain names."""
    if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)):
        return False
    c = s.value
    return (isinstance(c.func, ast.Name) and c.func.id in checkers and not c.keywords
            and all(isinstance(a, ast.Name) for a in c.args))  # fmt: skip


def _is_main_guard(test) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = {type(test.left), type(test.comparators[0])}
    names = [n.id for n in (test.left, test.comparators[0]) if isinstance(n, ast.Name)]
    consts = [n.value for n in (test.left, test.comparators[0]) if isinstance(n, ast.Constant)]
    return sides == {ast.Name, ast.Constant} and names == ["__name__"] and consts == ["__main__"]


def _unwrap_main(body: list[ast.stmt]) -> list[ast.stmt]:
    """A script's ``if __name__ == "__main__":`` block runs: the test is the script."""
    out = []
    for s in body:
        out += _unwrap_main(s.body) if isinstance(s, ast.If) and _is_main_guard(s.test) else [s]
    return out


def _cmp(op):
    return lambda a, b, *_: ast.Compare(a, [op()], [b])


def _call(name: str, *args) -> ast.Call:
    return ast.Call(ast.Name(name, ast.Load()), list(args), [])


def _almost(a, b, places=None, *_):
    places = places if places is not None else ast.Constant(7)
    return ast.Compare(_call("round", ast.BinOp(a, ast.Sub(), b), places), [ast.Eq()], [ast.Constant(0)])


# unittest's assertion methods as the assert each one makes (messages dropped)
_UNITTEST = {
    "assertEqual": _cmp(ast.Eq), "assertEquals": _cmp(ast.Eq), "assertNotEqual": _cmp(ast.NotEq),
    "assertListEqual": _cmp(ast.Eq), "assertTupleEqual": _cmp(ast.Eq), "assertDictEqual": _cmp(ast.Eq),
    "assertSetEqual": _cmp(ast.Eq), "assertIs": _cmp(ast.Is), "assertIsNot": _cmp(ast.IsNot), "assertIn": _cmp(ast.In),
    "assertNotIn": _cmp(ast.NotIn), "assertGreater": _cmp(ast.Gt), "assertGreaterEqual": _cmp(ast.GtE),
    "assertLess": _cmp(ast.Lt), "assertLessEqual": _cmp(ast.LtE),
    "assertTrue": lambda a, *_: a, "assertFalse": lambda a, *_: ast.UnaryOp(ast.Not(), a),
    "assertIsNone": lambda a, *_: ast.Compare(a, [ast.Is()], [ast.Constant(None)]),
    "assertIsNotNone": lambda a, *_: ast.Compare(a, [ast.IsNot()], [ast.Constant(None)]),
    "assertIsInstance": lambda a, b, *_: _call("isinstance", a, b),
    "assertNotIsInstance": lambda a, b, *_: ast.UnaryOp(ast.Not(), _call("isinstance", a, b)),
    "assertAlmostEqual": _almost,
    "assertSequenceEqual": lambda a, b, *_: ast.Compare(_call("list", a), [ast.Eq()], [_call("list", b)]),
}  # fmt: skip


def _unittest_checkers(body: list[ast.stmt]) -> list[ast.stmt]:
    """``class T(unittest.TestCase)`` whose ``test_*`` methods only use ``self.assert…(…)``: each method becomes a
    checker function of asserts (``T__test_x()``). A class with more (``setUp``, ``self`` used otherwise,
    ``assertRaises``) stays and runs as written; ``unittest.main()`` (which would exit) becomes an assert that the
    remaining classes' tests succeed, or goes when none remains."""
    out, kept, mains = [], [], []
    for s in body:
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) and ast.unparse(s.value.func) == "unittest.main":
            mains.append(len(out))
            continue
        if not (isinstance(s, ast.ClassDef) and any(ast.unparse(b).endswith("TestCase") for b in s.bases)):
            out.append(s)
            continue
        funcs = _test_methods(s)
        out += funcs if funcs is not None else [s]
        kept += [] if funcs is not None else [s.name]
    if kept:
        run = ast.parse(f"import unittest as _align_ut\nassert _align_ut.TextTestRunner(verbosity=0).run(_align_ut.TestSuite("
                        f"[_align_ut.defaultTestLoader.loadTestsFromTestCase(c) for c in ({', '.join(kept)},)]))"
                        ".wasSuccessful()").body  # fmt: skip
        out[mains[0] if mains else len(out) : mains[0] if mains else len(out)] = run
    return out


def _test_methods(cls: ast.ClassDef) -> list[ast.FunctionDef] | None:
    funcs = []
    for m in cls.body:
        if isinstance(m, ast.Expr) and isinstance(m.value, ast.Constant):
            continue  # a docstring
        if not (isinstance(m, ast.FunctionDef) and m.name.startswith("test") and len(m.args.args) == 1):
            return None
        me, new_body = m.args.args[0].arg, []
        for st in m.body:
            c = st.value if isinstance(st, ast.Expr) and isinstance(st.value, ast.Call) else None
            f = c.func if c is not None else None
            if (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == me
                    and f.attr in _UNITTEST and all(k.arg in ("msg", "places") for k in c.keywords)):  # fmt: skip
                places = [k.value for k in c.keywords if k.arg == "places"]
                st = ast.Assert(_UNITTEST[f.attr](*(c.args if not places else [*c.args[:2], places[0]])), None)
            new_body.append(st)
        fn = ast.FunctionDef(f"{cls.name}__{m.name}", ast.arguments([], [], None, [], [], None, []), new_body, [])
        if _uses(fn, {me}):
            return None
        funcs.append(ast.copy_location(fn, m))
    return funcs


_COMPOUND = (ast.For, ast.While, ast.If, ast.With, ast.Try)


def _scope(body: list[ast.stmt], out: list[ast.stmt], checkers: set[str]) -> list[ast.stmt]:
    """Statements of the module and of the checkers (through control flow), not inside other functions or classes."""
    for s in body:
        out.append(s)
        if _is_checker(s, checkers) or isinstance(s, _COMPOUND):
            for name in ("body", "orelse", "finalbody"):
                _scope(getattr(s, name, None) or [], out, checkers)
            for h in getattr(s, "handlers", []):
                _scope(h.body, out, checkers)
    return out


def _is_checker(s, checkers: set[str]) -> bool:
    return isinstance(s, ast.FunctionDef) and s.name in checkers


def _is_simple(s, checkers: set[str]) -> bool:
    """A statement the candidate program may do without: it only binds or touches names."""
    if isinstance(s, ast.Expr):
        return not _is_site(s)
    simple = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
              ast.Delete)  # fmt: skip
    return isinstance(s, simple) and not _is_checker(s, checkers)


def _header_loads(s, checkers: set[str]) -> set[str]:
    if isinstance(s, ast.For):
        return _names(s.iter)[0]
    if isinstance(s, (ast.While, ast.If)):
        return _names(s.test)[0]
    if isinstance(s, ast.With):
        return set().union(*(_names(i)[0] for i in s.items))
    if isinstance(s, ast.Try):
        return set().union(set(), *(_names(h.type)[0] for h in s.handlers if h.type is not None))
    if _is_checker(s, checkers):
        return set()
    return _names(s)[0]


def _slice(stmts: list[ast.stmt], checkers: set[str]) -> list[ast.stmt]:
    """Drop simple statements (assignments, defs, imports, expression statements) that nothing in the candidate program
    needs: setup that only feeds expected values (``odd_sum = …``, a reference implementation) must not be there."""
    items = _scope(stmts, [], checkers)
    needed = set(checkers).union(*(_header_loads(s, checkers) for s in items if not _is_simple(s, checkers)))
    keep: set[int] = set()
    changed = True
    while changed:
        changed = False
        for s in items:
            if not _is_simple(s, checkers) or id(s) in keep:
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
            if _is_simple(s, checkers) and id(s) not in keep:
                continue
            if _is_checker(s, checkers) or isinstance(s, _COMPOUND):
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


def _glue_names(tree: ast.Module) -> tuple[frozenset[str], dict[str, str]]:
    """The harness's builtins the test does not rebind (``import math`` keeps ``math``), and what the test's imports of
    glue modules stand for (``from math import isclose``: ``isclose`` -> ``math.isclose``; ``import math as m``:
    ``m`` -> ``math``)."""
    binds = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    binds |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    binds |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    aliases: dict[str, str] = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            for a in n.names:
                bound = a.asname or a.name.split(".")[0]
                if a.name in GLUE_MODULES and a.asname:
                    aliases[bound] = a.name
                elif a.name not in GLUE_MODULES:
                    binds.add(bound)
        elif isinstance(n, ast.ImportFrom):
            for a in n.names:
                binds.add(a.asname or a.name)
                if n.module in GLUE_MODULES and not n.level and a.name in GLUE_MODULES[n.module]:
                    aliases[a.asname or a.name] = f"{n.module}.{a.name}"
    return GLUE - binds, aliases


def _checkers(body: list[ast.stmt]) -> tuple[set[str], list[ast.Call]]:
    """Module-level functions the test calls that hold asserts (or call such functions), plus HumanEval's ``check``;
    and every call to them."""
    defs = {s.name: s for s in body if isinstance(s, ast.FunctionDef)}
    calls = {n: [c.func.id for c in ast.walk(d) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)]
             for n, d in defs.items()}  # fmt: skip
    asserting = {n for n, d in defs.items() if any(isinstance(x, ast.Assert) for x in ast.walk(d))}
    while grown := {n for n, called in calls.items() if n not in asserting and asserting.intersection(called)}:
        asserting |= grown
    top = [x for s in body if not isinstance(s, ast.FunctionDef) for x in ast.walk(s)]
    checkers = {c.func.id for c in top if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                and c.func.id in asserting}  # fmt: skip
    checkers |= {n for n in asserting if n not in set().union(*calls.values())}  # never called: check, test_*
    while grown := {n for n in asserting - checkers if any(n in calls[c] for c in checkers)}:
        checkers |= grown
    everywhere = [c for s in body for c in ast.walk(s) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)]
    return checkers, [c for c in everywhere if c.func.id in checkers]


def rewrite(source: str, entry_point: str | None = None) -> Rewrite:
    """Plan for one test (see the module docstring); ``reason`` says why it is not hack-proof."""
    plan = Rewrite(source, fallback_code=source)
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        plan.reason = f"does not parse: {e.msg}"
        return plan
    body = _unittest_checkers(_unwrap_main(list(tree.body)))
    checkers, calls = _checkers(body)
    defs = {s.name: s for s in body if isinstance(s, ast.FunctionDef)}
    for name in sorted(checkers - {c.func.id for c in calls}):  # HumanEval's check, pytest's test_*: ours to call
        params = [a for a in defs[name].args.args]
        required = len(params) - len(defs[name].args.defaults)
        if required == 0:
            call = ast.Call(ast.Name(name, ast.Load()), [], [])
        elif required == 1 and entry_point:
            call = ast.Call(ast.Name(name, ast.Load()), [ast.Name(entry_point, ast.Load())], [])
        else:
            plan.reason = f"a {name}(candidate) test needs the row's entry_point"
            plan.fallback_code = f"raise LookupError({plan.reason!r})"
            return plan
        body.append(ast.Expr(call))
        calls.append(call)
    module = ast.fix_missing_locations(ast.Module(body, []))
    plan.fallback_code = ast.unparse(module)
    loads, binds = _names(module)
    free = loads - binds - set(dir(builtins))
    plan.modules = tuple(sorted(n for n in free if n in STDLIB))
    solution = free - set(plan.modules)
    plan.names = tuple(sorted(solution))
    for c in calls:  # a checker's parameter that receives a solution name stands for the solution
        params = defs[c.func.id].args.args
        solution |= {p.arg for p, a in zip(params, c.args) if isinstance(a, ast.Name) and a.id in plan.names}
    rw = _Rewriter(solution, *_glue_names(tree), checkers)
    try:
        cand, exp = rw.body(body)
    except NotRewritable as e:
        plan.reason = str(e)
        return plan
    plan.candidate_code = ast.unparse(ast.fix_missing_locations(ast.Module(_slice(cand, checkers), [])))
    plan.expected_code = ast.unparse(ast.fix_missing_locations(ast.Module(exp, [])))
    plan.sites = rw.sites
    return plan
