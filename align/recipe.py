"""Recipes: plain YAML validated into typed objects.

    name: quickstart
    base: other.yaml              # optional: start from another recipe (path relative to this file)
    model: {path: tiny-korean-vlm, lora: {r: 16}}
    data: {source: synthetic, train_size: 2000}
    rewards: [{name: accuracy}]
    stages:
      - type: sft
        args: {learning_rate: 1.0e-3}   # passed to trl.SFTConfig, checked against its fields

Command-line overrides ``key.path=value`` win over the file; list items are addressed by index or by stage
name (``stages.sft.args.learning_rate=1e-4`` or just ``sft.args.learning_rate=1e-4``). Unknown keys and wrong
types are errors naming the file, the key path and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from align.benchmarks.registry import lookup as lookup_benchmark
from align.errors import RecipeError, UserError, did_you_mean


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSpec(Strict):
    """LoRA through PEFT. The trained adapter is merged into the stage's saved model."""

    r: int = Field(16, description="LoRA rank.")
    alpha: int = Field(32, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.05, description="Dropout on the LoRA input.")
    target_modules: list[str] | str = Field("all-linear", description="Module names or 'all-linear' (PEFT semantics).")
    exclude_modules: list[str] | str | None = Field(
        r".*(vision_model|vision_tower|visual|vision_encoder).*",
        description="Regex or names of modules left without adapters (the vision tower by default).",
    )
    modules_to_save: list[str] | None = Field(None, description="Modules trained fully and saved beside the adapter.")


class ComposeSpec(Strict):
    """Build the base model from a vision encoder and a language model (``align/models/compose.py``)."""

    vision: str = Field(description="CLIP or SigLIP vision encoder: a hub id or a local directory.")
    language: str = Field(description="Causal language model with a chat template: a hub id or a local directory.")
    projector: Literal["mlp2x_gelu"] = Field("mlp2x_gelu", description="Projector between them (LLaVA-1.5's).")
    pool: int = Field(1, ge=1, description="N×N image-token pooling; only 1 (LLaVA has no pooling).")


class ModelSpec(Strict):
    path: str = Field("tiny-korean-vlm", description="'tiny-korean-vlm', a local model directory or a hub id.")
    compose: ComposeSpec | None = Field(
        None, description="Compose the base model first (written to <run>/compose/model); replaces 'path'."
    )
    family: str = Field(
        "auto",
        description="Model family: 'auto' (read from the model's config and tokenizer), hyperclovax_text, "
        "hyperclovax_vision, varco_vision, qwen2_5_vl or generic (align/models/families.py).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; 'auto' is float32 on CPU and bfloat16 on GPU."
    )
    trust_remote_code: bool = Field(False, description="Allow the model's own code (HyperCLOVAX-SEED-Vision).")
    attn_implementation: str | None = Field(None, description="e.g. 'sdpa', 'flash_attention_2'.")
    lora: LoraSpec | None = Field(None, description="Train LoRA adapters instead of all weights.")
    freeze: list[str] = Field(
        default_factory=list,
        description="Modules kept frozen: 'vision_tower', 'connector', 'language_model' or a name substring.",
    )

    @model_validator(mode="after")
    def _check(self):
        from align.models.families import FAMILIES

        if self.compose is not None and "path" in self.model_fields_set:
            raise ValueError("set model.path or model.compose, not both")
        if self.family != "auto" and self.family not in FAMILIES:
            raise ValueError(f"model.family: unknown family '{self.family}': "
                             f"{did_you_mean(self.family, [*FAMILIES, 'auto'])}")  # fmt: skip
        return self


