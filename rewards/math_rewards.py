"""Verifiable math: math-verify against the row's ``answer``, with Korean answer forms understood."""

from __future__ import annotations

import re
import threading

from rewards.common import column, completion_texts, final_answer
from rewards.korean import COUNTERS, korean_number, strip_endings

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (nested braces allowed)."""
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, min(len(text), i + 2000)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None


def extract_math_answer(text: str) -> str:
    """\\boxed{} first, then an <answer> tag or a '답:'/'정답:' line, else the last line."""
    boxed = last_boxed(text)
    return boxed if boxed is not None else final_answer(text)


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


def _verify(gold: str, pred: str, timeout: float) -> bool:
    from math_verify import parse, verify

    seconds = max(1, int(timeout))
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


def score_math(pred_text: str, gold: str, timeout: float = 5.0) -> float:
    pred = extract_math_answer(pred_text)
    gold_ans = extract_math_answer(gold)
    if not pred:
        return 0.0
    g, p = as_number(gold_ans), as_number(pred)
    if g is not None and p is not None:
        return float(abs(g - p) <= 1e-6 * max(1.0, abs(g)))
    if g is not None and p is None and not re.search(r"[\\^/{}=*]", pred):
        # a sentence such as "그래서 사과는 모두 7개입니다": compare its last number
        nums = _NUMBER.findall(pred)
        if nums:
            return float(abs(float(nums[-1].replace(",", "")) - g) <= 1e-6 * max(1.0, abs(g)))
        words = [as_number(w) for w in pred.split()]
        words = [w for w in words if w is not None]
        if words:
            return float(abs(words[-1] - g) <= 1e-6 * max(1.0, abs(g)))
    try:
        return float(_verify(gold_ans, pred, timeout))
    except Exception:  # noqa: BLE001 - an unparsable expression is a wrong answer, not a crash
        return 0.0


def _score_chunk(pairs: list[tuple[str, str]], timeout: float) -> list[float]:
    return [score_math(text, gold, timeout) for text, gold in pairs]


def math_accuracy(prompts, completions, answer=None, timeout: float = 5.0, workers: int = 1,
                  **kwargs) -> list[float | None]:  # fmt: skip
    """1.0 when the final answer equals the row's ``answer`` (math-verify; Korean numerals and counters such as
    '세 개', '3개', '삼' count as 3), else 0.0; None for rows without an answer. The answer is taken from the last
    \\boxed{}, an <answer> tag, a '답:'/'정답:' line, or the last line. ``workers > 1`` verifies in parallel
    processes."""
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
