"""V-RLHF: synthetic Korean preference pairs, the `rm` stage (vision reward model), and its use as a GRPO reward."""

from __future__ import annotations

import json
import random

import pytest

from align.data.preferences import chosen_and_rejected, load_pairs, synthetic_pairs
from align.errors import UserError
from align.io import read_jsonl
from align.pipeline import run_pipeline
from align.recipe import RewardSpec, load_recipe
from rewards import bind_stage_outputs
from tests.conftest import write_recipe


def test_synthetic_pairs_are_korean_and_wrong_in_the_right_ways(small_data):
    pairs = synthetic_pairs(small_data.train)
    assert pairs and all(p["chosen"] != p["rejected"] for p in pairs)
    assert {p["task"] for p in pairs} <= {"count", "color", "ocr", "arith"}
    count = [p for p in pairs if p["task"] == "count"][0]
    n = int(count["answer"].rstrip("개"))
    assert count["chosen"] == f"{n}개" == count["answer"] and count["images"]
    rejected = {chosen_and_rejected("color", "빨간색", random.Random(i))[1] for i in range(40)}
    assert "red" in rejected  # right colour, wrong language
    assert rejected & {"파란색", "초록색", "노란색"} and "빨간색" not in rejected  # wrong colour


def test_preference_file_with_bad_rows(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    rows = [{"image": "a.png", "prompt": "무슨 색?", "chosen": "빨간색", "rejected": "red", "margin": 1},
            {"image": "bad.png", "prompt": "무슨 색?", "chosen": "빨간색", "rejected": "red"},
            {"prompt": "무슨 색?", "chosen": "빨간색"},
            {"image": "a.png", "prompt": "무슨 색?", "chosen": "빨간색", "rejected": " 빨간색 "}]  # fmt: skip
    f = tmp_path / "prefs.jsonl"
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n{oops\n", encoding="utf-8")
    skipped = []
    pairs = load_pairs(f, report=skipped)
    assert len(pairs) == 1 and pairs[0]["margin"] == 1.0 and pairs[0]["prompt"][0]["content"] == "무슨 색?"
    assert len(skipped) == 4 and any("bad.png" in s for s in skipped) and any("no 'rejected'" in s for s in skipped)
    assert any("prefs.jsonl:4: chosen and rejected are the same" in s for s in skipped)
    assert any("prefs.jsonl:5: not JSON" in s for s in skipped)
    with pytest.raises(UserError, match="does not exist"):
        load_pairs(tmp_path / "missing.jsonl")


def test_unknown_stage_output_is_a_clear_error():
    with pytest.raises(UserError, match="no earlier stage is named 'rm'"):
        bind_stage_outputs([RewardSpec(name="reward_model", args={"path": "stage:rm"})], {"sft": "/x"})
    bound = bind_stage_outputs([RewardSpec(name="reward_model", args={"path": "stage:rm"})], {"rm": "/m"})
    assert bound[0].args == {"path": "/m"}


RECIPE = """
name: v
output_dir: {out}
data: {{train_size: 160, eval_size: 16, seed: 5, tasks: [count, color, ocr, arith]}}
rollout: {{engine: hf}}
eval: {{limit: 8, max_new_tokens: 8, metrics: [{{name: accuracy}}, {{name: reward_model, args: {{path: stage:rm}}}}]}}
stages:
  - type: rm
    learning_rate: 1.0e-3
    epochs: 4
    batch_size: 16
    logging_steps: 5
  - type: grpo
    prompts: 16
    rewards:
      - name: accuracy
      - name: reward_model
        weight: 0.5
        args: {{path: stage:rm, normalize: true}}
    args: {{max_steps: 2, num_generations: 4, per_device_train_batch_size: 8, max_completion_length: 8}}
"""


def test_rm_stage_then_grpo_with_the_learned_reward(tmp_path, tiny_model):
    from rewards.reward_model import ScalarRewardModel, reward_model

    run = run_pipeline(load_recipe(write_recipe(tmp_path / "r.yaml", RECIPE.format(out=tmp_path)))).path
    summary = json.loads((run / "rm" / "summary.json").read_text())
    assert summary["held_out"]["pairs"] == 16 and summary["train_pairs"] == 144
    metrics = read_jsonl(run / "rm" / "metrics.jsonl")
    assert metrics[-1]["loss"] < metrics[0]["loss"]  # the Bradley-Terry loss went down
    rm_dir = run / "rm" / "model"
    assert (rm_dir / "reward_head.safetensors").exists() and (rm_dir / "config.json").exists()
    model = ScalarRewardModel.load(rm_dir)
    assert model.stats["std"] > 0
    prompt = [{"role": "user", "content": "도형은 무슨 색인가요?"}]
    from PIL import Image

    image = Image.new("RGB", (64, 64), "white")
    scores = reward_model([prompt, prompt], ["빨간색", "red"], path=str(rm_dir),
                          images=[[image], [image]], normalize=True)  # fmt: skip
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    junk = ["", "\x00\xff\ud800", "가" * 100_000, "<think>unclosed", "<bbox>1, 2", "\\boxed{"]
    scores = reward_model([prompt] * len(junk), junk, path=str(rm_dir), images=[[image]] * len(junk))
    assert len(scores) == len(junk) and all(isinstance(s, float) and s == s for s in scores)
    grpo = read_jsonl(run / "grpo" / "rollouts.jsonl")
    assert len(grpo) == 2 * 8 and all(r["rewards"]["reward_model"] is not None for r in grpo)
    # the policy was not replaced by the reward model: GRPO started from the base model
    starts = [e for e in read_jsonl(run / "events.jsonl") if e["event"] == "stage_start"]
    assert starts[1]["input_model"] == starts[0]["input_model"] == tiny_model
    # the reward-model metric: added to the base policy's eval by the rm stage, measured directly after GRPO
    base_eval = json.loads((run / "base" / "eval.json").read_text())
    grpo_eval = json.loads((run / "grpo" / "eval.json").read_text())
    assert "reward_model" in base_eval and "reward_model" in grpo_eval and "accuracy" in grpo_eval
    assert summary["policy_scores"]["reward_model"] == base_eval["reward_model"]
    assert not (run / "rm" / "eval.json").exists()  # the policy did not change in the rm stage


DPO_RECIPE = """
name: d
output_dir: {out}
data: {{train_size: 96, eval_size: 8, seed: 5, tasks: [count, color, ocr]}}
rollout: {{engine: hf}}
eval: {{enabled: false}}
stages:
  - type: dpo
    preferences: {prefs}
    eval_fraction: 0.25
    freeze: [vision_tower]
    {lora}
    args: {{learning_rate: 5.0e-3, max_steps: 6, per_device_train_batch_size: 8, per_device_eval_batch_size: 8,
           logging_steps: 2, beta: 0.5}}
"""


@pytest.mark.parametrize("lora", ["", "lora: {r: 8, alpha: 16}"], ids=["full", "lora"])
def test_dpo_stage_with_images(tmp_path, tiny_model, lora):
    """TRL's DPOTrainer on image preference pairs: images reach the model, held-out preference accuracy and margin
    rise, the saved policy differs from the input (LoRA merged) and loads."""
    import torch
    from transformers import AutoModelForImageTextToText

    recipe = DPO_RECIPE.format(out=tmp_path, prefs="synthetic", lora=lora)
    run = run_pipeline(load_recipe(write_recipe(tmp_path / "r.yaml", recipe))).path
    summary = json.loads((run / "dpo" / "summary.json").read_text())
    assert summary["train_pairs"] == 72 and summary["steps"] == 6
    before, after = summary["before_training"], summary["held_out"]
    assert after["margin"] > before["margin"] and after["accuracy"] >= before["accuracy"]
    assert after["accuracy"] > 0.5, summary
    logged = [m for m in read_jsonl(run / "dpo" / "metrics.jsonl") if "rewards/margins" in m]
    assert len(logged) == 3
    trained = AutoModelForImageTextToText.from_pretrained(run / "dpo" / "model")
    base = AutoModelForImageTextToText.from_pretrained(tiny_model)
    changed = [n for n, p in trained.named_parameters() if not torch.equal(p, base.get_parameter(n))]
    assert changed and not any("vision_model" in n for n in changed)  # vision tower frozen
    assert not any(".lora_" in n for n, _ in trained.named_parameters())


def test_dpo_reads_a_preference_file_and_skips_bad_rows(tmp_path, tiny_model):
    from PIL import Image

    rows = []
    for i, (colour, english) in enumerate([("빨간색", "red"), ("파란색", "blue"), ("초록색", "green")] * 4):
        Image.new("RGB", (64, 64), english).save(tmp_path / f"{i}.png")
        rows.append({"image": f"{i}.png", "prompt": "이 그림은 무슨 색인가요?", "chosen": colour, "rejected": english})
    rows.append({"image": "0.png", "prompt": "무슨 색?", "chosen": "빨간색", "rejected": "빨간색"})
    rows.append({"image": "missing.png", "prompt": "무슨 색?", "chosen": "빨간색", "rejected": "red"})
    (tmp_path / "prefs.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    recipe = DPO_RECIPE.format(out=tmp_path, prefs=tmp_path / "prefs.jsonl", lora="").replace("max_steps: 6", "max_steps: 2")
    run = run_pipeline(load_recipe(write_recipe(tmp_path / "r.yaml", recipe))).path
    summary = json.loads((run / "dpo" / "summary.json").read_text())
    assert summary["train_pairs"] == 9 and summary["steps"] == 2  # 12 good rows (2 skipped), 3 held out


def test_reward_hacking_watch_flags_a_gamed_reward_model(tmp_path):
    """compare puts the learned reward next to accuracy and length, and flags a checkpoint whose learned reward rose
    while verifiable accuracy fell or answers grew much longer."""
    from align.compare import compare, hacking_watch

    evals = {"base": {"accuracy": 0.10, "reward_model": -0.5, "completion_tokens": 4.0},
             "rm_grpo": {"accuracy": 0.40, "reward_model": 0.2, "completion_tokens": 4.5},
             "hacked": {"accuracy": 0.31, "reward_model": 0.9, "completion_tokens": 12.0}}  # fmt: skip
    for name, metrics in evals.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval.json").write_text(json.dumps(metrics))
    cps = compare([tmp_path / n for n in evals], out=tmp_path)
    watch = hacking_watch(cps)
    assert [r["note"] for r in watch[:2]] == ["", ""]
    assert "accuracy fell 0.400→0.310" in watch[2]["note"] and "2.7× longer" in watch[2]["note"]
    md = (tmp_path / "compare.md").read_text()
    assert "## Reward hacking watch" in md and "possible reward hacking" in md
    (tmp_path / "base" / "eval.json").write_text(json.dumps({"accuracy": 0.1}))
    assert hacking_watch(compare([tmp_path / "base"], out=tmp_path)) == []  # no learned reward: no section