class DataSpec(Strict):
    source: str = Field(
        "synthetic", description="'synthetic', a local .jsonl/.parquet file or folder, or a hub dataset id."
    )
    tasks: list[str] | None = Field(None, description="Synthetic tasks to generate, or rows' tasks to keep.")
    train_size: int = Field(2000, ge=1, description="Synthetic: training rows.")
    eval_size: int = Field(200, ge=1, description="Synthetic: held-out rows.")
    seed: int = Field(0, description="Synthetic generator seed.")
    image_size: int = Field(64, ge=16, description="Synthetic image side in pixels.")
    max_count: int = Field(4, ge=1, le=9, description="Synthetic count task: at most this many shapes.")
    max_operand: int = Field(5, ge=2, le=99, description="Synthetic arithmetic: operands from 1 to this.")
    ocr_words: int = Field(8, ge=1, le=12, description="Synthetic OCR: how many distinct Korean words.")
    eval_source: str | None = Field(None, description="Local file or hub split for evaluation rows.")
    eval_fraction: float = Field(0.1, gt=0, lt=1, description="Held out from 'source' when no eval split exists.")
    image_folder: str | None = Field(None, description="Folder that relative image paths are resolved against.")
    train_split: str = Field("train", description="Split name for hub datasets and folders.")
    eval_split: str = Field("eval", description="Eval split name for hub datasets and folders ('test' is tried too).")
    max_rows: int | None = Field(None, ge=1, description="Keep at most this many training rows.")


class RewardSpec(Strict):
    name: str = Field(description="Built-in name, 'module:function' or 'path/to/file.py:function'.")
    weight: float = Field(1.0, description="Weight in the total reward.")
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments bound to the function.")


class EvalHookSpec(Strict):
    name: str | None = Field(None, description="Prefix for this hook's metrics.")
    callable: str | None = Field(None, description="'module:function' or 'file.py:function'(model_dir, recipe, stage).")
    command: str | None = Field(None, description="Shell command with {model} and {output} placeholders.")
    timeout: float = Field(3600, description="Seconds before the command is killed.")

    @model_validator(mode="after")
    def _one_of(self):
        if (self.callable is None) == (self.command is None):
            raise ValueError("give exactly one of 'callable' or 'command'")
        return self


class SampledEvalSpec(Strict):
    """pass@1 of the sampling policy: k answers per held-out prompt at `temperature`, scored and averaged.
    Greedy accuracy shows the model's mode; this shows the distribution RFT and GRPO train."""

    k: int = Field(0, ge=0, description="Answers sampled per prompt; 0 turns sampled evaluation off.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")


class JudgeSpec(Strict):
    """The judge of open-ended benchmarks (K-LLaVA-W): a local model or an OpenAI-compatible server."""

    model: str | None = Field(None, description="Judge model directory (or tiny-korean-lm), run by the rollout engine.")
    url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vllm serve).")
    model_name: str | None = Field(None, description="Model name sent to the server (default: its first /v1/models).")
    api_key_env: str | None = Field(None, description="Environment variable holding the server's API key, if any.")
    max_new_tokens: int = Field(256, ge=8, description="Judge reply budget (scores come on the first line).")
    batch_size: int = Field(16, ge=1, description="Reviews per judge call.")
    concurrency: int = Field(4, ge=1, description="Parallel requests to a judge server.")
    timeout: float = Field(120, gt=0, description="Seconds per judge request before it counts as unreachable.")

    @model_validator(mode="after")
    def _one_of(self):
        if (self.model is None) == (self.url is None):
            raise ValueError("give exactly one of 'model' (a local judge) or 'url' (an OpenAI-compatible server)")
        return self


