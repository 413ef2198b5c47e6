"""V-RLHF: synthetic Korean preference pairs, the `rm` stage (vision reward model), and its use as a GRPO reward."""

from __future__ import annotations

import json
import math
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
    count = next(p for p in pairs if p["task"] == "count")
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
    assert len(scores) == len(junk) and all(isinstance(s, float) and not math.isnan(s) for s in scores)
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
    recipe = DPO_RECIPE.format(out=tmp_path, prefs=tmp_path / "prefs.jsonl", lora="").replace(
        "max_steps: 6", "max_steps: 2"
    )
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
    # descriptions (no accuracy): F1 and repetition, as the gamed describe run of main e8215d7 measured them
    gamed = {"sft": {"describe_f1": 0.297, "repetition_rate": 0.010, "reward_model": 0.546, "completion_tokens": 23.5},
             "grpo": {"describe_f1": 0.245, "repetition_rate": 0.117, "reward_model": 1.016, "completion_tokens": 29.9}}  # fmt: skip
    for name, metrics in gamed.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval.json").write_text(json.dumps(metrics))
    note = hacking_watch(compare([tmp_path / n for n in gamed], out=tmp_path))[1]["note"]
    assert "describe f1 fell 0.297→0.245" in note and "repetition rose 0.010→0.117" in note, note


# --- adapters for published multimodal reward models, on tiny models of the same layout ---------------------------

ASSETS = __import__("pathlib").Path(__file__).parent / "assets"


def _value_head(path, hidden: int, seed: int = 0):
    """TRL ValueHead weights as Skywork-VL-Reward ships them: value_head.safetensors, v_head.summary.{weight,bias}."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    head = {
        "v_head.summary.weight": torch.randn(1, hidden, generator=g),
        "v_head.summary.bias": torch.randn(1, generator=g),
    }
    save_file(head, path / "value_head.safetensors")
    return head


def tiny_qwen2_5_vl_reward(out, tiny_model):
    """A tiny Qwen2_5_VLForConditionalGeneration (Skywork-VL-Reward's backbone class) with a value head, saved with a
    Qwen2.5-VL processor config (Qwen2_5_VLProcessor, Qwen2VLImageProcessor) and the tiny Korean tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.add_special_tokens({"additional_special_tokens": ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                                                          "<|video_pad|>"]})  # fmt: skip
    ids = tok.convert_tokens_to_ids
    text = {"vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                "num_key_value_heads": 1, "max_position_embeddings": 512, "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},
                "pad_token_id": tok.pad_token_id, "bos_token_id": None, "eos_token_id": tok.eos_token_id}  # fmt: skip
    config = Qwen2_5_VLConfig(text_config=text, vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64,
                              "num_heads": 2, "out_hidden_size": 64, "fullatt_block_indexes": [0]},
                              image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                              vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))  # fmt: skip
    from align.models.tiny.korean_vlm import qwen_template

    tok.chat_template = qwen_template("<|vision_start|><|image_pad|><|vision_end|>")
    tok.image_token = "<|image_pad|>"  # the tiny tokenizer's own is Idefics3's <image>
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(out)
    tok.save_pretrained(out)
    for name in ("tokenizer_config.json", "processor_config.json", "preprocessor_config.json"):
        f = out / name
        data = json.loads(f.read_text()) if f.exists() else {}
        data["processor_class"] = "Qwen2_5_VLProcessor"
        if name == "preprocessor_config.json":
            data.update(image_processor_type="Qwen2VLImageProcessor", patch_size=14, merge_size=2, temporal_patch_size=2,
                        min_pixels=3136, max_pixels=12544)  # fmt: skip
        f.write_text(json.dumps(data))
    return _value_head(out, 64)


def _manual_score(model_dir, head, texts_ids):
    import torch
    from transformers import AutoModelForImageTextToText

    backbone = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        hidden = backbone(input_ids=texts_ids, output_hidden_states=True).hidden_states[-1][0, -1]
    return (hidden @ head["v_head.summary.weight"][0] + head["v_head.summary.bias"][0]).item()


