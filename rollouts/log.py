"""Reading the rollout logs RFT and GRPO append to their stage folders (``rollouts.jsonl``, one ``RolloutRow`` of
``rollouts/scoring.py`` per sampled completion: step, prompt_id, task, completion, tokens, rewards, total, advantage)
for ``align rollouts show``."""

from __future__ import annotations

from pathlib import Path

from align.console import readable
from align.errors import UserError
from align.io import read_jsonl


def rollout_files(path: str | Path) -> list[Path]:
    """A run directory (every stage's log, in stage order), a stage folder, or a rollouts.jsonl file."""
    p = Path(path)
    if p.is_file():
        return [p]
    if (p / "rollouts.jsonl").exists():
        return [p / "rollouts.jsonl"]
    if p.is_dir():
        files = sorted(p.glob("*/rollouts.jsonl"), key=lambda f: f.stat().st_mtime)
        if files:
            return files
    raise UserError(f"no rollouts.jsonl under {p}", "pass a run directory, an rft/grpo stage folder or the file")


def select(rows: list[dict], step: int | None = None, worst: int | None = None, best: int | None = None,
           stage: str | None = None) -> list[dict]:  # fmt: skip
    if step is not None:
        rows = [r for r in rows if r.get("step") == step]
    if worst:
        rows = sorted(rows, key=lambda r: r.get("total", 0.0))[:worst]
    elif best:
        rows = sorted(rows, key=lambda r: -r.get("total", 0.0))[:best]
    return rows


def show(path, step=None, worst=None, best=None, limit=40, console=None) -> int:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    shown = 0
    for f in rollout_files(path):
        rows = read_jsonl(f)
        steps = sorted({r.get("step") for r in rows if r.get("step") is not None})
        picked = select(rows, step, worst, best)[:limit]
        title = f"{f.parent.name}: {len(rows)} rollouts, steps {steps[0]}–{steps[-1]}" if steps else f.parent.name
        table = Table(title=title + (f"; step {step}" if step is not None else "")
                      + (f"; worst {worst}" if worst else "") + (f"; best {best}" if best else ""))  # fmt: skip
        reward_names = sorted({k for r in picked for k in (r.get("rewards") or {})})
        for col in ("step", "prompt", "task", "completion", "tok", *reward_names, "total", "adv"):
            table.add_column(col, justify="right" if col in ("step", "tok", "total", "adv") else "left",
                             overflow="fold", max_width=48 if col == "completion" else None)  # fmt: skip

        def num(v):
            return "–" if v is None else f"{v:.3g}"

        for r in picked:
            table.add_row(str(r.get("step", "")), str(r.get("prompt_id", r.get("id", ""))), str(r.get("task") or ""),
                          repr(readable(r.get("completion", "")))[1:-1], str(r.get("tokens", "")),
                          *(num((r.get("rewards") or {}).get(k)) for k in reward_names),
                          num(r.get("total")), num(r.get("advantage")))  # fmt: skip
        console.print(table)
        shown += len(picked)
    return shown
