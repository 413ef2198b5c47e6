"""Rollout engines behind one interface (``rollouts.base.Engine``): transformers ``generate`` (``hf``) and vLLM.

engine = make_engine(recipe.rollout, model_dir, recipe.model)
outs = engine.generate(prompts, images, Sampling(n=4, temperature=1.0, max_new_tokens=32))
"""

from __future__ import annotations

from align.errors import UserError
from rollouts import vllm_engine
from rollouts.base import Completion, Engine, Sampling
from rollouts.vllm_engine import INSTALL_HINT, VLLMEngine

__all__ = ["Completion", "Engine", "Sampling", "make_engine", "resolve_engine"]


def resolve_engine(rollout, model_path: str, model_spec=None, log=print) -> str:
    """``rollout.engine`` as 'hf' or 'vllm'. ``auto`` falls back to transformers with a message saying why."""
    kind = rollout.engine if rollout is not None else "auto"
    if kind == "hf":
        return "hf"
    trust = bool(model_spec and model_spec.trust_remote_code)
    if not vllm_engine.vllm_installed():
        if kind == "vllm":
            raise UserError("rollout.engine is 'vllm' but vLLM is not installed", INSTALL_HINT)
        return "hf"
    ok, arch = vllm_engine.supported_architecture(model_path, trust)
    if not ok:
        if kind == "vllm":
            raise UserError(f"vLLM has no model class for architecture {arch} ({model_path})",
                            "set rollout.engine: hf (transformers generate) for this model")  # fmt: skip
        log(f"rollout engine: vLLM does not support {arch}; falling back to transformers generate")
        return "hf"
    return "vllm"


def make_engine(rollout, model_path: str, model_spec=None, batch_size: int = 32, seed: int = 0, log=print,
                shared_prompt: str = "auto") -> Engine:  # fmt: skip
    """Create the engine the recipe's ``rollout:`` block asks for, for a model directory. ``shared_prompt``: the
    transformers engine's prefill of each prompt once for its n samples (vLLM shares prompts by its prefix cache)."""
    kind = resolve_engine(rollout, model_path, model_spec, log)
    if kind == "vllm":
        return VLLMEngine(model_path, model_spec, rollout, seed=seed)
    from rollouts.hf import HFEngine  # loads torch and transformers: not when the package is imported

    return HFEngine.from_path(model_path, model_spec, batch_size=batch_size, shared_prompt=shared_prompt)