def test_value_head_layout_on_a_tiny_qwen2_5_vl(tmp_path, tiny_model):
    """Skywork-VL-Reward layout: Qwen2.5-VL checkpoint + value_head.safetensors; the score is the value at the final
    token of the chat rendered with the model's template."""
    from rewards.reward_model import ScalarRewardModel, load_reward_model, reward_model

    head = tiny_qwen2_5_vl_reward(tmp_path, tiny_model)
    model = load_reward_model(tmp_path)
    assert isinstance(model, ScalarRewardModel) and model.backbone.config.model_type == "qwen2_5_vl"
    prompt = [{"role": "user", "content": "3 더하기 4는 얼마인가요?"}]
    scores = reward_model([prompt, prompt], ["답: 7", "답: 8"], path=str(tmp_path))
    assert scores[0] != scores[1]
    enc = model.encode([prompt], ["답: 7"], None)
    assert abs(scores[0] - _manual_score(tmp_path, head, enc["input_ids"])) < 1e-4
    from PIL import Image
    from transformers.utils import is_torchvision_available

    # Qwen2.5-VL's image processor has a PIL backend: images score without torchvision (only videos need it)
    assert not hasattr(model.processor, "image_error")
    if not is_torchvision_available():
        assert model.processor.video_processor is None
    red, blue = Image.new("RGB", (56, 56), (255, 0, 0)), Image.new("RGB", (56, 56), (0, 0, 255))
    with_images = reward_model([prompt, prompt], ["답: 7", "답: 7"], path=str(tmp_path), images=[[red], [blue]])
    assert with_images[0] != with_images[1] and scores[0] not in with_images


def test_value_head_layout_scores_images(tmp_path, tiny_model):
    """The same layout on an image backbone this machine can process (the tiny Idefics3): the image changes the score."""
    import shutil

    from PIL import Image

    from rewards.reward_model import reward_model

    shutil.copytree(tiny_model, tmp_path / "rm")
    _value_head(tmp_path / "rm", 128, seed=1)
    prompt = [{"role": "user", "content": "도형은 무슨 색인가요?"}]
    red, blue = Image.new("RGB", (64, 64), "red"), Image.new("RGB", (64, 64), "blue")
    scores = reward_model([prompt] * 3, ["빨간색"] * 3, path=str(tmp_path / "rm"), images=[[red], [blue], [red]])
    assert scores[0] == pytest.approx(scores[2]) and scores[0] != pytest.approx(scores[1])


def tiny_get_score_reward(out, tiny_model):
    """A remote-code model folder with the InternLM-XComposer2.5-Reward interface (tests/assets/tiny_get_score_rm)."""
    import importlib.util
    import shutil
    import sys

    from transformers import AutoTokenizer

    src = ASSETS / "tiny_get_score_rm"
    out.mkdir(parents=True)
    for f in src.glob("*.py"):
        shutil.copy(f, out / f.name)
    pkg = "tiny_get_score_rm_build"
    spec = importlib.util.spec_from_file_location(pkg, out / "__init__.py", submodule_search_locations=[str(out)])
    (out / "__init__.py").write_text("")
    sys.modules[pkg] = importlib.util.module_from_spec(spec)
    modeling = importlib.import_module(f"{pkg}.modeling_tiny_reward")
    config = modeling.TinyGetScoreConfig(auto_map={"AutoConfig": "configuration_tiny_reward.TinyGetScoreConfig",
                                                   "AutoModel": "modeling_tiny_reward.TinyGetScoreRewardModel"})  # fmt: skip
    modeling.TinyGetScoreRewardModel(config).save_pretrained(out)
    (out / "__init__.py").unlink()
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["architectures"] = ["TinyGetScoreRewardModel"]
    (out / "config.json").write_text(json.dumps(cfg))


