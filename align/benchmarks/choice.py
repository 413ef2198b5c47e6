"""Multiple-choice VLM benchmarks: K-MMBench (circular), K-SEED, K-MMStar, K-DTCBench.

Rows are read in the columns each set is published in (the hub parquet that lmms-eval reads, or VLMEvalKit's TSV):
options as ``A``…``E`` columns (K-MMBench, every TSV), ``choice_a``…``choice_d`` (K-SEED, K-DTCBench on the hub), or
inside the question text (``… Options: A: x, B: y``, K-MMStar on the hub). Prompts follow lmms-eval's Korean tasks.

Answers are read by ``extract.extract_choice`` (rules and their sources: docs/benchmarks.md, "Reading the answer");
each set's published scorer gives a labelled second figure. K-MMBench uses circular evaluation: every question is
asked once per rotation of its options and counts as right only when every rotation is answered right. VLMEvalKit's
dev file already holds the rotations (``index`` + k·10⁶); otherwise they are generated here.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace

from align.benchmarks.common import (
    BenchContext,
    Tally,
    answer_budget,
    generate,
    key_part,
    proportion_se,
    user_prompt,
    write_rows,
)
from align.benchmarks.extract import extract_choice, first_character_hit, lmms_eval_letter, norm_text, vlmevalkit_letter
from align.benchmarks.sources import ImageRef, LazyImages, has_image, image_map, load_rows
from rollouts import Sampling

LETTERS = "ABCDEFGH"
CIRCULAR_OFFSET = 1_000_000
_OPTIONS_IN_TEXT = re.compile(r"\n?\s*(?:options|option|선택지|보기|옵션)\s*[:：]\s*(.*)$", re.IGNORECASE | re.DOTALL)
_OPTION_ITEM = re.compile(r"(?:^|[,\n]\s*)([A-H])\s*[:.)]\s*")


# The published scorer of each layout, for the labelled second figure: (metric, reader of the letter)
PUBLISHED_SCORERS = {
    "seed": ("accuracy_lmms_eval", lambda text, q: q.answer if first_character_hit(text, q.answer) else None),
    "dtc": ("accuracy_lmms_eval", lambda text, q: q.answer if first_character_hit(text, q.answer) else None),
    "mmstar": ("accuracy_lmms_eval", lambda text, q: lmms_eval_letter(text, "".join(q.options))),
    "mmbench": ("accuracy_vlmevalkit", lambda text, q: vlmevalkit_letter(text, q.options)),
}


@dataclass
class Item:
    id: str
    group: str
    question: str
    hint: str | None
    options: dict[str, str]
    answer: str
    category: str | None
    l2_category: str | None
    image: ImageRef  # decoded when its generation batch runs
    embedded: bool  # options were read from the question text
    rotation: int = 0


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() in ("", "nan")


def split_embedded_options(question: str) -> tuple[str, dict[str, str]]:
    """``"질문 … Options: A: x, B: y"`` → ("질문 …", {"A": "x", "B": "y"}) (MMStar's layout)."""
    m = _OPTIONS_IN_TEXT.search(question)
    if not m:
        return question, {}
    parts = _OPTION_ITEM.split(m.group(1))
    options = {parts[i]: parts[i + 1].strip().rstrip(",").strip() for i in range(1, len(parts) - 1, 2)}
    return question[: m.start()].rstrip(), options


def read_item(row: dict, pos: int, folder, images: dict, rows=None) -> Item | str:
    """One row as an Item (its image not decoded yet), or the reason it cannot be scored. ``rows``: the split the
    row came from, where the image is read again when it is needed (default: the row itself)."""
    question = row.get("question")
    if _blank(question):
        return "missing_question"
    rid = next((str(row[k]) for k in ("index", "question_id", "id") if not _blank(row.get(k))), str(pos))
    options = {c: str(row[c]).strip() for c in LETTERS if not _blank(row.get(c))}
    if not options:
        columns = {c: row.get(f"choice_{c.lower()}") for c in LETTERS}
        options = {c: str(v).strip() for c, v in columns.items() if not _blank(v)}
    _, in_text = split_embedded_options(str(question))
    embedded = bool(in_text)  # the question shows its options itself (MMStar; VLMEvalKit's TSV has both)
    options = options or in_text
    if len(options) < 2:
        return "missing_options"
    answer = str(row.get("answer") or "").strip()
    if answer.upper() in LETTERS and len(answer) == 1:
        answer = answer.upper()
    else:
        answer = next((k for k, v in options.items() if norm_text(v) == norm_text(answer)), answer)
    if answer not in options:
        return "answer_outside_options"
    if not has_image(row.get("image"), images):
        return "missing_image"
    image = ImageRef(rows if rows is not None else {pos: row}, pos, folder, images)
    group = str(int(float(rid)) % CIRCULAR_OFFSET) if re.fullmatch(r"\d+(\.0)?", rid) else rid
    category = next((str(row[k]) for k in ("category", "data_type") if not _blank(row.get(k))), None)
    l2 = next((str(row[k]) for k in ("l2-category", "l2_category", "L2-category") if not _blank(row.get(k))), None)
    hint = None if _blank(row.get("hint")) else str(row["hint"])
    return Item(rid, group, str(question), hint, options, answer, category, l2, image, embedded)


def rotate(item: Item, shift: int) -> Item:
    """The item with its options rotated by ``shift`` (option i shows old option i+shift); the answer follows."""
    keys = list(item.options)
    texts = [item.options[k] for k in keys]
    k = len(keys)
    options = {keys[i]: texts[(i + shift) % k] for i in range(k)}
    answer = keys[(keys.index(item.answer) - shift) % k]
    return replace(item, options=options, answer=answer, rotation=shift, id=f"{item.id}@{shift}")


def build_prompt(item: Item, layout: str, suffix: str) -> str:
    lines = "\n".join(f"{k}. {v}" for k, v in item.options.items())
    inline = ", ".join(f"{k}: {v}" for k, v in item.options.items())
    if layout == "mmbench":
        body = (f"{item.hint} " if item.hint else "") + f"{item.question}\n{lines}"
    elif layout == "seed":
        body = f"{item.question}\n{lines}"
    elif layout == "dtc":
        body = f"{item.question}\nOptions: {inline}"
    else:  # mmstar: options live in the question; rebuilt when rotated or read from columns
        stem = split_embedded_options(item.question)[0] if item.embedded else item.question
        body = item.question if item.embedded and item.rotation == 0 else f"{stem}\nOptions: {inline}"
    return f"{body}\n{suffix}" if suffix else body


def run(ctx: BenchContext) -> dict[str, float]:

    layout, suffix = ctx.option("layout", "seed"), ctx.option("suffix", "")
    if ctx.spec.prompt is not None:
        suffix = ctx.spec.prompt
    rows, folder = load_rows(ctx.spec.source or ctx.info.source, ctx.spec.split or ctx.info.split, ctx.info.name,
                             ctx.base_dir)  # fmt: skip
    images = image_map(rows)
    bad, items = Tally(), []
    for pos, row in enumerate(rows):  # one row at a time; no image is decoded here
        item = read_item(row, pos, folder, images, rows)
        if isinstance(item, str):
            bad.add(item, row.get("index", pos))
        else:
            items.append(item)
    circular = bool(ctx.option("circular", False))
    groups: dict[str, list[Item]] = defaultdict(list)
    for pos, item in enumerate(items):
        groups[item.group if circular else f"{item.id}#{pos}"].append(item)
    has_copies = any(len(g) > 1 for g in groups.values())  # VLMEvalKit's circular file: rotations included
    keys = list(groups)[: ctx.spec.limit] if ctx.spec.limit else list(groups)
    queries: list[Item] = []
    for key in keys:
        group = sorted(groups[key], key=lambda it: float(it.id) if re.fullmatch(r"\d+(\.0)?", it.id) else 0.0)
        if circular and not has_copies:
            group = [rotate(group[0], s) for s in range(len(group[0].options))]
        # an image that does not decode makes a bad row (probed one at a time; decoded again in its batch)
        broken = next((it for it in (group if has_copies else group[:1]) if it.image.load() is None), None)
        if broken is not None:
            bad.add("missing_image", broken.id)
            continue
        for rotation, item in enumerate(group):
            queries.append(replace(item, rotation=rotation, group=key))
    prompts = [user_prompt(build_prompt(q, layout, suffix)) for q in queries]
    sampling = Sampling(n=1, temperature=0.0, max_new_tokens=answer_budget(ctx))
    images_per_query = LazyImages([q.image for q in queries])
    outs = generate(ctx, prompts, images_per_query, sampling, f"{ctx.info.name} ({len(queries)} prompts)")
    hits: dict[str, list[bool]] = defaultdict(list)
    how_counts: Counter = Counter()
    out_rows, published_hits = [], defaultdict(list)
    published_name, published_read = PUBLISHED_SCORERS[layout]
    for q, prompt, out in zip(queries, prompts, outs):
        text = out[0].text
        letter, how = extract_choice(text, q.options)
        how_counts[how] += 1
        correct = letter == q.answer and how != "outside"
        hits[q.group].append(correct)
        published_hits[q.group].append(published_read(text, q) == q.answer)
        out_rows.append({"id": q.id, "group": q.group, "rotation": q.rotation, "category": q.category,
                         "l2_category": q.l2_category, "prompt": prompt[0]["content"], "options": q.options,
                         "answer": q.answer, "prediction": text, "extracted": letter, "how": how,
                         "correct": correct})  # fmt: skip
    write_rows(ctx.rows_path, out_rows)
    first: dict[str, Item] = {}
    for q in queries:
        first.setdefault(q.group, q)
    group_hit = {k: all(v) for k, v in hits.items()}
    n = len(group_hit)
    acc = sum(group_hit.values()) / n if n else 0.0
    metrics = {"accuracy": acc, "n": float(n), "rows": float(len(queries)),
               "unparsed": float(how_counts["none"] + how_counts["unclosed_reasoning"] + how_counts["hedge"]),
               "hedges": float(how_counts["hedge"]),
               "unclosed_reasoning": float(how_counts["unclosed_reasoning"]),
               "outside_options": float(how_counts["outside"])}  # fmt: skip
    se = proportion_se(acc, n)
    if se is not None:
        metrics["accuracy_stderr"] = se
    if n:  # the published scorer's figure for this set, labelled, scored the same way (circular or not)
        metrics[published_name] = sum(all(v) for v in published_hits.values()) / n
    if circular:
        metrics["accuracy_vanilla"] = sum(v[0] for v in hits.values()) / n if n else 0.0
    for attr, prefix in (("category", "category"), ("l2_category", "l2_category")):
        by: dict[str, list[bool]] = defaultdict(list)
        for k, hit in group_hit.items():
            if getattr(first[k], attr):
                by[getattr(first[k], attr)].append(hit)
        for cat, vals in by.items():
            metrics[f"{prefix}/{key_part(cat)}"] = sum(vals) / len(vals)
    return bad.report(ctx, metrics)
