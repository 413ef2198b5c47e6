"""Composing a small VLM (vision encoder + language model -> LLaVA, or the AIKU-style aiku_vlm model) and the
connector-alignment (`align`) stage, on tiny CLIP / SigLIP encoders built from configs and the tiny HyperCLOVAX-format
language model. vLLM serving of the aiku model: tests/test_aiku_vllm.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

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
    out["aiku"] = tmp_path_factory.mktemp("composed") / "aiku"  # AIKU's connector, pool 2: 4×4 patches → 2×2 tokens
    assert main(["model", "compose", "--vision", "tiny-clip-vision", "--language", "tiny-korean-lm", "--projector",
                 "aiku", "--pool", "2", "--out", str(out["aiku"]), "--seed", "3"]) == 0  # fmt: skip
    out["aiku-sized"] = tmp_path_factory.mktemp("composed") / "aiku-sized"  # every size set, SigLIP, pool 4
    assert main(["model", "compose", "--vision", "tiny-siglip-vision", "--language", "tiny-korean-lm", "--projector",
                 "aiku", "--pool", "4", "--resnet-blocks", "2", "--resnet-kernel", "5", "--projector-hidden", "32",
                 "--out", str(out["aiku-sized"])]) == 0  # fmt: skip
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
    assert out[0, batch["input_ids"].shape[1] :].tolist() == [stop]


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
    assert "no image-token pooling" in e.value.hint and "--projector aiku" in e.value.hint
    bare = copy_with_chat_template(resolve_model_path("tiny-korean-lm"), tmp_path / "bare-lm", None)
    for projector in ("mlp2x_gelu", "aiku"):
        with pytest.raises(UserError, match="has no chat template"):
            compose("tiny-clip-vision", str(bare), tmp_path / "d", projector)
    # the aiku connector: a pool that does not divide the patch grid, sizes that give no model
    with pytest.raises(UserError, match=r"--pool 3 does not divide the 4×4 patch grid") as e:
        compose("tiny-clip-vision", "tiny-korean-lm", tmp_path / "d", "aiku", pool=3)
    assert "1, 2, 4" in e.value.hint and "16, 4, 1 image tokens" in e.value.hint
    with pytest.raises(UserError, match="resnet_kernel 4: must be odd"):
        compose("tiny-clip-vision", "tiny-korean-lm", tmp_path / "d", "aiku", resnet_kernel=4)
    with pytest.raises(UserError, match="mlp2x_gelu has no resnet_blocks"):
        compose("tiny-clip-vision", "tiny-korean-lm", tmp_path / "d", resnet_blocks=2)
    # an encoder without a vision half: a CLIP text model
    from transformers import CLIPTextConfig, CLIPTextModel

    CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 vocab_size=100)).save_pretrained(tmp_path / "clip-text")  # fmt: skip
    with pytest.raises(UserError, match="CLIP text encoder .* has no vision half"):
        compose(str(tmp_path / "clip-text"), "tiny-korean-lm", tmp_path / "d", "aiku")
    assert not (tmp_path / "d").exists()  # nothing half-written


def test_align_stage_config_trains_the_projector_only(tmp_path):
    base = "name: t\nstages:\n  - type: align\n"
    with pytest.raises(RecipeError, match="freeze must be"):
        load_recipe(write_recipe(tmp_path / "a.yaml", base + "    freeze: [vision_tower]\n"))
    with pytest.raises(RecipeError, match="remove lora"):
        load_recipe(write_recipe(tmp_path / "b.yaml", base + "    lora: {r: 8}\n"))
    with pytest.raises(RecipeError, match="model.path or model.compose"):
        load_recipe(write_recipe(tmp_path / "c.yaml", "name: t\nmodel: {path: x, compose: {vision: a, language: b}}\n"))


AIKU_CONNECTOR = {f"model.multi_modal_projector.{m}.{w}" for m in ("linear_1", "linear_2", "resnet.0.conv")
                  for w in ("weight", "bias")}  # fmt: skip
LLAVA_PROJECTOR = {f"multi_modal_projector.linear_{i}.{w}" for i in (1, 2) for w in ("weight", "bias")}


@pytest.mark.parametrize("projector", ["aiku", "mlp2x_gelu"])
def test_compose_align_sft_grpo_recipe_on_tiny_models(tmp_path, projector):
    """tests/assets/compose_tiny.yaml (AIKU's connector and stage settings; and the same stages on a LLaVA
    composition): compose -> align -> sft (LoRA) -> grpo. The align stage changes the connector and nothing else,
    and its caption loss goes down; every stage's output loads with all its weights."""
    from safetensors.torch import load_file

    from align.models.families import FAMILIES

    overrides = [f"output_dir={tmp_path}", "align.args.max_steps=30"]
    if projector == "mlp2x_gelu":
        overrides += ["model.compose.projector=mlp2x_gelu", "model.compose.pool=null"]
    recipe = load_recipe(ROOT / "tests" / "assets" / "compose_tiny.yaml", overrides)
    run = run_pipeline(recipe).path
    composed = load_file(str(run / "compose" / "model" / "model.safetensors"))
    aligned = load_file(str(run / "align" / "model" / "model.safetensors"))
    changed = {k for k in composed if not torch.equal(composed[k], aligned[k])}
    assert changed == (AIKU_CONNECTOR if projector == "aiku" else LLAVA_PROJECTOR)
    losses = [m["loss"] for m in read_jsonl(run / "align" / "metrics.jsonl") if "loss" in m]
    # lower by 0.2 nats in 30 steps (step-to-step noise ~0.05; the random language model knows no captions)
    assert len(losses) >= 10 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.2, losses
    for stage in ("base", "align", "sft", "grpo"):
        assert "accuracy" in json.loads((run / stage / "eval.json").read_text())
    starts = [e for e in read_jsonl(run / "events.jsonl") if e["event"] == "stage_start"]
    assert starts[0]["input_model"] == str(run / "compose" / "model")
    assert starts[1]["input_model"] == str(run / "align" / "model")
    assert json.loads((run / "grpo" / "summary.json").read_text())["steps"] == 1
    for stage in ("align", "sft", "grpo"):
        folder = run / stage / "model"
        if projector == "aiku":  # the native model's own names, every one in place (LoRA merged back)
            config = json.loads((folder / "config.json").read_text())
            assert config["model_type"] == "aiku_vlm" and config["image_seq_length"] == 4
            assert FAMILIES["aiku_vlm"].hook("check_weights")(str(folder)) == {"missing_keys": [],
                                                                               "unexpected_keys": []}  # fmt: skip
        else:  # the LLaVA weight layout vLLM loads (transformers would write the tower without it)
            keys = load_file(str(folder / "model.safetensors")).keys()
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