def test_get_score_layout(tmp_path, tiny_model):
    """InternLM-XComposer2.5-Reward interface: remote code, get_score(chat, image paths); needs trust_remote_code."""
    from PIL import Image

    from rewards.reward_model import GetScoreRewardModel, load_reward_model, reward_model

    tiny_get_score_reward(tmp_path / "ixc", tiny_model)
    with pytest.raises(UserError, match="trust_remote_code: true"):
        load_reward_model(tmp_path / "ixc")
    model = load_reward_model(tmp_path / "ixc", trust_remote_code=True)
    assert isinstance(model, GetScoreRewardModel) and model.model.tokenizer is not None
    Image.new("RGB", (8, 8), "red").save(tmp_path / "red.png")
    prompt = [{"role": "user", "content": "도형은 무슨 색인가요?"}]
    images = [[str(tmp_path / "red.png")], [Image.new("RGB", (8, 8), "blue")], [str(tmp_path / "red.png")]]
    scores = reward_model([prompt] * 3, ["빨간색", "빨간색", "red"], path=str(tmp_path / "ixc"), images=images,
                          trust_remote_code=True, batch_size=2)  # fmt: skip
    direct = model.model.get_score([{"role": "user", "content": prompt[0]["content"]},
                                    {"role": "assistant", "content": "빨간색"}], [str(tmp_path / "red.png")])  # fmt: skip
    assert scores[0] == pytest.approx(direct) and len({round(s, 6) for s in scores}) == 3


def test_unknown_reward_model_folder_is_a_clear_error(tmp_path, tiny_model):
    from rewards.reward_model import load_reward_model

    with pytest.raises(UserError, match=r"not a reward model this workbench reads \(architectures \['Idefics3"):
        load_reward_model(tiny_model)
    (tmp_path / "bad").mkdir()
    _value_head(tmp_path / "bad", 7)
    import shutil

    for f in __import__("pathlib").Path(tiny_model).iterdir():
        shutil.copy(f, tmp_path / "bad" / f.name)
    with pytest.raises(UserError, match="expects hidden size 7"):
        load_reward_model(tmp_path / "bad")


# --- V-RLHF on open-ended descriptions: the describe task, its pairs, its measures, the demo's pipeline -------------


def test_describe_task_rows_are_deterministic_and_carry_their_scene(tmp_path):
    from align.data import load_splits
    from align.data.synthetic import ALL_TASKS, TASKS, SyntheticSpec, make_example
    from align.recipe import validate
    from rewards.describe import attribute_scores

    assert "describe" in ALL_TASKS and "describe" not in TASKS  # opt-in: the main quickstart is unchanged
    spec = SyntheticSpec(tasks=("describe",), train_size=40, eval_size=8, seed=3)
    rows = [make_example(spec, "train", "describe", i) for i in range(40)]
    assert make_example(SyntheticSpec(tasks=("describe",), train_size=900, seed=3), "train", "describe", 7) == rows[7]
    assert make_example(spec, "eval", "describe", 7) != rows[7]
    for ex in rows:
        objects, refs = ex.scene["objects"], ex.scene["references"]
        assert 1 <= len(objects) <= 3 and len({o["shape"] for o in objects}) == len(objects)
        assert all(1 <= o["count"] <= 3 and o["position"] in ("왼쪽", "가운데", "오른쪽") for o in objects)
        assert ex.completion == ex.answer == refs[0] and len(refs) == 5
        assert all(attribute_scores(r, ex.scene)["f1"] == 1.0 for r in refs)  # every reference reads back whole
        drawn = ex.image["shapes"]
        assert len(drawn) == sum(o["count"] for o in objects)
    phrasings = {r.split()[0] for ex in rows for r in ex.scene["references"]}
    assert len(phrasings) >= 5 and any("\n- " in r for ex in rows for r in ex.scene["references"])  # varied forms
    data = load_splits(validate({"name": "d", "data": {"tasks": ["describe"], "train_size": 12, "eval_size": 4,
                                                       "seed": 3}}).data)  # fmt: skip
    row = data.eval[0]
    assert json.loads(row["scene"])["objects"] and row["images"] and row["task"] == "describe"


