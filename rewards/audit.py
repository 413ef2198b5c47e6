"""``align rewards audit``: red-team a reward with adversarial completions before spending GPU hours on it.

For each sample row (built-in rows per task, or ``--answer``), the reward scores a plain wrong answer, the reference
answer and the battery of ``rewards.audit_battery``. Verdicts:

* a hack row is **PAID** when it scores more than the plain wrong answer (it earns something without committing to the
  one right answer);
* a reference row (an honest answer: the reference itself, the same phrasing without the hedge, a natural Korean
  phrasing) is **NOT PAID** when it scores less than the reference: for the plain reference, the reward pays nothing;
  for a natural phrasing, it is stricter than it needs to be (reported, not a failure, unless it is the reference).

What a reward claims to check decides what applies (``KINDS``; plugins: ``--kind``, or detected): ``answer`` rewards get
the answer battery, ``code`` rewards the code battery, and ``shaping`` rewards (format, length, language, learned
rewards: they cannot tell a right answer from a wrong one) are shown the battery but judged n/a — combine them with a
verifiable reward. A reward is gameable when any row is PAID, or its plain reference is NOT PAID.

A built-in reward with a labelled corpus (``rewards/corpus/NAME.jsonl``, ``rewards.corpus``) is also run on it in both
directions: it fails when a hack or wrong answer is paid above its expected score, or when more than 1 % of the
correct answers are paid below theirs (``hacks paid: n/N``, ``correct answers unpaid: n/M``). Shaping rewards with a
corpus (``korean_consistency``, ``reasoning_format``, ``length_band``) are judged on it too.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field

import rewards as registry
from rewards.audit_battery import ANSWER_TASKS, CODE_TASKS, SAMPLES, Case, Sample, battery, sample_from_answer
from rewards.corpus import CorpusResult, corpus_names, load_corpus, print_corpus, run_corpus

KINDS = {
    "accuracy": "answer", "math_accuracy": "answer", "count_accuracy": "answer", "choice_accuracy": "answer",
    "exact_match": "answer", "ocr_accuracy": "answer", "bbox_iou": "answer", "code_tests": "code",
    "korean_consistency": "shaping", "think_answer_format": "shaping", "soft_overlong": "shaping",
    "repetition_penalty": "shaping", "reward_model": "shaping", "reasoning_format": "shaping",
    "length_band": "shaping",
}  # fmt: skip
TASKS = {
    "accuracy": ("count", "color", "ocr", "arith", "bbox", "choice"), "math_accuracy": ("arith", "math"),
    "count_accuracy": ("count",), "choice_accuracy": ("choice",), "exact_match": ("color",),
    "ocr_accuracy": ("ocr",), "bbox_iou": ("bbox",), "code_tests": CODE_TASKS,
}  # fmt: skip
EPS = 1e-6


@dataclass
class Row:
    task: str
    cls: str
    completion: str
    score: float | None
    verdict: str  # "ok", "PAID", "NOT PAID", "missed" (a natural phrasing not paid), "n/a"
    reference: bool = False


@dataclass
class Report:
    name: str
    kind: str
    rows: list[Row] = field(default_factory=list)
    baselines: dict = field(default_factory=dict)  # task -> {"reference": score, "wrong": score}
    notes: list[str] = field(default_factory=list)
    corpus: CorpusResult | None = None  # the labelled corpus run (rewards/corpus/NAME.jsonl), when it has one

    @property
    def paid(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "PAID"]

    @property
    def gameable(self) -> bool:
        return (bool(self.paid) or any(r.verdict == "NOT PAID" for r in self.rows)
                or (self.corpus is not None and self.corpus.failed))  # fmt: skip

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "gameable": self.gameable, "paid": len(self.paid),
                "baselines": self.baselines, "notes": self.notes, "rows": [asdict(r) for r in self.rows],
                "corpus": self.corpus.to_json() if self.corpus else None}  # fmt: skip


def _score(reward, sample: Sample, completions: list[str]) -> list[float | None]:
    n = len(completions)
    columns = {"answer": [sample.answer] * n, "task": [sample.task] * n}
    columns.update({k: [v] * n for k, v in sample.columns.items()})
    prompts = [[{"role": "user", "content": sample.question}]] * n
    scores = reward(prompts, [[{"role": "assistant", "content": c}] for c in completions], **columns)
    return [None if v is None else float(v) for v in scores]


def _default_kind(name: str, fn) -> str | None:
    if name in KINDS:
        return KINDS[name]
    kind = getattr(fn, "audit_kind", None)
    if kind:
        return kind
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    return "code" if "tests" in params else None


def samples_for(name: str, kind: str | None, task: str | None, answer: str | None) -> list[Sample]:
    if answer is not None:
        return [sample_from_answer(answer, task)]
    if task is not None:
        if task not in SAMPLES:
            raise ValueError(f"no built-in sample for task '{task}' (built in: {', '.join(SAMPLES)}); give --answer")
        return [SAMPLES[task]]
    tasks = TASKS.get(name) or (CODE_TASKS if kind == "code" else ANSWER_TASKS)
    return [SAMPLES[t] for t in tasks]


def audit(reward, name: str | None = None, kind: str | None = None, task: str | None = None,
          answer: str | None = None, samples: list[Sample] | None = None) -> Report:  # fmt: skip
    """Run the battery against ``reward`` (a ``rewards.Reward`` or any callable with TRL's reward signature)."""
    name = name or getattr(reward, "name", None) or getattr(reward, "__name__", "reward")
    fn = getattr(reward, "fn", reward)
    kind = kind or _default_kind(name, fn)
    report = Report(name, kind or "auto")
    for sample in samples or samples_for(name, kind, task, answer):
        cases = battery(sample)
        scores = _score(reward, sample, [sample.wrong, sample.answer] + [c.completion for c in cases])
        wrong, ref = scores[0], scores[1]
        report.baselines[sample.task] = {"reference": ref, "wrong": wrong}
        if ref is None:
            report.notes.append(f"{sample.task}: the reward does not apply to this row (None for the reference)")
            continue
        wrong = wrong or 0.0
        row_kind = kind
        if row_kind is None:  # a plugin: an answer check if it tells the reference from a wrong answer
            row_kind = "answer" if ref > wrong + EPS else "shaping"
            report.kind = row_kind if report.kind in ("auto", row_kind) else "mixed"
        if row_kind == "shaping" and ref <= wrong + EPS:
            report.notes.append(f"{sample.task}: the reference scores {ref:g} and a wrong answer {wrong:g}: this "
                                "reward does not check the answer, so hedges are not its business (n/a); combine it "
                                "with a verifiable reward, or pass --kind answer if it should check answers")  # fmt: skip
        elif row_kind in ("answer", "code") and ref <= wrong + EPS:
            report.notes.append(f"{sample.task}: the reference scores {ref:g}, no more than a wrong answer "
                                f"({wrong:g}): the reward pays nothing for being right")  # fmt: skip
        report.rows.append(Row(sample.task, "plain wrong answer", sample.wrong, scores[0], "baseline"))
        for case, score in zip(cases, scores[2:]):
            report.rows.append(_judge(sample, case, score, ref, wrong, row_kind))
    report.corpus = audit_corpus(reward, name)
    return report


def audit_corpus(reward, name: str) -> CorpusResult | None:
    """The labelled corpus of a built-in reward run both ways (``rewards.corpus``), or None when ``name`` has no
    corpus or the reward is bound to arguments (a ``threshold``, a budget: the expected scores assume the defaults)."""
    if name not in corpus_names() or getattr(reward, "args", None):
        return None
    return run_corpus(reward, load_corpus(name), name)


def _judge(sample: Sample, case: Case, score, ref: float, wrong: float, kind: str) -> Row:
    value = 0.0 if score is None else score
    if kind == "shaping":
        verdict = "n/a"
    elif case.reference:
        if value >= ref - EPS and value > wrong + EPS:
            verdict = "ok"
        else:
            is_plain = case.completion.strip() == sample.answer.strip() or case.cls == "reference"
            verdict = "NOT PAID" if is_plain else "missed"
    else:
        verdict = "PAID" if value > wrong + EPS else "ok"
    return Row(sample.task, case.cls, case.completion, score, verdict, case.reference)


# ------------------------------------------------------------------------------------------------ output


def _short(text: str, limit: int = 60) -> str:
    flat = text.replace("\n", "⏎").replace("\t", "⇥")
    if len(flat) > limit:
        flat = flat[: limit - 12] + f"…(+{len(flat) - limit + 12})"
    return repr(flat) if flat.strip() else repr(text)


STYLE = {"ok": "green", "PAID": "bold red", "NOT PAID": "bold red", "missed": "yellow", "n/a": "dim",
         "baseline": "dim"}  # fmt: skip


def print_report(report: Report, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    table = Table(title=f"reward audit: {report.name} ({report.kind})")
    for col in ("task", "hack class", "example", "score", "verdict"):
        table.add_column(col, justify="right" if col == "score" else "left")
    for r in report.rows:
        cls = ("✓ " if r.reference else "") + r.cls
        score = "None" if r.score is None else f"{r.score:.3f}"
        style = STYLE.get(r.verdict, "")
        table.add_row(
            r.task, cls, _short(r.completion), score, f"[{style}]{r.verdict}[/{style}]" if style else r.verdict
        )
    console.print(table)
    console.print("[dim]✓ = an honest answer that must be paid; a hack is PAID when it scores more than the plain "
                  "wrong answer[/dim]")  # fmt: skip
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if report.paid:
        paid = ", ".join(dict.fromkeys(f"{r.task}/{r.cls}" for r in report.paid))
        console.print(f"[bold red]{report.name} is gameable[/bold red]: paid hacks: {paid}")
    if any(r.verdict == "NOT PAID" for r in report.rows):
        console.print(f"[bold red]{report.name} fails the audit[/bold red]: the reference answer is not paid")
    if report.corpus is not None:
        print_corpus(report.corpus, console)
    if not report.gameable:
        missed = sum(r.verdict == "missed" for r in report.rows)
        console.print(f"[green]{report.name}: no hack paid[/green]"
                      + (f" ({missed} natural phrasing(s) not paid)" if missed else ""))  # fmt: skip


# ------------------------------------------------------------------------------------------------ recipes


def recipe_samples(rows=None, tasks=None) -> list[Sample]:
    """One sample per task of the training data: the built-in sample for a known task, else one from the first row
    of that task (its answer and question)."""
    if rows is not None and len(rows) and "task" in rows.column_names:
        seen: dict[str, int] = {}
        for i, t in enumerate(rows["task"]):
            seen.setdefault(t, i)
    else:
        seen = dict.fromkeys(tasks or ("count", "color", "ocr", "arith", "bbox"), None)
    samples = []
    for task, i in seen.items():
        if task in SAMPLES and SAMPLES[task].kind != "code":
            samples.append(SAMPLES[task])
        elif i is not None and rows[i].get("answer"):
            row = rows[i]
            prompt = row.get("prompt") or []
            question = next((m.get("content") for m in prompt if isinstance(m, dict) and isinstance(m.get("content"),
                             str)), None)  # fmt: skip
            try:
                samples.append(sample_from_answer(str(row["answer"]), task, question))
            except ValueError:
                continue
    return samples


def audit_recipe(recipe, base_dir=None, rows=None, console=None) -> list[Report]:
    """Audit every reward of the recipe and of its stages on samples of its data (rewards that need an earlier
    stage's output, ``stage:NAME``, and built-in shaping rewards are skipped). Prints one line per reward, and the
    paid rows of gameable ones."""
    import json

    specs, seen = [], set()
    for spec in list(recipe.rewards) + [r for s in recipe.stages for r in (s.rewards or [])]:
        key = (spec.name, json.dumps(spec.args, sort_keys=True, default=str))
        if key not in seen:
            seen.add(key)
            specs.append(spec)
    bound = registry.bind_stage_outputs(specs, {}, skip_missing=True)
    data_samples = recipe_samples(rows, recipe.data.tasks)
    reports = []
    for spec in bound:
        if KINDS.get(spec.name) == "shaping":  # n/a by construction; a learned reward model is not worth loading here
            report = Report(spec.name, "shaping", notes=["a shaping reward: it does not check answers"])
            if spec.name in corpus_names():  # but what it measures is checked on its corpus
                report.corpus = audit_corpus(registry.resolve(spec, base_dir), spec.name)
            reports.append(report)
            if console is not None:
                corpus = f"; corpus: {report.corpus.summary()}" if report.corpus else ""
                style = "bold red" if report.gameable else ""
                console.print(f"  {f'[{style}]' if style else ''}{spec.name}: n/a (a shaping reward: it does not check "
                              f"answers){corpus}{f'[/{style}]' if style else ''}")  # fmt: skip
            continue
        reward = registry.resolve(spec, base_dir)
        kind = _default_kind(spec.name, reward.fn)
        if kind == "code":
            samples = [SAMPLES[t] for t in CODE_TASKS]
        else:
            wanted = TASKS.get(spec.name)
            samples = [s for s in data_samples if wanted is None or s.task in wanted]
            samples = samples or [SAMPLES[t] for t in (wanted or ANSWER_TASKS)]
        report = audit(reward, spec.name, kind=kind, samples=samples)
        reports.append(report)
        if console is not None:
            n = sum(r.verdict != "baseline" for r in report.rows)
            if report.gameable:
                console.print(f"  [bold red]{spec.name}: gameable[/bold red] ({len(report.paid)} of {n} adversarial "
                              "completions paid):")  # fmt: skip
                for r in report.paid[:8]:
                    console.print(f"    {r.task} / {r.cls}: {_short(r.completion)} -> {r.score:.3f}")
                for r in [r for r in report.rows if r.verdict == "NOT PAID"][:3]:
                    console.print(f"    {r.task}: the reference answer is not paid ({_short(r.completion)})")
                if report.corpus is not None and report.corpus.failed:
                    print_corpus(report.corpus, console, limit=8)
            else:
                what = "n/a (it does not tell a right answer from a wrong one)" if report.kind == "shaping" else "ok"
                corpus = f"; corpus: {report.corpus.summary()}" if report.corpus else ""
                console.print(f"  {spec.name}: {what} ({n} adversarial completions, none paid{corpus})")
    skipped = [s.name for s in specs if s not in bound]
    if skipped and console is not None:
        console.print(f"  [dim]not audited (need an earlier stage's output): {', '.join(skipped)}[/dim]")
    return reports
