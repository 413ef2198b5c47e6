"""HyperCLOVAX-SEED-Vision-Instruct-3B from a folder laid out as the hub publishes it (both revisions): the published
processor files (tests/assets/published/hyperclovax_vision, sources in its SOURCES.md) load natively with
trust_remote_code false — in transformers and through vLLM's processor loader — the published chat layout (three
turns per image) renders from HCX entries and from TRL's list-style content alike, SFT labels cover exactly the
answer under it, and tied embeddings, a tower without SigLIP's pooling head and the 1×1 canvas first load and run.
Missing or unknown processor files stop with the file and the class named. SFT, RFT, GRPO, DPO and rm on a published
folder: tests/test_hcx_native.py; vLLM on one: tests/test_hcx_vllm.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from align.errors import UserError

PUBLISHED = Path(__file__).parent / "assets" / "published" / "hyperclovax_vision"
CONFIG_AUTO_MAP = {"AutoConfig": "configuration_hyperclovax.HCXVisionConfig",
                   "AutoModelForCausalLM": "modeling_hyperclovax.HCXVisionForCausalLM"}  # fmt: skip


def _first_revision(config: dict) -> dict:
    """The later revision's config.json written with the first revision's names."""
    config = dict(config)
    config["language_config"] = config.pop("text_config")
    config["img_start_id"] = config.pop("image_token_id")
    config["num_queries_vis_abstractor"] = config.pop("num_queries_vis_abstractor_image")
    for key in ("video_token_id", "num_queries_vis_abstractor_video_slow", "num_queries_vis_abstractor_video_fast",
                "first_last_frames_slow", "config_revision"):  # fmt: skip
        config.pop(key, None)
    return config


def published_folder(tiny: str | Path, out: Path, revision: str = "later", *, one_by_one_first: bool = False,
                     tied: bool = False, pooling_head: bool = True) -> str:  # fmt: skip
    """The tiny HCX checkpoint (``build_tiny_hcx``) in the published folder layout of ``revision``: config.json with
    the revision's names and ``auto_map``, preprocessor_config.json (and, later revision, processor_config.json) as
    published with the tiny model's geometry in place of 378 px / 81 queries, tokenizer_config.json carrying the
    chat template, generation_config.json. ``one_by_one_first``: the published canvas list (1×1 first);
    ``tied``: no lm_head weight, embeddings tied; ``pooling_head=False``: no SigLIP pooling-head weights."""
    from safetensors.torch import load_file, save_file

    tiny, out = Path(tiny), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((tiny / "config.json").read_text())
    processor = json.loads((tiny / "processor_config.json").read_text())["image_processor"]
    size, queries = processor["size"], processor["num_queries_vis_abstractor"]
    canvases = processor["possible_resolutions"]
    if one_by_one_first:
        canvases = [[size, size]] + canvases
    config.update(possible_resolutions=canvases, auto_map=CONFIG_AUTO_MAP)
    if tied:
        config["tie_word_embeddings"] = config["text_config"]["tie_word_embeddings"] = True
    (out / "config.json").write_text(json.dumps(_first_revision(config) if revision == "first" else config, indent=2))
    weights = load_file(str(tiny / "model.safetensors"))
    drop = ("language_model.lm_head.weight",) if tied else ()
    weights = {k: v for k, v in weights.items()
               if k not in drop and (pooling_head or not k.startswith("vision_model.vision_model.head."))}  # fmt: skip
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    pre = json.loads((PUBLISHED / revision / "preprocessor_config.json").read_text())
    pre.update(size={"shortest_edge": size}, crop_size={"height": size, "width": size}, patch_size=processor["patch_size"],
               num_queries_vis_abstractor=queries, possible_resolutions=canvases)  # fmt: skip
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    if (PUBLISHED / revision / "processor_config.json").exists():
        shutil.copy(PUBLISHED / revision / "processor_config.json", out / "processor_config.json")
    tok = json.loads((tiny / "tokenizer_config.json").read_text())
    tok["chat_template"] = (tiny / "chat_template.jinja").read_text()  # published: the template in the config
    (out / "tokenizer_config.json").write_text(json.dumps(tok, indent=2, ensure_ascii=False))
    for name in ("tokenizer.json", "generation_config.json"):
        shutil.copy(tiny / name, out / name)
    return str(out)


def _image(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def tiny(align_cache):
    from align.models.tiny.hyperclovax_vision import build_tiny_hcx

    return str(build_tiny_hcx(align_cache / "models" / "tiny-hyperclovax_vision"))


@pytest.fixture(scope="module")
def folders(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("published_hcx")
    return {
        "first": published_folder(tiny, root / "first", "first"),
        "later": published_folder(tiny, root / "later", "later"),
        # the three forms the issue names, in one folder: tied embeddings, no pooling head, 1×1 canvas first
        "variant": published_folder(
            tiny, root / "variant", "later", one_by_one_first=True, tied=True, pooling_head=False
        ),
    }


def test_published_processor_files_load_natively(folders):
    """Both revisions' class names and auto_map load our processor with trust_remote_code false, in the workbench's
    loader and through vLLM's processor loader (which called the remote code's class and asked to run it)."""
    from vllm.transformers_utils.processor import get_processor

    from align.models import load_processor
    from align.models.hcx_vision import HCXVisionProcessor

    for revision in ("first", "later"):
        proc = load_processor(folders[revision])
        assert type(proc) is HCXVisionProcessor and proc.image_processor.size == 32
        assert proc.image_processor.num_queries_vis_abstractor == 4
        assert "user (vector)" in proc.tokenizer.chat_template  # the template from tokenizer_config.json
        served = get_processor(folders[revision], processor_cls=HCXVisionProcessor, trust_remote_code=False)
        assert type(served) is HCXVisionProcessor
        assert served.image_processor.possible_resolutions == proc.image_processor.possible_resolutions
    variant = load_processor(folders["variant"])
    assert variant.image_processor.possible_resolutions[0] == [32, 32]


def test_published_geometry_gives_the_published_token_counts(folders):
    """The published preprocessor settings (378 px grids, 81 queries, unpadding, 1×1 canvas first): 640×480 → 5
    grids and 347 visual tokens, 1920×1080 → 9 grids and 675 (the published processor's counts, FACTS.md)."""
    from align.models.hcx_vision import HCXVisionImageProcessor
    from align.models.hcx_vision.geometry import image_query_length

    settings = json.loads((PUBLISHED / "first" / "preprocessor_config.json").read_text())
    assert settings["possible_resolutions"][0] == [378, 378]
    ip = HCXVisionImageProcessor(**settings)
    for (w, h), grids, tokens in (((640, 480), 5, 347), ((1920, 1080), 9, 675)):
        assert image_query_length((w, h), ip) == tokens
        assert ip.image_grids(Image.new("RGB", (w, h))).shape == (grids, 3, 378, 378)


def _hcx_chat(image_info=None):
    from align.models.hcx_vision.adapter import vlm_chat

    messages = [{"role": "system", "content": "친절한 도우미입니다."},
                {"role": "user", "content": "사진 속 간판에 뭐라고 쓰여 있나요?"}]  # fmt: skip
    return vlm_chat(messages, [_image(64, 32)], image_info)


def test_the_published_chat_layout_from_hcx_entries_and_trl_lists(folders):
    """Each image is three turns (mime JSON, <|dummy3|>, aux JSON behind the published instruction), the same from
    the published chat entries and from TRL's list-style content, and the same as TensorRT-LLM's placeholder text for
    this model (after its three quirks: a stray '<im_end>', a space after '(mime)', no closing <|im_end|>)."""
    from align.models import load_processor

    proc = load_processor(folders["later"])
    chat, images, _ = proc.load_images_videos(_hcx_chat('{"ocr": "서울역", "lens_keywords": "간판"}'))
    assert len(images) == 1
    text = proc.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    reference = (PUBLISHED / "image_placeholder_trtllm.txt").read_text(encoding="utf-8")
    reference = reference.removeprefix("<im_end>\n").replace("user (mime) \n", "user (mime)\n") + "<|im_end|>"
    expected = (
        "<|im_start|>system\n친절한 도우미입니다.<|im_end|>\n"
        + reference.replace('"ocr": ""', '"ocr": "서울역"').replace('"lens_keywords": ""', '"lens_keywords": "간판"')
        + "\n<|im_start|>user\n사진 속 간판에 뭐라고 쓰여 있나요?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert text == expected
    trl = [{"role": "system", "content": [{"type": "text", "text": "친절한 도우미입니다."}]},
           {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "사진 속 간판에 뭐라고 쓰여 있나요?"}]}]  # fmt: skip
    assert proc.tokenizer.apply_chat_template(trl, tokenize=False, add_generation_prompt=True) == expected.replace(
        "서울역", "").replace("간판\"", "\"")  # fmt: skip
    # two images: two triples, in order, before the question
    two = proc.tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "차이는?"}]}],
        tokenize=False, add_generation_prompt=True)  # fmt: skip
    assert two.count("<|im_start|>user (vector)\n<|dummy3|><|im_end|>") == 2 and two.count("image/aux") == 2
    assert two.index("image/aux") < two.index("<|im_start|>user\n차이는?")