def test_describe_pairs_carry_one_controlled_error():
    from align.data.preferences import ERRORS, describe_pair
    from align.data.synthetic import SyntheticSpec, examples, to_row
    from rewards.describe import attribute_scores, repetition_rate

    rows = [to_row(ex, None) for ex in examples(SyntheticSpec(tasks=("describe",), train_size=300, seed=1), "train")]
    pairs = synthetic_pairs(rows, seed=1)
    assert len(pairs) == len(rows) and {p["error"] for p in pairs} == set(ERRORS)
    scenes = {r["id"]: json.loads(r["scene"]) for r in rows}
    for p in pairs:
        scene = scenes[p["id"]]
        chosen, rejected = (attribute_scores(p[k], scene)["f1"] for k in ("chosen", "rejected"))
        assert chosen == 1.0 and p["chosen"] != p["rejected"]
        if p["error"] in ("repetition", "excessive_length"):  # the content is right, the form is not
            assert rejected == 1.0 and len(p["rejected"]) > len(p["chosen"]) + 10
        else:
            assert rejected < 1.0, p
        if p["error"] == "repetition":
            rates = repetition_rate(None, [p["rejected"], p["chosen"]], scene=["x", "x"])
            assert rates[0] > rates[1]  # natural text repeats a 3-gram now and then ("두 개가 있어요" twice)
    one = [{"shape": "원", "color": "빨간색", "count": 2, "position": "왼쪽"}]
    kinds = {describe_pair(one, random.Random(i))[2] for i in range(200)}
    assert "missing_object" not in kinds and "invented_object" in kinds  # a lone group cannot go missing


def test_policy_pairs_rank_the_policys_own_samples_by_the_judge():
    """On-policy pairs (the rm stage's ``policy_pairs``): an image's samples ranked by the judge (ground-truth F1 of
    descriptions a model wrote), best against worst, second against second-worst, only when far enough apart; the
    held-out split keeps every pair of an image on one side."""
    from align.data.preferences import policy_pairs, split_pairs
    from rewards.describe import describe_f1

    scene = json.dumps(SCENE)
    texts = {
        "a": ["왼쪽에 빨간 원 두 개가 있고, 오른쪽에는 파란색 삼각형 하나가 있습니다.",  # all right
              "도형이 모두 3개 있어요. 빨간 원 두 개가 왼쪽에 있어요. 빨간 원 두 개가 가운데에 있어요.",  # a hack
              "왼쪽에 초록색 사각형 세 개가 있어요.",  # all wrong
              "왼쪽에 빨간 원 두 개가 있고, 오른쪽에는 파란색 삼각형 하나가 있습니다.",  # a repeat
              "그림에는 빨간색 동그라미 2개와 노란 세모 하나가 있습니다."],  # part right
        "b": ["왼쪽에 빨간 원 두 개가 있어요.", "왼쪽에 빨간 원 2개가 있습니다."],  # equally good: no pair
    }  # fmt: skip
    samples = []
    for pid, group in texts.items():
        f1 = describe_f1(None, group, scene=[scene] * len(group))
        samples += [{"prompt_id": pid, "completion": t, "rewards": {"describe_f1": v}} for t, v in zip(group, f1)]
    pairs = policy_pairs(samples, "describe_f1", min_gap=0.05, per_prompt=3)  # F1 1.0 / 0.71 / 0.62 / 0
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [(texts["a"][0], texts["a"][2]),
                                                              (texts["a"][4], texts["a"][1])]  # fmt: skip
    assert all(p["id"] == "a" and p["gap"] >= 0.05 for p in pairs)
    assert len(policy_pairs(samples, "describe_f1", min_gap=0.2, per_prompt=3)) == 1  # 0.71 vs 0.62: too close
    rows = [{"id": f"img{i // 3}", "n": i} for i in range(30)]  # three pairs per image
    held, train = split_pairs(rows, 0.2, seed=3)
    assert len(held) == 6 and len(train) == 24 and not {r["id"] for r in held} & {r["id"] for r in train}


SCENE = {"objects": [{"shape": "원", "color": "빨간색", "count": 2, "position": "왼쪽"},
                     {"shape": "삼각형", "color": "파란색", "count": 1, "position": "오른쪽"}]}  # fmt: skip


