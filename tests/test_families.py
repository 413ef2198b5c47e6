"""Model families on tiny models of each architecture and processor layout (built from configs, random weights):
recognition, SFT + a GRPO step through the pipeline, generation that stops at the family's stop tokens, and the
batch guards (image tokens vs features, labels on assistant tokens only, context length)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from align.errors import StageError, UserError
from align.io import read_jsonl
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from tests.conftest import copy_with_chat_template, write_recipe

FAMILY_TINIES = ("qwen2_5_vl", "varco_vision", "hyperclovax_text", "hyperclovax_vision")


PUBLISHED = Path(__file__).parent / "assets" / "published"


def published_qwen2_5_vl(tiny_dir, out) -> str:
    """The tiny Qwen2.5-VL in its hub folder's layout: Qwen's published preprocessor_config.json as it stands (no
    processor_config.json) and its generation_config.json with the token ids mapped by token to the tiny vocabulary
    (tests/assets/published/qwen2_5_vl/SOURCES.md)."""
    from transformers import AutoTokenizer

    out = Path(out)
    if not out.exists():
        shutil.copytree(tiny_dir, out)
        (out / "processor_config.json").unlink()
        shutil.copy(PUBLISHED / "qwen2_5_vl" / "preprocessor_config.json", out)
        ids = AutoTokenizer.from_pretrained(str(out)).convert_tokens_to_ids
        qwen = {151643: ids("<|endoftext|>"), 151645: ids("<|im_end|>")}  # Qwen's ids -> the tiny vocabulary's
        gen = json.loads((PUBLISHED / "qwen2_5_vl" / "generation_config.json").read_text())
        for key in ("bos_token_id", "pad_token_id", "eos_token_id"):
            gen[key] = [qwen[i] for i in gen[key]] if isinstance(gen[key], list) else qwen[gen[key]]
        (out / "generation_config.json").write_text(json.dumps(gen, indent=2))
    return str(out)


@pytest.fixture(scope="module")
def tiny_family(align_cache):
    """Tiny models by family; Qwen2.5-VL's in its published folder layout (``published_qwen2_5_vl``)."""
    from align.models.tiny import build_tiny_family

    def build(family: str) -> str:
        path = build_tiny_family(family, align_cache / "models" / f"tiny-{family}")
        if family == "qwen2_5_vl":
            return published_qwen2_5_vl(path, align_cache / "models" / "published-qwen2_5_vl")
        return str(path)

    return build


def _rows(n: int = 4, image: bool = True):
    from datasets import Dataset
    from PIL import Image

    row = {"prompt": [{"role": "user", "content": "이 그림의 색은 무엇인가요?"}],
           "completion": [{"role": "assistant", "content": "답: 빨강"}]}  # fmt: skip
    if image:
        row["images"] = [Image.new("RGB", (64, 64), (200, 30, 30))]
    return Dataset.from_list([row] * n)


def _sft_trainer(path, tmp_path, dataset, **args):
    from trl import SFTConfig, SFTTrainer

    from align.models import load_model_and_processor

    model, processor, family = load_model_and_processor(path, None, "float32")
    config = SFTConfig(
        output_dir=str(tmp_path / "o"),
        use_cpu=True,
        report_to="none",
        max_steps=1,
        per_device_train_batch_size=2,
        **{"completion_only_loss": True, "max_length": None, **args},
    )
    return SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=processor), family


def recipe_model(family: str):
    from align.recipe import ModelSpec

    return ModelSpec()