def test_sft_labels_cover_exactly_the_answer_under_the_published_layout(folders):
    """The SFT collator's prompt is a prefix of prompt + answer under the published template, and its labels are the
    answer and both end tokens; image tokens, the aux turn and the generation prompt carry none."""
    from align.models import load_processor
    from align.models.hcx_vision.adapter import HCXCollator

    proc = load_processor(folders["later"])
    row = {"prompt": [{"role": "user", "content": "간판에 뭐라고 쓰여 있나요?"}],
           "completion": [{"role": "assistant", "content": "간판에는 '서울역'이라고 쓰여 있습니다."}],
           "images": [_image(64, 32)], "image_info": '{"ocr": "서울역"}'}  # fmt: skip
    batch = HCXCollator(proc, proc.image_token_id)([row, {**row, "images": [_image(32, 96, 1)]}])
    for b in range(2):
        kept = batch["labels"][b][batch["labels"][b] != -100].tolist()
        assert proc.tokenizer.decode(kept) == "간판에는 '서울역'이라고 쓰여 있습니다.<|im_end|><|endofturn|>"
        ids = batch["input_ids"][b].tolist()
        assert proc.image_token_id in ids and "서울역" in proc.tokenizer.decode(
            ids[: ids.index(proc.image_token_id) + 200]
        )


