"""Rollout engines behind one interface (``rollouts.base.Engine``): transformers ``generate`` (``hf``) and vLLM.

    engine = make_engine("hf", model_dir)
    outs = engine.generate(prompts, images, Sampling(n=4, temperature=1.0, max_new_tokens=32))
"""

from __future__ import annotations

from rollouts.base import Completion, Engine, Sampling

__all__ = ["Completion", "Engine", "Sampling", "make_engine"]


def make_engine(kind: str, model_path: str, model_spec=None, batch_size: int = 32, **kwargs) -> Engine:
    """Create an engine for a model directory. ``kind``: auto | hf | vllm."""
    if kind in ("auto", "hf"):
        from rollouts.hf import HFEngine

        return HFEngine.from_path(model_path, model_spec, batch_size=batch_size, **kwargs)
    from align.errors import UserError

    raise UserError(f"unknown rollout engine '{kind}'", "use auto, hf or vllm")