def _remote_code_model(path, modeling: str = "raise ImportError('cannot import name LlamaFlashAttention2')\n"):
    """A model folder whose config and model classes are its own code (auto_map), like published remote-code VLMs."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "mystery_vlm", "architectures": ["MysteryForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_mystery.MysteryConfig",
                     "AutoModelForCausalLM": "modeling_mystery.MysteryForCausalLM"}}))  # fmt: skip
    (path / "configuration_mystery.py").write_text(
        "from transformers import PretrainedConfig\n\n\nclass MysteryConfig(PretrainedConfig):\n"
        "    model_type = 'mystery_vlm'\n")  # fmt: skip
    (path / "modeling_mystery.py").write_text(modeling + "\n\nclass MysteryForCausalLM:\n    pass\n")
    return path


# ------------------------------------------------------------------ recognition and bad input


def test_families_are_recognised_from_config_and_tokenizer(tiny_family, tiny_model):
    from align.models import load_config, load_processor
    from align.models.families import resolve

    expected = {"qwen2_5_vl": "qwen2_5_vl", "varco_vision": "varco_vision", "hyperclovax_text": "hyperclovax_text"}
    for name, family in expected.items():
        path = tiny_family(name)
        tok = getattr(load_processor(path), "tokenizer", load_processor(path))
        assert resolve("auto", load_config(path), tok, path).name == family
    # the embedded Idefics3 model is a standard architecture: the generic family
    assert resolve("auto", load_config(tiny_model), None, tiny_model).name == "generic"
    # a LLaVA-OneVision model without VARCO's markup tokens is generic too, not varco_vision
    from transformers import AutoTokenizer

    assert resolve("auto", load_config(tiny_family("varco_vision")), AutoTokenizer.from_pretrained(tiny_model)).name \
        == "generic"  # fmt: skip


def test_family_errors_name_what_was_found_and_what_to_set(tiny_family, tmp_path):
    from align.models import load_config, load_model
    from align.models.families import detect, resolve
    from align.recipe import ModelSpec

    path = tiny_family("qwen2_5_vl")
    with pytest.raises(UserError, match="model_type 'qwen2_5_vl'.*varco_vision models have llava_onevision"):
        resolve("varco_vision", load_config(path), None, path)
    with pytest.raises(UserError, match="unknown family 'qwen3'") as e:
        resolve("qwen3", load_config(path), None, path)
    assert "hyperclovax_vision" in e.value.hint
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown family 'qwen3': did you mean 'qwen2_5_vl'"):
        ModelSpec(path=path, family="qwen3")
    # remote code not allowed: say which flag to set
    remote = _remote_code_model(tmp_path / "remote")
    with pytest.raises(UserError, match="needs its own model code") as e:
        load_model(str(remote), ModelSpec(path="x", family="auto"))
    assert "model.trust_remote_code: true" in e.value.hint
    # a config transformers does not know, without remote code: say what was found and how to set model.family
    from types import SimpleNamespace

    with pytest.raises(UserError, match="model_type 'mystery_vlm', architectures \\['MysteryForCausalLM'\\]") as e:
        detect(SimpleNamespace(model_type="mystery_vlm", architectures=["MysteryForCausalLM"]), None, "/m")
    assert "model.family" in e.value.hint and "trust_remote_code" in e.value.hint
    # a processor without a chat template
    bare = copy_with_chat_template(tiny_family("hyperclovax_text"), tmp_path / "bare", None)
    from align.models import load_processor

    with pytest.raises(UserError, match="has no chat template"):
        load_processor(str(bare))


def test_images_only_processors_load_and_save_without_torchvision(tiny_family, tmp_path):
    """Qwen2.5-VL and LLaVA-OneVision processors come back from disk with their PIL image processors (their
    video processors need torchvision) and survive a save (the Trainer saves them in every checkpoint)."""
    from transformers.utils import is_torchvision_available

    from align.models import load_processor

    for name, cls, image_cls in (("qwen2_5_vl", "Qwen2_5_VLProcessor", "Qwen2VLImageProcessor"),
                                 ("varco_vision", "LlavaOnevisionProcessor", "LlavaOnevisionImageProcessor")):  # fmt: skip
        processor = load_processor(tiny_family(name))
        assert type(processor).__name__ == cls and type(processor.image_processor).__name__.startswith(image_cls)
        assert not hasattr(processor, "image_error")
        if not is_torchvision_available():
            assert processor.video_processor is None
        processor.save_pretrained(tmp_path / name)
        again = load_processor(str(tmp_path / name))
        assert again.tokenizer.chat_template == processor.tokenizer.chat_template


@pytest.mark.parametrize("family", ["qwen2_5_vl", "varco_vision", "exaone", "kanana_v", "aiku_vlm", "generic"])
def test_a_vision_folder_without_its_processor_files_or_with_an_unknown_class_stops(family, tmp_path, align_cache):
    """Every vision family: no processor files, or files naming a class nobody implements, is an error naming the
    files and classes; never a text-only tokenizer (HyperCLOVAX-SEED-Vision: tests/test_hcx_published.py;
    -Think-32B: tests/test_families_reasoning.py)."""
    from align.models import load_processor
    from align.models.tiny import build_tiny_family

    tiny = build_tiny_family(family, align_cache / "models" / f"tiny-{family}")
    files = [f.name for f in tiny.iterdir() if f.name in ("preprocessor_config.json", "processor_config.json")]
    trust = family == "kanana_v"
    missing = Path(shutil.copytree(tiny, tmp_path / "missing"))
    for name in files:
        (missing / name).unlink()
    with pytest.raises(
        UserError, match="cannot be built \\(it has neither preprocessor_config.json nor processor_config"
    ):
        load_processor(str(missing), trust)
    unknown = Path(shutil.copytree(tiny, tmp_path / "unknown"))
    for name in files:
        data = json.loads((unknown / name).read_text())
        data["processor_class"] = "NoSuchProcessor"
        (unknown / name).write_text(json.dumps(data))
    with pytest.raises(
        UserError, match="a vision model but its processor files give only a tokenizer .*NoSuchProcessor"
    ):
        load_processor(str(unknown), trust)


# ------------------------------------------------------------------ generation stops at the family's stop tokens


@pytest.mark.parametrize("family", FAMILY_TINIES)
def test_generation_stops_at_the_family_stop_tokens(tiny_family, tmp_path, family):
    """The family's stop tokens are added to the model's generation config on load; a model whose own config
    lacks them still stops there (pushed to emit the stop token with a logit bias), and without them it runs on."""
    import torch

    from align.models import load_model_and_processor
    from align.models.families import FAMILIES

    path = tmp_path / "m"
    shutil.copytree(tiny_family(family), path)
    gen = json.loads((path / "generation_config.json").read_text())
    gen["eos_token_id"] = []  # as if the checkpoint's generation_config did not list the stop tokens
    (path / "generation_config.json").write_text(json.dumps(gen))
    model, processor, fam = load_model_and_processor(str(path), recipe_model(family), "float32")
    tok = getattr(processor, "tokenizer", processor)
    stops = [tok.convert_tokens_to_ids(t) for t in FAMILIES[family].stop_tokens]
    assert fam.name == family and model.generation_config.eos_token_id == stops
    text = tok.apply_chat_template([{"role": "user", "content": "3 더하기 4는?"}], tokenize=False,
                                   add_generation_prompt=True)  # fmt: skip
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    for stop in stops:
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=6, do_sample=False, sequence_bias={(stop,): 100.0})
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        assert new == [stop], (family, tok.convert_ids_to_tokens(new))
    model.generation_config.eos_token_id = []
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=6, do_sample=False, sequence_bias={(stops[0],): 100.0})
    assert out.shape[1] - enc["input_ids"].shape[1] == 6  # no stop token configured: it never stops


# ------------------------------------------------------------------ sampling defaults from generation_config.json


def test_sampling_left_unset_takes_the_published_generation_config_and_rl_settings_win(tiny_family):
    """Qwen2.5-VL publishes temperature 0.1 / top_p 0.001 / top_k 1 / repetition_penalty 1.05: a Sampling that sets
    none of them decodes with those (here: the greedy answer, n times); a stage that sets its temperature (RFT,
    sampled eval) samples the model's own distribution, never narrowed to greedy by the published top_k 1; TRL's
    GRPO settings override the published ones in transformers' generate."""
    from transformers import GenerationConfig
    from trl import GRPOConfig

    from rollouts.base import Sampling, published_sampling, resolve_sampling
    from rollouts.hf import HFEngine

    engine = HFEngine.from_path(tiny_family("qwen2_5_vl"), dtype="float32")
    published = published_sampling(engine.model.generation_config)
    assert published == {"temperature": 0.1, "top_p": 0.001, "top_k": 1, "repetition_penalty": 1.05}
    unset = resolve_sampling(Sampling(n=4), published)
    assert (unset.temperature, unset.top_p, unset.top_k, unset.repetition_penalty) == (0.1, 0.001, 1, 1.05)
    rl = resolve_sampling(Sampling(n=4, temperature=1.0, top_p=1.0), published)  # what the RFT stage passes
    assert (rl.temperature, rl.top_p, rl.top_k, rl.repetition_penalty) == (1.0, 1.0, 0, 1.0)
    assert published_sampling(GenerationConfig(do_sample=False, temperature=0.7)) == {}

    prompt = [[{"role": "user", "content": "도형의 색은?"}]]
    greedy = engine.generate(prompt, None, Sampling(temperature=0.0, max_new_tokens=8, repetition_penalty=1.05))[0]
    published_runs = engine.generate(prompt, None, Sampling(n=4, max_new_tokens=8, seed=0))[0]
    assert {tuple(c.token_ids) for c in published_runs} == {tuple(greedy[0].token_ids)}  # top_k 1: the mode
    sampled = engine.generate(prompt, None, Sampling(n=4, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0))[0]
    assert len({tuple(c.token_ids) for c in sampled}) > 1  # the random tiny policy's own spread

    args = GRPOConfig(output_dir="unused", use_cpu=True, bf16=False, report_to=[])
    trl_kwargs = {k: getattr(args, k) for k in ("temperature", "top_p", "top_k", "repetition_penalty")}
    merged, _ = engine.model._prepare_generation_config(GenerationConfig(do_sample=True, **trl_kwargs), **trl_kwargs)
    assert (merged.temperature, merged.top_p, merged.top_k, merged.repetition_penalty) == (1.0, 1.0, 0, 1.0)


