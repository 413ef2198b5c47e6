"""Faults found by scripts/real_size.py at published sizes, each pinned at the shape that showed it (small width,
one layer; the published geometry, vocabulary or widths only where the fault needs them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
G = 2


def _image(w: int, h: int):
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(w + h).integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def hcx_published_geometry(align_cache):
    """HyperCLOVAX-SEED-Vision with the published image geometry (378-px AnyRes grids, 81 queries, the published
    processor file and vocabulary of 110,592) at toy width, one decoder layer and one SigLIP block."""
    import transformers

    from align.models import load_config

    out = align_cache / "models" / "hcx-published-geometry"
    if (out / "model.safetensors").exists():
        return str(out)
    out.mkdir(parents=True, exist_ok=True)
    load_script("real_size").prepare_files("hyperclovax_vision", 1, 1, out)
    config = json.loads((out / "config.json").read_text())
    config["language_config"].update(hidden_size=64, intermediate_size=128, num_attention_heads=2,
                                     num_key_value_heads=1, head_dim=32)  # fmt: skip
    config["vision_config"].update(hidden_size=64, intermediate_size=128, num_attention_heads=2)  # 378 px, patch 14
    (out / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(load_config(str(out), False))
    model.save_pretrained(out)
    return str(out)


def test_hcx_vision_grpo_takes_the_shared_prompt_path_with_anyres_grids_of_different_counts(hcx_published_geometry,
                                                                                           tmp_path):  # fmt: skip
    """Fault: HyperCLOVAX-SEED-Vision (image inputs under its own names, padded per row) always took TRL's path, so a
    real-size GRPO step ran the vision tower and a ~1,000-token prompt G times (it did not finish in 25 min). Two
    prompts whose images give 5 and 9 AnyRes grids (640×480 and 1280×720: 347 and 675 visual tokens) in one batch: the shared path is
    taken, the tower sees each prompt's grids once, and log-probs and gradients equal the model's own forward's."""
    from datasets import Dataset, Image, Sequence
    from trl import GRPOConfig

    from align.models import load_model_and_processor
    from align.trl_extensions import GRPOExtras, SharedPrompt, grpo_trainer_class

    model, processor, family = load_model_and_processor(hcx_published_geometry, None, "float32")
    rows = {"prompt": [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
                       for q in ("무엇이 보이나요?", "이 문서의 제목은?")],
            "images": [[_image(640, 480)], [_image(1280, 720)]]}  # fmt: skip
    data = Dataset.from_dict(rows).cast_column("images", Sequence(Image()))
    config = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", seed=0, max_steps=1,
                        num_generations=G, per_device_train_batch_size=2 * G, max_completion_length=2,
                        logging_steps=1, shuffle_dataset=False, beta=0.0)  # fmt: skip
    extras = GRPOExtras(extra_image_keys=family.image_inputs, shared_prompt=SharedPrompt("auto"))
    trainer = grpo_trainer_class()(model=model, reward_funcs=[lambda completions, **k: [0.0] * len(completions)],
                                   args=config, train_dataset=data, processing_class=processor, extras=extras)  # fmt: skip
    sp = extras.shared_prompt
    assert sp.reason is None, sp.reason
    scored = []  # positions the LM head scores per call: the last one only (a whole prompt's logits at the
    # published vocabulary are [rows, ~1000, 110592] floats, the first generation's check computed them)
    head = model.get_output_embeddings().register_forward_hook(lambda m, a, out: scored.append(out.shape[1]))
    try:
        batch = trainer._generate_and_score_completions([data[i] for i in range(2) for _ in range(G)])
    finally:
        head.remove()
    assert sp.prefill.counts["shared"] == 1 and sp.prefill.checked and not sp.prefill.reason, sp.prefill.fallbacks
    assert scored and set(scored) == {1}
    visual = (batch["prompt_ids"] == model.config.image_token_id).sum(1).tolist()
    assert visual == [347] * G + [675] * G  # the published counts (FACTS.md)
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    n = batch["completion_ids"].size(1)
    image = {k: batch[k] for k in (*family.image_inputs, "pixel_values", "num_images") if batch.get(k) is not None}
    grids = []
    hook = model.vision_model.register_forward_pre_hook(lambda m, a, kw: grids.append(a[0].size(0)), with_kwargs=True)
    results = {}
    try:
        for path in ("own", "shared"):
            extras.shared_prompt = sp if path == "shared" else None
            model.zero_grad()
            grids.clear()
            logps, entropies, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, n, None, True, **image)
            (logps * torch.linspace(-1, 1, logps.numel()).view_as(logps)).sum().backward()
            grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
            results[path] = (logps.detach(), entropies.detach(), sum(grids), grads)
    finally:
        hook.remove()
    (own, own_ent, own_grids, own_grads), (mine, mine_ent, mine_grids, mine_grads) = results["own"], results["shared"]
    # the first shared pass is checked against the model's own forward (the check passed); then each prompt's
    # grids went through the tower once, not G times
    assert sp.counts["shared"] == 1 and sp.checked and sp.max_check_diff <= 1e-5
    assert own_grids == G * (5 + 9) and mine_grids == G * (5 + 9) + (5 + 9) + (5 + 9)
    keep = batch["completion_mask"].bool()
    assert (own - mine).abs()[keep].max() <= 1e-5 and (own_ent - mine_ent).abs()[keep].max() <= 1e-5
    scale = max(g.norm().item() for g in own_grads.values())
    for k, g in own_grads.items():
        assert (g - mine_grads[k]).norm().item() <= 1e-4 * g.norm().item() + 1e-6 * scale, k


