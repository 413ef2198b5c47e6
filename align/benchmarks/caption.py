"""Captioning: CIDEr-D and BLEU-4 against reference captions, and KR-SBERT cosine similarity.

CIDEr-D and BLEU-4 (``rewards/text_metrics.py``, so rewards can use them too) are written from their published definitions (Vedantam et al. 2015, with the clipping and
Gaussian length penalty of the coco-caption implementation, σ = 6, × 10; Papineni et al. 2002, corpus level, closest
reference length) and checked against pycocoevalcap 1.2 on fixed strings (``tests/test_benchmarks.py``). Captions
are lower-cased, stripped of punctuation and split on spaces (``tokenize: space``, Korean eojeol) or into
characters (``tokenize: char``). KR-SBERT similarity is the cosine between the embedding of the generated caption
and each reference's, averaged over references, through sentence-transformers (``sbert:`` a model directory or hub
id; ``none`` skips it).

Rows: ``image`` plus references in ``captions`` / ``references`` (a list) or ``caption`` / ``answer`` (a string or
list); the prompt is ``prompt:`` (default 이미지를 한 문장으로 설명해 주세요.).
"""

from __future__ import annotations

from align.benchmarks.common import BenchContext, Tally, bootstrap_se, generate, mean, mean_se, user_prompt, write_rows
from align.benchmarks.sources import load_rows, to_image
from align.errors import UserError
from rewards.text_metrics import bleu, cider_d, tokenize
from rollouts import Sampling


def sbert_similarity(model_path: str, predictions: list[str], references: list[list[str]]) -> list[float]:
    """Per row: mean cosine similarity between the prediction's and each reference's sentence embedding."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UserError("captioning's KR-SBERT similarity needs sentence-transformers",
                        "pip install 'korean-vlm-align[bench]' (or set sbert: none)") from None  # fmt: skip
    try:
        model = SentenceTransformer(model_path, device="cpu")
    except Exception as e:  # noqa: BLE001 - offline hub id, missing folder
        raise UserError(f"cannot load the sentence-embedding model {model_path} ({str(e).splitlines()[0][:160]})",
                        "download it (`hf download snunlp/KR-SBERT-V40K-klueNLI-augSTS --local-dir DIR`) and set "
                        "`sbert: DIR` on the caption benchmark, or `sbert: none` to skip it") from None  # fmt: skip
    flat = [r for refs in references for r in refs]
    emb = model.encode(predictions + flat, normalize_embeddings=True, convert_to_numpy=True)
    pred_emb, ref_emb = emb[: len(predictions)], emb[len(predictions) :]
    out, k = [], 0
    for i, refs in enumerate(references):
        sims = [float(pred_emb[i] @ ref_emb[k + j]) for j in range(len(refs))]
        k += len(refs)
        out.append(sum(sims) / len(sims) if sims else 0.0)
    return out


def _references(row: dict) -> list[str]:
    for key in ("captions", "references", "caption", "answer"):
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return [value.strip()]
        if isinstance(value, (list, tuple)):
            refs = [str(v).strip() for v in value if str(v).strip()]
            if refs:
                return refs
    return []


def run(ctx: BenchContext) -> dict[str, float]:

    source = ctx.spec.source or ctx.info.source
    if not source:
        raise UserError("the caption benchmark needs a source", "set `source:` to a file or folder with `image` and "
                        "`captions` columns (or a hub id)")  # fmt: skip
    rows, folder = load_rows(source, ctx.spec.split, ctx.info.name, ctx.base_dir)
    bad, items = Tally(), []
    for pos, row in enumerate(rows[: ctx.spec.limit] if ctx.spec.limit else rows):
        rid, refs = str(row.get("id", row.get("image_id", pos))), _references(row)
        image = to_image(row.get("image"), folder)
        if not refs or image is None:
            bad.add("missing_references" if not refs else "missing_image", rid)
            continue
        items.append((rid, refs, image))
    prompt = ctx.spec.prompt or ctx.option("prompt")
    sampling = Sampling(n=1, temperature=0.0, max_new_tokens=ctx.spec.max_new_tokens or ctx.recipe.eval.max_new_tokens)
    outs = generate(ctx, [user_prompt(prompt)] * len(items), [[it[2]] for it in items], sampling, "caption")
    preds = [o[0].text.strip() for o in outs]
    mode = ctx.spec.tokenize or "space"
    cand_tok = [tokenize(p, mode) for p in preds]
    ref_tok = [[tokenize(r, mode) for r in it[1]] for it in items]
    cider, per_image = cider_d(cand_tok, ref_tok)
    metrics = {"n": float(len(items)), "cider": cider, "bleu4": bleu(cand_tok, ref_tok)}
    pairs = list(zip(cand_tok, ref_tok))
    for key, se in (("cider", mean_se(per_image)),
                    ("bleu4", bootstrap_se(pairs, lambda s: bleu([a for a, _ in s], [b for _, b in s]),
                                           seed=ctx.recipe.seed))):  # fmt: skip
        if se is not None:
            metrics[f"{key}_stderr"] = se
    sbert_path = ctx.spec.sbert or ctx.option("sbert")
    sims = None
    if sbert_path and sbert_path.lower() != "none" and items:
        sims = sbert_similarity(sbert_path, preds, [it[1] for it in items])
        metrics["sbert"] = mean(sims)
        if (se := mean_se(sims)) is not None:
            metrics["sbert_stderr"] = se
    write_rows(ctx.rows_path, [{"id": it[0], "references": it[1], "prediction": p, "cider": c,
                                "sbert": sims[i] if sims else None}
                               for i, (it, p, c) in enumerate(zip(items, preds, per_image))])  # fmt: skip
    return bad.report(ctx, metrics)