class BenchmarkSpec(Strict):
    """One benchmark run by the eval hook (``align/benchmarks/``); results go to eval.json as bench/<name>/…"""

    name: str = Field(description="k-mmbench, k-seed, k-mmstar, k-dtcbench, k-llava-w, kmmlu, haerae, click, kobest, "
                      "caption or latency (lmms-eval / VLMEvalKit names are accepted too).")  # fmt: skip
    source: str | None = Field(None, description="Hub dataset id or local file/folder (default: the published set).")
    split: str | None = Field(None, description="Dataset split (default: the benchmark's).")
    limit: int | None = Field(None, ge=1, description="At most this many questions (prompts for latency).")
    max_new_tokens: int | None = Field(None, ge=1, description="Answer budget (default: eval.max_new_tokens).")
    prompt: str | None = Field(None, description="Instruction after each question (choice sets) or the caption prompt.")
    circular: bool | None = Field(None, description="Circular evaluation of multiple choice (default: K-MMBench only).")
    judge: JudgeSpec | None = Field(None, description="K-LLaVA-W: the judge.")
    tasks: list[str] | None = Field(None, description="lm-eval tasks or groups (default: the benchmark's group).")
    num_fewshot: int | None = Field(None, ge=0, description="lm-eval few-shot examples (default: the task's).")
    sbert: str | None = Field(None, description="Caption: sentence-embedding model dir or hub id; 'none' to skip.")
    tokenize: Literal["space", "char"] | None = Field(None, description="Caption: CIDEr/BLEU tokens (default space).")
    text_only: bool = Field(False, description="Latency: prompts without an image.")
    image_size: int | None = Field(None, ge=8, description="Latency: side of the generated image (default 64).")

    @model_validator(mode="after")
    def _known(self):
        try:
            info = lookup_benchmark(self.name)
        except UserError as e:  # re-raised as a validation error, which names the key
            raise ValueError(f"{e.message}: {e.hint}") from None
        if info.family == "judged" and self.judge is None:
            raise ValueError(f"{info.name} needs a judge: add judge: {{model: DIR}} or judge: {{url: http://…/v1}}")
        return self


class EvalSpec(Strict):
    enabled: bool = Field(True, description="Run the eval hook on the base model and after each stage.")
    limit: int | None = Field(None, ge=1, description="Evaluate at most this many held-out rows.")
    batch_size: int = Field(64, ge=1, description="Prompts per generation batch.")
    max_new_tokens: int = Field(48, ge=1, description="Greedy generation budget per answer.")
    metrics: list[RewardSpec] | None = Field(
        None, description="Rewards averaged per task; default: 'accuracy' plus the recipe's rewards."
    )
    hooks: list[EvalHookSpec] = Field(default_factory=list, description="External evaluators.")
    samples: int = Field(4, ge=0, description="Answers per task kept in eval_samples.jsonl for comparison.")
    sampled: SampledEvalSpec = Field(
        default_factory=lambda: SampledEvalSpec(),
        description="Also score answers sampled at a temperature (pass@1 over k).",
    )
    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=list, description="Benchmarks run on the base model and after each stage (docs/benchmarks.md)."
    )


class RolloutSpec(Strict):
    """How completions are generated for RFT, evaluation and GRPO (``rollouts/``)."""

    engine: Literal["auto", "hf", "vllm"] = Field(
        "auto", description="auto: vLLM when installed and the architecture is supported, else transformers."
    )
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate", description="GRPO with vLLM: an engine inside each training process, or a `trl vllm-serve`."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="vLLM precision; auto = the trained model's (float32 on CPU)."
    )
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="vLLM GPU memory share; default 0.85, and TRL's 0.3 for GRPO colocate."
    )
    kv_cache_gib: float = Field(2.0, gt=0, description="vLLM on CPU: GiB of host RAM for the KV cache.")
    max_model_len: int | None = Field(None, ge=16, description="vLLM context length (prompt + completion).")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallelism.")
    enforce_eager: bool = Field(False, description="vLLM: no CUDA graphs (faster start, slower decode).")
    server_host: str = Field("127.0.0.1", description="GRPO server mode: host of `trl vllm-serve`.")
    server_port: int = Field(8000, description="GRPO server mode: port of `trl vllm-serve`.")
    server_timeout: float = Field(600, gt=0, description="Seconds to wait for the server to become healthy.")


class VllmServerSpec(Strict):
    gpus: int | list[int] = Field(1, description="GPUs of node 0 for `vllm serve`: a count (the last ones) or ids.")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallelism across the server's GPUs.")


