"""K-LLaVA-W: open-ended answers about an image, judged against reference answers by a local judge.

Columns (hub parquet, as lmms-eval reads it): ``question_id``, ``question``, ``image``, ``caption`` (the image
described in words, shown to the judge), ``gpt_answer`` (the reference), ``category`` (conv / detail / complex);
VLMEvalKit's TSV names the reference ``gpt4_ans``. The score is LLaVA-Bench's relative score: the mean judge score
of the model's answers over the mean judge score of the reference answers, × 100, overall and per category. As
published, a judge reply that the published parser cannot read counts as (−1, −1) in both means (``unparsed_judge``
counts them); ``relative_score_lenient`` is our labelled second figure: replies read leniently, unreadable ones left
out.
"""

from __future__ import annotations

from collections import defaultdict

from align.benchmarks.common import (
    BenchContext,
    Tally,
    answer_budget,
    ask_judge,
    bootstrap_se,
    generate,
    key_part,
    user_prompt,
    write_rows,
)
from align.benchmarks.extract import strip_reasoning
from align.benchmarks.judge import (
    FAILED,
    PUBLISHED_SYSTEM,
    judge_prompt,
    load_rules,
    make_judge,
    parse_scores,
    parse_scores_lenient,
    rule_for,
)
from align.benchmarks.sources import image_map, load_rows, to_image
from rollouts import Sampling


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    text = str(value).strip()
    return text if text and text != "nan" else None


def relative_score(pairs: list[tuple[float, float]]) -> float | None:
    """LLaVA-Bench's relative score: mean(answer scores) / mean(reference scores) × 100."""
    if not pairs:
        return None
    ref = sum(p[0] for p in pairs) / len(pairs)
    ans = sum(p[1] for p in pairs) / len(pairs)
    return ans / ref * 100 if ref > 0 else None


def score_reviews(items: list[dict], reviews: list[str], seed: int = 0) -> tuple[dict[str, float], list[dict]]:
    """Metrics and per-row scores from the judge's replies, by the published rule (failed replies as (−1, −1)), with
    the lenient figure beside it."""
    pairs, lenient, by_cat, rows = [], [], defaultdict(list), []
    for it, review in zip(items, reviews):
        scores, loose = parse_scores(review), parse_scores_lenient(review)
        pairs.append(scores)
        by_cat[it["category"]].append(scores)
        if loose is not None:
            lenient.append(loose)
        rows.append({"id": it["id"], "category": it["category"], "review": review, "reference_score": scores[0],
                     "answer_score": scores[1], "parsed": scores != FAILED})  # fmt: skip
    metrics = {
        "judged": float(sum(p != FAILED for p in pairs)),
        "unparsed_judge": float(sum(p == FAILED for p in pairs)),
    }
    rel = relative_score(pairs)
    if rel is not None:
        metrics["relative_score"] = rel
        metrics["model_score"] = sum(p[1] for p in pairs) / len(pairs) * 10
        metrics["reference_score"] = sum(p[0] for p in pairs) / len(pairs) * 10
        se = bootstrap_se(pairs, relative_score, seed=seed)
        if se is not None:
            metrics["relative_score_stderr"] = se
    loose_rel = relative_score(lenient)
    if loose_rel is not None:
        metrics["relative_score_lenient"] = loose_rel
    for cat, cat_pairs in by_cat.items():
        value = relative_score(cat_pairs)
        if value is not None:
            metrics[f"relative_score/{key_part(cat)}"] = value
    return metrics, rows


def run(ctx: BenchContext) -> dict[str, float]:
    rows, folder = load_rows(ctx.spec.source or ctx.info.source, ctx.spec.split or ctx.info.split, ctx.info.name,
                             ctx.base_dir)  # fmt: skip
    images = image_map(rows)
    bad, items = Tally(), []
    for pos, row in enumerate(rows[: ctx.spec.limit] if ctx.spec.limit else rows):
        rid = str(row.get("question_id", row.get("index", pos)))
        question, reference = _text(row.get("question")), _text(row.get("gpt_answer", row.get("gpt4_ans")))
        image = to_image(row.get("image"), folder, images)
        reason = "missing_question" if not question else "missing_reference" if not reference else \
            "missing_image" if image is None else None  # fmt: skip
        if reason:
            bad.add(reason, rid)
            continue
        items.append({"id": rid, "question": question, "reference": reference, "image": image,
                      "context": _text(row.get("caption")) or "", "category": _text(row.get("category")) or "all"})  # fmt: skip
    rules, rule_source = load_rules(ctx.spec.judge.rule_file, ctx.base_dir)
    system = ctx.spec.judge.system_prompt or PUBLISHED_SYSTEM
    for it in items:  # a rule file without a category of the data fails before any answer is generated
        rule_for(rules, it["category"], rule_source)
    if not rules:
        ctx.log(f"  warning: {ctx.info.name}: the judge reads our own wording of the review rule; set judge.rule_file "
                "to the published rule file for scores comparable with published K-LLaVA-W results")  # fmt: skip
    # a judge server is checked before the answers are generated (fails fast); a judge model loads after them
    judge = make_judge(ctx.spec.judge, ctx.recipe.rollout, ctx.recipe.seed) if ctx.spec.judge.url else None
    prompts = [user_prompt(it["question"] + (ctx.spec.prompt or "")) for it in items]
    sampling = Sampling(n=1, temperature=0.0, max_new_tokens=answer_budget(ctx))
    outs = generate(ctx, prompts, [[it["image"]] for it in items], sampling, f"{ctx.info.name} answers")
    answers = [o[0].text for o in outs]
    # the judge reads the answer, not the reasoning before it (an answer still inside <think> when cut is empty)
    shown = [(strip_reasoning(a) or "").strip() for a in answers]
    judge = judge or make_judge(ctx.spec.judge, ctx.recipe.rollout, ctx.recipe.seed)
    convs = [judge_prompt(it["question"], it["context"], it["reference"], a, it["category"],
                          rule_for(rules, it["category"], rule_source), system)
             for it, a in zip(items, shown)]  # fmt: skip
    reviews = ask_judge(ctx, judge, convs)
    metrics, out_rows = score_reviews(items, reviews, ctx.recipe.seed)
    for it, answer, row in zip(items, answers, out_rows):
        row.update({"question": it["question"], "reference": it["reference"], "prediction": answer,
                    "judge": judge.name, "rule": rule_source})  # fmt: skip
    write_rows(ctx.rows_path, out_rows)
    metrics["n"] = float(len(items))
    unparsed = int(metrics["unparsed_judge"])
    if unparsed:
        first = next(r for r in reviews if parse_scores(r) == FAILED)
        ctx.log(f"  {ctx.info.name}: {unparsed} of {len(items)} judge replies had no readable pair of scores on their "
                f"first line and count as (-1, -1), as published (first: {first[:120]!r}); see {ctx.rows_path}")  # fmt: skip
    return bad.report(ctx, metrics)