# ------------------------------------------------------------------ the AIKU-style connector (model_type aiku_vlm)


def test_compose_from_an_encoder_folder_with_clips_published_preprocessor_config(tmp_path):
    """The vision half as its hub folder publishes it: CLIP ViT-L/14-336's preprocessor_config.json in its original
    form (integer size / crop_size, CLIPFeatureExtractor, no image_processor_type;
    tests/assets/published/aiku_vlm), geometry 336 -> 32 px. The AIKU composition loads natively with CLIP's image
    processor built from the published settings, and an image gives the expected pixels and tokens."""
    from PIL import Image

    from align.cli import main
    from align.models import load_model_and_processor, resolve_model_path

    published = json.loads((ROOT / "tests/assets/published/aiku_vlm/clip_vit_large_patch14_336_preprocessor_config.json")
                           .read_text())  # fmt: skip
    encoder = tmp_path / "clip-encoder"
    shutil.copytree(resolve_model_path("tiny-clip-vision"), encoder)
    (encoder / "preprocessor_config.json").write_text(json.dumps({**published, "size": 32, "crop_size": 32}))
    out = tmp_path / "aiku"
    assert main(["model", "compose", "--vision", str(encoder), "--language", "tiny-korean-lm", "--projector", "aiku",
                 "--pool", "2", "--out", str(out), "--seed", "3"]) == 0  # fmt: skip
    model, processor, family = load_model_and_processor(str(out), None, "float32")
    image_processor = processor.image_processor
    assert family.name == "aiku_vlm" and type(image_processor).__name__.startswith("CLIPImageProcessor")
    assert image_processor.size["shortest_edge"] == 32 and image_processor.crop_size["height"] == 32
    assert list(image_processor.image_mean) == published["image_mean"] and image_processor.resample == 3
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "무엇이 보이나요?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = processor(text=[text], images=[[Image.new("RGB", (64, 48), (20, 20, 200))]], return_tensors="pt")
    assert tuple(batch["pixel_values"].shape[-2:]) == (32, 32)
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 4  # 4×4 patches pooled 2×2
    with torch.no_grad():
        assert torch.isfinite(model(**batch, labels=batch["input_ids"]).loss)


