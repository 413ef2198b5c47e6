"""``align report``: one self-contained HTML page about a run (or several), to open on a laptop without a server or
attach to a pull request.

It shows the metrics per checkpoint (best marked, regressions flagged), the curves of ``compare.png``, the
reward-hacking watch, benchmark results (any ``bench/...`` keys of eval.json), a gallery of held-out prompts (image
thumbnail, question, reference answer, each checkpoint's answer with its scores; filterable by task) and a sample of
the RFT/GRPO rollouts per step (completion, each reward, total, advantage). Everything is inside the file: the
thumbnails (``<stage>/eval_images/``, written by the eval hook) and the curves as data URIs, and the Hangul glyphs the
page uses as a subset of NanumGothic (from the koreanize-matplotlib wheel), so Korean renders on machines without a
Korean font. No network, no JavaScript framework (a few lines for the task filter).

The numbers come from ``align.compare`` (checkpoints, best per metric, side by side, hacking watch). The page stays
under ``max_bytes`` by leaving out gallery cards, then rollout steps, and says what it left out.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
import tempfile
import time
from importlib import resources
from pathlib import Path
from string import Template

import yaml

from align.compare import LOWER_IS_BETTER, best_per_metric, collect, hacking_watch, metric_order, plot, side_by_side
from align.io import atomic_write_text, read_jsonl

REPORT_FILE = "report.html"
DEFAULT_MAX_BYTES = 5_000_000
HANGUL = "U+1100-11FF, U+3000-303F, U+3130-318F, U+A960-A97F, U+AC00-D7AF, U+D7B0-D7FF, U+FF01-FF60"
FONT_STACK = ('"Report Hangul", system-ui, -apple-system, "Segoe UI", "Apple SD Gothic Neo", "Malgun Gothic", '
              '"Noto Sans KR", "Noto Sans CJK KR", "NanumGothic", sans-serif')  # fmt: skip
# Hangul first (its unicode-range leaves Latin to the monospace fonts): after a generic `monospace`, Chromium drew
# boxes for Hangul in a run that also held U+FFFD (seen with the tiny model's broken-byte answers)
CODE_STACK = '"Report Hangul", ui-monospace, "D2Coding", Menlo, Consolas, monospace, ' + FONT_STACK
LEAD_SCORES = ("accuracy", "describe_f1")  # the score a gallery answer's ✓/✗ reads (the first one it has)
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}


def esc(value) -> str:
    return "" if value is None else html.escape(str(value))


def num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def answer(text) -> str:
    """A model's answer for display: newlines as ⏎ (one line per answer), an empty answer said so."""
    if not text:
        return '<span class="empty">(empty)</span>'
    return f"<code>{esc(text).replace(chr(10), '⏎')}</code>"


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _worse(key: str, before: float, now: float) -> bool:
    """``now`` is worse than ``before`` by more than 0.01 (or 2 % of the value)."""
    tol = max(0.01, 0.02 * abs(before))
    return now > before + tol if key.split("/")[0] in LOWER_IS_BETTER else now < before - tol


