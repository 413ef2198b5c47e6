"""What AIKU's connector buys a small VLM: image tokens, prompt length, time to first token and generation speed of
``mlp2x_gelu`` (LLaVA-1.5, one token per patch) against ``aiku --pool 2`` and ``aiku --pool 4`` (and ``aiku --pool
1``: the same connector without pooling), all composed from the same encoder and language model in one run.

    OMP_NUM_THREADS=1 python scripts/bench_compose_latency.py [--engine hf|vllm|both] [--tokens 64] [--repeats 5]
        [--image-size 336 --patch-size 14] [--lm-hidden 128 --lm-layers 4] [--threads 1] [--out DIR]

Models (random weights, built offline into ``--out``, reused when present):
  encoder   a tiny CLIP vision tower (hidden 64, 3 layers) at CLIP ViT-L/14-336's geometry by default: 336-px images
            in 14-px patches, a 24×24 grid, so the image-token counts are the real model's (576 / 144 / 36)
  language  a Llama with the embedded Korean tokenizer and the HyperCLOVAX chat template (hidden ``--lm-hidden``,
            ``--lm-layers`` layers, head_dim 64, 2048 positions)
Per variant, one request at a time, greedy, a fixed Korean question about one image, after a warm-up call:
  time to first token   wall time of a one-token generation (prefill, encoder and connector included)
  tokens/s              ``--tokens`` tokens (the end-of-turn tokens ignored, so every variant generates as many) /
                        wall time of that call; decode tokens/s = (tokens − 1) / (that time − time to first token)
Medians over ``--repeats`` (transformers: the variants measured in turn within each repeat); ratios against the first variant of the same run: mlp2x_gelu on transformers; on vLLM
``aiku --pool 1`` (vLLM's LLaVA module imports torchvision, which does not load beside CPU torch, so mlp2x_gelu is
skipped there). These machines are shared and noisy: quote ratios from one run, with the thread count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rollouts.vllm_engine import prepare_process

prepare_process()

VARIANTS = [("mlp2x_gelu", None), ("aiku", 1), ("aiku", 2), ("aiku", 4)]
QUESTION = "이 이미지를 자세히 설명해 주세요."


def build_models(out: Path, args) -> dict[str, Path]:
    from align.models.compose import compose
    from align.models.tiny.composed import build_tiny_encoder
    from align.models.tiny.korean_vlm import TinySpec, build_tiny

    encoder = build_tiny_encoder("clip", out / f"clip-{args.image_size}-{args.patch_size}", args.image_size,
                                 args.patch_size)  # fmt: skip
    spec = TinySpec(text_only=True, text_hidden=args.lm_hidden, text_layers=args.lm_layers,
                    text_heads=max(1, args.lm_hidden // 64), text_intermediate=4 * args.lm_hidden,
                    max_position_embeddings=2048)  # fmt: skip
    lm = build_tiny(out / f"llama-{args.lm_hidden}x{args.lm_layers}", spec)
    models = {}
    for projector, pool in VARIANTS:
        name = projector if pool is None else f"{projector} --pool {pool}"
        folder = out / f"vlm-{args.image_size}-{args.lm_hidden}x{args.lm_layers}-{projector}-{pool or 1}"
        if not (folder / "config.json").exists():
            compose(str(encoder), str(lm), folder, projector, pool, seed=0, progress=lambda m: None)
        models[name] = folder
    return models


def _image(size: int):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (240, 240, 240))
    draw = ImageDraw.Draw(img)
    draw.ellipse([size // 8, size // 8, size // 2, size // 2], fill=(220, 40, 40))
    draw.rectangle([size // 2, size // 2, size - size // 8, size - size // 8], fill=(40, 90, 220))
    return img


def _figures(image_tokens: int, prompt_tokens: int, ttft: list[float], total: list[float], tokens: int) -> dict:
    ttft, total = statistics.median(ttft), statistics.median(total)
    return {"image_tokens": image_tokens, "prompt_tokens": prompt_tokens, "ttft_ms": ttft * 1000,
            "tokens_per_s": tokens / total, "decode_tokens_per_s": (tokens - 1) / (total - ttft)}  # fmt: skip


def _seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def measure_hf(models: dict[str, Path], args) -> dict[str, dict]:
    """All variants loaded at once and measured in turn, repeat after repeat, so that the machine's load drifts over
    all of them alike."""
    import torch

    from align.models import load_model_and_processor

    calls = {}
    for name, folder in models.items():
        model, processor, _ = load_model_and_processor(str(folder), None, "float32")
        model.eval()
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        batch = processor(text=[text], images=[[_image(args.image_size)]], return_tensors="pt",
                          add_special_tokens=False)  # fmt: skip

        def generate(n, model=model, batch=batch):
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False)
            assert out.shape[1] - batch["input_ids"].shape[1] == n

        generate(args.tokens)  # warm-up
        ids = batch["input_ids"][0]
        calls[name] = (generate, int((ids == model.config.image_token_id).sum()), int(ids.numel()))
    ttft = {name: [] for name in models}
    total = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, (generate, _, _) in calls.items():
            ttft[name].append(_seconds(generate, 1))
            total[name].append(_seconds(generate, args.tokens))
    return {name: _figures(image, prompt, ttft[name], total[name], args.tokens)
            for name, (_, image, prompt) in calls.items()}  # fmt: skip


def measure_vllm(folder: Path, args) -> dict:
    from vllm import LLM, SamplingParams

    from align.models import load_processor
    from rollouts.vllm_engine import shutdown_llm

    processor = load_processor(str(folder))
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text",
                                          "text": QUESTION}]}], add_generation_prompt=True, tokenize=False)  # fmt: skip
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    llm = LLM(model=str(folder), dtype="float32", seed=0, max_model_len=2048, kv_cache_memory_bytes=2**29,
              enable_prefix_caching=False)  # fmt: skip
    request = {"prompt_token_ids": ids, "multi_modal_data": {"image": _image(args.image_size)}}
    image_id = llm.llm_engine.model_config.hf_config.image_token_id
    prompt = {}

    def generate(n):
        out = llm.generate([request], SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True), use_tqdm=False)
        assert len(out[0].outputs[0].token_ids) == n
        prompt["ids"] = list(out[0].prompt_token_ids)

    ttft, total = [], []
    try:
        generate(args.tokens)  # warm-up
        for _ in range(args.repeats):
            # the encoder cache would skip the image on a repeated request: encode it each time, as a new image
            llm.llm_engine.reset_encoder_cache()
            ttft.append(_seconds(generate, 1))
            llm.llm_engine.reset_encoder_cache()
            total.append(_seconds(generate, args.tokens))
    finally:
        shutdown_llm(llm, destroy_process_group=True)
    return _figures(prompt["ids"].count(image_id), len(prompt["ids"]), ttft, total, args.tokens)


def report(engine: str, results: dict[str, dict]) -> None:
    base_name = next(iter(results))
    base = results[base_name]
    print(f"\n{engine}:")
    print(f"{'variant':<16}{'img tok':>8}{'prompt':>8}{'TTFT ms':>10}{'tok/s':>9}{'decode/s':>10}"
          f"{'  ratios vs ' + base_name + ': prompt, TTFT, tok/s':>44}")  # fmt: skip
    for name, r in results.items():
        ratios = (f"{r['prompt_tokens'] / base['prompt_tokens']:.2f}×, {r['ttft_ms'] / base['ttft_ms']:.2f}×, "
                  f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}×")  # fmt: skip
        print(f"{name:<16}{r['image_tokens']:>8}{r['prompt_tokens']:>8}{r['ttft_ms']:>10.1f}{r['tokens_per_s']:>9.1f}"
              f"{r['decode_tokens_per_s']:>10.1f}{ratios:>44}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=("hf", "vllm", "both"), default="hf")
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per request")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=336)
    parser.add_argument("--patch-size", type=int, default=14)
    parser.add_argument("--lm-hidden", type=int, default=128)
    parser.add_argument("--lm-layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (transformers engine)")
    parser.add_argument("--out", help="where the models are built (default: a temporary folder)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-compose-"))
    models = build_models(out, args)
    figures: dict = {"settings": vars(args), "connector_parameters": {
        name: json.loads((folder / "composed_from.json").read_text())["connector_parameters"]
        for name, folder in models.items()}}  # fmt: skip
    for engine in ("hf", "vllm") if args.engine == "both" else (args.engine,):
        if engine == "hf":
            results = measure_hf(models, args)
        else:  # one engine at a time; vLLM's LLaVA module needs torchvision (absent beside CPU torch): no mlp2x_gelu
            results = {name: measure_vllm(folder, args) for name, folder in models.items() if name != "mlp2x_gelu"}
        figures[engine] = results
        report("transformers generate" if engine == "hf" else "vLLM (workbench plugin)", results)
    print(f"\nconnector parameters: {figures['connector_parameters']}")
    print(f"models in {out}; encoder {args.image_size} px / {args.patch_size}-px patches, language model hidden "
          f"{args.lm_hidden} × {args.lm_layers} layers; {args.tokens} tokens per request; median of {args.repeats}; "
          f"torch threads {args.threads}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