# ------------------------------------------------------------------ SFT and a GRPO step through the pipeline

RECIPE = """
name: fam
output_dir: {out}
model: {{path: {model}, family: {family}, trust_remote_code: {trust}}}
data: {{train_size: 8, eval_size: 4, seed: 2, tasks: {tasks}}}
eval: {{max_new_tokens: 6, samples: 1}}
rollout: {{engine: hf}}  # the family code paths; vLLM has its own tests
rewards: [{{name: accuracy}}]
stages:
  - type: sft
    args: {{max_steps: 2, per_device_train_batch_size: 2, learning_rate: 1.0e-3}}
  - type: grpo
    prompts: 4
    args: {{max_steps: 1, num_generations: 2, per_device_train_batch_size: 2, max_completion_length: 6}}
"""


@pytest.mark.parametrize("family", FAMILY_TINIES)
def test_family_sft_then_a_grpo_step(tiny_family, tmp_path, family):
    from align.models import load_model_and_processor
    from align.models.families import FAMILIES

    tasks = "[arith]" if family == "hyperclovax_text" else "[color, count]"
    f = write_recipe(tmp_path / "r.yaml", RECIPE.format(out=tmp_path, model=tiny_family(family), family=family,
                                                         tasks=tasks, trust="false"))  # fmt: skip
    run = run_pipeline(load_recipe(f)).path
    assert json.loads((run / "grpo" / "summary.json").read_text())["steps"] == 1
    assert any("loss" in m or "train_loss" in m for m in read_jsonl(run / "sft" / "metrics.jsonl"))
    assert read_jsonl(run / "grpo" / "rollouts.jsonl")
    for stage in ("base", "sft", "grpo"):
        assert "accuracy" in json.loads((run / stage / "eval.json").read_text())
    # the trained model reloads as the same family, with its processor and stop tokens
    model, processor, fam = load_model_and_processor(str(run / "grpo" / "model"), recipe_model(family), "float32")
    tok = getattr(processor, "tokenizer", processor)
    assert fam.name == family
    assert set(tok.convert_tokens_to_ids(list(FAMILIES[family].stop_tokens))) <= set(
        model.generation_config.eos_token_id
    )
    if family != "hyperclovax_text":
        assert hasattr(processor, "image_processor")