@pytest.mark.parametrize("text, precision, recall", [
    # as chat VLMs write it: sentences, markdown, synonyms, numerals, predicates, pleasantries — all facts right
    (("이 이미지에는 **빨간색 동그라미** 2개와 **파란색 삼각형** 1개가 있습니다! 동그라미들은 왼쪽에, 삼각형은 "
      "오른쪽에 위치해 있어요. 더 궁금한 점이 있으시면 말씀해 주세요 😊"), 1, 1),
    ("## 이미지 설명\n\n- **왼쪽**: 빨강 원 두 개\n- **오른쪽**: 파랑 세모 하나", 1, 1),
    ("두 개의 붉은 원이 왼쪽에 있고 오른편에는 푸른 삼각형 한개가 있습니다.", 1, 1),
    ("원은 빨간색이고 두 개이며, 왼쪽에 있습니다. 삼각형은 파란색이에요. 삼각형은 오른쪽에 하나 있습니다.", 1, 1),
    ("도형이 모두 세 개 있습니다. 빨간원이 둘, 파란 삼각형이 하나예요. 사각형은 없습니다.", 1, 6 / 8),
    # errors: a wrong colour and count; an invented square; a missing triangle; a hedge listing colours
    ("왼쪽에 초록색 원 세 개, 오른쪽에 파란 삼각형 하나가 있습니다.", 6 / 8, 6 / 8),
    ("왼쪽에 빨간 원 두 개, 가운데에 노란 사각형 하나, 오른쪽에 파란 삼각형 하나가 있어요.", 8 / 12, 1),
    ("왼쪽에 빨간색 원이 2개 있습니다.", 1, 4 / 8),
    ("빨간색, 파란색, 초록색 원이 있어요.", 2 / 4, 2 / 8),
    ("빨간색이나 파란색 원이 있는 것 같아요.", 2 / 3, 2 / 8),
    # nothing about these shapes: words that only contain a shape word, English-free small talk
    ("원하시는 설명을 드리기 어렵네요. 공원 사진처럼 보입니다.", 0, 0),
])  # fmt: skip
def test_attribute_scores_read_natural_korean(text, precision, recall):
    from rewards.describe import attribute_scores

    got = attribute_scores(text, SCENE)
    assert got["precision"] == pytest.approx(precision) and got["recall"] == pytest.approx(recall), got
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    assert got["f1"] == pytest.approx(f1)


def test_describe_measures_as_rewards():
    from rewards import available, resolve

    assert {"describe_f1", "describe_precision", "describe_recall", "cider_d", "description_words",
            "repetition_rate"} <= set(available())  # fmt: skip
    scene = json.dumps({**SCENE, "references": ["왼쪽에 빨간 원 두 개, 오른쪽에 파란 삼각형 하나가 있습니다."]})
    texts = ["왼쪽에 빨간 원 두 개, 오른쪽에 파란 삼각형 하나가 있습니다.", "원 원 원 원 원 원 원 원", "2개"]
    kw = {"scene": [scene, scene, ""]}  # the third row is another task's: not scored
    assert resolve("describe_f1")(None, texts, **kw) == [1.0, pytest.approx(2 / 9), None]
    words = resolve("description_words")(None, texts, **kw)
    assert words == [10.0, 8.0, None]
    rep = resolve("repetition_rate")(None, texts, **kw)
    assert rep[0] == 0.0 and rep[1] == pytest.approx(1 - 1 / 6) and rep[2] is None


