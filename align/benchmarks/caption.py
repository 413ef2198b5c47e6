"""Captioning: CIDEr-D and BLEU-4 against reference captions, and KR-SBERT cosine similarity.

CIDEr-D and BLEU-4 are written here from their published definitions (Vedantam et al. 2015, with the clipping and
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

import math
import re
from collections import Counter

from align.benchmarks.common import BenchContext, Tally, bootstrap_se, generate, mean, mean_se, user_prompt, write_rows
from align.benchmarks.sources import load_rows, to_image
from align.errors import UserError
from rollouts import Sampling

_PUNCT = re.compile(r"[\"'`~!@#$%^&*()\-_=+\[\]{}\\|;:,.<>/?·…“”‘’「」『』《》〈〉、。！？，：；]")


def tokenize(text: str, mode: str = "space") -> list[str]:
    text = _PUNCT.sub(" ", str(text).lower())
    return list(text.replace(" ", "").replace("\t", "").replace("\n", "")) if mode == "char" else text.split()


def ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _all_ngrams(tokens: list[str], max_n: int = 4) -> Counter:
    out: Counter = Counter()
    for n in range(1, max_n + 1):
        out.update(ngrams(tokens, n))
    return out


def cider_d(candidates: list[list[str]], references: list[list[list[str]]], sigma: float = 6.0,
            max_n: int = 4) -> tuple[float, list[float]]:  # fmt: skip
    """Corpus CIDEr-D and the per-image scores. ``candidates[i]``: tokens; ``references[i]``: token lists."""
    refs_counts = [[_all_ngrams(r, max_n) for r in refs] for refs in references]
    df: Counter = Counter()
    for counts in refs_counts:
        df.update(set().union(*[set(c) for c in counts]) if counts else set())
    log_n = math.log(float(len(candidates))) if candidates else 0.0

    def vec(counts: Counter):
        v: list[dict] = [{} for _ in range(max_n)]
        norms = [0.0] * max_n
        for gram, tf in counts.items():
            w = float(tf) * (log_n - math.log(max(1.0, df[gram])))
            v[len(gram) - 1][gram] = w
            norms[len(gram) - 1] += w * w
        return v, [math.sqrt(x) for x in norms]

    scores = []
    for cand, refs, counts_refs in zip(candidates, references, refs_counts):
        v_c, n_c = vec(_all_ngrams(cand, max_n))
        total = [0.0] * max_n
        for ref_tokens, counts in zip(refs, counts_refs):
            v_r, n_r = vec(counts)
            delta = len(cand) - len(ref_tokens)
            for n in range(max_n):
                val = sum(min(w, v_r[n].get(g, 0.0)) * v_r[n].get(g, 0.0) for g, w in v_c[n].items())
                if n_c[n] != 0 and n_r[n] != 0:
                    val /= n_c[n] * n_r[n]
                total[n] += val * math.exp(-(delta**2) / (2 * sigma**2))
        refs_n = max(1, len(counts_refs))
        scores.append(sum(total) / max_n / refs_n * 10.0)
    return (sum(scores) / len(scores) if scores else 0.0), scores


def bleu(candidates: list[list[str]], references: list[list[list[str]]], max_n: int = 4) -> float:
    """Corpus BLEU-``max_n``: clipped n-gram precisions pooled over the corpus, geometric mean, brevity penalty
    against the closest reference length (ties: the shorter)."""
    correct, guess = [0] * max_n, [0] * max_n
    cand_len = ref_len = 0
    for cand, refs in zip(candidates, references):
        cand_len += len(cand)
        ref_len += min((len(r) for r in refs), key=lambda n: (abs(n - len(cand)), n)) if refs else 0
        for n in range(1, max_n + 1):
            c = ngrams(cand, n)
            max_ref: Counter = Counter()
            for r in refs:
                for g, k in ngrams(r, n).items():
                    max_ref[g] = max(max_ref[g], k)
            correct[n - 1] += sum(min(k, max_ref[g]) for g, k in c.items())
            guess[n - 1] += max(len(cand) - n + 1, 0)
    if cand_len == 0 or any(g == 0 or c == 0 for c, g in zip(correct, guess)):
        return 0.0
    log_p = sum(math.log(c / g) for c, g in zip(correct, guess)) / max_n
    bp = 1.0 if cand_len >= ref_len else math.exp(1 - ref_len / cand_len)
    return bp * math.exp(log_p)


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
    metrics.update(bad.metrics())
    if bad.total:
        ctx.log(f"  caption: skipped {bad.summary()}")
    return metrics