# ------------------------------------------------------------------ batch guards


def test_guard_image_tokens_cut_by_max_length(tiny_family, tmp_path):
    from align.models.guards import check_sft_batch

    trainer, family = _sft_trainer(tiny_family("qwen2_5_vl"), tmp_path, _rows(), max_length=12)
    with pytest.raises(StageError, match="0 image tokens in its text but its images give 16 image features") as e:
        check_sft_batch(trainer, family, "stage 'sft'")
    assert "max_length" in e.value.hint


def test_guard_labels_on_the_prompt(tiny_family, tmp_path):
    from align.models.guards import check_sft_batch

    trainer, family = _sft_trainer(tiny_family("varco_vision"), tmp_path, _rows(), completion_only_loss=False)
    with pytest.raises(StageError, match="row 1: image tokens carry loss"):
        check_sft_batch(trainer, family, "stage 'sft'")
    trainer, family = _sft_trainer(tiny_family("hyperclovax_text"), tmp_path, _rows(image=False),
                                   completion_only_loss=False)  # fmt: skip
    with pytest.raises(StageError, match="row 1: labels cover the prompt"):
        check_sft_batch(trainer, family, "stage 'sft'")
    trainer, family = _sft_trainer(tiny_family("varco_vision"), tmp_path, _rows())
    assert check_sft_batch(trainer, family, "stage 'sft'")["rows"] == 4


