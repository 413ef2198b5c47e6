"""Shared-prompt GRPO (align/shared_prompt.py): each unique prompt and its images encoded once per group, exact
against TRL's path on tiny models of every family — per-token log-probs and entropies, gradients, training steps
(LoRA and full fine-tuning, prompts of different lengths, mixed image / text-only rows, shuffled and chunked
batches) — transformers generation that prefills each prompt once and samples what TRL samples, and the fallbacks."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from align.errors import StageError
from align.shared_prompt import SharedPrefill
from align.trl_extensions import GRPOExtras, SharedPrompt

G = 4
ARITH = "민수는 사과 3개를 가지고 있었습니다. 친구가 두 개를 더 주었습니다. 모두 몇 개인가요?"
QUESTIONS = ["이 그림의 색은 무엇인가요?", "도형은 몇 개?", ARITH, "색?"]  # different lengths; row 2 has no image


@pytest.fixture(scope="module")
def family_model(align_cache):
    from align.models import resolve_model_path
    from align.models.compose import compose
    from align.models.tiny import build_tiny_family

    def get(name: str) -> str:
        if name == "idefics3":
            return resolve_model_path("tiny-korean-vlm", progress=None)
        if name == "llava":
            out = align_cache / "models" / "tiny-composed-llava"
            if not (out / "config.json").exists():
                compose("tiny-clip-vision", "tiny-korean-lm", out)
            return str(out)
        return str(build_tiny_family(name, align_cache / "models" / f"tiny-{name}"))

    return get


def _dataset(vision: bool):
    from datasets import Dataset
    from PIL import Image

    rows = []
    for i, q in enumerate(QUESTIONS):
        row = {"prompt": [{"role": "user", "content": q}]}
        if vision:  # row 2 is text-only: a mixed batch
            row["images"] = [] if i == 2 else [Image.new("RGB", (64, 64), (200, 40 * i, 30))]
        rows.append(row)
    return Dataset.from_list(rows)


def _trainer(path, tmp_path, mode="auto", lora=False, family_name=None, **args):
    from trl import GRPOConfig

    from align.models import load_model_and_processor
    from align.models.families import is_vision_config
    from align.recipe import LoraSpec, ModelSpec
    from align.training import lora_config
    from align.trl_extensions import grpo_trainer_class

    spec = ModelSpec(trust_remote_code=family_name in ("hyperclovax_vision", "kanana_v"))
    model, processor, family = load_model_and_processor(path, spec, "float32")
    config = {"output_dir": str(tmp_path / "out"), "use_cpu": True, "report_to": "none", "bf16": False, "seed": 0,
              "per_device_train_batch_size": len(QUESTIONS) * G, "num_generations": G, "max_completion_length": 6,
              "max_steps": 1, "logging_steps": 1, "gradient_checkpointing": False, "learning_rate": 1e-3, **args}  # fmt: skip
    cls = grpo_trainer_class()
    trainer = cls(model=model, reward_funcs=[_reward], args=GRPOConfig(**config),
                  train_dataset=_dataset(is_vision_config(model.config)), processing_class=processor,
                  peft_config=lora_config(LoraSpec(r=4, alpha=8, dropout=0.0)) if lora else None,
                  extras=GRPOExtras(extra_image_keys=family.image_inputs, shared_prompt=SharedPrompt(mode)))  # fmt: skip
    return trainer


def _reward(completions, **kw):
    return [float(len(str(c)) % 3) for c in completions]


def _batch(trainer):
    ds = trainer.train_dataset
    return [ds[i] for i in range(len(ds)) for _ in range(G)]  # what TRL's sampler gives: G copies in a row


IMAGE_KEYS = ("pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "image_sizes",
              "mm_token_type_ids", "token_type_ids")  # fmt: skip


def _logps_and_grads(trainer, batch, shared: bool, perm, batch_size=None):
    from trl import GRPOTrainer

    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)[perm]
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)[perm]
    n = batch["completion_ids"].size(1)
    image = {k: batch[k] for k in IMAGE_KEYS if batch.get(k) is not None}
    image = _permute(image, perm)
    model = trainer.model
    model.zero_grad()
    trl = GRPOTrainer._get_per_token_logps_and_entropies
    args = (trainer, model, ids, mask, n, batch_size, True)
    if shared:
        out = trainer.extras.shared_prompt.logps(
            model, ids, mask, n, batch_size, True, image, lambda: trl(*args, **image)
        )
        assert out is not None, trainer.extras.shared_prompt.summary()
    else:
        out = trl(*args, **image)
    logps, entropies, _ = out
    weights = torch.linspace(-1, 1, logps.numel()).view_as(logps)
    ((logps * weights).sum() + 0.1 * entropies.sum()).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return logps.detach(), entropies.detach(), grads


def _permute(image: dict, perm, n_rows: int | None = None):
    """Select or shuffle rows (as TRL's _prepare_inputs does) keeping each row's images."""
    from align.shared_prompt import merge_rows, split_rows

    counts = image.pop("num_images", None)
    rows = split_rows(image, counts, n_rows or len(perm))
    out = merge_rows([rows[i] for i in perm.tolist()])
    if counts is not None:
        out["num_images"] = [counts[i] for i in perm.tolist()]
    return out


@contextlib.contextmanager
def _vision_inputs(model):
    """Leading sizes of what the vision tower is given (images, tiles or patches), call by call."""
    seen = []
    tower = next((m for n, m in model.named_modules() if n.endswith(("vision_model", "visual", "vision_tower"))), None)
    if tower is None:  # a text model
        yield seen
        return

    def hook(module, args, kwargs):
        x = next(a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor))
        seen.append(x.size(0))

    handle = tower.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def _assert_grads_close(a: dict, b: dict):
    assert a.keys() == b.keys() and a
    scale = max(g.norm().item() for g in a.values())
    for k, g in a.items():
        # relative 1e-4; parameters whose true gradient is 0 (a key bias under softmax) carry only rounding noise
        assert (g - b[k]).norm().item() <= 1e-4 * g.norm().item() + 1e-6 * scale, k


CASES = [("idefics3", False), ("idefics3", True), ("qwen2_5_vl", False), ("qwen2_5_vl", True),
         ("varco_vision", False), ("hyperclovax_text", True), ("llava", False), ("hyperclovax_think", False),
         ("hyperclovax_vision_v2", False), ("kanana_v", False),
         ("aiku_vlm", False), ("varco_vision_2", False)]  # fmt: skip


@pytest.mark.parametrize("family,lora", CASES, ids=[f"{f}-{'lora' if lo else 'full'}" for f, lo in CASES])
def test_logps_entropies_grads_and_generation_equal_trls(family_model, tmp_path, family, lora):
    trainer = _trainer(family_model(family), tmp_path, lora=lora, family_name=family)
    assert trainer.extras.shared_prompt.reason is None
    sp, trainer.extras.shared_prompt = trainer.extras.shared_prompt, None
    torch.manual_seed(0)
    plain = trainer._generate_and_score_completions(_batch(trainer))
    trainer.extras.shared_prompt = sp
    torch.manual_seed(0)
    batch = trainer._generate_and_score_completions(_batch(trainer))
    # generation: each prompt prefilled once, the same samples as TRL's generate from the same seed
    assert sp.prefill.counts["shared"] == 1 and torch.equal(plain["completion_ids"], batch["completion_ids"])
    lengths = batch["prompt_mask"].sum(1)
    assert lengths.min() < lengths.max()  # prompts of different lengths, left padded
    perm = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(1))
    sp.checked = True  # compare the two paths here, not through the first-batch check
    with _vision_inputs(trainer.model) as seen:
        ref = _logps_and_grads(trainer, batch, False, perm)
        trl_images, seen[:] = sum(seen), []
        mine = _logps_and_grads(trainer, batch, True, perm)
    if family not in (
        "hyperclovax_text",
        "hyperclovax_think",
    ):  # the vision tower ran on each prompt's images once, not G times
        assert trl_images > 0 and sum(seen) * G == trl_images
    mask = batch["completion_mask"][perm].bool()
    assert (ref[0] - mine[0]).abs()[mask].max() <= 1e-5
    assert (ref[1] - mine[1]).abs()[mask].max() <= 1e-5
    _assert_grads_close(ref[2], mine[2])
    assert sp.counts["prompts_encoded"] == len(QUESTIONS) and sp.counts["prompts_trl_would_encode"] == 4 * G
    # chunked like TRL's old/ref passes (batch_size rows at a time; chunks cut groups), without gradients
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    image = {k: batch[k] for k in IMAGE_KEYS if batch.get(k) is not None}
    with torch.no_grad():
        chunked = sp.logps(trainer.model, ids, mask, batch["completion_ids"].size(1), 6, False, image, None)[0]
    assert (chunked[perm] - ref[0]).abs()[mask[:, -chunked.size(1) :][perm].bool()].max() <= 1e-5


@pytest.mark.parametrize("family,lora", [("idefics3", True), ("hyperclovax_text", False)])
def test_grpo_training_steps_equal_trls(family_model, tmp_path, family, lora):
    """Three GRPO steps with the reference (beta: LoRA's disabled adapter, or a reference copy in full fine-tuning)
    and old-policy (num_iterations=2) passes: the same losses and final parameters as TRL's path."""
    runs = {}
    for mode in ("off", "on"):
        trainer = _trainer(family_model(family), tmp_path / mode, mode=mode, lora=lora, max_steps=3, beta=0.04,
                           num_iterations=2, per_device_train_batch_size=2 * G)  # fmt: skip
        start = {k: v.detach().clone() for k, v in trainer.model.named_parameters() if v.requires_grad}
        torch.manual_seed(0)
        trainer.train()
        logs = [x for x in trainer.state.log_history if "loss" in x]
        update = torch.cat([(v.detach() - start[k]).flatten() for k, v in trainer.model.named_parameters()
                            if v.requires_grad])  # fmt: skip
        runs[mode] = (logs, update, trainer.extras.shared_prompt.summary())
    (trl_logs, trl_update, off), (logs, update, on) = runs["off"], runs["on"]
    assert off["path"] == "trl" and on["path"] == "shared" and not on.get("fallbacks")
    # every log-prob pass shared: 3 policy passes, 2 generations x (old + ref) passes; generation prefilled once
    assert on["log_prob_passes"] == {"shared": 7, "trl": 0} and on["generations"] == {"shared": 2, "trl": 0}
    assert len(logs) == 3
    for a, b in zip(trl_logs, logs):
        for key in ("loss", "kl", "entropy", "reward"):
            assert b.get(key) == pytest.approx(a.get(key), abs=1e-5), key
    # the same parameter updates up to rounding (Adam turns rounding noise on near-zero gradients into small steps)
    assert trl_update.norm() > 0 and (update - trl_update).norm() <= 1e-3 * trl_update.norm()


def test_fallbacks_say_why_and_take_trls_path(family_model, tmp_path, monkeypatch):
    from trl import GRPOTrainer

    import align.shared_prompt as shared

    trainer = _trainer(family_model("idefics3"), tmp_path / "i")
    # reentrant checkpointing: off for the whole run ('on' stops and says why); HyperCLOVAX-SEED-Vision's own image
    # inputs share (tests/test_real_size_faults.py)
    trainer.args.gradient_checkpointing, trainer.args.gradient_checkpointing_kwargs = True, {"use_reentrant": True}
    assert "reentrant" in SharedPrompt("auto").setup(trainer)
    with pytest.raises(StageError, match="shared_prompt is 'on'"):
        SharedPrompt("on").setup(trainer)
    trainer.args.gradient_checkpointing, trainer.args.gradient_checkpointing_kwargs = False, None
    # dropout: TRL draws a mask per completion, the shared path one per prompt: auto keeps TRL's path, on shares
    trainer.model.config.text_config.attention_dropout = 0.1
    assert "dropout is on (text_config.attention_dropout = 0.1)" in SharedPrompt("auto").setup(trainer)
    assert "shared-prompt path on" in SharedPrompt("on").setup(trainer)
    trainer.model.config.text_config.attention_dropout = 0.0
    batch = trainer._generate_and_score_completions(_batch(trainer))
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    n = batch["completion_ids"].size(1)
    image = {k: batch[k] for k in IMAGE_KEYS if batch.get(k) is not None}

    def trl(rows=slice(None)):
        sub = _permute(dict(image), torch.arange(len(ids))[rows], len(ids))
        return GRPOTrainer._get_per_token_logps_and_entropies(trainer, trainer.model, ids[rows], mask[rows], n, **sub)

    sp = trainer.extras.shared_prompt
    # a batch in which no prompt repeats: nothing to share, TRL's path, counted
    one_each = torch.arange(0, len(ids), G)
    sub = _permute(dict(image), one_each, len(ids))
    assert sp.logps(trainer.model, ids[one_each], mask[one_each], n, None, False, sub, lambda: trl(one_each)) is None
    assert sp.fallbacks["no prompt repeats in the batch"] == 1 and not sp.checked
    # the first-batch check catches a wrong shared result (here: every row given the first prompt's cache)
    monkeypatch.setattr(shared, "group_rows", lambda ids, mask, rows: ([0], torch.zeros(len(ids), dtype=torch.long)))
    with pytest.raises(StageError, match="differ from TRL's"):
        SharedPrompt("on").logps(trainer.model, ids, mask, n, None, False, dict(image), trl)
    assert sp.logps(trainer.model, ids, mask, n, None, False, dict(image), trl) is None
    assert "differ from TRL's" in sp.reason and sp.summary()["path"] == "trl"
    assert "not used: the first batch's log-probs differ" in sp.report()
    # once off, TRL's path: the trainer's own method gives TRL's log-probs
    out = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, n, **image)
    assert torch.equal(out[0], trl()[0])
    # EXAONE 4's sliding-window cache layers: generation and log-prob passes both take TRL's path, saying why
    exaone = _trainer(family_model("exaone_text"), tmp_path / "e")
    exaone.train()
    summary = exaone.extras.shared_prompt.summary()
    assert summary["path"] == "trl" and "sliding-window" in summary["reason"]
    assert summary["generations"] == {"shared": 0, "trl": 1} and "sliding-window" in summary["generation_reason"]


def test_hf_engine_prefills_each_prompt_once(family_model):
    """n samples per prompt: the language model prefills each prompt once (transformers 5 already encodes the images
    once), and samples what plain generate samples from the same seed."""
    from PIL import Image

    from rollouts import Sampling
    from rollouts.hf import HFEngine

    engine = HFEngine.from_path(family_model("idefics3"), dtype="float32")
    questions = [q for i, q in enumerate(QUESTIONS) if i != 2]  # one batch (the engine batches by image count)
    prompts = [[{"role": "user", "content": q}] for q in questions]
    images = [[Image.new("RGB", (64, 64), (30, 60 * i, 90))] for i in range(len(questions))]
    sampling = Sampling(n=G, temperature=1.0, max_new_tokens=6, seed=3)
    engine.prefill.checked = True  # count the generation's own calls (the one-time check is exercised by GRPO's)
    calls = []
    hook = engine.model.get_input_embeddings().register_forward_pre_hook(lambda m, a: calls.append(a[0].shape))
    try:
        shared = engine.generate(prompts, images, sampling)
        shared_calls, calls[:] = list(calls), []
        engine.prefill = SharedPrefill("off")  # the stage's shared_prompt: off
        plain = engine.generate(prompts, images, sampling)
    finally:
        hook.remove()
    assert engine.prefill.counts == {"plain": 1} and not engine.prefill.fallbacks
    (b, width), u = calls[0], len(questions)
    assert b == u * G and shared_calls[0] == (u, width - 1)  # the prefill: 3 prompts instead of 12 rows
    assert shared_calls[1:] == [(b, 1)] * len(calls)  # then the same steps: the last prompt token, decode steps
    for a, c in zip(shared, plain):
        assert [x.token_ids for x in a] == [x.token_ids for x in c]
        for x, y in zip(a, c):
            assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)