def test_kanana_remote_code_takes_the_published_lm_heads_of_128_on_a_1792_wide_model(align_cache, tmp_path):
    """Fault: Kanana-1.5's LM has 24 heads of 128 on a 1792-wide model (``head_dim`` given); the project's remote
    code built it with transformers 5's ``LlamaConfig``, which refuses a width that is not a multiple of the heads,
    so no published-size Kanana-1.5-v config loaded. The LM widths, one layer, with an image. The config is
    reconstructed, not a published copy (none was reachable): tests/assets/published/kanana_v/SOURCES.md."""
    import shutil

    import transformers
    from PIL import Image

    from align.models import load_config, load_model_and_processor
    from align.models.tiny import build_tiny_family

    tiny = build_tiny_family("kanana_v", align_cache / "models" / "tiny-kanana_v")
    shutil.copytree(tiny, tmp_path / "m")
    published = json.loads((ROOT / "tests" / "assets" / "published" / "kanana_v" / "config.json").read_text())
    sizes = {k: published["text_config"][k] for k in ("hidden_size", "num_attention_heads", "num_key_value_heads",
                                                      "head_dim")}  # fmt: skip
    assert sizes == {"hidden_size": 1792, "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128}
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["text_config"].update(sizes, num_hidden_layers=1, intermediate_size=256)
    config["projector_config"]["output_hidden_size"] = 1792
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    model = transformers.AutoModelForImageTextToText.from_config(load_config(str(tmp_path / "m"), True),
                                                                 trust_remote_code=True)  # fmt: skip
    model.save_pretrained(tmp_path / "m")
    model, processor, _ = load_model_and_processor(str(tmp_path / "m"), _trusted(), "float32")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["text_config"]
    assert saved["model_type"] == "llama" and (saved["hidden_size"], saved["head_dim"]) == (1792, 128)
    attn = model.model.language_model.layers[0].self_attn if hasattr(model.model, "language_model") else None
    attn = attn or next(m for n, m in model.named_modules() if n.endswith("layers.0.self_attn"))
    assert (attn.q_proj.in_features, attn.q_proj.out_features, attn.k_proj.out_features) == (1792, 3072, 1024)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "무엇이 보이나요?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = processor(text=[text], images=[[Image.new("RGB", (112, 84), (200, 40, 30))]], return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape[:2] == enc["input_ids"].shape and torch.isfinite(logits).all()


def _trusted():
    from align.recipe import ModelSpec

    return ModelSpec(trust_remote_code=True)
