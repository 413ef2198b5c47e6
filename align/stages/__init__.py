"""Stage registry: a stage type maps to one module that holds its ``Config`` (recipe schema) and ``run``.

Each ``run(ctx)`` takes the previous stage's model directory (``ctx.input_model``) and returns the directory of the
model it trained, loadable by transformers and vLLM.
"""

from __future__ import annotations

import importlib

STAGE_MODULES = {
    "sft": "align.stages.sft",
    "rft": "align.stages.rft",
    "grpo": "align.stages.grpo",
    "rm": "align.stages.rm",
    "dpo": "align.stages.dpo",
    "align": "align.stages.connector",  # connector alignment: the projector only, on image–caption pairs
}


def stage_module(stage_type: str):
    return importlib.import_module(STAGE_MODULES[stage_type])


def stage_configs() -> dict:
    return {name: stage_module(name).Config for name in STAGE_MODULES}