def test_varco_rows_with_several_images_train(tiny_family, tmp_path):
    """LLaVA-OneVision (VARCO) rows with two images: each gets its AnyRes tiles and its own image tokens."""
    from PIL import Image

    from align.models.guards import check_sft_batch, image_feature_count

    rows = _rows(2).map(lambda r: {"images": [Image.new("RGB", (64, 32), (0, 0, 255)),
                                             Image.new("RGB", (32, 32), (0, 255, 0))]})  # fmt: skip
    trainer, family = _sft_trainer(tiny_family("varco_vision"), tmp_path, rows)
    batch = trainer.data_collator([rows[0], rows[1]])
    is_image = (batch["input_ids"] == trainer.model.config.image_token_id).int()
    assert int(is_image.sum()) == image_feature_count(trainer.model, batch)
    for row in is_image:  # two separate runs of image tokens per row: one per image
        assert int((row[1:] - row[:-1] == 1).sum()) == 2
    assert check_sft_batch(trainer, family, "stage 'sft'")["rows"] == 2
    trainer.train()
    assert trainer.state.global_step == 1


def test_guard_hyperclovax_answer_must_train_both_end_tokens(tiny_family, tmp_path):
    """A HyperCLOVAX template that closes the assistant turn with <|im_end|> only: the model would never learn to
    emit <|endofturn|>, its stop token."""
    from align.models.guards import check_sft_batch
    from align.models.tiny.korean_vlm import CHAT_TEMPLATE

    broken = CHAT_TEMPLATE.replace("<|im_end|><|endofturn|>", "<|im_end|>")
    path = copy_with_chat_template(tiny_family("hyperclovax_text"), tmp_path / "m", broken)
    trainer, family = _sft_trainer(str(path), tmp_path, _rows(image=False))
    with pytest.raises(StageError, match=r"must end with <\|im_end\|><\|endofturn\|> carrying loss"):
        check_sft_batch(trainer, family, "stage 'sft'")
    trainer, family = _sft_trainer(tiny_family("hyperclovax_text"), tmp_path, _rows(image=False))
    assert check_sft_batch(trainer, family, "stage 'sft'")["rows"] == 4


def test_guard_prompt_plus_completion_budget_exceeds_context(tiny_family, tmp_path):
    """GRPO stops before training when the prompt plus max_completion_length cannot fit (tiny models: 512)."""
    f = write_recipe(
        tmp_path / "r.yaml",
        RECIPE.format(out=tmp_path, model=tiny_family("qwen2_5_vl"), family="auto", tasks="[color]", trust=False)
        .replace("max_completion_length: 6", "max_completion_length: 500")
        .replace("eval: {max_new_tokens: 6, samples: 1}", "eval: {enabled: false}"),
    )
    recipe = load_recipe(f)
    recipe.stages = recipe.stages[1:]  # GRPO only
    with pytest.raises(StageError, match=r"the prompt is \d+ tokens \+ 500 completion tokens, more than the model's "
                                         r"context of 512"):  # fmt: skip
        run_pipeline(recipe)


# ------------------------------------------------------------------ the shipped family recipes, on tiny models

FAMILY_RECIPES = {
    "grpo_vision.yaml": ("hyperclovax_vision", "[color, count]"),
    "hyperclovax_text_grpo.yaml": ("hyperclovax_text", "[arith]"),
    "qwen2_5_vl_grpo.yaml": ("qwen2_5_vl", "[color, count]"),
    "sft_vision.yaml": ("qwen2_5_vl", "[color, count]"),
    "varco_vision.yaml": ("varco_vision", "[bbox, ocr]"),
}


