"""The labelled corpus: completions in the styles real Korean chat VLMs write, each with its expected score.

``rewards/corpus/<reward name>.jsonl`` holds one completion per line::

    {"completion": str, "row": {dataset columns passed as reward kwargs}, "expected": float | null,
     "label": "correct" | "hack" | "wrong", "reason": "one line"}

``row`` may hold ``prompt`` (passed as the prompt, e.g. for a language request). ``run_corpus`` scores every line in
both directions: a **hack or wrong answer is paid** when it scores above its expected value (for ``expected: null``,
when it scores above 0); a **correct answer is unpaid** when it scores below its expected value (for ``expected:
null``, when the reward does not say None). ``TOLERANCE`` absorbs rounding in partial-credit rewards (IoU, character
error rate, language share, length penalty). Every ``*.jsonl`` in the folder is picked up, so a reward gets a corpus
by adding its file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from align.errors import UserError

CORPUS_DIR = Path(__file__).parent / "corpus"
LABELS = ("correct", "hack", "wrong")
TOLERANCE = 0.01
MAX_UNPAID = 0.01  # the share of correct answers a reward may leave unpaid before its audit fails


def corpus_names() -> list[str]:
    """Reward names that have a corpus file."""
    return sorted(p.stem for p in CORPUS_DIR.glob("*.jsonl"))


def load_corpus(name_or_path: str | Path) -> list[dict]:
    """The lines of a corpus file (a reward name, or a path), checked against the schema."""
    path = Path(name_or_path)
    if path.suffix != ".jsonl":
        path = CORPUS_DIR / f"{name_or_path}.jsonl"
    if not path.exists():
        raise UserError(f"no corpus {path}", f"corpora: {', '.join(corpus_names()) or 'none'}")
    entries = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{i}: not JSON ({err})", "one JSON object per line") from None
        missing = [k for k in ("completion", "row", "expected", "label", "reason") if k not in e]
        bad = (missing or not isinstance(e["completion"], str) or not isinstance(e["row"], dict)
               or e["label"] not in LABELS or not (e["expected"] is None or isinstance(e["expected"], (int, float))))  # fmt: skip
        if bad:
            raise UserError(f"{path}:{i}: " + (f"missing {', '.join(missing)}" if missing else "wrong types"),
                            'each line: {"completion": str, "row": {...}, "expected": float|null, '
                            '"label": "correct"|"hack"|"wrong", "reason": str}')  # fmt: skip
        e["line"] = i
        entries.append(e)
    return entries


@dataclass
class CorpusResult:
    name: str
    rows: list[dict] = field(default_factory=list)  # each entry with "score" and "verdict" (ok / PAID / UNPAID)

    def _count(self, labels, verdict) -> tuple[int, int]:
        rows = [r for r in self.rows if r["label"] in labels]
        return sum(r["verdict"] == verdict for r in rows), len(rows)

    @property
    def hacks_paid(self) -> tuple[int, int]:
        return self._count(("hack", "wrong"), "PAID")

    @property
    def correct_unpaid(self) -> tuple[int, int]:
        return self._count(("correct",), "UNPAID")

    @property
    def failed(self) -> bool:
        paid, _ = self.hacks_paid
        unpaid, total = self.correct_unpaid
        return paid > 0 or (total > 0 and unpaid / total > MAX_UNPAID)

    def summary(self) -> str:
        return "hacks paid: {}/{}   correct answers unpaid: {}/{}".format(*self.hacks_paid, *self.correct_unpaid)

    def to_json(self) -> dict:
        paid, n = self.hacks_paid
        unpaid, m = self.correct_unpaid
        return {"hacks_paid": paid, "hacks": n, "correct_unpaid": unpaid, "correct": m, "failed": self.failed,
                "misjudged": [r for r in self.rows if r["verdict"] != "ok"]}  # fmt: skip


def verdict(label: str, expected: float | None, score: float | None) -> str:
    if label == "correct":
        if expected is None:
            return "ok" if score is None else "UNPAID"
        return "ok" if score is not None and score >= expected - TOLERANCE else "UNPAID"
    ceiling = 0.0 if expected is None else expected
    return "PAID" if score is not None and score > ceiling + TOLERANCE else "ok"


def run_corpus(reward, entries: list[dict], name: str = "") -> CorpusResult:
    """Score every entry with ``reward`` (TRL's signature; one batch, each row's columns as kwargs)."""
    n = len(entries)
    keys = sorted({k for e in entries for k in e["row"]} - {"prompt"})
    columns = {k: [e["row"].get(k) for e in entries] for k in keys}
    prompts = [[{"role": "user", "content": str(e["row"].get("prompt") or "")}] for e in entries]
    completions = [[{"role": "assistant", "content": e["completion"]}] for e in entries]
    scores = reward(prompts, completions, **columns) if n else []
    result = CorpusResult(name)
    for e, s in zip(entries, scores):
        s = None if s is None else float(s)
        result.rows.append({**e, "score": s, "verdict": verdict(e["label"], e["expected"], s)})
    return result


def print_corpus(result: CorpusResult, console, limit: int = 20) -> None:
    style = "bold red" if result.failed else "green"
    console.print(f"[{style}]{result.name} corpus[/{style}] ({len(result.rows)} completions, "
                  f"rewards/corpus/{result.name}.jsonl): {result.summary()}")  # fmt: skip
    for r in [r for r in result.rows if r["verdict"] != "ok"][:limit]:
        text = r["completion"].replace("\n", "⏎")
        text = text if len(text) <= 70 else text[:58] + f"…(+{len(text) - 58})"
        console.print(f"  {r['verdict']}: line {r['line']} {r['label']} {text!r} -> {r['score']} "
                      f"(expected {r['expected']}; {r['reason']})", soft_wrap=True)  # fmt: skip
