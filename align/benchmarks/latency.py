"""Inference latency through the rollout engine on fixed Korean prompts (one generated image each, 64×64 unless
``image_size`` says otherwise, or none with ``text_only``).

Per prompt, one at a time, greedy, after one warm-up call: time to first token = the wall time of a call that
generates one token (prefill + one decode step); tokens/s = generated tokens / wall time of the full call
(``max_new_tokens``, stopping early on the model's end-of-turn tokens); decode tokens/s = (tokens − 1) / (full time
− time to first token). The engine does not stream, so time to first token is measured by a separate one-token
call; with vLLM the prefix cache may shorten the second prefill (reported as measured). Both engines run the same
prompts; the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import time

from align.benchmarks.common import BenchContext, mean, mean_se, progress, user_prompt, write_rows
from rollouts import Sampling

PROMPTS = [
    "이 이미지를 자세히 설명해 주세요.",
    "이미지에 보이는 물체의 색깔과 모양을 말해 주세요.",
    "사진 속 장면에서 무슨 일이 일어나고 있나요?",
    "이미지에 적힌 글자가 있다면 읽어 주세요.",
    "이 그림을 보고 짧은 이야기를 한국어로 지어 주세요.",
    "서울에서 부산까지 가는 방법을 세 가지 알려 주세요.",
    "김치찌개를 끓이는 순서를 차례대로 설명해 주세요.",
    "인공지능이 무엇인지 초등학생에게 설명해 주세요.",
]


def _image(i: int, size: int):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (240, 240, 240))
    draw = ImageDraw.Draw(img)
    colours = [(220, 40, 40), (40, 90, 220), (40, 170, 70), (230, 190, 30)]
    draw.ellipse([size // 8, size // 8, size // 2, size // 2], fill=colours[i % 4])
    draw.rectangle([size // 2, size // 2, size - size // 8, size - size // 8], fill=colours[(i + 1) % 4])
    return img


def run(ctx: BenchContext) -> dict[str, float]:

    count = ctx.spec.limit or len(PROMPTS)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(count)]
    text_only = bool(ctx.spec.text_only)
    images = None if text_only else [[_image(i, ctx.spec.image_size or 64)] for i in range(count)]
    max_new = ctx.spec.max_new_tokens or 128
    engine = ctx.engine()
    first, full = Sampling(temperature=0.0, max_new_tokens=1), Sampling(temperature=0.0, max_new_tokens=max_new)
    engine.generate([user_prompt(prompts[0])], images[:1] if images else None, full)  # warm-up
    rows = []
    with progress(count, "latency") as advance:
        for i, text in enumerate(prompts):
            img = [images[i]] if images else None
            t0 = time.perf_counter()
            engine.generate([user_prompt(text)], img, first)
            ttft = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = engine.generate([user_prompt(text)], img, full)[0][0]
            total = time.perf_counter() - t0
            tokens = len(out.token_ids)
            decode = (tokens - 1) / (total - ttft) if tokens > 1 and total > ttft else None
            rows.append({"prompt": text, "image": not text_only, "ttft_ms": ttft * 1000, "seconds": total,
                         "tokens": tokens, "tokens_per_s": tokens / total if total > 0 else None,
                         "decode_tokens_per_s": decode, "engine": getattr(engine, "name", "?")})  # fmt: skip
            advance()
    write_rows(ctx.rows_path, rows)
    metrics = {"n": float(count), "tokens": float(sum(r["tokens"] for r in rows)) / count}
    for key in ("ttft_ms", "tokens_per_s", "decode_tokens_per_s"):
        values = [r[key] for r in rows if r[key] is not None]
        if values:
            metrics[key] = mean(values)
            if (se := mean_se(values)) is not None:
                metrics[f"{key}_stderr"] = se
    return metrics