def tiny_overrides(recipe_file, model: str, tasks: str, out) -> list[str]:
    """Keep a shipped recipe's stages, rewards and settings; swap in a tiny model, synthetic data and 1 step."""
    from tests.conftest import ROOT

    recipe = load_recipe(ROOT / "recipes" / recipe_file)
    # eval.benchmarks=[]: the recipes' benchmarks read hub data (tests/test_benchmarks.py runs them on fixtures)
    overrides = [f"model.path={model}", "model.dtype=float32", "data.source=synthetic", "data.eval_source=null",
                 "data.image_folder=null", f"data.tasks={tasks}", "data.train_size=8", "data.eval_size=2",
                 "eval.max_new_tokens=4", "eval.limit=2", "eval.benchmarks=[]", "rollout.engine=hf", "report_to=[none]",
                 f"output_dir={out}"]  # fmt: skip
    for stage in recipe.stages:
        s = stage.name
        overrides += [f"{s}.rows=null", f"{s}.args.max_steps=1", f"{s}.args.per_device_train_batch_size=2",
                      f"{s}.args.gradient_accumulation_steps=1", f"{s}.args.bf16=false"]  # fmt: skip
        if stage.type == "grpo":
            overrides += [f"{s}.args.num_generations=2", f"{s}.args.max_completion_length=6",
                          f"{s}.select_prompts.samples=2", f"{s}.select_prompts.enabled=false"]  # fmt: skip
    return overrides


@pytest.mark.parametrize("recipe_file", sorted(FAMILY_RECIPES))
def test_family_recipes_run_on_their_tiny_model(tiny_family, tmp_path, recipe_file):
    from tests.conftest import ROOT

    family, tasks = FAMILY_RECIPES[recipe_file]
    recipe = load_recipe(ROOT / "recipes" / recipe_file, tiny_overrides(recipe_file, tiny_family(family), tasks,
                                                                         tmp_path))  # fmt: skip
    assert recipe.model.family == family
    run = run_pipeline(recipe).path
    for stage in recipe.stages:
        assert (run / stage.name / "model" / "config.json").exists()
        assert "accuracy" in json.loads((run / stage.name / "eval.json").read_text())


# ------------------------------------------------------------------ HyperCLOVAX-SEED-Vision adapter


def test_hcx_collator_expands_labels_and_carries_ocr_and_lens_fields(tiny_family):
    """HCX chat entries per image with OCR / lens text; the processor writes one image token per visual token;
    loss on the answer and both HyperCLOVAX end tokens only."""
    from PIL import Image

    from align.models import load_model_and_processor
    from align.models.hcx_vision import HCXCollator, vlm_chat

    model, processor, family = load_model_and_processor(tiny_family("hyperclovax_vision"), recipe_model(
        "hyperclovax_vision"), "float32")  # fmt: skip
    assert family.name == "hyperclovax_vision" and type(model).__name__ == "HCXVisionForCausalLM"
    image = Image.new("RGB", (40, 30), (200, 30, 30))
    info = json.dumps({"ocr": "사과", "lens_keywords": ["과일"]}, ensure_ascii=False)
    chat = vlm_chat([{"role": "system", "content": "짧게 답하세요."}, {"role": "user", "content": "무슨 색?"}],
                    [image], info)  # fmt: skip
    assert [t["content"]["type"] for t in chat] == ["text", "image", "text"]  # images right before the user's text
    assert chat[1]["content"]["ocr"] == "사과" and chat[1]["content"]["lens_keywords"] == "과일"
    rows = [{"prompt": [{"role": "user", "content": "무슨 색?"}],
             "completion": [{"role": "assistant", "content": "빨강"}], "images": [image], "image_info": info}] * 2  # fmt: skip
    batch = HCXCollator(processor, model.config.image_token_id)(rows)
    tok = processor.tokenizer
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    visual = int(batch["vision_query_lengths_images"][0, 0])
    assert visual > 1 and int((ids == model.config.image_token_id).sum()) == visual
    # the published layout: the image's aux turn carries its OCR / lens keywords as JSON
    assert "<|im_start|>image/aux\n" in tok.decode(ids)
    assert '{"ocr": "사과", "lens_keywords": "과일", "lens_local_keywords": ""}<|im_end|>' in tok.decode(ids)
    assert labels.shape == ids.shape and bool((labels[ids == model.config.image_token_id] == -100).all())
    assert tok.decode(labels[labels != -100]) == "빨강<|im_end|><|endofturn|>"
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)


