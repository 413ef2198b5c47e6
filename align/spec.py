"""What a recipe may contain: the typed blocks of a recipe (model, data, rewards, eval, rollout, launch) and the
fields every stage shares (``StageSpec``; each stage module adds its own in its ``Config``).

Loading a YAML file, bases, overrides and the check of ``args`` against TRL's config classes live in
``align/recipe.py``, which also adds the registered stages' configs to ``Recipe.stages``.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from align.benchmarks.registry import lookup as lookup_benchmark
from align.errors import UserError, did_you_mean
from align.models.families import FAMILIES


def yaml_on_off(value, on: str = "on", off: str = "off"):
    """YAML reads a bare ``on`` / ``off`` as a boolean: give an on/off option its name back."""
    return (on if value else off) if isinstance(value, bool) else value


# a stage's ``shared_prompt``: each prompt encoded once for its samples (align/shared_prompt.py)
SharedPromptMode = Annotated[Literal["auto", "on", "off"], BeforeValidator(yaml_on_off)]


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
    projector: Literal["mlp2x_gelu", "aiku"] = Field(
        "mlp2x_gelu",
        description="Connector: 'mlp2x_gelu' (LLaVA-1.5's; a LLaVA model) or 'aiku' (MLP → N×N average pooling → "
        "ResNet block; model_type aiku_vlm).",
    )
    pool: int | None = Field(
        None, ge=1, description="aiku: N×N average pooling over the patch grid (default 2; must divide the grid)."
    )
    resnet_blocks: int | None = Field(None, ge=0, description="aiku: residual depthwise-conv blocks (default 1).")
    resnet_kernel: int | None = Field(None, ge=1, description="aiku: their odd kernel size (default 3).")
    projector_hidden: int | None = Field(
        None, ge=1, description="aiku: hidden width of the MLP projection (default: the language model's hidden size)."
    )


class ModelSpec(Strict):
    path: str = Field("tiny-korean-vlm", description="'tiny-korean-vlm', a local model directory or a hub id.")
    compose: ComposeSpec | None = Field(
        None, description="Compose the base model first (written to <run>/compose/model); replaces 'path'."
    )
    family: str = Field(
        "auto",
        description=f"Model family: 'auto' (read from the model's config and tokenizer) or one of "
        f"{', '.join(FAMILIES)} (align/models/families.py).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; 'auto' is float32 on CPU and bfloat16 on GPU."
    )
    trust_remote_code: bool = Field(False, description="Allow the model's own code (HyperCLOVAX-SEED-Vision).")
    thinking: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Reasoning models: 'on' / 'off' switch reasoning through the model's own chat template "
        "(enable_thinking, force_reasoning / skip_reasoning); 'auto' keeps the template's default (docs/reasoning.md).",
    )
    attn_implementation: str | None = Field(None, description="e.g. 'sdpa', 'flash_attention_2'.")
    lora: LoraSpec | None = Field(None, description="Train LoRA adapters instead of all weights.")
    freeze: list[str] = Field(
        default_factory=list,
        description="Modules kept frozen: 'vision_tower', 'connector', 'language_model' or a name substring.",
    )

    @field_validator("thinking", mode="before")
    @classmethod
    def _thinking_on_off(cls, value):
        return yaml_on_off(value)

    @model_validator(mode="after")
    def _check(self):
        if self.compose is not None and "path" in self.model_fields_set:
            raise ValueError("set model.path or model.compose, not both")
        if self.family != "auto" and self.family not in FAMILIES:
            raise ValueError(f"model.family: unknown family '{self.family}': "
                             f"{did_you_mean(self.family, [*FAMILIES, 'auto'])}")  # fmt: skip
        if self.family != "auto" and self.thinking != "auto" and not FAMILIES[self.family].thinking:
            raise ValueError(f"model.thinking is '{self.thinking}' but the {self.family} family has no reasoning "
                             "switch in its chat template; use model.thinking: auto")  # fmt: skip
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
    max_new_tokens: int = Field(1024, ge=8, description="Judge reply budget (published: 1024).")
    temperature: float = Field(0.2, ge=0, description="Judge sampling temperature (published: 0.2).")
    rule_file: str | None = Field(None, description="Review rule file in the published form (lmms-eval's rule_ko.json); "
                                  "default: our own wording, not comparable with published scores.")  # fmt: skip
    system_prompt: str | None = Field(None, description="Judge system message (default: lmms-eval's Korean one).")
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
                      "koffvqa, k-viscuit, kreta, konet, kmmlu-redux, kmmlu-pro, kobalt, caption or latency "
                      "(lmms-eval / VLMEvalKit names are accepted too).")  # fmt: skip
    source: str | None = Field(None, description="Hub dataset id or local file/folder (default: the published set).")
    split: str | None = Field(None, description="Dataset split (default: the benchmark's).")
    limit: int | None = Field(None, ge=1, description="At most this many questions (prompts for latency).")
    max_new_tokens: int | None = Field(None, ge=1, description="Answer budget (default: the benchmark's own).")
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
    enforce_eager: bool | None = Field(
        None,
        description="vLLM: run the model eagerly, without torch.compile or CUDA graphs (faster start, slower decode). "
        "Default: eager on CPU, where compiling took 43 of a 47 s engine start for a 113M model and decode ran "
        "1.04-1.2x faster after it (scripts/bench_rollouts.py --startup); compiled on GPU.",
    )
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
    reward_audit: Literal["error", "warn", "off"] = Field(
        "error",
        description="Before training, run `align rewards audit` on the recipe's and stages' rewards: stop (error) or "
        "warn when a hedge, format trick or code cheat is paid; off skips it.",
    )
    eval: EvalSpec = Field(default_factory=EvalSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    stages: list[Any] = Field(default_factory=list)
    launch: LaunchSpec = Field(default_factory=LaunchSpec)

    @field_validator("reward_audit", mode="before")
    @classmethod
    def _audit_off(cls, value):
        return yaml_on_off(value, on="error")

    @model_validator(mode="after")
    def _unique_stage_names(self):
        seen = set()
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(f"two stages are named '{stage.name}'; give one a different 'name'")
            seen.add(stage.name)
        return self
