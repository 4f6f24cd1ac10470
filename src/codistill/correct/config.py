"""Settings of the correct stage: :class:`CorrectConfig` (what ``codistill correct`` and a recipe's
``correct:`` section take), with :class:`StudentConfig` (the model whose mistakes are corrected,
and its format) and :class:`StudentSampling`. :meth:`CorrectConfig.key` is the stage's identity.

The pairs stage's :class:`~codistill.pairs.config.PairsConfig` shares them: the two halves of both
configs are :class:`AttemptSettings` (the training problems, the student, its sampling, failures
per problem) and :class:`CorrectionSettings` (the judge's limit, the teacher, its sampling and
checks, the template, the cache; the stage's key and the teach settings of its correction runner;
the stage's steps they share are :mod:`codistill.correct.failures`). A config mixes them as
``class XConfig(CorrectionSettings, AttemptSettings)``: pydantic lists the fields of the last base
first, so the settings (and the flags generated from them) come in that order, the config's own
fields last; a field a config declares again (another default or description) keeps its place."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from codistill.teacher.config import TeachConfig, TeacherConfig, TeachSampling, known_benchmark, one_source
from codistill.teacher.parse import ValidationRules

__all__ = ["AttemptSettings", "CorrectConfig", "CorrectionSettings", "CutAttemptSettings", "StudentConfig",
           "StudentSampling"]


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


class AttemptSettings(BaseModel):
    """The first half of a stage's settings: the training problems, read as the teach stage reads
    them, and the student's attempts at them."""

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

    _known_benchmark = field_validator("benchmark")(known_benchmark)
    _one_source = model_validator(mode="after")(one_source)


class CorrectionSettings(BaseModel):
    """The second half of a stage's settings: the judge's limit and the teacher's corrections (in the
    stage's ``MODE``); with :class:`AttemptSettings`, the stage's key and the teach settings its
    correction runner reads."""

    model_config = ConfigDict(extra="forbid")

    MODE: ClassVar[str]  # the teacher mode that writes the corrections

    judge_timeout_s: float = Field(10.0, gt=0, description="seconds per program (student and corrected)")
    # the teacher's corrections
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    teacher_sampling: TeachSampling = Field(default_factory=lambda: TeachSampling(max_new_tokens=1024))
    validation: ValidationRules = Field(default_factory=ValidationRules)
    max_attempts: int = Field(1, ge=1, description="teacher calls per failure at most (a correction that is "
                              "malformed or fails the judge is asked again)")
    template: str | None = Field(None, description="a correction template of your own (default: the packaged one)")
    cache_dir: str | None = Field(None, description="teacher response cache (default: <out_dir>/cache)")

    # where files are and how the teacher is reached: not what is asked
    LOCATION_FIELDS: ClassVar[set[str]] = {"dataset", "data_dir", "cache_dir", "progress_every"}
    TRANSPORT_FIELDS: ClassVar[set[str]] = TeachConfig.TRANSPORT_FIELDS
    # fields a config gained after its keys were first written -> the value they are left out of key()
    # at, so the keys of runs that leave them at it stay what they were
    ABSENT_FROM_KEY_AT: ClassVar[dict[str, Any]] = {}

    def key(self) -> dict[str, Any]:
        """The stage's identity: the student and its sampling, what the teacher is asked and how its
        corrections are kept (the dataset, and what else a recipe gives the stage, enter a recipe's key
        through their hashes); a field of :attr:`ABSENT_FROM_KEY_AT` is left out while at its value."""
        d = self.model_dump(exclude=self.LOCATION_FIELDS)
        d["teacher"] = {k: v for k, v in d["teacher"].items() if k not in self.TRANSPORT_FIELDS}
        for name, value in self.ABSENT_FROM_KEY_AT.items():
            if name in d and d[name] == value:
                del d[name]
        return d

    def teach_config(self, out_dir: str | Path) -> TeachConfig:
        """The teach settings the correction runner reads (mode, teacher, sampling, checks, judge)."""
        return TeachConfig(out_dir=str(out_dir), mode=self.MODE, dataset=self.dataset, benchmark=self.benchmark,
                           benchmark_kwargs=self.benchmark_kwargs, data_dir=self.data_dir, template=self.template,
                           teacher=self.teacher, sampling=self.teacher_sampling, validation=self.validation,
                           max_attempts=self.max_attempts, keep_passing=1, leakage_threshold=None,
                           judge_timeout_s=self.judge_timeout_s, cache_dir=self.cache_dir,
                           progress_every=self.progress_every)


class CutAttemptSettings(AttemptSettings):
    """:class:`AttemptSettings` and how much of a failed answer the teacher is shown (the correct and
    pairs stages: a long or looping answer would not leave the teacher's prompt room in its context)."""

    max_attempt_chars: int = Field(6000, ge=200, description="a failed answer is cut to this many characters "
                                   "in the teacher's prompt")


class CorrectConfig(CorrectionSettings, CutAttemptSettings):
    """Configuration of ``correct`` (``codistill correct``); the run directory is ``correct``'s
    ``out_dir`` argument. The problems, the student and its attempts (:class:`AttemptSettings`, and
    ``max_attempt_chars``), then the judge and the teacher's corrections (:class:`CorrectionSettings`),
    then the training sets."""

    MODE: ClassVar[str] = "correction"

    # the training sets
    context_data: str | None = Field(None, description="the teach stage's train.jsonl (or its folder): the "
                                     "context-distillation rows the correction rows are mixed with")
    mix_ratio: float | None = Field(None, ge=0, description="correction rows per context-distillation row in the "
                                    "mixed sets (None: every kept correction, once)")
    mix_seed: int = Field(0, description="which correction rows a mix_ratio keeps")
    max_row_tokens: int | None = Field(None, ge=16, description="set it to the correction arms' train.data."
                                       "max_length (a recipe sets it from them): a correction whose row of either "
                                       "variant could not fit it (prompt + code + eos, in the student's tokens, as "
                                       "the trainer counts them) is left out of both variants (left_out_too_long); "
                                       "a failure whose lema prompt alone could not is not shown to the teacher "
                                       "(prompt_too_long). None: no check")
    progress_every: int = Field(10, ge=1, description="a progress line every N finished items (and every 30 s)")

    @model_validator(mode="after")
    def _student_and_mix(self) -> "CorrectConfig":
        if not self.student.model:
            raise ValueError("student.model: give the student whose mistakes are corrected (codistill correct "
                             "--student MODEL)")
        if self.mix_ratio is not None and self.context_data is None:
            raise ValueError("mix_ratio mixes correction rows with context-distillation rows: give context_data "
                             "(the teach stage's train.jsonl)")
        return self

    LOCATION_FIELDS: ClassVar[set[str]] = CorrectionSettings.LOCATION_FIELDS | {"context_data"}
    # max_row_tokens came later: unset (no check, what the stage did before it), it is not in the key
    ABSENT_FROM_KEY_AT: ClassVar[dict[str, Any]] = {**CorrectionSettings.ABSENT_FROM_KEY_AT, "max_row_tokens": None}