def test_tied_embeddings_no_pooling_head_and_the_1x1_canvas_load_and_run(folders, tiny):
    """The strict weight check accepts a folder without SigLIP's pooling head (the model does not use it) and
    without an lm_head when the embeddings are tied; the 1×1 canvas (first in the published list) is chosen for a
    square image and the processor's token count equals the model's features."""
    from align.models import load_model, load_processor
    from align.models.hcx_vision import checkpoint_keys

    path = folders["variant"]
    assert checkpoint_keys(path) == {"missing_keys": [], "unexpected_keys": []}
    model, proc = load_model(path, dtype="float32").eval(), load_processor(path)
    assert model.config.tie_word_embeddings
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert not any(".head." in name for name, _ in model.named_parameters())
    chat, _, _ = proc.load_images_videos(_hcx_chat())
    text = proc.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    square = proc(text=[text], images=[[_image(32, 32)]], return_tensors="pt", add_special_tokens=False)
    assert square["pixel_values_images"].shape[1] == 2  # the global view and one 1×1 local grid
    with torch.no_grad():
        out = model.generate(**square, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == square["input_ids"].shape[1] + 3
    # a folder with the pooling head and an untied head still loads with every weight used
    assert checkpoint_keys(folders["first"]) == {"missing_keys": [], "unexpected_keys": []}


def test_model_info_reads_the_published_folder(folders, capsys):
    from align.cli import main

    assert main(["model", "info", folders["variant"], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "hyperclovax_vision" and info["processor"] == "HCXVisionProcessor"
    assert info["weights"] == {"missing_keys": 0, "unexpected_keys": 0}


def test_missing_or_unknown_processor_files_stop_naming_file_and_class(folders, tiny_model, tmp_path):
    from align.models import load_processor

    def copy(name):
        return Path(shutil.copytree(folders["later"], tmp_path / name))

    bare = copy("bare")
    (bare / "preprocessor_config.json").unlink()
    with pytest.raises(UserError, match=r"no preprocessor_config\.json.*text-only tokenizer"):
        load_processor(str(bare))
    unknown = copy("unknown")
    pre = json.loads((unknown / "preprocessor_config.json").read_text())
    (unknown / "preprocessor_config.json").write_text(
        json.dumps({**pre, "image_processor_type": "HCXImageProcessorV3"})
    )
    with pytest.raises(UserError, match=r"preprocessor_config\.json: image_processor_type 'HCXImageProcessorV3'"):
        load_processor(str(unknown))
    other = copy("other")
    (other / "processor_config.json").write_text(json.dumps({"processor_class": "SomeOtherProcessor"}))
    with pytest.raises(UserError, match=r"processor_config\.json: processor_class 'SomeOtherProcessor'"):
        load_processor(str(other))
    # another family's vision model without its processor files: an error, not a text-only tokenizer
    idefics = Path(shutil.copytree(tiny_model, tmp_path / "idefics"))
    for name in ("preprocessor_config.json", "processor_config.json"):
        (idefics / name).unlink(missing_ok=True)
    with pytest.raises(UserError, match=r"vision model .* cannot be built \(it has neither preprocessor_config\.json"):
        load_processor(str(idefics))
