"""Settings of the correct stage: :class:`CorrectConfig` (what ``codistill correct`` and a recipe's
``correct:`` section take), with :class:`StudentConfig` (the model whose mistakes are corrected,
and its format) and :class:`StudentSampling`. :meth:`CorrectConfig.key` is the stage's identity."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from codistill.teacher.config import TeachConfig, TeacherConfig, TeachSampling
from codistill.teacher.parse import ValidationRules

__all__ = ["CorrectConfig", "StudentConfig", "StudentSampling"]


class StudentConfig(BaseModel):
    """The student that attempts the training problems (its failures are what the teacher corrects)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="the student model: a packaged name, a local folder, or a "
                              "server's model name (backend openai); required (a recipe gives its student)")
    adapter: str | None = Field(None, description="a LoRA adapter on the model (hf, llama-server)")
    backend: str = Field("hf", description="generation backend (codistill.backends: hf, llama-server, openai, "
                         "llamacpp)")
    backend_options: dict[str, Any] = Field(default_factory=dict, description="the backend's own settings "
                                            "(e.g. base_url for openai)")
    format: str | dict | None = Field(None, description="the run's student format (codistill.formats): a packaged "
                                      "name, a mapping, or 'adapter' (the adapter's own record); None: paper")
    batch_size: int = Field(8, ge=1, description="problems per generate call")
    dtype: str = Field("float32", description="hf: weights dtype")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        from codistill.backends import backend_kind

        backend_kind(v)
        return v

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str | dict | None) -> str | dict | None:
        if v != "adapter":
            from codistill.formats import get_format

            get_format(v)
        return v

    @model_validator(mode="after")
    def _options(self) -> "StudentConfig":
        from codistill.backends import backend_kind, check_backend_options
        from codistill.evaluation.config import _SET_BY_EVAL

        kind = backend_kind(self.backend)
        check_backend_options(kind, {k: v for k, v in self.backend_options.items() if k != "prompt_mode"},
                              _SET_BY_EVAL.get(kind, ("model",)), what="student backend option")
        if self.format == "adapter" and not self.adapter:
            raise ValueError("format 'adapter' reads the adapter's own format record: give the adapter")
        if self.adapter and "adapter" not in _SET_BY_EVAL.get(kind, ()):
            raise ValueError(f"the student's backend {self.backend!r} cannot apply an adapter: use hf or llama-server")
        return self


class StudentSampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(4, ge=1, description="attempts per problem")
    temperature: float = Field(0.8, ge=0, description="0 = greedy (then one distinct attempt per problem)")
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=16)
    seed: int = Field(0, description="the k-th generate call of a run uses seed + its first problem's position")


class CorrectConfig(BaseModel):
    """Configuration of ``correct`` (``codistill correct``); the run directory is ``correct``'s
    ``out_dir`` argument."""

    model_config = ConfigDict(extra="forbid")

    # the training problems, read as the teach stage reads them
    dataset: str | None = Field(None, description="a folder written by `codistill data` (rows.jsonl, problems.jsonl)")
    benchmark: str | None = Field(None, description="or a load_benchmark name")
    benchmark_kwargs: dict = Field(default_factory=dict)
    data_dir: str | None = None
    limit: int | None = Field(None, ge=0, description="first N problems only")
    ids: list[str] | None = Field(None, description="only these problem ids")
    # the student's attempts
    student: StudentConfig = Field(default_factory=StudentConfig)
    sampling: StudentSampling = Field(default_factory=StudentSampling)
    failures_per_problem: int = Field(1, ge=1, description="distinct failed programs per problem shown to the "
                                      "teacher (the first ones in sample order)")
    max_attempt_chars: int = Field(6000, ge=200, description="a failed answer is cut to this many characters "
                                   "in the teacher's prompt")
    judge_timeout_s: float = Field(10.0, gt=0, description="seconds per program (student and corrected)")
    # the teacher's corrections
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    teacher_sampling: TeachSampling = Field(default_factory=lambda: TeachSampling(max_new_tokens=1024))
    validation: ValidationRules = Field(default_factory=ValidationRules)
    max_attempts: int = Field(1, ge=1, description="teacher calls per failure at most (a correction that is "
                              "malformed or fails the judge is asked again)")
    template: str | None = Field(None, description="a correction template of your own (default: the packaged one)")
    cache_dir: str | None = Field(None, description="teacher response cache (default: <out_dir>/cache)")
    # the training sets
    context_data: str | None = Field(None, description="the teach stage's train.jsonl (or its folder): the "
                                     "context-distillation rows the correction rows are mixed with")
    mix_ratio: float | None = Field(None, ge=0, description="correction rows per context-distillation row in the "
                                    "mixed sets (None: every kept correction, once)")
    mix_seed: int = Field(0, description="which correction rows a mix_ratio keeps")
    progress_every: int = Field(10, ge=1, description="a progress line every N finished items (and every 30 s)")

    @field_validator("benchmark")
    @classmethod
    def _known_benchmark(cls, name: str | None) -> str | None:
        if name is not None:
            from codistill.problems.loaders import check_benchmark_name

            check_benchmark_name(name)
        return name

    @model_validator(mode="after")
    def _one_source(self) -> "CorrectConfig":
        if (self.dataset is None) == (self.benchmark is None):
            raise ValueError("give exactly one of dataset (a `codistill data` folder) or benchmark (a loader name)"
                             f"; got dataset={self.dataset!r}, benchmark={self.benchmark!r}")
        if not self.student.model:
            raise ValueError("student.model: give the student whose mistakes are corrected (codistill correct "
                             "--student MODEL)")
        if self.mix_ratio is not None and self.context_data is None:
            raise ValueError("mix_ratio mixes correction rows with context-distillation rows: give context_data "
                             "(the teach stage's train.jsonl)")
        return self

    # where files are and how the teacher is reached: not what is asked
    LOCATION_FIELDS: ClassVar[set[str]] = {"dataset", "data_dir", "context_data", "cache_dir", "progress_every"}
    TRANSPORT_FIELDS: ClassVar[set[str]] = TeachConfig.TRANSPORT_FIELDS

    def key(self) -> dict:
        """The stage's identity: the student, its sampling, what the teacher is asked and how rows are
        kept and mixed (the dataset and the context rows enter a recipe's key through their hashes)."""
        d = self.model_dump(exclude=self.LOCATION_FIELDS)
        d["teacher"] = {k: v for k, v in d["teacher"].items() if k not in self.TRANSPORT_FIELDS}
        return d
