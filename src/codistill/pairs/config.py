"""Settings of the pairs stage: :class:`PairsConfig` (what ``codistill pairs`` and a recipe's
``pairs:`` section take). The student and its sampling are the correct stage's
(:class:`~codistill.correct.config.StudentConfig`, :class:`~codistill.correct.config.StudentSampling`:
the same attempts, read the same way); :meth:`PairsConfig.key` is the stage's identity."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from codistill.correct.config import StudentConfig, StudentSampling
from codistill.teacher.config import TeachConfig, TeacherConfig, TeachSampling
from codistill.teacher.parse import ValidationRules

__all__ = ["MODE", "PairsConfig"]

MODE = "first_error"  # the teacher mode that writes the corrections (codistill.teacher.modes.first_error)


class PairsConfig(BaseModel):
    """Configuration of ``make_pairs`` (``codistill pairs``); the run directory is its ``out_dir``
    argument."""

    model_config = ConfigDict(extra="forbid")

    # the training problems, read as the teach stage reads them
    dataset: str | None = Field(None, description="a folder written by `codistill data` (rows.jsonl, problems.jsonl)")
    benchmark: str | None = Field(None, description="or a load_benchmark name")
    benchmark_kwargs: dict = Field(default_factory=dict)
    data_dir: str | None = None
    limit: int | None = Field(None, ge=0, description="first N problems only")
    ids: list[str] | None = Field(None, description="only these problem ids")
    # the student's attempts (its format must have a reasoning section before the code)
    student: StudentConfig = Field(..., description="the student whose failures become pairs: the model the DPO "
                                   "starts from (base, or base + the SFT adapter the DPO continues), in the run's "
                                   "student format")
    sampling: StudentSampling = Field(default_factory=StudentSampling)
    failures_per_problem: int = Field(1, ge=1, description="distinct failed answers per problem shown to the teacher "
                                      "(the first ones in sample order): at most one pair each")
    judge_timeout_s: float = Field(10.0, gt=0, description="seconds per program (the student's and the chosen answers)")
    # the teacher's corrections (mode first_error)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    teacher_sampling: TeachSampling = Field(default_factory=lambda: TeachSampling(max_new_tokens=1024))
    validation: ValidationRules = Field(default_factory=ValidationRules)
    max_attempts: int = Field(2, ge=1, description="teacher calls per failure at most (an answer that is malformed, "
                              "names no step of the student's, or whose chosen answer fails the judge is asked again)")
    template: str | None = Field(None, description="a first_error template of your own (default: the packaged one)")
    cache_dir: str | None = Field(None, description="teacher response cache (default: <out_dir>/cache)")
    progress_every: int = Field(10, ge=1, description="a progress line every N finished items (and every 30 s)")

    @field_validator("benchmark")
    @classmethod
    def _known_benchmark(cls, name: str | None) -> str | None:
        if name is not None:
            from codistill.problems.loaders import check_benchmark_name

            check_benchmark_name(name)
        return name

    @model_validator(mode="after")
    def _one_source(self) -> "PairsConfig":
        if (self.dataset is None) == (self.benchmark is None):
            raise ValueError("give exactly one of dataset (a `codistill data` folder) or benchmark (a loader name)"
                             f"; got dataset={self.dataset!r}, benchmark={self.benchmark!r}")
        return self

    # where files are and how the teacher is reached: not what is asked
    LOCATION_FIELDS: ClassVar[set[str]] = {"dataset", "data_dir", "cache_dir", "progress_every"}
    TRANSPORT_FIELDS: ClassVar[set[str]] = TeachConfig.TRANSPORT_FIELDS

    def key(self) -> dict[str, Any]:
        """The stage's identity: the student and its sampling, what the teacher is asked and how pairs are
        kept (the dataset and the student's adapter enter a recipe's key through their hashes)."""
        d = self.model_dump(exclude=self.LOCATION_FIELDS)
        d["teacher"] = {k: v for k, v in d["teacher"].items() if k not in self.TRANSPORT_FIELDS}
        return d

    def teach_config(self, out_dir: str) -> TeachConfig:
        """The teach settings the correction runner reads (mode, teacher, sampling, checks, judge)."""
        return TeachConfig(out_dir=str(out_dir), mode=MODE, dataset=self.dataset, benchmark=self.benchmark,
                           benchmark_kwargs=self.benchmark_kwargs, data_dir=self.data_dir, template=self.template,
                           teacher=self.teacher, sampling=self.teacher_sampling, validation=self.validation,
                           max_attempts=self.max_attempts, keep_passing=1, leakage_threshold=None,
                           judge_timeout_s=self.judge_timeout_s, cache_dir=self.cache_dir,
                           progress_every=self.progress_every)