def test_hcx_grpo_scores_the_policy_with_its_images(tiny_family, tmp_path):
    """TRL passes only the image inputs of the VLMs it knows to the policy; the workbench's GRPO trainer forwards
    HyperCLOVAX's pixel_values_images & co, so the log-probs used in the loss depend on the image."""
    from PIL import Image
    from trl import GRPOConfig

    from align.models import load_model_and_processor
    from align.trl_extensions import GRPOExtras, grpo_trainer_class

    model, processor, family = load_model_and_processor(tiny_family("hyperclovax_vision"), recipe_model(
        "hyperclovax_vision"), "float32")  # fmt: skip
    from datasets import Dataset

    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": "무슨 색?"}],
                               "images": [Image.new("RGB", (32, 32), c)]} for c in [(250, 0, 0), (0, 0, 250)] * 2])  # fmt: skip
    trainer_cls = grpo_trainer_class()
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=4,
                      num_generations=2, max_completion_length=4, max_steps=1, logging_steps=1, bf16=False)  # fmt: skip
    trainer = trainer_cls(model=model, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)], args=args,
                          train_dataset=rows, processing_class=processor,
                          extras=GRPOExtras(extra_image_keys=family.image_inputs))  # fmt: skip
    trainer.model.eval()
    batch = trainer._generate_and_score_completions([rows[i] for i in range(4)])
    assert batch["pixel_values_images"].shape[0] == 4 and batch["vision_query_lengths_images"].shape == (4, 1)
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    n = batch["completion_ids"].shape[1]
    with torch.no_grad():
        trainer._extra_batch = {k: batch[k] for k in family.image_inputs}
        logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, mask, n)
        trainer._extra_batch = {k: batch[k].flip(0) for k in family.image_inputs}  # other rows' images
        swapped, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, mask, n)
        trainer._extra_batch = None
        # the same as the model's own forward with the images, scored by hand
        logits = trainer.model(input_ids=input_ids, attention_mask=mask,
                               **{k: batch[k] for k in family.image_inputs}).logits  # fmt: skip
    manual = torch.log_softmax(logits[:, -n - 1 : -1] / trainer.temperature, -1).gather(
        -1, batch["completion_ids"].unsqueeze(-1)).squeeze(-1)  # fmt: skip
    assert torch.allclose(logps, manual, atol=1e-5)
    assert not torch.allclose(logps, swapped, atol=1e-4)


def test_model_info_cli_prints_the_family(tiny_family, capsys):
    from align.cli import main

    paths = {f: tiny_family(f) for f in ("varco_vision", "hyperclovax_vision")}
    capsys.readouterr()  # building the tiny models prints progress
    assert main(["model", "info", paths["varco_vision"], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "varco_vision" and info["processor"] == "LlavaOnevisionProcessor"
    assert "<bbox>" in info["marker_tokens"] and info["modules"]["connector"] == ["multi_modal_projector",
                                                                                   "image_newline"]  # fmt: skip
    assert main(["model", "info", paths["hyperclovax_vision"]]) == 0
    out = capsys.readouterr().out
    assert "hyperclovax_vision" in out and "vllm_plugin" in out and "'missing_keys': 0, 'unexpected_keys': 0" in out


def test_remote_code_that_fails_under_this_transformers_says_so(tmp_path):
    """Published remote code often pins an older transformers: a remote-code model that fails to load stops with
    the transformers version and what to do (HyperCLOVAX-SEED-Vision: the native implementation)."""
    from align.models import load_model
    from align.recipe import ModelSpec

    path = _remote_code_model(tmp_path / "remote")
    with pytest.raises(UserError, match="own code failed to load .* under transformers 5") as e:
        load_model(str(path), ModelSpec(trust_remote_code=True, family="generic"))
    assert "hyperclovax_vlm" in e.value.hint and "4.52-4.57.1" in e.value.hint
