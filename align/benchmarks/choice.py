"""Multiple-choice VLM benchmarks: K-MMBench (circular), K-SEED, K-MMStar, K-DTCBench.

Rows are read in the columns each set is published in (the hub parquet that lmms-eval reads, or VLMEvalKit's TSV):
options as ``A``…``E`` columns (K-MMBench, every TSV), ``choice_a``…``choice_d`` (K-SEED, K-DTCBench on the hub), or
inside the question text (``… Options: A: x, B: y``, K-MMStar on the hub). Prompts follow lmms-eval's Korean tasks.

Answers are read by ``extract_choice`` (rules and their sources: docs/benchmarks.md, "Reading the answer"): a leading
letter, an answer statement, the only letter standing alone, the option's text, or its number. K-MMBench uses circular
evaluation: every question is asked once per rotation of its options and counts as right only when every rotation is
answered right. VLMEvalKit's dev file already holds the rotations
(``index`` + k·10⁶); otherwise they are generated here.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from itertools import pairwise

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
from align.benchmarks.sources import ImageRef, LazyImages, has_image, image_map, load_rows
from rollouts import Sampling

LETTERS = "ABCDEFGH"
CIRCULAR_OFFSET = 1_000_000
_FULLWIDTH = str.maketrans("ＡＢＣＤＥＦＧＨ（）．：，①②③④⑤⑥⑦⑧", "ABCDEFGH().:,ABCDEFGH")
# Hangul that may follow an option letter directly: a copula or a particle ("B입니다", "B번", "B가 정답", "B로 답").
# A capital glued to any other Hangul is part of a word ("B형 간염", "A형"), not a choice.
_COPULA = r"(?:입니다|이에요|이예요|예요|이요|이다|이야|야|요|임|이죠|죠)"
_PARTICLE = r"(?:번|가|이|는|은|를|을|로|으로|와|과|도|만|라고|라는|이라고|이라는|이고|이며|이지만|인데|일|인)"
_WORD_CHAR = r"[A-Za-z0-9가-힣]"
_END = rf"(?:번)?(?:{_COPULA}|{_PARTICLE})?(?!{_WORD_CHAR})"
_OPEN = r"[\s(\[*\"'“‘`]*"
# 1. a reply that starts with a letter answers with it ("B", "(B)", "**B**", "B. 바나나", "B입니다. 왜냐하면 …");
#    a particle after it means the option is being discussed ("A는 사과이고 …"), "A dog" is the article
_LEADING = re.compile(rf"^[\s(\[*\"'“‘`#>]*([A-H])(?:번)?{_COPULA}?(?!{_WORD_CHAR})")
# 2. an answer statement ("정답은 B입니다", "답: D", "The correct answer is **B**", "옵션 B"); the last one counts
_STATEMENT = re.compile(r"(?i:정답|답변|답|answer|option|옵션|선택지)\s*(?i:은|는|이|:|=|is|would be|will be)?\s*"
                        r"(?i:바로|the|option|옵션|선택지)?" + _OPEN + rf"([A-H]){_END}")  # fmt: skip
# 3. the only option letter standing alone anywhere ("I'd go with B.", "B가 맞습니다")
_TOKEN = re.compile(rf"(?<!{_WORD_CHAR})([A-H]){_END}")
_NEGATED = re.compile(r"\s*(?:가|이|는|은)?\s*(?:아니|아닌|아님|아닙|not\b|is not\b|isn't)", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{\s*\(?([A-H])\)?\s*\}")  # "\boxed{B}", as reasoning models end their answers
_OPTION_LINE = re.compile(r"\s*[(\[]?([A-H])[.):\]]")  # "A. 사과": a line of the options repeated
_ARTICLE = re.compile(r"A\s+[a-z]")  # "A cat …": the English article, not option A
_REASONING_END = "</think>"
_PUNCT = r"[\s.,!?·'\"“”‘’()\[\]{}:;*`]"
_NUMBER = re.compile(r"(?<![0-9.,])[0-9]+(?:[.,][0-9]+)*(?![0-9])")
_OPTIONS_IN_TEXT = re.compile(r"\n?\s*(?:options|option|선택지|보기|옵션)\s*[:：]\s*(.*)$", re.IGNORECASE | re.DOTALL)
_OPTION_ITEM = re.compile(r"(?:^|[,\n]\s*)([A-H])\s*[:.)]\s*")


def _norm(text: str) -> str:
    return re.sub(_PUNCT + "+", "", str(text)).lower()


def strip_reasoning(text: str) -> str | None:
    """The reply after its reasoning block; None when a ``<think>`` block never closes (the budget ran out while
    the model was still thinking: nothing in it is an answer). A reply whose chat template opened the block in the
    prompt starts inside it and has only the closing tag: the answer is what follows that tag."""
    t = str(text or "")
    if _REASONING_END in t:
        return t.rsplit(_REASONING_END, 1)[1]
    return None if "<think>" in t else t


def _option_pattern(text: str) -> re.Pattern | None:
    """The option's text as a pattern: spacing and punctuation free inside, and bounded where it starts or ends
    with a digit (20 is not in 120 or 2.05) or a Latin letter (cat is not in category)."""
    core = _norm(text)
    if not core:
        return None
    body = (_PUNCT + "*").join(re.escape(c) for c in core)

    def edge(c: str, before: bool) -> str:
        if c.isdigit():
            return r"(?<![0-9])(?<![0-9][.,])" if before else r"(?![0-9]|[.,][0-9])"
        if c.isascii() and c.isalpha():
            return r"(?<![a-z])" if before else r"(?![a-z])"
        return ""

    return re.compile(edge(core[0], True) + body + edge(core[-1], False))


def _lists_options(t: str) -> bool:
    """Whether the reply repeats the options: two consecutive lines that start with different option letters."""
    starts = [(i, m.group(1)) for i, line in enumerate(t.splitlines()) if (m := _OPTION_LINE.match(line))]
    return any(j == i + 1 and a != b for (i, a), (j, b) in pairwise(starts))


def _negated(t: str, m: re.Match) -> bool:
    return bool(_NEGATED.match(t, m.end(1))) or t[max(0, m.start(1) - 4) : m.start(1)].lower().endswith("not ")


def _by_text(t: str, options: dict[str, str]) -> str | None:
    """The one option whose text the reply contains (when one option's text holds another's, the longer)."""
    low = t.lower()
    hits = [k for k, v in options.items() if (p := _option_pattern(v)) is not None and p.search(low)]
    hits = [k for k in hits if not any(k != o and _norm(options[k]) in _norm(options[o]) for o in hits)]
    return hits[0] if len(hits) == 1 else None


def _by_number(t: str, options: dict[str, str]) -> str | None:
    """Options that are numbers with units ("3개", "15 cm"): the one whose number the reply names as a whole
    number (options 10/20/30/40: "총 120개입니다" names none of them)."""

    def number(v: str) -> str | None:
        found = _NUMBER.findall(str(v))
        return found[0].replace(",", "") if len(found) == 1 else None

    nums = {k: number(v) for k, v in options.items()}
    if None in nums.values() or len(set(nums.values())) < len(nums):
        return None
    said = {n.replace(",", "") for n in _NUMBER.findall(t)}
    hits = [k for k, n in nums.items() if n in said]
    return hits[0] if len(hits) == 1 else None


def extract_choice(text: str, options: dict[str, str]) -> tuple[str | None, str]:
    """The option letter a free-form reply picks, and the rule that found it: ``leading``, ``statement``,
    ``letter``, ``text``, ``number``; ``outside`` for a letter that is not an option, ``unclosed_reasoning`` for a
    reply still inside ``<think>``, ``none``. Letters are capitals A–H only (lower-case English words are never
    letters), standing alone or before a Korean ending (docs/benchmarks.md, "Reading the answer")."""
    t = strip_reasoning(text)
    if t is None:
        return None, "unclosed_reasoning"
    t = t.translate(_FULLWIDTH).strip()
    if not t:
        return None, "none"

    def found(letter: str, how: str):
        return (letter, how) if letter in options else (letter, "outside")

    lead = _LEADING.match(t)
    echoed = _lists_options(t)
    if lead and not echoed and not _ARTICLE.match(t, lead.start(1)) and not _negated(t, lead):
        return found(lead.group(1), "leading")
    boxed = _BOXED.findall(t)
    if boxed:
        return found(boxed[-1], "statement")
    statements = [m for m in _STATEMENT.finditer(t) if not _negated(t, m)]
    if statements:
        return found(statements[-1].group(1), "statement")
    letters = {m.group(1) for m in _TOKEN.finditer(t) if not _ARTICLE.match(t, m.start(1)) and not _negated(t, m)}
    if len(letters) == 1:
        return found(letters.pop(), "letter")
    if not letters:
        by_text = _by_text(t, options)
        if by_text:
            return by_text, "text"
        by_number = _by_number(t, options)
        if by_number:
            return by_number, "number"
    return None, "none"


def first_character_hit(text: str, answer: str) -> bool:
    """lmms-eval's K-SEED / K-DTCBench scorer: the stripped reply's first character equals the answer letter (any
    case). Reported beside ``accuracy`` as ``accuracy_first_char`` for those two sets."""
    reply = str(text or "").strip()
    return reply[:1].lower() == answer.strip().lower()


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
        answer = next((k for k, v in options.items() if _norm(v) == _norm(answer)), answer)
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
    out_rows, first_char = [], []
    for q, prompt, out in zip(queries, prompts, outs):
        text = out[0].text
        letter, how = extract_choice(text, q.options)
        how_counts[how] += 1
        correct = letter == q.answer and how != "outside"
        hits[q.group].append(correct)
        first_char.append(first_character_hit(text, q.answer))
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
               "unparsed": float(how_counts["none"] + how_counts["unclosed_reasoning"]),
               "unclosed_reasoning": float(how_counts["unclosed_reasoning"]),
               "outside_options": float(how_counts["outside"])}  # fmt: skip
    se = proportion_se(acc, n)
    if se is not None:
        metrics["accuracy_stderr"] = se
    if layout in ("seed", "dtc") and not circular and first_char:  # the published scorer's figure, labelled
        metrics["accuracy_first_char"] = sum(first_char) / len(first_char)
    if circular:
        metrics["accuracy_vanilla"] = sum(v[0] for v in hits.values()) / n if n else 0.0
    for attr, prefix in (("category", "category"), ("l2_category", "l2_category")):
        by: dict[str, list[bool]] = defaultdict(list)
        for k, hit in group_hit.items():
            if getattr(first[k], attr):
                by[getattr(first[k], attr)].append(hit)
        for cat, vals in by.items():
            metrics[f"{prefix}/{key_part(cat)}"] = sum(vals) / len(vals)
    metrics.update(bad.metrics())
    if bad.total:
        ctx.log(f"  {ctx.info.name}: skipped {bad.summary()}")
    return metrics