class LaunchSpec(Strict):
    """How ``align launch`` / launch.sh starts training: accelerate with a config from ``recipes/accelerate/``."""

    processes: int = Field(1, ge=1, description="Training processes per node (accelerate launch when > 1).")
    nodes: int = Field(1, ge=1, description="Number of machines.")
    node_rank: int = Field(0, ge=0, description="This machine's rank.")
    main_address: str | None = Field(None, description="Address of node 0 (multi-node).")
    main_port: int = Field(29500, ge=0, le=65535, description="Rendezvous port on node 0 (0: any free port, one node).")
    backend: Literal["ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp"] = Field(
        "ddp", description="ddp (gloo on CPU), DeepSpeed ZeRO-2/3 (CPU or GPU), fsdp (GPUs only)."
    )
    offload: bool = Field(
        False, description="DeepSpeed on GPUs: optimizer state (ZeRO-2), also parameters (ZeRO-3) in CPU memory."
    )
    vllm_server: VllmServerSpec | None = Field(
        None, description="GRPO with rollout.vllm_mode server: GPUs reserved for `vllm serve` (started by launch.sh)."
    )
    timeout_minutes: float = Field(
        180, gt=0, description="How long ranks wait for each other (the others wait while rank 0 evaluates)."
    )

    @model_validator(mode="after")
    def _check(self):
        if self.node_rank >= self.nodes:
            raise ValueError(f"node_rank {self.node_rank} is not below nodes ({self.nodes}); ranks count from 0")
        return self


class StageSpec(Strict):
    """Fields every stage has. Each stage module subclasses this with its own settings."""

    type: str
    name: str | None = Field(None, description="Folder name in the run directory; defaults to the type.")
    args: dict[str, Any] = Field(default_factory=dict, description="Passed to the TRL config class.")
    lora: LoraSpec | None = Field(None, description="Overrides model.lora for this stage.")
    freeze: list[str] | None = Field(None, description="Overrides model.freeze for this stage.")
    rewards: list[RewardSpec] | None = Field(None, description="Overrides the recipe's rewards for this stage.")
    data: DataSpec | None = Field(
        None, description="This stage's own training data (e.g. captions for align); default: the recipe's data."
    )
    eval: bool = Field(True, description="Run the eval hook after this stage.")
    rows: tuple[int, int] | None = Field(
        None, description="Use training rows [start, end) only, e.g. fresh prompts for an RL stage."
    )

    trl_config: typing.ClassVar[str | None] = None  # "module:Class" whose fields `args` is checked against
    owned_args: typing.ClassVar[tuple[str, ...]] = ("output_dir",)  # set by the workbench, not by the recipe


def _stage_union():
    from align.stages import stage_configs

    classes = tuple(stage_configs().values())
    return Annotated[Union[classes], Field(discriminator="type")]  # noqa: UP007


