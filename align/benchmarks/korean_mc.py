"""Generative multiple choice: K-Viscuit and KRETA (with an image), KMMLU-Redux, KMMLU-Pro and KoBALT-700 (text).

None of these five is in lm-eval 0.4.13, so each is read here in the columns it is published in and answered by
the checkpoint through the rollout engine (greedy; the text sets without an image):

* K-Viscuit (``ddehun/k-viscuit``, split ``test``; or the GitHub ``dataset/annotations.jsonl`` + ``images/``):
  ``question``, ``options`` (four texts), ``answer`` (0-based index), ``category``, ``question_type``, ``id_``,
  ``image`` / ``image_path``. Prompt and rule of its ``run_vqa.py``: the options as ``A. …`` lines, "Answer with the
  option's letter from the given choices directly.", and only a bare letter counts (``accuracy``).
* KRETA (``tabtoyou/KRETA``): ``id``, ``question``, ``A``-``D``, ``answer`` (letter), ``category`` (domain),
  ``image_type``, ``topic_difficulty`` (System1 / System2), ``image``. Prompt of its ``default`` setting ("… The last
  line of your response should be of the following format: 'Answer: LETTER' …"); the letter after the last
  ``Answer:`` counts, else the letter the answer names.
* KMMLU-Redux / KMMLU-Pro (``LGAI-EXAONE/…``, split ``test``): ``question``, ``options`` (list), ``solution``
  (1-based, as text), plus ``category`` / ``license_name`` / ``subject`` where present. KMMLU-Pro also reports how
  many licensure exams the model would pass (``licence_passes``).
* KoBALT-700 (``snunlp/KoBALT-700``, split ``raw`` or ``train`` by revision): ``Question`` with its options inside as
  ``A: …`` … ``J: …`` lines, ``Answer`` (letter), ``Class`` (linguistic domain), ``Subclass`` (phenomenon). Asked
  with the system and user prompt of its ``evaluation_protocol.md`` (answers end "정답은 X입니다.").

KMMLU-Redux/Pro are asked with our Korean instruction (their papers' prompts were not found; docs/benchmarks.md) to
end with "정답: X". The text sets are read from the last "정답: X" / "정답은 X" (A-J), else with the Korean-robust
``extract_choice`` of the NCSOFT sets ("(B)", "B. …", the option text; A-H).
Where a set's own rule is stricter, ``accuracy`` is the published rule and ``accuracy_lenient`` the robust reading,
both shown. Accuracy is the share of questions answered right, overall and per category
(``category/<column>/<value>``, e.g. ``category/topic_difficulty/System2``).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from align.benchmarks.choice import extract_choice
from align.benchmarks.common import BenchContext, Tally, generate, key_part, proportion_se, user_prompt, write_rows
from align.benchmarks.sources import image_map, load_rows, to_image
from rollouts import Sampling

TEN_LETTERS = "ABCDEFGHIJ"  # KoBALT has up to ten options (the instructions are in registry.py)
_EMBEDDED = re.compile(r"^\s*([A-J])\s*[:.)]\s*(.*\S)\s*$")
_ANSWER_LINE = re.compile(r"answer\s*[:：]", re.IGNORECASE)
_BARE = re.compile(r"[\s(\[*\"'`]*([A-J])[\s)\].*\"'`]*")
_ANSWER_KO = re.compile(r"정답\s*(?:은|는|이|:|：)?\s*[*(\[\"'`]*([A-J])(?![A-Za-z])")


@dataclass
class Item:
    id: str
    question: str
    options: dict[str, str]
    answer: str
    image: object = None
    groups: dict[str, str] = field(default_factory=dict)  # column -> value, for per-category accuracy


def _blank(value) -> bool:
    return value is None or str(value).strip() in ("", "nan", "None")


def _letter(value, options: dict[str, str], base: int) -> str | None:
    """An answer given as a letter, an index (``base`` 0 or 1) or the option's text, as the option's letter."""
    if _blank(value):
        return None
    text = str(value).strip().strip("()").strip()
    if len(text) == 1 and text.upper() in TEN_LETTERS:
        return text.upper()
    if re.fullmatch(r"\d+(\.0)?", text):
        pos = int(float(text)) - base
        return TEN_LETTERS[pos] if 0 <= pos < len(options) else None
    return next((k for k, v in options.items() if v.strip() == text), None)


def _list_options(value) -> dict[str, str]:
    if isinstance(value, str):  # a list stored as text (csv copies)
        import ast

        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return {}
    return {TEN_LETTERS[i]: str(v).strip() for i, v in enumerate(value or []) if i < len(TEN_LETTERS)}


def split_embedded(question: str) -> tuple[str, dict[str, str]]:
    """KoBALT's layout: the stem, then one ``A: …`` line per option."""
    lines = str(question).splitlines()
    start = next((i for i, ln in enumerate(lines) if re.match(r"^\s*A\s*[:.)]\s*\S", ln)), None)
    if start is None:
        return question, {}
    options = {}
    for ln in lines[start:]:
        m = _EMBEDDED.match(ln)
        if m:
            options[m.group(1)] = m.group(2)
        elif options and ln.strip():  # an option that wraps onto the next line
            last = list(options)[-1]
            options[last] += " " + ln.strip()
    return "\n".join(lines[:start]).rstrip(), options