def test_cider_d_hand_worked_and_against_pycocoevalcap():
    """CIDEr-D: two images, so idf = log 2 for an n-gram in one image's references. A candidate equal to its one
    reference matches at n = 1, 2 and has no 3-, 4-grams: 10 × (1 + 1 + 0 + 0) / 4 = 5. 'a a b' against 'a b':
    unigram weights (2L, L) vs (L, L) give 2/√10 (clipped), bigrams 1/√2, the length penalty e^(−1/72)."""
    from rewards.describe import cider_d

    def score(cands, refs):
        scenes = [json.dumps({"objects": [], "references": r}) for r in refs]
        return cider_d(None, cands, scene=scenes)

    assert score(["a b", "c"], [["a b"], ["d"]]) == pytest.approx([5.0, 0.0])
    hand = 10 * (2 / math.sqrt(10) + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72)
    assert score(["a a b", "c"], [["a b"], ["d"]]) == pytest.approx([hand, 0.0])
    assert hand == pytest.approx(3.30271472, abs=1e-8)  # pycocoevalcap 1.2 on the same strings
    # pycocoevalcap 1.2 `Cider().compute_score` on these strings, pre-tokenised (run once in a side venv)
    cands = ["왼쪽에 빨간색 원 두 개가 있습니다. 오른쪽에 파란색 삼각형 하나가 있습니다.", "가운데에 노란 네모 세 개가 보입니다.",
             "그림에는 초록색 원 1개가 있습니다. 원은 왼쪽에 있어요.",
             "오른쪽에 검은 세모 두 개가 있어요. 오른쪽에 검은 세모 두 개가 있어요. 오른쪽에 검은 세모 두 개가 있어요."]  # fmt: skip
    refs = [["왼쪽에 빨간색 원 두 개가 있습니다. 오른쪽에 파란색 삼각형 하나가 있습니다.",
             "왼쪽에는 빨간 원이 2개 있고, 오른쪽에는 파란 세모가 하나 있어요.",
             "그림에는 빨간색 원 두 개와 파란 삼각형 한 개가 있습니다. 원은 왼쪽에, 삼각형은 오른쪽에 보입니다."],
            ["가운데에 노란색 사각형 3개가 있습니다.", "도형이 모두 세 개 있어요. 노란 네모 세 개가 가운데에 있어요."],
            ["왼쪽에 초록 원 하나가 보입니다.", "왼쪽에는 초록색 동그라미가 1개 있습니다.",
             "그림에는 초록색 원 한 개가 있습니다. 원은 왼쪽에 있습니다."],
            ["오른쪽에 검은색 삼각형 2개가 있어요.", "오른쪽에는 검은 세모가 두 개 있습니다."]]  # fmt: skip
    oracle = [3.8740588637935063, 1.8457889182266873, 1.6026452857785765, 0.035547115254138506]
    assert score(cands, refs) == pytest.approx(oracle, abs=1e-9)


DESCRIBE_RECIPE = """
name: vd
output_dir: {out}
data: {{train_size: 96, eval_size: 6, seed: 2, tasks: [describe]}}
rollout: {{engine: hf}}
eval:
  max_new_tokens: 12
  samples: 6
  metrics: [{{name: describe_f1}}, {{name: describe_precision}}, {{name: describe_recall}}, {{name: cider_d}},
            {{name: description_words}}, {{name: repetition_rate}}, {{name: reward_model, args: {{path: stage:rm}}}}]
stages:
  - type: sft
    rows: [0, 32]
    args: {{learning_rate: 2.0e-3, max_steps: 3, per_device_train_batch_size: 8}}
  - type: rm
    rows: [32, 80]
    freeze: []
    learning_rate: 1.0e-3
    epochs: 1
    batch_size: 16
    eval_fraction: 0.25
    policy_pairs: {{prompts: 8, samples: 2, max_new_tokens: 12, min_gap: 0.01}}
  - type: grpo
    rows: [80, 96]
    rewards: [{{name: reward_model, args: {{path: stage:rm, normalize: true}}}}]
    args: {{max_steps: 1, num_generations: 4, per_device_train_batch_size: 8, max_completion_length: 12}}
  - type: grpo                   # the ceiling's reward: ground-truth F1 from the scene column
    name: grpo_f1
    rows: [80, 96]
    rewards: [{{name: describe_f1}}]
    args: {{max_steps: 1, num_generations: 4, per_device_train_batch_size: 8, max_completion_length: 12}}
"""


