"""Settings of ``codistill select``: :class:`SelectConfig`. :meth:`SelectConfig.key` is the stage's
identity in a recipe; :meth:`SelectConfig.sampling_key` is what makes a problem's stored record
reusable on resume (so a changed budget or score re-selects without sampling again)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["SelectConfig"]


class SelectConfig(BaseModel):
    """Configuration of :func:`codistill.select.select` (``codistill select``)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(..., description="the candidates: a folder written by `codistill data` (rows.jsonl, "
                         "problems.jsonl)")
    limit: int | None = Field(None, ge=1, description="first N candidate problems only")
    ids: list[str] | None = Field(None, description="only these problem ids")
    # the student
    model: str = Field(..., description="the student: packaged model name, HF folder, or a server's model name")
    adapter: str | None = Field(None, description="a LoRA adapter of the student (hf, llama-server)")
    backend: str = Field("hf", description="generation backend (hf, openai, llamacpp, llama-server)")
    backend_options: dict[str, Any] = Field(default_factory=dict, description="extra backend settings")
    dtype: str = Field("float32", description="hf: weights dtype")
    batch_size: int = Field(8, ge=1, description="hf: prompts per forward pass")
    format: str | dict = Field("paper", description="the run's student format (codistill.formats): a packaged "
                               "name or a mapping; it must have a reasoning (context) section before the code")
    # sampling (inter-uncertainty)
    k: int = Field(4, ge=1, description="student samples (reasoning + code) per problem")
    temperature: float = Field(0.8, ge=0, description="sampling temperature of the k samples")
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(768, ge=16, description="tokens per sample")
    seed: int = Field(0, description="sampling seed; also the seed of the random control and of score ties")
    # step ablations (intra-uncertainty)
    ablate_samples: int = Field(1, ge=0, description="samples (the first ones) whose steps are ablated one at a "
                                "time; 0: no intra-uncertainty")
    max_steps: int = Field(8, ge=1, description="steps ablated per sample at most (the first ones)")
    code_max_new_tokens: int = Field(512, ge=16, description="tokens of code regenerated per ablation")
    ablation_temperature: float = Field(0.0, ge=0, description="decoding of the regenerated code (0: greedy)")
    # the choice
    combine: Literal["sum", "inter", "intra"] = Field("sum", description="score: inter_norm + intra_weight x intra "
                                                      "(sum), or one of them")
    intra_weight: float = Field(1.0, ge=0, description="weight of intra-uncertainty in the sum")
    budget: int | float = Field(0.5, description="problems kept: a fraction in (0, 1] (float) or a count (int); "
                                "the random control keeps as many")
    # the judge
    judge_timeout_s: float = Field(3.0, gt=0, description="seconds per assert/stdio program")
    workers: int | None = Field(None, ge=1, description="sandbox worker processes (default: CPU cores)")
    problems_per_batch: int = Field(8, ge=1, description="problems generated, judged and recorded together")
    progress_every: int = Field(10, ge=1, description="a progress line every N problems (and every 30 s)")

    @field_validator("budget")
    @classmethod
    def _budget(cls, v):
        from codistill.select.scores import budget_count

        budget_count(v, 1)  # raises on a fraction outside (0, 1] or a bool
        if isinstance(v, int) and v < 1:
            raise ValueError("a budget count is at least 1")
        return v

    @field_validator("format")
    @classmethod
    def _known_format(cls, v):
        from codistill.formats import get_format

        get_format(v)
        return v

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        from codistill.backends import backend_kind

        backend_kind(v)
        return v

    LOCATION_FIELDS: ClassVar[set[str]] = {"dataset", "workers", "progress_every"}
    CHOICE_FIELDS: ClassVar[set[str]] = {"combine", "intra_weight", "budget"}

    def student_format(self):
        from codistill.formats import get_format

        return get_format(self.format)

    def key(self) -> dict:
        """The stage's identity (the dataset enters a recipe's key through its content hash)."""
        d = self.model_dump(exclude=self.LOCATION_FIELDS)
        d["format"] = self.student_format().key()
        return d

    def sampling_key(self) -> dict:
        """What a problem's record depends on: everything but the choice and where things are."""
        d = self.key()
        for f in self.CHOICE_FIELDS | {"limit", "ids"}:
            d.pop(f, None)
        return d
