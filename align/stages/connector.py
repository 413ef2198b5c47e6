"""``align`` stage (connector alignment): train only the projector between a vision encoder and a language model.

Stage 1 of the LLaVA, AIKU and VARCO-VISION pipelines: on image–caption pairs (LLaVA pretrain format:
``{"image": "x.jpg", "conversations": [{"from": "human", "value": "<image>\\n"}, {"from": "gpt", "value": "…"}]}``,
Korean or English) the vision tower and the language model stay frozen and only the projector learns to map image
features into the language model's embedding space. It runs TRL's SFTTrainer through the SFT stage's code with
learning rate 1e-3 and no LoRA; the captions come from the stage's ``data:`` block (else the recipe's data).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from align.spec import StageSpec
from align.stages.base import Stage, StageContext, StageResult
from align.stages.sft import train_sft

FROZEN = ("vision_tower", "language_model")
ALIGN_DEFAULTS = {"learning_rate": 1e-3, "num_train_epochs": 1, "warmup_steps": 0.03}


class Config(StageSpec):
    type: Literal["align"] = "align"
    trl_config = "trl:SFTConfig"
    freeze: list[str] | None = Field(list(FROZEN), description="Always the vision tower and the language model.")

    @model_validator(mode="after")
    def _projector_only(self):
        if sorted(self.freeze or []) != sorted(FROZEN):
            raise ValueError(f"the align stage trains the projector only: freeze must be {list(FROZEN)}")
        if self.lora is not None:
            raise ValueError("the align stage trains the projector fully; remove lora (use it in the sft stage)")
        return self


def run(ctx: StageContext[Config]) -> StageResult:
    return train_sft(ctx, ctx.train_rows(), ALIGN_DEFAULTS, lora=False)


STAGE = Stage(
    type="align",
    config=Config,
    run=run,
)