def metrics_table(cps, keys: list[str]) -> str:
    """Metrics × checkpoints; the best cell per metric marked ★, a fall from the run's previous checkpoint ▼."""
    best = best_per_metric(cps)
    head = "".join(f"<th>{esc(cp.label)}</th>" for cp in cps)
    rows = []
    for key in keys:
        cells, last = [], {}  # last value per run directory: regressions are within a run
        for cp in cps:
            run = cp.path.parent
            value, before = cp.metrics.get(key), last.get(run)
            cls, mark, title = ["num"], "", ""
            if best.get(key) == cp.label:
                cls, mark = [*cls, "best"], " ★"
            if None not in (value, before) and _worse(key, before, value):
                cls, mark, title = [*cls, "regress"], mark + " ▼", f' title="{before:.3f} at the checkpoint before"'
            if value is not None:
                last[run] = value
            cells.append(f'<td class="{" ".join(cls)}"{title}>{num(value)}{mark}</td>')
        rows.append(f"<tr><th>{esc(key)}</th>{''.join(cells)}</tr>")
    return f'<table class="metrics"><thead><tr><th>metric</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def hacking_html(cps) -> str:
    watch = hacking_watch(cps)
    if not watch:
        return ('<p class="note">No checkpoint has a learned reward (a <code>reward_model</code> eval metric), so '
                "there is nothing to watch.</p>")  # fmt: skip
    head = "".join(f"<th>{c}</th>" for c in ("checkpoint", "learned reward", "accuracy", "sampled accuracy",
                                              "answer tokens", "note"))  # fmt: skip
    rows = "".join(
        f'<tr class="{"warn" if r["note"] else ""}"><td>{esc(r["checkpoint"])}</td>'
        + "".join(f'<td class="num">{num(r[k])}</td>' for k in ("learned", "accuracy", "sampled_accuracy", "tokens"))
        + f"<td>{esc(r['note'])}</td></tr>"
        for r in watch
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def bench_html(cps, keys: list[str]) -> str:
    """Benchmark results (``bench/<name>[/<metric>]`` keys of eval.json, whatever the benchmark) as a metrics table."""
    if not keys:
        return '<p class="note">No benchmark results (no <code>bench/</code> keys in eval.json).</p>'
    return metrics_table(cps, keys)


def _image_html(cps, row) -> str:
    """The row's thumbnails from the first checkpoint that recorded them (each stage keeps a copy)."""
    recorded = False
    for cp in cps:
        refs = row["samples"][cp.label].get("images")
        if refs is None:
            continue
        recorded = True
        if not refs:
            return '<span class="none">text only</span>'
        files = [cp.path / ref for ref in refs]
        if all(f.is_file() for f in files):
            return "".join(f'<img src="{data_uri(f.read_bytes(), MIME.get(f.suffix.lower(), "image/png"))}" '
                           f'alt="{esc(row["id"])}">' for f in files)  # fmt: skip
    note = "image file missing" if recorded else "no image recorded (evaluated before thumbnails were kept)"
    return f'<span class="none">{note}</span>'


def card(cps, row) -> str:
    """One held-out prompt: thumbnail, question, reference, and per checkpoint the answer with its scores."""
    answers = []
    for label, sample in row["samples"].items():
        scores = {k: v for k, v in (sample.get("scores") or {}).items() if v is not None}
        lead = next((k for k in LEAD_SCORES if k in scores), "accuracy")  # descriptions: every fact right is ✓
        acc = scores.get(lead)
        mark = "" if acc is None else ('<span class="ok">✓</span> ' if acc >= 1 else '<span class="no">✗</span> ')
        shown = " · ".join(f"{esc(k)} {num(v)}" for k, v in sorted(scores.items(), key=lambda kv: kv[0] != lead))
        answers.append(f'<tr><td class="who">{esc(label)}</td><td class="ans">{answer(sample.get("completion"))}'
                       f'<div class="scores">{mark}{shown}</div></td></tr>')  # fmt: skip
    return (f'<article class="card" data-task="{esc(row["task"])}"><div class="pic">{_image_html(cps, row)}</div>'
            f'<div class="body"><span class="tag">{esc(row["task"])}</span><span class="tag">{esc(row["id"])}</span>'
            f'<p class="q">{esc(row["prompt"])}</p><p class="ref">reference: <code>{esc(row["answer"])}</code></p>'
            f'<table>{"".join(answers)}</table></div></article>')  # fmt: skip


def gallery_html(cards: list[tuple[str, str]], total: int) -> str:
    """Filter buttons (one per task) and the cards ``(task, html)``; ``total``: prompts answered by every checkpoint."""
    if not cards:
        return '<p class="note">No held-out prompt was answered by every checkpoint (eval_samples.jsonl).</p>'
    tasks = sorted({t for t, _ in cards})
    buttons = [f'<button type="button" data-task="all" aria-pressed="true">all ({len(cards)})</button>'] + [
        f'<button type="button" data-task="{esc(t)}" aria-pressed="false">{esc(t)} '
        f"({sum(x == t for x, _ in cards)})</button>"
        for t in tasks
    ]
    shown = f"{len(cards)} of the {total}" if len(cards) < total else f"All {total}"
    return (f'<p class="note">{shown} held-out prompts that every checkpoint answered (eval_samples.jsonl keeps '
            "<code>eval.samples</code> per task). ✓/✗ and the number after it: accuracy (for descriptions: attribute "
            "F1 against the scene, ✓ when every fact is right); then every other score.</p>"
            f'<div class="filters" id="filters">{"".join(buttons)}</div>'
            f'<div class="gallery">{"".join(h for _, h in cards)}</div>')  # fmt: skip


def _spread(group: list[dict]) -> float:
    totals = [r.get("total") or 0.0 for r in group]
    return max(totals) - min(totals)


def _rollout_row(r: dict, names: list[str]) -> str:
    rewards = r.get("rewards") or {}
    adv = r.get("advantage")
    sign = "" if not adv else ("pos" if adv > 0 else "neg")
    return (f'<tr><td class="completion">{answer(r.get("completion"))}</td><td class="num">{esc(r.get("tokens"))}</td>'
            + "".join(f'<td class="num">{num(rewards.get(n))}</td>' for n in names)
            + f'<td class="num">{num(r.get("total"))}</td><td class="num {sign}">{num(adv)}</td></tr>')  # fmt: skip


def rollout_steps(path: Path, steps_shown: int, group_rows: int) -> tuple[str, list[str]]:
    """A stage's rollout log: a summary line and, for up to ``steps_shown`` evenly spaced steps, the completions of
    the prompt whose rewards spread widest at that step (the group its advantages are computed in)."""
    rows = read_jsonl(path)
    steps = sorted({r.get("step") for r in rows if isinstance(r.get("step"), int)})
    if not steps:
        return f'<p class="note">{esc(path)}: no rollouts.</p>', []
    picked = sorted({steps[round(i * (len(steps) - 1) / max(1, steps_shown - 1))] for i in range(steps_shown)})
    names = sorted({k for r in rows for k in r.get("rewards") or {}})
    head = "".join(f"<th>{esc(c)}</th>" for c in ("completion", "tokens", *names, "total", "advantage"))
    blocks = []
    for step in picked:
        at = [r for r in rows if r.get("step") == step]
        groups: dict[str, list[dict]] = {}
        for r in at:
            groups.setdefault(str(r.get("prompt_id", r.get("id"))), []).append(r)
        pid, group = max(groups.items(), key=lambda kv: _spread(kv[1]))
        mean = sum(r.get("total") or 0.0 for r in at) / len(at)
        body = "".join(_rollout_row(r, names) for r in group[:group_rows])
        blocks.append(f"<h4>step {step}: {len(at)} rollouts, mean total {mean:.3f}; prompt {esc(pid)} "
                      f"({esc(group[0].get('task'))}), {min(len(group), group_rows)} of its {len(group)} completions"
                      f"</h4><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")  # fmt: skip
    summary = (f'<p class="note">{len(rows)} rollouts over {len(steps)} steps in {esc(path.parent.name)}/{esc(path.name)} (GRPO: trainer step; '
               f"RFT: sampling batch); {len(picked)} steps shown.</p>")  # fmt: skip
    return summary, blocks


def font_face(text: str) -> tuple[str, str]:
    """``@font-face`` CSS embedding the NanumGothic glyphs of the Hangul in ``text`` (WOFF, base64), and a note."""
    chars = "".join(sorted({c for c in text if _is_hangul(c)}))
    try:
        import koreanize_matplotlib
        from fontTools import subset
    except ImportError:
        return "", "Hangul from the system's fonts (fontTools or koreanize-matplotlib missing)"
    font_file = Path(koreanize_matplotlib.__file__).parent / "fonts" / "NanumGothic.ttf"
    if not chars or not font_file.exists():
        return "", "Hangul from the system's fonts"
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    opts = subset.Options()
    opts.flavor, opts.layout_features, opts.notdef_outline = "woff", ["*"], True
    font = subset.load_font(str(font_file), opts)
    sub = subset.Subsetter(opts)
    sub.populate(text=chars)
    sub.subset(font)
    buf = io.BytesIO()
    subset.save_font(font, buf, opts)
    css = (f'@font-face {{ font-family: "Report Hangul"; src: url({data_uri(buf.getvalue(), "font/woff")}) '
           f'format("woff"); unicode-range: {HANGUL}; }}')  # fmt: skip
    return css, f"Hangul: {len(chars)} glyphs of NanumGothic (SIL OFL 1.1) embedded, {buf.tell() // 1024} KB"


def _is_hangul(c: str) -> bool:
    o = ord(c)
    return 0x1100 <= o <= 0x11FF or 0x3000 <= o <= 0x318F or 0xA960 <= o <= 0xA97F or 0xAC00 <= o <= 0xD7FF \
        or 0xFF01 <= o <= 0xFF60  # fmt: skip


def _visible_text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", " ", page))


def _run_name(run: Path) -> str:
    """``recipe (timestamp)`` for a run directory, else the folder's name."""
    if (run / "recipe.yaml").exists():
        name = (yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8")) or {}).get("name")
        return f"{name} ({run.name})" if name else run.name
    return run.name


def _meta(cps) -> str:
    parts = []
    for run in dict.fromkeys(cp.path.parent for cp in cps):
        recipe = run / "recipe.yaml"
        name = _run_name(run)
        if recipe.exists():
            description = (yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}).get("description")
            name += f": {description}" if description else ""
        took = [f"{e['stage']} {e['seconds']:.0f} s" for e in read_jsonl(run / "events.jsonl")
                if e.get("event") == "stage_done" and "seconds" in e] if (run / "events.jsonl").exists() else []  # fmt: skip
        commit = ""
        if (run / "environment.json").exists():
            env = json.loads((run / "environment.json").read_text(encoding="utf-8"))
            commit = ((env.get("git") or {}).get("commit") or "")[:10]
        parts.append(f"<b>{esc(name)}</b> — {esc(run)}" + (f"; stages: {esc(', '.join(took))}" if took else "")
                     + (f"; commit {esc(commit)}" if commit else ""))  # fmt: skip
    return "<br>".join(parts) + f"<br>generated {time.strftime('%Y-%m-%d %H:%M')}"


def _fit(items: list[str], budget: int) -> int:
    """How many of ``items`` (in order) fit in ``budget`` bytes."""
    kept, used = 0, 0
    for item in items:
        used += len(item.encode())
        if used > budget:
            break
        kept += 1
    return kept


def build_report(paths, max_bytes: int = DEFAULT_MAX_BYTES, gallery: int = 60, steps: int = 8,
                 group_rows: int = 8) -> tuple[str, dict]:  # fmt: skip
    """The page for the checkpoints of ``paths`` (run directories or stage folders) and what it shows / left out."""
    cps = collect(paths)
    keys = sorted({k for cp in cps for k in cp.metrics if k != "n"}, key=metric_order)
    with tempfile.TemporaryDirectory() as tmp:
        curves = data_uri(plot(cps, Path(tmp)).read_bytes(), "image/png")
    rows = side_by_side(cps, limit=10**6)
    cards = [(row["task"], card(cps, row)) for row in rows[:gallery]]
    rollouts = [(cp.label, *rollout_steps(cp.path / "rollouts.jsonl", steps, group_rows))
                for cp in cps if (cp.path / "rollouts.jsonl").exists()]  # fmt: skip
    fields = {
        "title": "Run report: " + ", ".join(dict.fromkeys(_run_name(cp.path.parent) for cp in cps)),
        "meta": _meta(cps), "font_stack": FONT_STACK, "font_stack_code": CODE_STACK,
        "metrics": metrics_table(cps, [k for k in keys if not k.startswith("bench/")]),
        "curves": f'<img src="{curves}" alt="accuracy per checkpoint, training reward and loss">'
                  "<p class='note'>The same figure as compare.png.</p>",
        "hacking": hacking_html(cps),
        "bench": bench_html(cps, [k for k in keys if k.startswith("bench/")]),
    }  # fmt: skip
    template = Template(resources.files("align").joinpath("report_template.html").read_text(encoding="utf-8"))

    def render(n_cards: int, n_steps: int, notice: str, font_css: str, footer: str) -> str:
        left = n_steps
        parts = []
        for label, summary, blocks in rollouts:
            take = blocks[: max(0, left)]
            left -= len(take)
            extra = "" if len(take) == len(blocks) else f'<p class="note">{len(blocks) - len(take)} steps left out.</p>'
            parts.append(f"<h3>{esc(label)}</h3>{summary}{''.join(take)}{extra}")
        return template.substitute(
            fields, notice=notice, font_face=font_css, footer=footer, gallery=gallery_html(cards[:n_cards], len(rows)),
            rollouts="".join(parts) or '<p class="note">No rollouts.jsonl in these checkpoints (RFT and GRPO '
                                       "write one).</p>",
        )  # fmt: skip

    all_steps = sum(len(b) for _, _, b in rollouts)
    full = render(len(cards), all_steps, "", "", "")
    font_css, font_note = font_face(_visible_text(full))
    n_cards, n_steps, notice = len(cards), all_steps, ""
    if len(full.encode()) + len(font_css) > max_bytes:  # leave gallery cards out first, then rollout steps
        fixed = len(render(0, 0, "x" * 400, font_css, font_note).encode())
        n_cards = _fit([h for _, h in cards], max_bytes - fixed)
        budget = max_bytes - fixed - sum(len(h.encode()) for _, h in cards[:n_cards])
        n_steps = _fit([b for _, _, blocks in rollouts for b in blocks], budget)
        notice = (f'<p class="notice">This page is capped at {max_bytes / 1e6:.1f} MB: it leaves out '
                  f"{len(cards) - n_cards} of {len(cards)} held-out prompts and {all_steps - n_steps} of {all_steps} "
                  "rollout steps. Everything is in the run directory (eval_samples.jsonl, rollouts.jsonl).</p>")  # fmt: skip
        font_css, font_note = font_face(_visible_text(render(n_cards, n_steps, notice, "", "")))
    page = render(n_cards, n_steps, notice, font_css, f"{font_note}. Made by <code>align report</code>.")
    info = {"checkpoints": [cp.label for cp in cps], "cards": n_cards, "cards_total": len(cards), "steps": n_steps,
            "steps_total": all_steps, "bytes": len(page.encode()), "capped": bool(notice)}  # fmt: skip
    return page, info


def default_out(paths) -> Path:
    first = Path(paths[0]).resolve()
    return (first if len(paths) == 1 and not (first / "eval.json").exists() else Path.cwd()) / REPORT_FILE


def write_report(paths, out: str | Path | None = None, **kwargs) -> tuple[Path, dict]:
    """Write the report (default: ``<run>/report.html`` for one run directory, else ``./report.html``)."""
    page, info = build_report(paths, **kwargs)
    out = Path(out) if out else default_out(paths)
    atomic_write_text(out, page)
    return out, info