def test_hf_engine_follows_the_shared_prompt_setting(family_model, capsys):
    """The engine's prefill takes the stage's shared_prompt through the generators' one fallback: EXAONE 4's
    sliding-window cache cannot be shared, so auto samples with a prefill per sample from then on (saying why) and
    on stops; a batch it cannot serve (one-token prompts) falls back for that call only."""
    import yaml

    from align.recipe import validate
    from rollouts import Sampling
    from rollouts.hf import HFEngine

    prompts, sampling = [[{"role": "user", "content": "색?"}]], Sampling(n=2, temperature=1.0, max_new_tokens=2, seed=0)
    auto = HFEngine.from_path(family_model("exaone_text"), dtype="float32")
    assert len(auto.generate(prompts, None, sampling)[0]) == 2
    assert auto.generate(prompts, None, sampling)
    assert "sliding-window" in auto.prefill.reason and auto.prefill.counts == {"plain": 2}
    assert "prefilled per sample from now on" in capsys.readouterr().out
    with pytest.raises(StageError, match="shared_prompt is 'on'.*sliding-window"):
        HFEngine(auto.model, auto.processor, shared_prompt="on").generate(prompts, None, sampling)
    sp = SharedPrefill("on")
    one_token = torch.ones(2, 1, dtype=torch.long)
    assert sp.generate(auto.model, auto.model.generate, one_token, one_token, {}, None, repeat=2) is None
    assert sp.reason is None and sp.fallbacks == {"prompts of one token": 1}
    # the setting in a recipe (YAML reads a bare off as false): RFT's sampling and GRPO's pre-pass pass it on
    text = "name: t\nstages: [{type: rft, shared_prompt: off}, {type: grpo, shared_prompt: on}]"
    recipe = validate(yaml.safe_load(text))
    assert [s.shared_prompt for s in recipe.stages] == ["off", "on"]