class Recipe(Strict):
    name: str = Field(description="Recipe name; runs go to <output_dir>/<name>/<timestamp>/.")
    description: str = ""
    seed: int = Field(42, description="Seed for training, sampling and data order.")
    output_dir: str = Field("runs", description="Root of run directories (relative to the working directory).")
    report_to: list[str] = Field(
        default_factory=lambda: ["none"], description="Trackers: none, tensorboard, wandb (offline), trackio."
    )
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    rewards: list[RewardSpec] = Field(default_factory=lambda: [RewardSpec(name="accuracy")])
    eval: EvalSpec = Field(default_factory=EvalSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    stages: list[Any] = Field(default_factory=list)
    launch: LaunchSpec = Field(default_factory=LaunchSpec)

    @model_validator(mode="after")
    def _unique_stage_names(self):
        seen = set()
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(f"two stages are named '{stage.name}'; give one a different 'name'")
            seen.add(stage.name)
        return self


def _build_recipe_class():
    """Recipe with `stages` typed as the union of the registered stage configs."""
    union = _stage_union()
    return type(
        "Recipe",
        (Recipe,),
        {"__annotations__": {"stages": list[union]}, "stages": Field(default_factory=list), "__module__": __name__},
    )


# ---------------------------------------------------------------------------------------------------- loading


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise RecipeError(str(path), None, "file not found", "check the path; recipes live in recipes/")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(str(path), where, f"malformed YAML: {problem}", "fix the indentation or quoting there")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(str(path), None, f"expected a mapping of keys at the top, found {type(data).__name__}")
    return data


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _load_with_bases(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in chain:
        raise RecipeError(str(path), "base", "recipes extend each other in a cycle: " + " -> ".join(map(str, chain)))
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise RecipeError(str(path), "base", "must be a path to another recipe")
    base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
    return deep_merge(_load_with_bases(base_path, chain + (path,)), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise RecipeError(None, text, "an override must look like key.path=value", "e.g. sft.args.learning_rate=1e-4")
    key, value = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise RecipeError(None, text, "empty key in override")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    if isinstance(parsed, str):  # YAML 1.1 reads 5e-4 as a string
        try:
            parsed = float(parsed) if any(c.isdigit() for c in parsed) else parsed
        except ValueError:
            pass
    return parts, parsed


def apply_override(data: dict, parts: list[str], value: Any, original: str = "") -> None:
    top_fields = set(Recipe.model_fields)
    stages = data.get("stages") or []
    if parts[0] not in top_fields and any(_stage_name(s) == parts[0] for s in stages if isinstance(s, dict)):
        parts = ["stages", *parts]
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            idx = _list_index(node, part, original)
            if last:
                node[idx] = value
            else:
                node = node[idx]
            continue
        if not isinstance(node, dict):
            raise RecipeError(None, original, f"'{'.'.join(parts[:i])}' is not a mapping, cannot set '{part}'")
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]


def _stage_name(stage: dict) -> str:
    return str(stage.get("name") or stage.get("type"))


def _list_index(items: list, part: str, original: str) -> int:
    if part.lstrip("-").isdigit():
        idx = int(part)
        if -len(items) <= idx < len(items):
            return idx
        raise RecipeError(None, original, f"index {idx} is out of range (the list has {len(items)} items)")
    for idx, item in enumerate(items):
        if isinstance(item, dict) and _stage_name(item) == part:
            return idx
    names = [_stage_name(s) for s in items if isinstance(s, dict)]
    raise RecipeError(None, original, f"no stage named '{part}'", did_you_mean(part, names))


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), check_args: bool = True):
    """Read, merge, override and validate a recipe. Returns a Recipe object with ``source`` set."""
    path = Path(path)
    data = _load_with_bases(path)
    for text in overrides:
        parts, value = parse_override(text)
        try:
            apply_override(data, parts, value, text)
        except RecipeError as e:
            raise RecipeError(f"override {text!r}", None, e.message.split(": ", 2)[-1], e.hint) from None
    recipe = validate(data, str(path))
    if check_args:
        check_trainer_args(recipe, str(path))
    return recipe


def validate(data: dict, file: str | None = None):
    data = dict(data)
    data.setdefault("name", Path(file).stem if file else "recipe")
    for i, stage in enumerate(data.get("stages") or []):
        if isinstance(stage, dict):
            from align.stages import stage_configs

            if "type" not in stage:
                raise RecipeError(file, f"stages[{i}]", "missing 'type'", f"one of: {', '.join(stage_configs())}")
            if stage["type"] not in stage_configs():
                raise RecipeError(
                    file, f"stages[{i}].type", f"unknown stage type '{stage['type']}'",
                    did_you_mean(stage["type"], stage_configs()),
                )  # fmt: skip
            stage.setdefault("name", stage["type"])
    cls = _build_recipe_class()
    try:
        recipe = cls.model_validate(data)
    except ValidationError as e:
        raise _to_recipe_error(e, data, file, cls) from None
    object.__setattr__(recipe, "__source__", file)
    return recipe