def test_aiku_composition_loads_with_its_parts_trains_and_round_trips(composed, tmp_path):
    from PIL import Image
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, CLIPVisionModel

    from align.models import resolve_model_path
    from align.models.aiku_vlm import checkpoint_keys, load_checked

    path = composed["aiku"]
    model, info = AutoModelForImageTextToText.from_pretrained(path, output_loading_info=True)
    assert type(model).__name__ == "AikuVLMForConditionalGeneration" and model.config.model_type == "aiku_vlm"
    assert not any(info.values()), info
    assert checkpoint_keys(str(path)) == {"missing_keys": [], "unexpected_keys": []}
    enc = CLIPVisionModel.from_pretrained(resolve_model_path("tiny-clip-vision"))
    for name, tensor in enc.state_dict().items():
        assert torch.equal(model.model.vision_tower.state_dict()[name], tensor), name
    lm = AutoModelForCausalLM.from_pretrained(resolve_model_path("tiny-korean-lm"))
    assert torch.equal(model.model.language_model.layers[1].self_attn.q_proj.weight,
                       lm.model.layers[1].self_attn.q_proj.weight)  # fmt: skip
    # 16 patches pooled 2×2: the processor writes 4 image tokens per image and the connector gives 4 features
    processor = AutoProcessor.from_pretrained(path)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "무엇이 보이나요?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "파란색 사각형"}]}]  # fmt: skip
    text = processor.apply_chat_template(messages, tokenize=False)
    batch = processor(text=[text], images=[[Image.new("RGB", (40, 30), (20, 20, 200))]], return_tensors="pt")
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 4 == model.config.image_seq_length
    assert json.loads((path / "composed_from.json").read_text())["image_tokens_per_image"] == 4
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()  # the connector learns from the language model's loss
    for name, p in model.model.multi_modal_projector.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # save -> load: the same weights under the same names, none missing or unexpected
    model.save_pretrained(tmp_path / "again")
    again, info = AutoModelForImageTextToText.from_pretrained(tmp_path / "again", output_loading_info=True)
    assert not any(info.values()), info
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    # a folder with a weight missing is refused, naming it
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tmp_path / "again" / "model.safetensors"))
    weights.pop("model.multi_modal_projector.resnet.0.conv.weight")
    save_file(weights, str(tmp_path / "again" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UserError, match=r"1 missing \(model.multi_modal_projector.resnet.0.conv.weight\)"):
        load_checked(str(tmp_path / "again"))


def test_aiku_connector_is_mlp_then_average_pooling_then_residual_conv(composed):
    """The connector's output, recomputed from its parts: the MLP on every patch of the tower's second-to-last layer
    (CLS dropped), the mean over each N×N window of the patch grid (row-major), then x + depthwise conv(x)."""
    import torch.nn.functional as F
    from transformers import AutoModelForImageTextToText

    for name, (pool, blocks, kernel, width, strategy) in {"aiku": (2, 1, 3, 128, "default"),
                                                          "aiku-sized": (4, 2, 5, 32, "full")}.items():  # fmt: skip
        model = AutoModelForImageTextToText.from_pretrained(composed[name]).eval()
        c = model.model.multi_modal_projector
        assert model.config.vision_feature_select_strategy == strategy and model.config.vision_feature_layer == -2
        assert (c.pool, len(c.resnet), c.resnet[0].conv.kernel_size, c.linear_1.out_features) == (pool, blocks,
                                                                                                  (kernel, kernel), width)  # fmt: skip
        pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            hidden = model.model.vision_tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
            patches = hidden[:, 1:] if strategy == "default" else hidden  # 16 patches, a 4×4 grid
            mlp = c.linear_2(F.gelu(c.linear_1(patches)))
            side, out_side = 4, 4 // pool
            grid = mlp.view(2, side, side, -1)
            pooled = torch.stack([torch.stack([grid[:, i * pool:(i + 1) * pool, j * pool:(j + 1) * pool].mean((1, 2))
                                               for j in range(out_side)], 1) for i in range(out_side)], 1)  # fmt: skip
            x = pooled.permute(0, 3, 1, 2)
            for block in c.resnet:
                x = x + F.conv2d(x, block.conv.weight, block.conv.bias, padding=kernel // 2, groups=x.shape[1])
            expected = x.flatten(2).transpose(1, 2)
            got = torch.stack(model.get_image_features(pixel_values=pixels).pooler_output)
        assert got.shape == (2, out_side**2, 128)
        assert torch.allclose(got, expected, atol=1e-5)
        assert sum(p.numel() for p in c.parameters()) == json.loads(
            (composed[name] / "composed_from.json").read_text())["connector_parameters"]  # fmt: skip


def test_a_fresh_process_loads_the_aiku_folder_with_auto_classes(composed):
    """A process with only the package installed: plain transformers does not know model_type aiku_vlm; after
    ``import align.models.aiku_vlm`` (what the workbench's loaders do) the Auto classes load the folder."""
    script = (
        "import sys\n"
        "from transformers import AutoModelForImageTextToText\n"
        "try:\n"
        "    AutoModelForImageTextToText.from_pretrained(sys.argv[1])\n"
        "    print('loaded without registration')\n"
        "except ValueError as e:\n"
        "    print('unknown before import:', 'aiku_vlm' in str(e))\n"
        "import align.models.aiku_vlm\n"
        "model, info = AutoModelForImageTextToText.from_pretrained(sys.argv[1], output_loading_info=True)\n"
        "print(type(model).__name__, sum(len(v) for v in info.values()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script, str(composed["aiku"])], capture_output=True, text=True,
                         env=env, cwd=str(composed["aiku"].parent), timeout=300, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-2:] == ["unknown before import: True", "AikuVLMForConditionalGeneration 0"]


STAGES = """
name: aiku
output_dir: {out}
model: {{path: {model}}}
data: {{train_size: 16, eval_size: 4, seed: 5, tasks: [color, count]}}
eval: {{enabled: false}}
rewards: [{{name: accuracy}}]
rollout: {{engine: hf}}
stages:
  - type: rft
    samples: 2
    max_new_tokens: 4
    accept: {{reward: accuracy, threshold: 0.0}}
    args: {{max_steps: 1, per_device_train_batch_size: 2}}
  - type: dpo
    pairs: 8
    args: {{max_steps: 2, per_device_train_batch_size: 2, per_device_eval_batch_size: 2, warmup_steps: 0}}
  - type: rm
    pairs: 8
    epochs: 1
    batch_size: 4
"""


def test_rft_dpo_and_rm_stages_run_on_the_aiku_model(align_cache, tmp_path):
    """The stages the compose recipe does not use (align, SFT and GRPO: test_compose_align_sft_grpo_recipe…), a step
    or two each on the tiny aiku model (`align model build-tiny --family aiku_vlm`)."""
    from align.models.tiny import build_tiny_family

    model = build_tiny_family("aiku_vlm", align_cache / "models" / "tiny-aiku_vlm")
    run = run_pipeline(load_recipe(write_recipe(tmp_path / "r.yaml", STAGES.format(out=tmp_path, model=model)))).path
    from safetensors.torch import load_file

    rft = json.loads((run / "rft" / "summary.json").read_text())
    assert rft["samples"] == 32 and rft["accepted"] > 0  # 16 prompts × 2 samples from the aiku model, fine-tuned on
    before, after = (load_file(str(run / s / "model" / "model.safetensors")) for s in ("rft", "dpo"))
    assert any(not torch.equal(before[k], after[k]) for k in before)  # DPO moved the policy
    for stage in ("rft", "dpo", "rm"):
        config = json.loads((run / stage / "model" / "config.json").read_text())
        assert config["model_type"] == "aiku_vlm" and config["pool"] == 2, stage
    assert json.loads((run / "rm" / "summary.json").read_text())["steps"] == 1
    assert (run / "rm" / "model" / "reward_head.safetensors").exists()