def _groups(row: dict, columns: tuple[str, ...]) -> dict[str, str]:
    return {c: str(row[c]).strip() for c in columns if not _blank(row.get(c))}


def _image(row: dict, folder, images):
    image = to_image(row.get("image"), folder, images)
    if image is None and not _blank(row.get("image_path")):  # GitHub copy: images/<image_path> beside the jsonl
        image = to_image(f"images/{row['image_path']}", folder) or to_image(row["image_path"], folder)
    return image


def read_kviscuit(row: dict, pos: int, folder, images) -> Item | str:
    options = _list_options(row.get("options"))
    answer = _letter(row.get("answer"), options, base=0)
    return _item(row, pos, ("id_",), str(row.get("question") or ""), options, answer, _image(row, folder, images),
                 ("category", "question_type"))  # fmt: skip


def read_kreta(row: dict, pos: int, folder, images) -> Item | str:
    options = {c: str(row[c]).strip() for c in "ABCD" if not _blank(row.get(c))}
    answer = _letter(row.get("answer"), options, base=1)
    return _item(row, pos, ("id", "index"), str(row.get("question") or ""), options, answer,
                 _image(row, folder, images), ("category", "image_type", "topic_difficulty"))  # fmt: skip


def read_kmmlu_x(row: dict, pos: int, folder, images) -> Item | str:
    options = _list_options(row.get("options"))
    if not options:
        options = {c: str(row[c]).strip() for c in "ABCDE" if not _blank(row.get(c))}
    answer = _letter(next((row[k] for k in ("solution", "answer", "gold") if not _blank(row.get(k))), None),
                     options, base=1)  # fmt: skip
    return _item(row, pos, ("id", "index"), str(row.get("question") or ""), options, answer, None,
                 ("category", "license_name", "subject"))  # fmt: skip


def read_kobalt(row: dict, pos: int, folder, images) -> Item | str:
    question = str(row.get("Question") or row.get("question") or "")
    _, options = split_embedded(question)
    answer = _letter(row.get("Answer", row.get("answer")), options, base=1)
    return _item(row, pos, ("ID", "id"), question, options, answer, None, ("Class", "Subclass"))  # asked as published


def _item(row, pos, id_keys, question, options, answer, image, group_columns) -> Item | str:
    if not question.strip():
        return "missing_question"
    if len(options) < 2:
        return "missing_options"
    if answer is None or answer not in options:
        return "answer_outside_options"
    rid = next((str(row[k]) for k in id_keys if not _blank(row.get(k))), str(pos))
    return Item(rid, question, options, answer, image, _groups(row, group_columns))


READERS = {"kviscuit": read_kviscuit, "kreta": read_kreta, "kmmlu_x": read_kmmlu_x, "kobalt": read_kobalt}


def build_prompt(item: Item, layout: str, instruction: str) -> str:
    if layout == "template":  # KoBALT: the published template around the question as published (options inside)
        return instruction.format(question=item.question)
    lines = "\n".join(f"{k}. {v}" for k, v in item.options.items())
    if layout == "kreta":
        return f"Question: {item.question}\nOptions:\n{lines}\n{instruction}"
    if layout == "kviscuit":
        return f"{item.question}\n{lines}\n{instruction}"
    return f"{item.question}\n\n{lines}\n\n{instruction}"


