"""``code_tests`` on answers as chat models write them, in every test format it accepts (issue 26).

The labelled corpus ``rewards/corpus/code_tests.jsonl`` is scored in one batch through ``rewards.resolve`` (the way TRL
calls the reward): correct answers (a Korean sentence, fenced code, usage examples, ``__main__`` blocks, Counter and
namedtuple results, closing pleasantries) must be paid, wrong ones paid no more than their share of passing tests, and
cheats (always-equal objects, subclasses with patched methods, patched builtins, ``sys.exit``, forged output,
introspection) nothing. A sample of HumanEval runs in the four test formats, and the glue evaluator's bounds.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

import rewards
from rewards import code_harness, code_rewards
from rewards.code_harness import judge
from rewards.code_rewrite import Site, rewrite
from tests.conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "rewards" / "corpus" / "code_tests.jsonl"


@pytest.fixture(scope="module")
def corpus():
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    reward = rewards.resolve("code_tests")
    columns = {k: [r["row"].get(k) for r in rows] for k in sorted({k for r in rows for k in r["row"]})}
    scores = reward(None, [r["completion"] for r in rows], **columns)
    return rows, scores


def test_corpus_shape(corpus):
    rows, _ = corpus
    assert len(rows) >= 50
    for i, r in enumerate(rows):
        assert set(r) == {"completion", "row", "expected", "label", "reason"}, i
        assert r["label"] in ("correct", "hack", "wrong") and r["reason"].strip(), i
        assert "tests" in r["row"] and (r["expected"] is None or 0.0 <= r["expected"] <= 1.0), i
    labels = Counter(r["label"] for r in rows)
    assert 0.4 <= labels["correct"] / len(rows) <= 0.6 and labels["hack"] >= 10, labels
    natural = [r for r in rows if r["label"] == "correct" and "```" in r["completion"]]
    assert sum(any("\uac00" <= ch <= "\ud7a3" for ch in r["completion"]) for r in natural) >= 20  # Korean prose


def test_corpus_correct_answers_paid_and_hacks_not(corpus):
    rows, scores = corpus
    unpaid = [(r["reason"], s) for r, s in zip(rows, scores) if r["label"] == "correct" and s < r["expected"]]
    paid = [(r["reason"], s) for r, s in zip(rows, scores) if r["label"] != "correct" and s > r["expected"] + 1e-9]
    assert unpaid == [] and paid == []
    # wrong answers get exactly their share of passing tests (the labels' numbers are worked out by hand)
    off = [(r["reason"], s, r["expected"]) for r, s in zip(rows, scores) if s != pytest.approx(r["expected"])]
    assert off == []


def test_bad_input_scores_zero_with_a_reason():
    before = Counter(code_rewards.SKIPPED)
    junk = ["", None, b"\x00\xff\xfe binary", "\x00\x01" * 5000, "x" * 1_000_000, "```python\n```",
            "```python\ndef add(a, b) return\n```", [{"role": "assistant", "content": None}], 12345]  # fmt: skip
    out = code_rewards.code_tests(None, junk, tests=["assert add(1, 2) == 3"], timeout=5)
    assert out == [0.0] * len(junk)
    grown = Counter(code_rewards.SKIPPED)
    grown.subtract(before)
    assert grown["no code"] >= 4 and grown["code does not parse"] >= 2 and grown["completion of 20000+ characters"] == 1
    assert code_rewards.code_tests(None, ["def add(a, b):\n    return a + b\n"], tests=[None]) == [None]


def test_wrapper_calls_run_outside_the_solution():
    tests = "import math\nassert isinstance(f(1), float)\nassert all(v > 0 for v in g(3))\nassert not math.isnan(f(2))"
    plan = rewrite(tests)
    assert plan.hack_proof
    assert [s.template for s in plan.sites.values()] == [
        "isinstance(__c0, float)", "all((v > 0 for v in __c0))", "not math.isnan(__c0)"]  # fmt: skip
    for wrapper in ("isinstance", "all(", "math.isnan", "> 0"):  # the sandbox computes the solution calls only
        assert wrapper not in plan.candidate_code
    right = "def f(x):\n    return x / 2\ndef g(n):\n    return list(range(1, n + 1))\n"
    patched = ("import builtins, math\nbuiltins.isinstance = lambda *a: True\nbuiltins.all = lambda *a: True\n"
               "math.isnan = lambda x: False\ndef f(x):\n    return 'x'\ndef g(n):\n    return [-1]\n")  # fmt: skip
    assert code_rewards.code_tests(None, [right, patched], tests=[tests]) == [1.0, 0.0]
    # test imports of glue modules stand for the harness's own: order-insensitive checks with Counter, math aliases
    imports = "from collections import Counter\nimport math as m\nassert Counter(g(3)) == Counter([3, 2, 1])\n"
    assert [s.template for s in rewrite(imports + "assert m.isclose(f(1), 0.5)").sites.values()] == [
        "collections.Counter(__c0) == __e0", "math.isclose(__c0, 0.5)"]  # fmt: skip


def test_glue_evaluator_bounds(monkeypatch):
    def site(template, cand=1):
        return Site(template, cand, 0)

    start = time.monotonic()
    assert judge(site("'x' * __c0 == ''"), [10**12], []) is False
    assert judge(site("2 ** __c0 > 0"), [10**12], []) is False
    assert judge(site("len(list(range(__c0))) > 0"), [10**12], []) is False
    monkeypatch.setattr(code_harness, "STEPS", 1000)
    assert judge(site("sum((1 for _ in __c0)) > 0"), [list(range(900))], []) is False  # too many steps
    assert judge(site("sum((1 for _ in __c0)) > 0"), [list(range(90))], []) is True
    assert judge(site("__c0.center(__c1) == ''", 2), ["a", 10**12], []) is False
    assert judge(site("__c0.__class__ is int"), [1], []) is False  # no dunder attributes
    assert time.monotonic() - start < 10
    assert judge(site("sorted(__c0, key=lambda t: -t) == [3, 2, 1]"), [[1, 3, 2]], []) is True
    assert judge(site("__c0 == True"), [1], []) is False  # strict types, as before


def test_humaneval_sample_in_every_format():
    """A fixed sample (every 24th problem and the three whose tests run as written) in the four test formats, as
    chat answers; all 164 in every format and shape: scripts/humaneval_canonical.py."""
    he = load_script("humaneval_canonical")
    rows = he.load()
    sample = [r for i, r in enumerate(rows) if i % 24 == 0 or r["task_id"] in ("HumanEval/32", "HumanEval/38")]
    for fmt in he.FORMATS:
        assert he.run(sample, fmt, "chat", None, 10.0, None) == [1.0] * len(sample), fmt
        assert he.run(sample, fmt, "chat", "    return None\n", 10.0, None) == [0.0] * len(sample), fmt


def test_self_checking_script_forms():
    """One script per row that defines its checkers and calls them (or leaves pytest-style ones to us)."""
    scripts = {
        "check(add) at module level": "def check(fn):\n    assert fn(1, 2) == 3\n    assert fn(-1, 1) == 0\n\ncheck(add)\n",
        "runner calling checkers under __main__": (
            "def test_small():\n    assert add(1, 2) == 3\n\ndef test_negative():\n    assert add(-1, -1) == -2\n\n"
            "def run_all():\n    test_small()\n    test_negative()\n    print('all passed')\n\n"
            "if __name__ == '__main__':\n    run_all()\n"
        ),
        "uncalled pytest-style test": "def test_add():\n    assert add(2, 3) == 5\n",
        "failures caught and counted": (
            "failed = 0\ntry:\n    assert add(1, 1) == 2\nexcept AssertionError:\n    failed += 1\n"
            "print(f'{failed} failed')\n"
        ),
        "unittest.TestCase run by unittest.main()": (
            "import unittest\n\n\nclass TestAdd(unittest.TestCase):\n    def test_add(self):\n"
            "        self.assertEqual(add(1, 2), 3)\n        self.assertIsInstance(add(1, 1), int, msg='int')\n"
            "        self.assertAlmostEqual(add(0.1, 0.2), 0.3, places=6)\n\n\n"
            "if __name__ == '__main__':\n    unittest.main()\n"
        ),
    }  # fmt: skip
    tests = list(scripts.values())
    plans = [rewrite(t) for t in tests]
    assert [p.reason for p in plans] == [None] * len(plans)
    right, wrong = "def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a * b\n"
    assert code_rewards.code_tests(None, [right, wrong], tests=[tests, tests]) == [1.0, 0.0]
    for t in tests:  # each alone: the wrong answer fails every one of them
        assert code_rewards.code_tests(None, [wrong], tests=[[t]]) == [0.0], t
    # a TestCase with setUp stays a class: it runs as written (reported), unittest.main() made an assert, not an exit
    with_setup = tests[-1].replace(
        "    def test_add(self):", "    def setUp(self):\n        self.n = 1\n\n    def test_add(self):"
    )
    assert not rewrite(with_setup).hack_proof
    assert code_rewards.code_tests(None, [right, wrong], tests=[[with_setup]] * 2) == [1.0, 0.0]