def test_describe_pipeline_produces_the_measures(tmp_path, tiny_model):
    """SFT -> rm on describe pairs -> GRPO with the learned reward -> GRPO with ground-truth F1, a few steps each:
    every checkpoint gets the measures, the rm stage its per-error accuracy, the report each checkpoint's description
    beside the image."""
    run = run_pipeline(load_recipe(write_recipe(tmp_path / "r.yaml", DESCRIBE_RECIPE.format(out=tmp_path)))).path
    measures = {"describe_f1", "describe_precision", "describe_recall", "cider_d", "description_words",
                "repetition_rate"}  # fmt: skip
    evals = {s: json.loads((run / s / "eval.json").read_text()) for s in ("base", "sft", "grpo", "grpo_f1")}
    for name, metrics in evals.items():
        assert measures <= set(metrics), name
        assert 0 <= metrics["describe_f1"] <= 1 and metrics["description_words"] > 0
    assert "reward_model" in evals["sft"] and "reward_model" in evals["grpo"]  # the policy scored by the learned RM
    summary = json.loads((run / "rm" / "summary.json").read_text())
    # the policy's own descriptions of 8 rm images, 2 each, judged by F1; pairs where the two differ
    from align.data.preferences import policy_pairs

    sampled = read_jsonl(run / "rm" / "policy_samples.jsonl")
    assert len(sampled) == 16 and all(0 <= r["rewards"]["describe_f1"] <= 1 for r in sampled)
    assert summary["policy_pairs"] == len(policy_pairs(sampled, "describe_f1", 0.01, 2))
    held = summary["held_out"]
    assert held["pairs"] >= 12 and all(k.startswith("describe/") for k in held["per_task"])
    rollouts = read_jsonl(run / "grpo" / "rollouts.jsonl")
    assert len(rollouts) == 8 and all(r["rewards"]["reward_model"] is not None for r in rollouts)
    f1_rollouts = read_jsonl(run / "grpo_f1" / "rollouts.jsonl")
    assert all(0 <= r["rewards"]["describe_f1"] <= 1 for r in f1_rollouts)
    samples = read_jsonl(run / "grpo" / "eval_samples.jsonl")
    assert len(samples) == 6 and all(s["images"] and "describe_f1" in s["scores"] for s in samples)
    page = (run / "report.html").read_text(encoding="utf-8")
    card = page[page.index('<article class="card" data-task="describe"') :]
    card = card[: card.index("</article>")]
    assert '<img src="data:image/png;base64,' in card
    assert all(f'<td class="who">{s}</td>' in card for s in ("base", "sft", "grpo", "grpo_f1"))
    assert card.index("describe_f1") < card.index("cider_d")  # the lead score of a description


def paired_difference(run, a: str, b: str, key: str = "describe_f1") -> tuple[float, float]:
    """Mean and standard error of checkpoint b's score minus a's over the same held-out rows (eval_samples.jsonl)."""
    scores = [{r["id"]: r["scores"][key] for r in read_jsonl(run / s / "eval_samples.jsonl")} for s in (a, b)]
    diffs = [scores[1][i] - v for i, v in scores[0].items()]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return mean, (var / len(diffs)) ** 0.5


def check_vrlhf_demo(run) -> None:
    """What the V-RLHF demo's run showed (docs/vrlhf.md): the reward model learns its pairs, and GRPO with it as the
    only reward no longer games it — held-out F1 does not fall (it fell 0.297 -> 0.245, 4.1 SE, before the policy's
    own descriptions were in the pairs), repetition does not rise, answers stay under 1.5x longer. The issue's target
    (F1 +0.05 at 3 SE) is not asserted: not reached here, not even by ground-truth F1 as the reward."""
    rm = json.loads((run / "rm" / "summary.json").read_text())
    assert rm["held_out"]["pairwise_accuracy"] >= rm["before_training"]["pairwise_accuracy"] + 0.1, rm
    assert rm["policy_pairs"] > 300 and "describe/policy" in rm["held_out"]["per_task"], rm
    ev = {s: json.loads((run / s / "eval.json").read_text()) for s in ("sft", "grpo")}
    assert ev["grpo"]["reward_model"] > ev["sft"]["reward_model"]  # GRPO optimised the learned reward
    mean, se = paired_difference(run, "sft", "grpo")
    assert mean > -2 * se, (mean, se)
    assert ev["grpo"]["repetition_rate"] <= ev["sft"]["repetition_rate"] + 0.02, ev
    assert ev["grpo"]["description_words"] <= 1.5 * ev["sft"]["description_words"], ev


@pytest.mark.slow
@pytest.mark.demo  # 1,207 s on one thread: not in the default run (ALIGN_DEMO_TESTS=1 runs it)
def test_vrlhf_demo_end_to_end(tmp_path, align_cache):
    """recipes/quickstart_vrlhf.yaml as a user runs it (about 15 CPU-minutes: SFT, rm, GRPO, four evaluations)."""
    from tests.conftest import run_shipped_recipe

    _, run = run_shipped_recipe("quickstart_vrlhf", tmp_path, align_cache, timeout=3600)
    check_vrlhf_demo(run)
