"""Benchmarks in ``align compare``: one row per benchmark metric and checkpoint (main metric ± standard error),
regression flags, and one plot per benchmark family.

A checkpoint is flagged on a benchmark when its main metric is worse than the previous checkpoint's by more than
the benchmark's standard error (the larger of the two checkpoints' ``<metric>_stderr``; a drop with no standard
error recorded is not flagged).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from align.benchmarks.registry import BENCHMARKS, lookup
from align.errors import UserError

PREFIX = "bench/"
DETAIL = ("category/", "l2_category/", "task/", "bad/")  # compare.md only
COUNTS = ("n", "rows", "judged", "tokens", "num_fewshot")  # compare.md only
PROBLEMS = ("unparsed", "unclosed_reasoning", "unparsed_judge", "outside_options", "bad_rows")  # console: if not all 0
PROBLEMS += ("non_korean", "empty_answers")  # KOFFVQA answers not in Korean, KoNET empty replies (issue 32)


def is_bench(key: str) -> bool:
    return key.startswith(PREFIX)


def benchmarks_in(cps) -> list[str]:
    names: list[str] = []
    for cp in cps:
        for key in cp.metrics:
            if is_bench(key):
                name = key[len(PREFIX) :].split("/", 1)[0]
                if name not in names:
                    names.append(name)
    order = list(BENCHMARKS)
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def _info(name: str):
    try:
        return lookup(name)
    except UserError:
        return None


def rows_for(cps, name: str, detail: bool = False) -> list[str]:
    """Metric names (after bench/<name>/) to show, main first; stderr keys are shown beside their metric. The
    console (``detail=False``) leaves out categories, sub-tasks and counts, and problem counts that are all zero."""
    info = _info(name)
    keys: list[str] = []
    for cp in cps:
        for key in cp.metrics:
            if key.startswith(f"{PREFIX}{name}/"):
                metric = key[len(PREFIX) + len(name) + 1 :]
                if metric.endswith("_stderr") or metric in keys:
                    continue
                if not detail and (metric.startswith(DETAIL) or metric in COUNTS or (
                        metric in PROBLEMS and not any(cp.metrics.get(key) for cp in cps))):  # fmt: skip
                    continue
                keys.append(metric)
    main = info.main if info else None
    return sorted(keys, key=lambda m: (m != main, m in PROBLEMS + COUNTS, m.startswith(DETAIL), m))


def value(cp, name: str, metric: str) -> tuple[float | None, float | None]:
    return cp.metrics.get(f"{PREFIX}{name}/{metric}"), cp.metrics.get(f"{PREFIX}{name}/{metric}_stderr")


def regressions(cps) -> list[dict]:
    """Checkpoints whose main metric fell from the previous checkpoint's by more than the standard error."""
    out = []
    for name in benchmarks_in(cps):
        info = _info(name)
        if info is None:
            continue
        sign = 1 if info.higher_is_better else -1
        prev = None
        for cp in cps:
            v, se = value(cp, name, info.main)
            if v is None:
                continue
            if prev is not None:
                pv, pse, plabel = prev
                ses = [s for s in (se, pse) if s is not None]
                loss = sign * (pv - v)
                if ses and loss > max(ses):
                    out.append({"benchmark": name, "metric": info.main, "from": plabel, "to": cp.label,
                                "before": pv, "after": v, "stderr": max(ses)})  # fmt: skip
            prev = (v, se, cp.label)
    return out


def _cell(v, se, metric: str = "") -> str:
    if v is None:
        return "-"
    if (metric in COUNTS + PROBLEMS or metric.startswith("bad/")) and float(v).is_integer():
        return str(int(v))
    return f"{v:.3f}" + (f" ±{se:.3f}" if se is not None else "")


def table_rows(cps, detail: bool = False) -> list[tuple[str, str, list[str], list[bool]]]:
    """(benchmark, metric, cells, flagged-per-checkpoint) rows for the console table and compare.md."""
    flagged = {(r["benchmark"], r["to"]) for r in regressions(cps)}
    rows = []
    for name in benchmarks_in(cps):
        info = _info(name)
        for metric in rows_for(cps, name, detail):
            cells = [_cell(*value(cp, name, metric), metric) for cp in cps]
            flags = [info is not None and metric == info.main and (name, cp.label) in flagged for cp in cps]
            rows.append((name, metric, cells, flags))
    return rows


def markdown(cps) -> list[str]:
    rows = table_rows(cps, detail=True)
    if not rows:
        return []
    lines = ["## Benchmarks", "", "| benchmark | metric | " + " | ".join(cp.label for cp in cps) + " |",
             "|---|---|" + "---:|" * len(cps)]  # fmt: skip
    for name, metric, cells, flags in rows:
        shown = [f"**{c} ▼**" if f else c for c, f in zip(cells, flags)]
        lines.append(f"| {name} | {metric} | " + " | ".join(shown) + " |")
    lines += ["", "± standard error. ▼: lower than the previous checkpoint by more than the standard error.", ""]
    for r in regressions(cps):
        lines.append(f"- regression: {r['benchmark']} {r['metric']} {r['before']:.3f} ({r['from']}) → "
                     f"{r['after']:.3f} ({r['to']}), more than the standard error {r['stderr']:.3f}")  # fmt: skip
    families = sorted({_info(n).family for n in benchmarks_in(cps) if _info(n)})
    lines += [""] + [f"![{f}](compare_bench_{f}.png)" for f in families] + [""]
    return lines


def console_table(cps):
    from rich.table import Table

    rows = table_rows(cps)
    if not rows:
        return None
    table = Table(title="benchmarks (± standard error; red ▼: lost more than the standard error)")
    table.add_column("benchmark")
    table.add_column("metric")
    for cp in cps:
        table.add_column(cp.label, justify="right")
    for name, metric, cells, flags in rows:
        table.add_row(name, metric, *[f"[red]{c} ▼[/red]" if f else c for c, f in zip(cells, flags)])
    return table


def plots(cps, out: Path) -> list[Path]:
    """compare_bench_<family>.png: each benchmark's main metric per checkpoint, with standard-error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import koreanize_matplotlib  # noqa: F401
    import matplotlib.pyplot as plt

    by_family: dict[str, list[str]] = defaultdict(list)
    for name in benchmarks_in(cps):
        info = _info(name)
        if info:
            by_family[info.family].append(name)
    paths = []
    x = list(range(len(cps)))
    for family, names in by_family.items():
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for name in names:
            main = _info(name).main
            vals = [value(cp, name, main) for cp in cps]
            ys = [float("nan") if v is None else v for v, _ in vals]
            errs = [0.0 if se is None else se for _, se in vals]
            ax.errorbar(x, ys, yerr=errs, marker="o", capsize=3, label=f"{name} ({main})")
        ax.set_xticks(x, [cp.label for cp in cps], rotation=20)
        ax.set_title(f"{family} benchmarks per checkpoint")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"compare_bench_{family}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