def read_strict(text: str, options: dict[str, str], rule: str) -> str | None:
    """The set's rule: ``bare`` (K-Viscuit, published: the reply is the letter and nothing else), ``answer_line``
    (KRETA, published: the one option letter after the last ``Answer:``), ``answer_ko`` (the text sets, as our prompt
    asks: the letter of the last "정답: X", A-J); else the letter the reply names (``extract_choice``)."""
    text = str(text or "").strip()
    if rule == "bare":
        m = _BARE.fullmatch(text)
        return m.group(1) if m and m.group(1) in options else None
    if rule == "answer_line":
        heads = list(_ANSWER_LINE.finditer(text))
        if heads:
            tail = text[heads[-1].end() :]
            found = {m.group(1) for m in re.finditer(r"(?<![A-Za-z])([A-J])(?![A-Za-z])", tail)} & set(options)
            if len(found) == 1:
                return found.pop()
    if rule == "answer_ko":
        found = _ANSWER_KO.findall(text)
        if found:
            return found[-1] if found[-1] in options else None
    letter, how = extract_choice(text, options)
    return letter if how != "outside" else None


def licence_passes(items: list[Item], hits: list[bool]) -> dict[str, bool]:
    """KMMLU-Pro's pass rule per licence (``license_name``): every subject at least 40 % right and the subjects'
    mean at least 60 %, as the KMMLU-Redux/Pro paper scores a model against each licensure exam."""
    by: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for it, hit in zip(items, hits):
        licence = it.groups.get("license_name")
        if licence:
            by[licence][it.groups.get("subject", "all")].append(hit)
    out = {}
    for licence, subjects in by.items():
        accs = [sum(v) / len(v) for v in subjects.values()]
        out[licence] = min(accs) >= 0.4 and sum(accs) / len(accs) >= 0.6
    return out


def run(ctx: BenchContext) -> dict[str, float]:
    layout, rule = ctx.option("layout"), ctx.option("rule", "lenient")
    instruction = ctx.spec.prompt if ctx.spec.prompt is not None else ctx.option("instruction", "")
    rows, folder = load_rows(ctx.spec.source or ctx.info.source, ctx.spec.split or ctx.info.split, ctx.info.name,
                             ctx.base_dir)  # fmt: skip
    images = image_map(rows)
    reader, needs_image = READERS[ctx.option("reader")], bool(ctx.option("image", False))
    bad, items = Tally(), []
    for pos, row in enumerate(rows):
        item = reader(row, pos, folder, images)
        if isinstance(item, Item) and needs_image and item.image is None:
            item = "missing_image"
        if isinstance(item, str):
            bad.add(item, next((row[k] for k in ("id_", "id", "ID", "index") if not _blank(row.get(k))), pos))
        else:
            items.append(item)
    items = items[: ctx.spec.limit] if ctx.spec.limit else items
    system = [{"role": "system", "content": ctx.option("system")}] if ctx.option("system") else []
    prompts = [system + user_prompt(build_prompt(it, layout, instruction)) for it in items]
    sampling = Sampling(n=1, temperature=0.0, max_new_tokens=ctx.spec.max_new_tokens or ctx.recipe.eval.max_new_tokens)
    outs = generate(ctx, prompts, [[it.image] for it in items] if needs_image else None, sampling,
                    f"{ctx.info.name} ({len(items)} prompts)")  # fmt: skip
    hits, lenient, by_group, how_counts, out_rows = [], [], defaultdict(list), Counter(), []
    for it, prompt, out in zip(items, prompts, outs):
        text = out[0].text
        loose, how = extract_choice(text, it.options)
        how_counts[how] += 1
        strict = read_strict(text, it.options, rule) if rule != "lenient" else (loose if how != "outside" else None)
        hits.append(strict == it.answer)
        lenient.append(loose == it.answer and how != "outside")
        for column, value in it.groups.items():
            by_group[(column, value)].append(hits[-1])
        out_rows.append({"id": it.id, **it.groups, "prompt": prompt[-1]["content"], "options": it.options,
                         "answer": it.answer, "prediction": text, "extracted": strict, "lenient": loose,
                         "correct": hits[-1]})  # fmt: skip
    write_rows(ctx.rows_path, out_rows)
    n = len(items)
    acc = sum(hits) / n if n else 0.0
    metrics = {"accuracy": acc, "n": float(n), "unparsed": float(how_counts["none"]),
               "outside_options": float(how_counts["outside"])}  # fmt: skip
    if n > 1:
        metrics["accuracy_stderr"] = proportion_se(acc, n)
    if rule != "lenient":
        metrics["accuracy_lenient"] = sum(lenient) / n if n else 0.0
    for (column, value), vals in by_group.items():
        metrics[f"category/{key_part(column)}/{key_part(value)}"] = sum(vals) / len(vals)
    passes = licence_passes(items, hits) if ctx.option("licence_pass") else {}
    if passes:
        metrics["licences_passed"] = float(sum(passes.values()))
        metrics["licence_pass_rate"] = sum(passes.values()) / len(passes)
    return bad.report(ctx, metrics)
