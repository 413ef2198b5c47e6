"""Verifiable math: math-verify against the row's ``answer``, with Korean answer forms understood.

The final answer and the hedge rules are those of ``rewards.answer``: the last ``\\boxed{}``, ``<answer>`` or ``답:``
line (every marker must agree), else the last sentence of the last line. A plain answer must name one number
(``답: 6 또는 7``, ``7 (아니면 3)``, ``3~5`` score 0); an expression (``\\frac{1}{2}``, ``3+4`` in a box) goes to
math-verify unless it lists or bounds candidates the reference does not (``6, 7``, ``\\pm``, ``\\le``, ``또는``).
"""

from __future__ import annotations

import ast
import operator
import re
import threading
from fractions import Fraction

from rewards.answer import (
    clean_number_text,
    disjunction,
    expression_hedge,
    final,
    is_expression,
    number_hedge,
    number_of,
)
from rewards.common import column, completion_texts
from rewards.korean import COUNTERS, korean_number, strip_endings

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def extract_math_answer(text: str) -> str:
    """The final answer (``rewards.answer.final``): the last \\boxed{}, <answer> tag, '답:' line or answer sentence,
    else the last sentence that names a number."""
    return final(text, "number").text


def as_number(text: str) -> float | None:
    """A short answer that is only a number, in digits or Korean: '7', '7개', '일곱 개', '칠', '7입니다'."""
    s = text.strip().rstrip(".!").replace(" ", "")
    for _ in range(2):
        s = strip_endings(s)
        for counter in COUNTERS:
            if s.endswith(counter) and len(s) > len(counter):
                s = s[: -len(counter)]
                break
    if _NUMBER.fullmatch(s):
        return float(s.replace(",", ""))
    value = korean_number(s)
    return float(value) if value is not None else None


def _delimited(expr: str) -> str:
    """An expression as math-verify reads it whole: inside $…$ (bare, it reads only a leading number: '7^{2}' as 7)."""
    return expr if re.search(r"\$|\\[(\[]", expr) else f"${expr}$"


def _verify(gold: str, pred: str, timeout: float) -> bool:
    from math_verify import parse, verify

    seconds = max(1, int(timeout))
    pred = _delimited(pred)
    if threading.current_thread() is threading.main_thread():
        g = parse(f"\\boxed{{{gold}}}", parsing_timeout=seconds)
        p = parse(pred, parsing_timeout=seconds)
        return bool(g and p and verify(g, p, timeout_seconds=seconds))
    # math-verify's own timeout uses signal.alarm, which only works in the main thread:
    # run it in a daemon thread and give up after `timeout` (the step goes on; the thread is abandoned).
    result: list[bool] = []

    def work():
        g = parse(f"\\boxed{{{gold}}}", parsing_timeout=None)
        p = parse(pred, parsing_timeout=None)
        result.append(bool(g and p and verify(g, p, timeout_seconds=None)))

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def _expression(f) -> bool:
    """The final answer is an expression for math-verify: a marker holding LaTeX or arithmetic and no sentence (a
    '-' between numbers only in a box, since '3-5개' in prose is a range)."""
    if f.source == "sentence" or re.search(r"[가-힣]", re.sub(r"\\text\{[^{}]*\}", "", f.text)):
        return False
    return is_expression(f.text) or (f.source == "boxed" and bool(re.search(r"\d\s*-\s*\d", f.text)))


_ARITH_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_ARITH_TEXT = re.compile(r"[\d\s+\-*/×÷().]{1,100}")


def _arithmetic(expr: str) -> Fraction | None:
    """The exact value of plain arithmetic ('3+4', '\\frac{14}{2}', '2 × 6'), or None for anything else (math-verify's
    business); read with Python's parser, never evaluated as code."""
    text = clean_number_text(expr).strip().replace("×", "*").replace("÷", "/")
    if not _ARITH_TEXT.fullmatch(text) or not re.search(r"\d", text):
        return None

    def value(node):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return Fraction(str(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = value(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH_OPS:
            return _ARITH_OPS[type(node.op)](value(node.left), value(node.right))
        raise ValueError("not plain arithmetic")

    try:
        return value(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def score_math(pred_text: str, gold: str, timeout: float = 5.0) -> float:
    f = final(pred_text, "number")
    gold_ans = final(gold, "number").text or str(gold).strip()
    if not f.text:
        return 0.0
    g = as_number(gold_ans)
    if g is not None and not _expression(f):
        value, hedge = number_of(f)
        return float(hedge is None and value is not None and _close(value, g))
    # an expression: markers must agree, and it must not list or bound candidates the reference does not
    numbers = {as_number(m) for m in f.markers}
    if len({m.replace(" ", "") for m in f.markers}) > 1 and (None in numbers or len(numbers) > 1):
        return 0.0
    if disjunction(f.text, gold_ans) or expression_hedge(f.text, gold_ans) or number_hedge(f):
        return 0.0
    p = as_number(f.text)
    if p is None and g is not None:
        p = _arithmetic(f.text)
    if g is not None and p is not None:
        return float(_close(float(p), g))
    try:
        return float(_verify(gold_ans, f.text, timeout))
    except Exception:  # noqa: BLE001 - an unparsable expression is a wrong answer, not a crash
        return 0.0


def _score_chunk(pairs: list[tuple[str, str]], timeout: float) -> list[float]:
    return [score_math(text, gold, timeout) for text, gold in pairs]


def math_accuracy(prompts, completions, answer=None, timeout: float = 5.0, workers: int = 1,
                  **kwargs) -> list[float | None]:  # fmt: skip
    """1.0 when the one final answer equals the row's ``answer`` (math-verify; Korean numerals and counters such as
    '세 개', '3개', '삼' count as 3), else 0.0; None for rows without an answer. Final answer: the last \\boxed{}, an
    <answer> tag, a '답:'/'정답:' line (all must agree), or the last sentence; a hedge ('6 또는 7', '3~5', two boxes
    that differ) scores 0. ``workers > 1`` verifies in parallel processes."""
    answers = column({"answer": answer}, "answer", len(completions))
    out: list[float | None] = [None] * len(completions)
    todo = [(i, text, str(gold)) for i, (text, gold) in enumerate(zip(completion_texts(completions), answers))
            if gold is not None and str(gold).strip() != ""]  # fmt: skip
    if workers > 1 and len(todo) >= 2 * workers:
        # sympy-based verification is CPU-bound Python: spread it over processes (each runs it in its main
        # thread, so math-verify's own timeouts apply there)
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        chunks = [todo[k::workers] for k in range(workers)]
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            futures = [pool.submit(_score_chunk, [(t, g) for _, t, g in chunk], timeout) for chunk in chunks]
            for chunk, fut in zip(chunks, futures):
                for (i, _, _), score in zip(chunk, fut.result()):
                    out[i] = score
        return out
    for i, text, gold in todo:
        out[i] = score_math(text, gold, timeout)
    return out