def test_grpo_stage_reports_the_path_it_took(tmp_path, tiny_model, capsys):
    from align.pipeline import run_pipeline
    from align.recipe import load_recipe
    from tests.conftest import write_recipe

    f = write_recipe(tmp_path / "r.yaml", f"""
name: sp
output_dir: {tmp_path}
data: {{train_size: 8, eval_size: 4, seed: 5, tasks: [color, arith]}}
eval: {{enabled: false}}
rewards: [{{name: accuracy}}]
rollout: {{engine: hf}}
stages:
  - type: grpo
    args: {{max_steps: 1, num_generations: 4, per_device_train_batch_size: 8, max_completion_length: 4}}
""")  # fmt: skip
    run = run_pipeline(load_recipe(f)).path
    summary = json.loads((run / "grpo" / "summary.json").read_text())["shared_prompt"]
    assert summary["mode"] == "auto" and summary["path"] == "shared" and summary["reason"] is None
    assert summary["prompts_encoded"] * 4 == summary["prompts_trl_would_encode"] == 8
    assert summary["generations"] == {"shared": 1, "trl": 0}
    out = capsys.readouterr().out
    assert "shared-prompt path auto" in out and "log-prob passes encoded 2 prompts instead of 8" in out


def test_grpo_on_the_shared_path_is_reproducible_on_two_threads(tmp_path, tiny_model):
    """The same recipe twice gives the same weights, bit for bit: the G completions' gradients are summed into their
    prompt in a fixed order (a plain index's backward accumulates across threads in the order they finish, and two
    runs of this recipe differed)."""
    from align.pipeline import run_pipeline
    from align.recipe import load_recipe
    from tests.conftest import write_recipe

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    weights = []
    try:
        for i in range(2):
            f = write_recipe(tmp_path / f"r{i}.yaml", f"""
name: det
output_dir: {tmp_path / str(i)}
seed: 3
data: {{train_size: 64, eval_size: 4, seed: 5, tasks: [color, count, arith]}}
eval: {{enabled: false}}
reward_audit: off
rewards: [{{name: accuracy}}, {{name: korean_consistency, weight: 0.1}}]
rollout: {{engine: hf}}
stages:
  - type: grpo
    args: {{max_steps: 6, num_generations: 8, per_device_train_batch_size: 32, max_completion_length: 8,
            learning_rate: 1.0e-3}}
""")  # fmt: skip
            run = run_pipeline(load_recipe(f)).path
            assert json.loads((run / "grpo" / "summary.json").read_text())["shared_prompt"]["path"] == "shared"
            weights.append((run / "grpo" / "model" / "model.safetensors").read_bytes())
    finally:
        torch.set_num_threads(threads)
    assert weights[0] == weights[1]
