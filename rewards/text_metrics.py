"""Caption metrics on token lists: CIDEr-D and BLEU, from their published definitions (Vedantam et al. 2015, with the
clipping and Gaussian length penalty of the coco-caption implementation, σ = 6, × 10; Papineni et al. 2002, corpus
level, closest reference length), checked against pycocoevalcap 1.2 on fixed strings (``tests/test_benchmarks.py``,
``tests/test_vrlhf.py``). Used by the captioning benchmark (``align/benchmarks/caption.py``) and the describe-task
rewards (``rewards/describe.py``)."""

from __future__ import annotations

import math
import re
from collections import Counter

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
