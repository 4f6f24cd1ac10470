"""Settings of ``teach --mode reverse`` (``TeachConfig.mode_options``): :class:`ReverseOptions`,
with :class:`ScorerConfig` (the model whose perplexity is minimised)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DEFAULT_STUDENT", "ReverseOptions", "ScorerConfig"]

# The student a standalone `codistill teach --mode reverse` scores with when no scorer model is
# named: TrainConfig.model's default (tests/test_reverse.py checks they agree). A recipe names the
# run's student (its train.model) and format instead.
DEFAULT_STUDENT = "qwen2.5-coder-0.5b"


class ScorerConfig(BaseModel):
    """The scorer: a local model loaded through :func:`codistill.backends.make_generator` with a
    backend that can score (``Capabilities.score``: teacher-forced log-probs)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="packaged name, HF folder or .gguf file; None: the student "
                              f"(a recipe sets its train.model; standalone: {DEFAULT_STUDENT})")
    adapter: str | None = Field(None, description="a LoRA adapter folder applied to the scorer (a trained student)")
    backend: str = Field("hf", description="a backend kind whose capabilities include score")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="weights dtype")
    batch_size: int = Field(8, ge=1, description="(x, z, y) texts per forward pass")
    options: dict[str, Any] = Field(default_factory=dict, description="further backend settings (num_threads, device)")
    revision: str | None = Field(None, description="a label for the weights, part of the score cache key: change it "
                                 "when the files at the same path change")

    def resolved_model(self) -> str:
        return self.model or DEFAULT_STUDENT

    def identity(self) -> dict:
        """What a cached score was scored by (part of its key)."""
        return {"backend": self.backend, "model": self.resolved_model(), "adapter": self.adapter,
                "dtype": self.dtype, "revision": self.revision}


class ReverseOptions(BaseModel):
    """REER for code: search a reasoning z minimising PPL(y | x, z) under the scorer."""

    model_config = ConfigDict(extra="forbid")

    scorer: ScorerConfig = Field(default_factory=ScorerConfig, description="the model whose perplexity of the "
                                 "reference code is minimised (default: the student)")
    format: str | dict = Field("paper", description="the student format x and z are rendered in (a recipe sets its "
                               "`format:`): a packaged name or a mapping, see codistill.formats")
    draft: Literal["teacher", "student"] = Field("teacher", description="the starting plan: the teacher's explain "
                                                 "context (explain prompt, cache shared with explain runs) or the "
                                                 "scorer's own plan (its answer's reasoning section, greedy)")
    student_max_new_tokens: int = Field(512, ge=16, description="draft=student: tokens of the plan at most")
    show_solution: bool = Field(True, description="the rewrite prompt shows the reference code (REER's proposer "
                                "sees the solution; the leakage cap then guards z); false: problem and z only")
    rewrite_template: str | None = Field(None, description="a rewrite prompt file of your own (placeholders "
                                         "{problem}, {solution}, {context}, {segment}, {where})")
    split_steps: bool = Field(True, description="a section that is a numbered list is one segment per item")
    proposals: int = Field(2, ge=1, description="rewrites asked per segment per round")
    max_rounds: int = Field(2, ge=1, description="passes over the segments at most")
    target_ppl: float | None = Field(None, gt=0, description="stop once PPL(y|x,z) is at most this")
    max_teacher_tokens: int | None = Field(40000, ge=1, description="stop once the rewrites of a problem cost "
                                           "this many teacher tokens (prompt + completion; None: no budget)")
    min_gain: float = Field(0.0, ge=0, lt=1, description="keep a rewrite only if it lowers PPL by more than this "
                            "fraction of the current PPL (0: any decrease)")
    stop_when_stale: bool = Field(True, description="stop after a round that kept no rewrite")
    temperature: float = Field(0.7, ge=0, description="sampling temperature of the rewrites")
    max_new_tokens: int = Field(256, ge=8, description="tokens of one rewrite at most")

    @field_validator("format")
    @classmethod
    def _format(cls, v):
        from codistill.formats import get_format

        get_format(v)
        return v

    def student_format(self):
        from codistill.formats import get_format

        return get_format(self.format)
