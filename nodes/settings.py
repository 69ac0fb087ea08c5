"""Settings of one GReaTer step, validated once so bad values fail before any model work."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class StepSettings(BaseModel):
    """Defaults are scaled for a CPU; the authors used 1024 reasoning tokens, 50 training
    examples and 125 steps on GPUs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(8, ge=1, description="training examples per step (minibatch)")
    max_new_tokens: int = Field(128, ge=1, description="bound on generated reasoning tokens")
    top_k: int = Field(10, ge=1, description="top-k of each example's next-token distribution")
    group_size: int = Field(5, ge=1, description="examples per intersection group")
    n_groups: int = Field(6, ge=1, description="intersection groups whose union gives candidates")
    n_evaluate: int = Field(3, ge=1, description="gradient-ranked candidates evaluated by regeneration")
    temperature: float = Field(0.2, gt=0, description="answer logits are divided by this in the loss")
    grad_nll_weight: float = Field(0.2, ge=0, description="weight of prompt NLL in the gradient loss")
    score_nll_weight: float = Field(0.02, ge=0, description="weight of prompt NLL in the candidate score")
    variant: Literal["official", "paper"] = Field(
        "official", description="official: evaluate top candidates by regeneration; paper: take the gradient argmax"
    )
    keep_best: int = Field(10, ge=1, description="best prompts kept for the final choice on dev")
