"""Composing a small VLM (vision encoder + language model -> LLaVA) and the connector-alignment (`align`) stage, on
tiny CLIP / SigLIP encoders built from configs and the tiny HyperCLOVAX-format language model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from align.errors import RecipeError, UserError
from align.io import read_jsonl
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from tests.conftest import ROOT, copy_with_chat_template, write_recipe


@pytest.fixture(scope="module")
def composed(tmp_path_factory, align_cache):
    """{kind: composed model dir} through the CLI, as a user would."""
    from align.cli import main

    out = {}
    for kind in ("clip", "siglip"):
        path = tmp_path_factory.mktemp("composed") / kind
        assert main(["model", "compose", "--vision", f"tiny-{kind}-vision", "--language", "tiny-korean-lm",
                     "--projector", "mlp2x_gelu", "--out", str(path), "--seed", "3"]) == 0  # fmt: skip
        out[kind] = path
    return out


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_composed_model_loads_with_its_parts_and_generates(composed, kind):
    from PIL import Image
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

    from align.models import resolve_model_path

    path = composed[kind]
    model, info = AutoModelForImageTextToText.from_pretrained(path, output_loading_info=True)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert not any(info.values()), info  # no missing, unexpected or mismatched weights
    # the parts are the encoder's and the language model's own weights
    from transformers import CLIPVisionModel, SiglipVisionModel

    enc = (CLIPVisionModel if kind == "clip" else SiglipVisionModel).from_pretrained(
        resolve_model_path(f"tiny-{kind}-vision"))  # fmt: skip
    for name, tensor in enc.state_dict().items():
        assert torch.equal(model.model.vision_tower.state_dict()[name], tensor), name
    lm = AutoModelForCausalLM.from_pretrained(resolve_model_path("tiny-korean-lm"))
    assert torch.equal(model.model.language_model.embed_tokens.weight, lm.model.embed_tokens.weight)
    assert torch.equal(model.model.language_model.layers[0].mlp.up_proj.weight, lm.model.layers[0].mlp.up_proj.weight)
    # the processor writes the image token once per patch: 32-px images in 8-px patches -> 16 (CLIP's CLS dropped)
    processor = AutoProcessor.from_pretrained(path)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "무엇이 보이나요?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>user\n<image>\n무엇이 보이나요?<|im_end|>")  # the LM's own chat format
    batch = processor(text=[text], images=[[Image.new("RGB", (40, 30), (20, 20, 200))]], return_tensors="pt")
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 16
    with torch.no_grad():
        features = model.get_image_features(pixel_values=batch["pixel_values"]).pooler_output
        assert sum(f.shape[0] for f in features) == 16
        assert torch.isfinite(model(**batch, labels=batch["input_ids"]).loss)
    # generation stops at the language model's stop tokens (carried over in generation_config)
    stop = processor.tokenizer.convert_tokens_to_ids("<|endofturn|>")
    assert stop in model.generation_config.eos_token_id
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=6, do_sample=False, sequence_bias={(stop,): 100.0})
    assert out[0, batch["input_ids"].shape[1]:].tolist() == [stop]


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_composed_weights_use_the_llava_layout_vllm_loads(composed, kind):
    """vLLM's LlavaForConditionalGeneration maps checkpoint names by prefix (model.vision_tower. -> vision_tower., …)
    onto its modules, whose CLIP/SigLIP tower sits under vision_tower.vision_model. transformers 5.19 writes the tower
    without that level; compose renames it, and transformers still loads it (previous test)."""
    from safetensors import safe_open

    with safe_open(str(composed[kind] / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    prefixes = {k.split(".")[0] + "." + k.split(".")[1] for k in keys}
    assert prefixes <= {"vision_tower.vision_model", "multi_modal_projector.linear_1", "multi_modal_projector.linear_2",
                        "language_model.model", "language_model.lm_head"}  # fmt: skip
    assert any(k.startswith("vision_tower.vision_model.encoder.layers.") for k in keys)
    assert any(k.startswith("language_model.model.layers.") for k in keys)


def test_compose_refuses_bad_inputs_with_what_to_do(tmp_path):
    from align.models import resolve_model_path
    from align.models.compose import compose

    with pytest.raises(UserError, match="not a CLIP or SigLIP vision encoder") as e:
        compose("tiny-korean-lm", "tiny-korean-lm", tmp_path / "a")
    assert "clip-vit-large-patch14-336" in e.value.hint
    with pytest.raises(UserError, match="already a vision-language model"):
        compose("tiny-clip-vision", "tiny-korean-vlm", tmp_path / "b")
    with pytest.raises(UserError, match="--pool 2") as e:
        compose("tiny-clip-vision", "tiny-korean-lm", tmp_path / "c", pool=2)
    assert "no image-token pooling" in e.value.hint
    bare = copy_with_chat_template(resolve_model_path("tiny-korean-lm"), tmp_path / "bare-lm", None)
    with pytest.raises(UserError, match="has no chat template"):
        compose("tiny-clip-vision", str(bare), tmp_path / "d")
    assert not (tmp_path / "d").exists()  # nothing half-written


def test_align_stage_config_trains_the_projector_only(tmp_path):
    base = "name: t\nstages:\n  - type: align\n"
    with pytest.raises(RecipeError, match="freeze must be"):
        load_recipe(write_recipe(tmp_path / "a.yaml", base + "    freeze: [vision_tower]\n"))
    with pytest.raises(RecipeError, match="remove lora"):
        load_recipe(write_recipe(tmp_path / "b.yaml", base + "    lora: {r: 8}\n"))
    with pytest.raises(RecipeError, match="model.path or model.compose"):
        load_recipe(write_recipe(tmp_path / "c.yaml", "name: t\nmodel: {path: x, compose: {vision: a, language: b}}\n"))


def test_compose_align_sft_grpo_recipe_on_tiny_models(tmp_path):
    """tests/assets/compose_tiny.yaml: compose -> align -> sft (LoRA) -> grpo. The align stage changes the projector
    and nothing else, and its caption loss goes down."""
    from safetensors.torch import load_file

    recipe = load_recipe(ROOT / "tests" / "assets" / "compose_tiny.yaml", [f"output_dir={tmp_path}",
                                                                        "align.args.max_steps=30"])  # fmt: skip
    run = run_pipeline(recipe).path
    composed = load_file(str(run / "compose" / "model" / "model.safetensors"))
    aligned = load_file(str(run / "align" / "model" / "model.safetensors"))
    changed = {k for k in composed if not torch.equal(composed[k], aligned[k])}
    assert changed == {f"multi_modal_projector.linear_{i}.{w}" for i in (1, 2) for w in ("weight", "bias")}
    losses = [m["loss"] for m in read_jsonl(run / "align" / "metrics.jsonl") if "loss" in m]
    assert len(losses) >= 10 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3, losses
    for stage in ("base", "align", "sft", "grpo"):
        assert "accuracy" in json.loads((run / stage / "eval.json").read_text())
    starts = [e for e in read_jsonl(run / "events.jsonl") if e["event"] == "stage_start"]
    assert starts[0]["input_model"] == str(run / "compose" / "model")
    assert starts[1]["input_model"] == str(run / "align" / "model")
    assert json.loads((run / "grpo" / "summary.json").read_text())["steps"] == 1
    # every stage's output keeps the LLaVA weight layout vLLM loads (transformers would write the tower without it)
    for stage in ("align", "sft", "grpo"):
        keys = load_file(str(run / stage / "model" / "model.safetensors")).keys()
        assert all(k.startswith("vision_tower.vision_model.") for k in keys if k.startswith("vision_tower.")), stage


def test_vllm_server_mode_refused_for_a_composed_model():
    """`./launch.sh` would start `vllm serve` before the run has composed its model."""
    from align.launcher import launch

    server = ["rollout.vllm_mode=server", "launch.vllm_server={gpus: 1}"]
    with pytest.raises(UserError, match="before the run composes its model"):
        launch(str(ROOT / "recipes" / "compose_small_korean_vlm.yaml"), server, dry_run=True, say=lambda *a: None)


def test_compose_from_a_full_clip_checkpoint_and_a_string_only_chat_template(tmp_path):
    """A full CLIPModel folder gives its vision half; a language model whose template only knows string content
    still renders image/text parts (the flattening prefix puts <image> where each image goes)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor, CLIPConfig, CLIPModel

    from align.models import resolve_model_path
    from align.models.compose import compose

    torch.manual_seed(0)
    full = CLIPModel(CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 1,
                       "image_size": 32, "patch_size": 8}))  # fmt: skip
    full.save_pretrained(tmp_path / "clip-full")
    shutil.copy(resolve_model_path("tiny-clip-vision") + "/preprocessor_config.json", tmp_path / "clip-full")
    plain = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
             "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")  # fmt: skip
    lm = copy_with_chat_template(resolve_model_path("tiny-korean-lm"), tmp_path / "lm", plain)
    out = compose(str(tmp_path / "clip-full"), str(lm), tmp_path / "vlm")
    model = AutoModelForImageTextToText.from_pretrained(out)
    for name, tensor in full.vision_model.state_dict().items():
        assert torch.equal(model.model.vision_tower.state_dict()[name], tensor), name
    processor = AutoProcessor.from_pretrained(out)
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text",
                                          "text": "무엇?"}]}], tokenize=False, add_generation_prompt=True)  # fmt: skip
    assert text == "<|im_start|>user\n<image>\n무엇?<|im_end|>\n<|im_start|>assistant\n"
