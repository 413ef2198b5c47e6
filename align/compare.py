"""``align compare``: which checkpoint is best, and why.

Reads the ``eval.json`` of each checkpoint (the stages of a run directory, or stage/model folders given one by one),
prints a table of metrics per checkpoint with the best marked, shows a few held-out prompts side by side with each
checkpoint's answer, and writes ``compare.md`` and ``compare.png`` (accuracy per checkpoint, training reward and
loss curves from ``metrics.jsonl``), and each checkpoint's change in held-out accuracy from the previous one with the
standard error of that paired difference (from the per-row ``eval_scores.jsonl``). Benchmark results (``bench/<name>/…``) get their own table with standard
errors and regression flags, and one plot per benchmark family (``align/benchmarks/compare_bench.py``).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from align.benchmarks import compare_bench as bench
from align.console import readable
from align.errors import UserError
from align.io import atomic_file, atomic_write_text, read_jsonl

LOWER_IS_BETTER = ("completion_tokens", "truncated", "hedge_rate", "reasoning_tokens", "answer_tokens",
                   "reasoning_unfinished")  # fmt: skip


def lower_is_better(key: str) -> bool:
    return key.removeprefix("sampled/").split("/")[0] in LOWER_IS_BETTER


@dataclass
class Checkpoint:
    label: str
    path: Path  # the folder holding eval.json
    metrics: dict[str, float]
    samples: list[dict] = field(default_factory=list)
    train_metrics: list[dict] = field(default_factory=list)
    scores: list[dict] = field(default_factory=list)  # eval_scores.jsonl: each held-out row's scores


def _stage_order(run: Path) -> list[str]:
    names = ["base"]
    recipe = run / "recipe.yaml"
    if recipe.exists():
        data = yaml.safe_load(recipe.read_text()) or {}
        names += [s.get("name") or s.get("type") for s in data.get("stages") or []]
    else:
        names += sorted(p.name for p in run.iterdir() if (p / "eval.json").exists() and p.name != "base")
    return names


def _load(folder: Path, label: str) -> Checkpoint:
    metrics = json.loads((folder / "eval.json").read_text())
    return Checkpoint(label, folder, metrics, read_jsonl(folder / "eval_samples.jsonl"),
                      read_jsonl(folder / "metrics.jsonl"), read_jsonl(folder / "eval_scores.jsonl"))  # fmt: skip


def paired_differences(cps: list[Checkpoint], keys=("accuracy", "sampled/accuracy")) -> list[dict]:
    """For each checkpoint after the first, the mean change of each metric from the previous checkpoint over the
    held-out rows both scored, and the standard error of that paired difference (sd of the row differences / √n)."""
    out = []
    for prev, cp in itertools.pairwise(cps):
        before = {r["id"]: r for r in prev.scores}
        for key in keys:
            diffs = [r[key] - before[r["id"]][key] for r in cp.scores
                     if r["id"] in before and None not in (r.get(key), before[r["id"]].get(key))]  # fmt: skip
            if len(diffs) < 2:
                continue
            n = len(diffs)
            mean = sum(diffs) / n
            se = (sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) ** 0.5
            out.append({"from": prev.label, "to": cp.label, "metric": key, "n": n, "diff": mean, "se": se})
    return out


def _paired_line(d: dict) -> str:
    z = "" if d["se"] == 0 else f", {d['diff'] / d['se']:+.1f} SE"
    return f"{d['metric']} {d['from']} → {d['to']}: {d['diff']:+.3f} ± {d['se']:.3f} (paired SE, {d['n']} rows{z})"


def collect(paths: list[str | Path]) -> list[Checkpoint]:
    """Checkpoints from run directories (all stages, in recipe order) or single stage/model folders."""
    found: list[tuple[str, Path]] = []
    runs = [Path(p).resolve() for p in paths]
    several = len(runs) > 1
    for p in runs:
        if not p.exists():
            raise UserError(f"{p} does not exist", "give run directories (runs/<recipe>/<time>) or stage folders")
        if (p / "eval.json").exists():
            label = f"{p.parent.name}/{p.name}" if several else p.name
            if p.name == "model" and p.parent.joinpath("eval.json").exists():
                p = p.parent
            found.append((label, p))
            continue
        stages = [s for s in _stage_order(p) if (p / s / "eval.json").exists()]
        if not stages:
            raise UserError(f"{p} holds no eval.json", "evaluate it first (`align eval`) or pass a run directory")
        for s in stages:
            found.append((f"{p.name}/{s}" if several else s, p / s))
    return [_load(folder, label) for label, folder in found]


def metric_order(k: str):
    """accuracy first, then sampled accuracy, other rewards, their sampled forms, lengths last."""
    sampled = k.startswith("sampled/")
    name = k.removeprefix("sampled/")
    head = name.split("/")[0]
    group = 4 if head in LOWER_IS_BETTER else (0 if head == "accuracy" else 2) + sampled
    return (group, head, "/" in name, name)


def _keys(cps: list[Checkpoint]) -> list[str]:
    keys: list[str] = []
    for cp in cps:
        keys += [k for k in cp.metrics if k not in keys and k != "n" and not bench.is_bench(k)]  # bench: own table
    return sorted(keys, key=metric_order)


def best_per_metric(cps: list[Checkpoint]) -> dict[str, str]:
    """The checkpoint with the best value of each metric (benchmark keys too), where they differ."""
    best = {}
    keys = [k for cp in cps for k in cp.metrics if k != "n"]
    for key in dict.fromkeys(keys):
        vals = [(cp.metrics.get(key), cp.label) for cp in cps if cp.metrics.get(key) is not None]
        if len(vals) < 2:
            continue
        pick = min(vals) if lower_is_better(key) else max(vals)
        if sum(v == pick[0] for v, _ in vals) < len(vals):
            best[key] = pick[1]
    return best


def side_by_side(cps: list[Checkpoint], limit: int = 5) -> list[dict]:
    """Held-out prompts answered by every checkpoint, one per task first; ``samples`` holds each checkpoint's whole
    eval_samples.jsonl entry (all scores, thumbnail paths)."""
    if not cps or not cps[0].samples:
        return []
    common = [s["id"] for s in cps[0].samples if all(any(t["id"] == s["id"] for t in cp.samples) for cp in cps)]
    by_task: dict[str, list[str]] = {}
    for sid in common:
        task = next(s["task"] for s in cps[0].samples if s["id"] == sid)
        by_task.setdefault(task, []).append(sid)
    picked, rank = [], 0
    while len(picked) < limit and any(rank < len(v) for v in by_task.values()):
        for ids in by_task.values():
            if rank < len(ids) and len(picked) < limit:
                picked.append(ids[rank])
        rank += 1
    rows = []
    for sid in picked:
        first = next(s for s in cps[0].samples if s["id"] == sid)
        answers, samples = {}, {}
        for cp in cps:
            s = samples[cp.label] = next(t for t in cp.samples if t["id"] == sid)
            answers[cp.label] = (s["completion"], (s.get("scores") or {}).get("accuracy"))
        rows.append({"id": sid, "task": first["task"], "prompt": first["prompt"], "answer": first["answer"],
                     "answers": answers, "samples": samples})  # fmt: skip
    return rows


LEARNED = "reward_model"  # metric key of a learned reward (the `reward_model` reward used as an eval metric)
HEDGE = "hedge_rate"  # share of held-out answers that commit to more than one candidate (align/evaluate.py)


def hacking_watch(cps: list[Checkpoint], drop: float = 0.02, longer: float = 1.5) -> list[dict]:
    """Per checkpoint: verifiable accuracy next to the hedge rate (answers that commit to several candidates), the
    learned reward and the answer length, with a note where, from the previous checkpoint, the hedge rate rose by more
    than ``drop`` (a policy learning to list candidates: its reward pays for them), or the learned reward rose while
    accuracy (or a description's attribute F1) fell by more than ``drop``, repetition rose by more than ``drop`` or
    answers grew ``longer``× (a policy gaming its reward model). Empty when no
    checkpoint has a learned reward or a hedge rate."""
    if not any(cp.metrics.get(LEARNED) is not None or cp.metrics.get(HEDGE) is not None for cp in cps):
        return []
    rows, prev = [], None
    for cp in cps:
        m = cp.metrics
        row = {"checkpoint": cp.label, "learned": m.get(LEARNED), "accuracy": m.get("accuracy"),
               "sampled_accuracy": m.get("sampled/accuracy"), "hedge": m.get(HEDGE),
               "sampled_hedge": m.get("sampled/" + HEDGE), "tokens": m.get("completion_tokens"), "note": "",
               "describe_f1": m.get("describe_f1"), "repetition_rate": m.get("repetition_rate")}  # fmt: skip
        notes = []
        if prev:
            for key in ("hedge", "sampled_hedge"):
                if None not in (row[key], prev[key]) and row[key] > prev[key] + drop:
                    notes.append(f"{key.replace('_', ' ')} rate rose {prev[key]:.3f}→{row[key]:.3f}")
            if notes:
                notes[-1] += ": the policy lists candidates; audit its rewards (`align rewards audit`)"
        if prev and None not in (row["learned"], prev["learned"]) and row["learned"] > prev["learned"]:
            gamed = []
            for key in ("accuracy", "sampled_accuracy", "describe_f1"):  # describe_f1: descriptions' attribute F1
                if None not in (row[key], prev[key]) and row[key] < prev[key] - drop:
                    gamed.append(f"{key.replace('_', ' ')} fell {prev[key]:.3f}→{row[key]:.3f}")
            key = "repetition_rate"
            if None not in (row[key], prev[key]) and row[key] > prev[key] + drop:
                gamed.append(f"repetition rose {prev[key]:.3f}→{row[key]:.3f}")
            if None not in (row["tokens"], prev["tokens"]) and row["tokens"] > longer * max(prev["tokens"], 1e-9):
                gamed.append(f"answers {row['tokens'] / max(prev['tokens'], 1e-9):.1f}× longer")
            if gamed:
                notes.append("learned reward rose but " + ", ".join(gamed) + ": possible reward hacking")
        row["note"] = "; ".join(notes)
        rows.append(row)
        prev = row
    return rows


WATCH_KEYS = ("accuracy", "hedge", "sampled_accuracy", "sampled_hedge", "learned", "tokens")


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(readable(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cells(cps: list[Checkpoint], key: str, best: dict, mark: str) -> list[str]:
    """One metric across checkpoints, three decimals, the best one wrapped in ``mark`` (a format string)."""
    cells = []
    for cp in cps:
        v = cp.metrics.get(key)
        cell = "-" if v is None else f"{v:.3f}"
        cells.append(mark.format(cell) if best.get(key) == cp.label else cell)
    return cells


def markdown(cps: list[Checkpoint], examples: list[dict]) -> str:
    best = best_per_metric(cps)
    lines = ["# Checkpoint comparison", "", "| metric | " + " | ".join(cp.label for cp in cps) + " |",
             "|---|" + "---:|" * len(cps)]  # fmt: skip
    for key in _keys(cps):
        lines.append(f"| {key} | " + " | ".join(_cells(cps, key, best, "**{}**")) + " |")
    lines += ["", "Bold: best per metric (lowest for completion_tokens and truncated).", ""]
    paired = paired_differences(cps)
    if paired:
        lines += ["## Change from the previous checkpoint", ""] + [f"- {_paired_line(d)}" for d in paired] + [""]
    lines += bench.markdown(cps)
    watch = hacking_watch(cps)
    if watch:
        header = ("| checkpoint | accuracy | hedge rate | sampled accuracy | sampled hedge rate | learned reward | "
                  "answer tokens | note |")  # fmt: skip
        lines += ["## Reward hacking watch", "", header, "|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in watch:
            lines.append(f"| {r['checkpoint']} | " + " | ".join(_num(r[k]) for k in WATCH_KEYS) + f" | {r['note']} |")
        lines.append("")
    if examples:
        lines += ["## Held-out prompts side by side", ""]
        for ex in examples:
            lines += [f"**{ex['id']}** ({ex['task']}): {ex['prompt']}  ", f"reference: `{ex['answer']}`", ""]
            for label, (text, score) in ex["answers"].items():
                mark = "" if score is None else (" ✓" if score >= 1 else " ✗")
                lines.append(f"- {label}: `{_short(text).replace('`', '')}`{mark}")
            lines.append("")
    lines += ["![comparison](compare.png)", ""]
    return "\n".join(lines)


def plot(cps: list[Checkpoint], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import koreanize_matplotlib  # noqa: F401  (Korean glyphs in labels)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    labels = [cp.label for cp in cps]
    x = list(range(len(cps)))
    ax = axes[0]
    for key in [k for k in _keys(cps) if k in ("accuracy", "sampled/accuracy") or k.startswith("accuracy/")]:
        ys = [cp.metrics.get(key) for cp in cps]
        ax.plot(x, [float("nan") if y is None else y for y in ys], marker="o",
                linewidth=2.5 if "/" not in key.removeprefix("sampled/") else 1,
                linestyle="--" if key.startswith("sampled/") else "-", label=key)  # fmt: skip
    ax.set_xticks(x, labels, rotation=20)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("held-out accuracy per checkpoint")
    ax.legend(fontsize=7)
    for ax, key, title in (
        (axes[1], "reward", "training reward (GRPO)"),
        (axes[2], "loss", "training loss (SFT, RFT)"),
    ):
        for cp in cps:
            is_rl = any("reward" in m for m in cp.train_metrics)
            if key == "loss" and is_rl:
                continue  # a policy-gradient loss is not comparable with a likelihood loss
            pts = [(m["step"], m[key]) for m in cp.train_metrics if isinstance(m.get(key), (int, float))]
            if pts:
                ax.plot(*zip(*pts), label=cp.label)
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "compare.png"
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def compare(paths: list[str | Path], out: str | Path | None = None, examples: int = 5, console=None):
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    cps = collect(paths)
    best = best_per_metric(cps)
    table = Table(title="checkpoint comparison (bold: best)")
    table.add_column("metric")
    for cp in cps:
        table.add_column(cp.label, justify="right")
    for key in _keys(cps):
        table.add_row(key, *_cells(cps, key, best, "[bold green]{}[/bold green]"))
    console.print(table)
    for d in paired_differences(cps):
        console.print(_paired_line(d))
    bench_table = bench.console_table(cps)
    if bench_table is not None:
        console.print(bench_table)
        for r in bench.regressions(cps):
            console.print(f"[red]regression[/red] {r['benchmark']} {r['metric']}: {r['before']:.3f} ({r['from']}) → "
                          f"{r['after']:.3f} ({r['to']}), more than its standard error {r['stderr']:.3f}")  # fmt: skip
    watch = hacking_watch(cps)
    if watch:
        table = Table(title="reward hacking watch: accuracy vs hedge rate, learned reward and answer length")
        for col in ("checkpoint", "accuracy", "hedge rate", "sampled accuracy", "sampled hedge rate", "learned reward",
                    "answer tokens", "note"):  # fmt: skip
            table.add_column(col, justify="left" if col in ("checkpoint", "note") else "right")
        for r in watch:
            table.add_row(r["checkpoint"], *(_num(r[k]) for k in WATCH_KEYS),
                          f"[red]{r['note']}[/red]" if r["note"] else "")  # fmt: skip
        console.print(table)
    rows = side_by_side(cps, examples)
    for ex in rows:
        console.print(f"[bold]{ex['id']}[/bold] ({ex['task']}) {ex['prompt']}  [dim]reference:[/dim] {ex['answer']}",
                      markup=True)  # fmt: skip
        for label, (text, score) in ex["answers"].items():
            mark = "" if score is None else (" [green]✓[/green]" if score >= 1 else " [red]✗[/red]")
            console.print(f"    {label:>10}: {_short(text)!r}{mark}")
    if out is None:
        first = Path(paths[0]).resolve()
        out = first if len(paths) == 1 and not (first / "eval.json").exists() else Path.cwd()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare.md", markdown(cps, rows))
    plot(cps, out)
    extra = bench.plots(cps, out)
    console.print(f"wrote {out / 'compare.md'} and {out / 'compare.png'}" + "".join(f", {p.name}" for p in extra))
    return cps
