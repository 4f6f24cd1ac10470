"""α/β curriculum for ``L = α·L_token + β·L_s`` and the structure-loss settings (no torch here).

β follows a schedule over training steps from ``beta_start`` to ``beta_end``; α = 1 − β; then
both floors hold: β ≥ ``beta_min`` and α ≥ ``alpha_min`` (β is clipped into
``[beta_min, 1 − alpha_min]``). Progress is ``step / (total_steps − 1)``, clipped to [0, 1].

- ``constant``: β = (beta_start + beta_end) / 2 throughout,
- ``linear``: straight line from beta_start to beta_end,
- ``cosine``: half-cosine from beta_start to beta_end (slow start, slow finish),
- ``step``: beta_start before ``step_at`` (a fraction of training), beta_end from there on.

Every schedule has the same average β for a given config (the ramps are symmetric about the
midpoint), so comparing schedules compares shapes, not amounts. The default (linear 0.04 → 0.24,
floors α ≥ 0.5, β ≥ 0.02, neither binding) averages β = 0.140 over training: the paper's
structural term carries about 14% of the loss weight. ``average_beta(CurriculumConfig(), 1000)``
gives 0.1400 for each of the four schedules (``step``: 0.04 for 500 steps, 0.24 for 500).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Schedule = Literal["constant", "linear", "cosine", "step"]


class CurriculumConfig(BaseModel):
    """How the weight β of the structure loss moves during training (α = 1 − β)."""

    model_config = ConfigDict(extra="forbid")

    schedule: Schedule = Field("linear", description="constant | linear | cosine | step: how β moves from beta_start to beta_end")
    beta_start: float = Field(0.04, ge=0.0, le=1.0, description="β at the first step")
    beta_end: float = Field(0.24, ge=0.0, le=1.0, description="β at the last step")
    alpha_min: float = Field(0.5, ge=0.0, le=1.0, description="floor on α, the token-loss weight (caps β at 1 − alpha_min)")
    beta_min: float = Field(0.02, ge=0.0, le=1.0, description="floor on β, the structure-loss weight")
    step_at: float = Field(0.5, gt=0.0, lt=1.0, description="schedule=step: fraction of training at which β jumps to beta_end")

    @model_validator(mode="after")
    def _floors_compatible(self) -> "CurriculumConfig":
        if self.alpha_min + self.beta_min > 1.0:
            raise ValueError(
                f"alpha_min + beta_min = {self.alpha_min + self.beta_min} > 1: no (α, β) with "
                "α + β = 1 satisfies both floors. Lower one of them."
            )
        return self


class StructureLossConfig(BaseModel):
    """Settings of the structure-aware loss (see codistill.training.structure_loss)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="add β·L_s to the token loss")
    encoder: str = Field("minilm", description="'minilm' (packaged all-MiniLM-L6-v2), 'self' (the student's frozen base model), or a local HF encoder folder such as a CodeBERT download")
    mode: Literal["topk", "softmax", "st", "hidden"] = Field("topk", description="how E_gen is made from the student's distribution: renormalised top-k, full softmax, straight-through, or hidden-state projection (weaker)")
    k: int = Field(16, ge=1, description="mode=topk: number of top tokens per position")
    target: Literal["bridge", "text"] = Field("bridge", description="E_gt from the reference ids through the bridge (L_s = 0 at the reference) or from the reference text")
    self_layers: int | None = Field(None, ge=1, description="encoder=self: use only the first N layers of the base model")
    pooling: Literal["mean", "cls"] = Field("mean", description="pool the encoder output over the code positions (mean) or take [CLS]")
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig, description="α/β schedule")


def _progress(step: int, total_steps: int) -> float:
    if total_steps <= 1:
        return 1.0
    return min(max(step / (total_steps - 1), 0.0), 1.0)


def raw_beta(config: CurriculumConfig, progress: float) -> float:
    """β of the schedule at ``progress`` in [0, 1], before the floors."""
    a, b = config.beta_start, config.beta_end
    if config.schedule == "constant":
        return (a + b) / 2.0
    if config.schedule == "linear":
        return a + (b - a) * progress
    if config.schedule == "cosine":
        return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if config.schedule == "step":
        return a if progress < config.step_at else b
    raise ValueError(f"unknown schedule {config.schedule!r}")


def loss_weights(step: int, total_steps: int, config: CurriculumConfig | None = None) -> tuple[float, float]:
    """(α, β) for optimizer step ``step`` (0-based) of ``total_steps``; α + β = 1, floors hold."""
    config = config or CurriculumConfig()
    beta = raw_beta(config, _progress(step, total_steps))
    beta = min(max(beta, config.beta_min), 1.0 - config.alpha_min)
    return 1.0 - beta, beta


def average_beta(config: CurriculumConfig | None = None, total_steps: int = 1000) -> float:
    """Mean β over steps 0 … total_steps − 1."""
    return sum(loss_weights(s, total_steps, config)[1] for s in range(total_steps)) / max(total_steps, 1)
