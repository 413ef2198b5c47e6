"""Pin-upgrade canaries: what ``align/trl_extensions.py`` assumes about TRL 1.16's private methods. Run these first
after upgrading TRL; a failure names the assumption that no longer holds (then read the override's comment)."""

from __future__ import annotations

import inspect

import pytest
from PIL import Image


def _params(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def test_overridden_private_methods_keep_their_signatures():
    from trl import GRPOTrainer, SFTTrainer
    from trl.generation.vllm_generation import VLLMGeneration

    # the override takes the first seven by position and passes every image input on by keyword
    assert _params(GRPOTrainer._get_per_token_logps_and_entropies) == [
        "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy", "compute_aux_loss",
        "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes", "num_tiles",
        "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids",
    ]  # fmt: skip
    import ast

    import trl.trainer.grpo_trainer as grpo_module

    calls = [node for node in ast.walk(ast.parse(inspect.getsource(grpo_module))) if isinstance(node, ast.Call)
             and getattr(node.func, "attr", None) == "_get_per_token_logps_and_entropies"]  # fmt: skip
    assert calls and all(len(call.args) <= 4 for call in calls)  # image inputs always arrive by keyword
    assert _params(GRPOTrainer._compute_loss) == ["model", "inputs"]
    assert _params(GRPOTrainer._generate) == ["prompts"]
    assert _params(GRPOTrainer._generate_and_score_completions) == ["inputs"]
    assert _params(SFTTrainer.compute_loss)[:4] == ["model", "inputs", "return_outputs", "num_items_in_batch"]
    # vLLM colocate: the engine TRL builds, the sync and the generate call the workbench wraps
    assert _params(VLLMGeneration.generate)[:3] == ["prompts", "images", "num_generations"]
    assert _params(VLLMGeneration.sync_weights) == [] and hasattr(VLLMGeneration, "_iter_named_params")
    import trl.generation.vllm_generation as vg

    assert "LLM(" in inspect.getsource(VLLMGeneration) and hasattr(vg, "LLM")  # the module global that is wrapped


@pytest.fixture(scope="module")
def trainer(tiny_model, small_data, tmp_path_factory):
    """The workbench's GRPO trainer on the tiny VLM with a mixed batch: two image rows, two text-only rows."""
    from trl import GRPOConfig

    from align.models import load_model, load_processor
    from align.trl_extensions import grpo_trainer_class

    image_rows = small_data.train.filter(lambda r: len(r["images"]) > 0).select(range(2))
    text_rows = small_data.train.filter(lambda r: len(r["images"]) == 0).select(range(2))
    rows = [dict(r) for r in image_rows] + [dict(r) for r in text_rows]
    for r in rows:
        r.pop("completion")

    def by_length(prompts, completions, **kwargs):
        return [float(len(c[0]["content"]) % 3) for c in completions]

    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("canary")), use_cpu=True, bf16=False, report_to="none",
                      per_device_train_batch_size=8, num_generations=2, max_completion_length=4, max_steps=1,
                      save_strategy="no", logging_steps=1)  # fmt: skip
    from datasets import Dataset

    trainer = grpo_trainer_class()(model=load_model(tiny_model, dtype="float32"), reward_funcs=[by_length], args=args,
                                   train_dataset=Dataset.from_list(rows), processing_class=load_processor(tiny_model))  # fmt: skip
    return trainer, rows


def test_generate_hands_back_images_at_index_6(trainer):
    """``_generate`` returns 8 values with the images 7th, text-only rows as None (the workbench makes them [])."""
    from trl import GRPOTrainer
    from trl.data_utils import prepare_multimodal_messages

    trainer, rows = trainer
    prompts = [prepare_multimodal_messages(r["prompt"], images=r["images"]) if r["images"] else r["prompt"]
               for r in rows]  # fmt: skip
    raw = GRPOTrainer._generate(trainer, prompts)
    assert len(raw) == 8
    images = raw[6]
    assert isinstance(images[0][0], Image.Image) and images[2] is None
    fixed = trainer._generate(prompts)
    assert fixed[6][2] == [] and isinstance(fixed[6][0][0], Image.Image)


def test_generate_and_score_output_and_logs(trainer, tmp_path):
    """The batch dict and ``_logs`` fields the zero-variance filter and the rollout log read."""
    trainer, rows = trainer
    from align.trl_extensions import GRPOExtras

    trainer.extras = GRPOExtras(rollout_log=tmp_path / "rollouts.jsonl", filter_zero_variance=True)
    trainer.model.train()
    out = trainer._generate_and_score_completions([rows[i // 2] for i in range(8)])  # each prompt twice
    assert {"advantages", "completion_mask", "num_items_in_batch", "prompt_ids", "completion_ids"} <= set(out)
    informative = out["advantages"].abs() > 1e-8
    assert int(out["num_items_in_batch"]) == max(1, int((out["completion_mask"] * informative[:, None]).sum()))
    assert trainer.extras.filter_stats["groups"] == 4
    assert {"completion", "advantages", "rewards"} <= set(trainer._logs)
    assert trainer._logs["completion"].maxlen == trainer.args.generation_batch_size == 8  # the log reads the last 8
    assert list(trainer._logs["rewards"]) == ["by_length"]
    assert trainer.reward_weights.tolist() == [1.0]
    from align.io import read_jsonl

    logged = read_jsonl(trainer.extras.rollout_log)
    assert len(logged) == 8 and [r["advantage"] for r in logged] == pytest.approx(out["advantages"].tolist())
    assert {r["prompt_id"] for r in logged} == {r["id"] for r in rows}