def _unwrap_model(annotation, node) -> type[BaseModel] | None:
    """Find the pydantic model a value of this annotation is validated as (follows list, Optional, unions)."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if origin is Annotated:
        return _unwrap_model(typing.get_args(annotation)[0], node)
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if isinstance(node, dict) and "type" in node:
            for m in models:
                tf = m.model_fields.get("type")
                if tf is not None and node["type"] in typing.get_args(tf.annotation):
                    return m
        return models[0] if len(models) == 1 else None
    return None


def _to_recipe_error(err: ValidationError, data: dict, file: str | None, cls) -> RecipeError:
    e = err.errors()[0]
    loc = list(e["loc"])
    # pydantic puts the discriminator tag in the location of tagged unions; drop it
    path_parts, model, node = [], cls, data
    i = 0
    while i < len(loc):
        part = loc[i]
        if isinstance(part, int):
            stage_label = ""
            if (
                isinstance(node, list)
                and part < len(node)
                and isinstance(node[part], dict)
                and path_parts[-1:] == ["stages"]
            ):
                stage_label = f"({_stage_name(node[part])})"
            path_parts[-1] = f"{path_parts[-1]}[{part}]{stage_label}" if path_parts else f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if i + 1 < len(loc) and isinstance(node, dict) and loc[i + 1] == node.get("type"):
                i += 1  # skip the discriminator tag
            i += 1
            continue
        field = model.model_fields.get(part) if model is not None else None
        path_parts.append(str(part))
        next_node = node.get(part) if isinstance(node, dict) else None
        if field is not None:
            ann = field.annotation
            inner = _unwrap_model(ann, next_node)
            if inner is None and typing.get_origin(ann) is list:
                args = typing.get_args(ann)
                inner = _unwrap_model(args[0], next_node[0] if isinstance(next_node, list) and next_node else None)
                if isinstance(next_node, list) and i + 1 < len(loc) and isinstance(loc[i + 1], int):
                    idx = loc[i + 1]
                    item = next_node[idx] if idx < len(next_node) else None
                    inner = _unwrap_model(args[0], item)
            parent_model, model = model, inner
        else:
            parent_model, model = model, None
        node = next_node
        i += 1
    key = ".".join(path_parts).replace(".[", "[")
    if e["type"] == "extra_forbidden":
        valid = list(parent_model.model_fields) if parent_model is not None else []
        return RecipeError(file, key, "unknown key", did_you_mean(loc[-1], valid))
    if e["type"] == "missing":
        return RecipeError(file, key, "required key is missing")
    value = e.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a mapping"
    msg = e["msg"].removeprefix("Value error, ")
    return RecipeError(file, key or None, f"{msg} (got {shown})")


# ------------------------------------------------------------------------------------ TRL config pass-through


def import_object(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def trainer_arg_fields(config_cls) -> dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(config_cls) if f.init}


def check_trainer_args(recipe, file: str | None = None) -> None:
    """Check every stage's ``args`` against the fields and types of its TRL config class."""
    for i, stage in enumerate(recipe.stages):
        if not stage.trl_config:
            continue
        cls = import_object(stage.trl_config)
        fields = trainer_arg_fields(cls)
        for key, value in stage.args.items():
            where = f"stages[{i}]({stage.name}).args.{key}"
            if key in stage.owned_args:
                raise RecipeError(file, where, "is set by the workbench (stage outputs live in the run directory)")
            if key not in fields:
                raise RecipeError(file, where, f"not a field of {cls.__name__}", did_you_mean(key, fields))
            try:
                stage.args[key] = TypeAdapter(fields[key]).validate_python(value)  # e.g. "5e-4" -> 0.0005
            except ValidationError as ve:
                msg = ve.errors()[0]["msg"]
                raise RecipeError(file, where, f"{msg} (got {value!r}; {cls.__name__} expects {fields[key]})")
            except Exception:  # noqa: BLE001, S110 - exotic annotations: TRL validates them itself
                pass


def dump_recipe(recipe) -> str:
    data = recipe.model_dump(mode="json")
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
