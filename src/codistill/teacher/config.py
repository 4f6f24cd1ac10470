"""Settings of the teach stage: :class:`TeachConfig` (what ``codistill teach`` and a recipe's
``teach:`` section take), with :class:`TeacherConfig` (how the teacher is reached) and
:class:`TeachSampling`. :meth:`TeachConfig.key` is the stage's identity in a recipe."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from codistill.teacher.parse import ValidationRules

__all__ = ["TeachConfig", "TeacherConfig", "TeachSampling", "known_benchmark", "one_source"]


def known_benchmark(cls, name: str | None) -> str | None:
    """The ``benchmark`` field's validator (a loader's name, or None), here and in the configs of the
    correct and pairs stages (:class:`codistill.correct.config.AttemptSettings`)."""
    if name is not None:
        from codistill.problems.loaders import check_benchmark_name

        check_benchmark_name(name)
    return name


def one_source(self):
    """A config's validator (mode ``after``): exactly one of ``dataset`` and ``benchmark``; here and
    in :class:`codistill.correct.config.AttemptSettings`."""
    if (self.dataset is None) == (self.benchmark is None):
        raise ValueError("give exactly one of dataset (a `codistill data` folder) or benchmark (a loader name)"
                         f"; got dataset={self.dataset!r}, benchmark={self.benchmark!r}")
    return self


class TeacherConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["openai", "llamacpp"] = Field("openai", description="OpenAI-compatible HTTP server, or "
                                                   "in-process llama.cpp (llama-cpp-python)")
    base_url: str = Field("http://127.0.0.1:8731/v1", description="server URL (codistill serve-teacher default)")
    model: str = Field("qwen2.5-coder-1.5b", description="model name sent to the server; for llamacpp a "
                       "packaged name or .gguf path. Part of the cache key.")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    concurrency: int = Field(4, ge=1, description="requests in flight (match the server's parallel slots)")
    timeout_s: float = Field(900.0, gt=0, description="seconds per request (CPU teachers are slow)")
    max_retries: int = Field(4, ge=0, description="HTTP retries per request (exponential backoff)")
    n_ctx: int = Field(4096, ge=256, description="llamacpp: context window")
    extra_body: dict = Field(default_factory=dict, description="extra JSON fields per request, e.g. "
                             "{\"cache_prompt\": false} for llama.cpp, {\"top_k\": 20} for vLLM")
    price_per_1k_prompt: float | None = Field(None, ge=0, description="cost per 1k prompt tokens (report only)")
    price_per_1k_completion: float | None = Field(None, ge=0, description="cost per 1k completion tokens")


class TeachSampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.0, ge=0, description="first attempt (0 = greedy)")
    retry_temperature: float = Field(0.7, ge=0, description="temperature of retries when the first is greedy")
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(768, ge=16)
    seed: int = Field(0, description="attempt k uses seed + k")


class TeachConfig(BaseModel):
    """Configuration of ``teach`` (``codistill teach``)."""

    model_config = ConfigDict(extra="forbid")

    out_dir: str = Field(..., description="run directory for contexts, cache, train set, manifest")
    mode: str = Field("explain", description="teacher mode: a name registered in codistill.teacher.modes "
                      "(explain, solve, hierarchical, correction, reverse)")
    dataset: str | None = Field(None, description="a folder written by `codistill data` (rows.jsonl, problems.jsonl)")
    benchmark: str | None = Field(None, description="or a load_benchmark name (no verification/decontamination)")
    benchmark_kwargs: dict = Field(default_factory=dict)
    data_dir: str | None = None
    limit: int | None = Field(None, ge=0, description="first N rows only")
    ids: list[str] | None = Field(None, description="only these row ids")
    template: str | None = Field(None, description="a template file of your own (default: the mode's)")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    sampling: TeachSampling = Field(default_factory=TeachSampling)
    validation: ValidationRules = Field(default_factory=ValidationRules)
    max_attempts: int = Field(3, ge=1, description="teacher calls per problem at most (invalid/leaking/"
                              "failing answers are retried); solve mode: the k of rejection sampling")
    keep_passing: int = Field(1, ge=1, description="solve: passing samples to keep per problem")
    leakage_threshold: float | None = Field(0.5, ge=0, le=1, description="reject contexts whose leakage "
                                            "score is above this (None: keep all, still scored)")
    leakage_n: int = Field(4, ge=1, description="token n-gram size of the leakage score")
    judge_timeout_s: float = Field(10.0, gt=0, description="solve: seconds per program")
    cache_dir: str | None = Field(None, description="response cache folder (default: <out_dir>/cache)")
    progress_every: int = Field(10, ge=1, description="log a progress line every N finished problems (and "
                                "at least every 30 s: rows done/total, rate, ETA)")
    order_seed: int | None = Field(None, description="process rows in a random order with this seed (so a "
                                   "partial run covers every source); outputs keep the dataset order")
    mode_options: dict = Field(default_factory=dict, description="settings of the mode itself, checked by the "
                               "mode's own schema (Mode.options; e.g. reverse: scorer, format, rounds); modes "
                               "without options take none")
    fallback_mode: str | None = Field(None, description="rows with no reference solution (LeetCode) are taught in "
                                      "this mode instead of `mode` (solve: rejection sampling judged on the tests); "
                                      "None: every row in `mode`, and rows without a reference are an error")

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, name: str) -> str:
        from codistill.teacher.modes import MODE_REGISTRY

        if name not in MODE_REGISTRY:
            raise ValueError(f"unknown teacher mode {name!r}; choose one of {', '.join(MODE_REGISTRY)}")
        return name

    @model_validator(mode="after")
    def _mode_options(self) -> "TeachConfig":
        from codistill.teacher.modes import get_mode

        mode = get_mode(self.mode)
        if mode.options is None:
            if self.mode_options:
                raise ValueError(f"teacher mode {self.mode!r} takes no mode_options (got {', '.join(self.mode_options)})")
        else:
            from pydantic import ValidationError

            try:
                mode.options.model_validate(self.mode_options)
            except ValidationError as e:
                where = "; ".join(f"mode_options.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
                raise ValueError(f"teacher mode {self.mode!r}: {where}") from None
        return self

    @model_validator(mode="after")
    def _fallback_mode(self) -> "TeachConfig":
        if self.fallback_mode is None:
            return self
        from codistill.teacher.modes import MODE_REGISTRY, get_mode

        if self.fallback_mode not in MODE_REGISTRY:
            raise ValueError(f"unknown fallback_mode {self.fallback_mode!r}; choose one of {', '.join(MODE_REGISTRY)}")
        main, fb = get_mode(self.mode), get_mode(self.fallback_mode)
        if not main.spec.needs_solution or main.spec.fields or main.options is not None:
            raise ValueError(f"fallback_mode is for a mode that shows the teacher the reference and asks nothing "
                             f"else per row (explain, hierarchical); mode {self.mode!r} is not one")
        if fb.spec.needs_solution or fb.spec.fields or fb.options is not None:
            raise ValueError(f"fallback_mode {self.fallback_mode!r} must teach a row from its problem alone (solve): "
                             "it is for rows that have no reference solution")
        return self

    def fallback_config(self) -> "TeachConfig | None":
        """The settings the rows without a reference are taught with (None without ``fallback_mode``):
        this config in ``fallback_mode``, with that mode's packaged template and its own required
        sections (``template`` and ``validation.required`` are ``mode``'s). Its records and cache keys
        are those a run in that mode with these settings would make."""
        if self.fallback_mode is None:
            return None
        return self.model_copy(update={"mode": self.fallback_mode, "fallback_mode": None, "template": None,
                                       "mode_options": {},
                                       "validation": self.validation.model_copy(update={"required": None})})

    def row_mode(self, row: dict) -> str:
        """The mode ``row`` is taught in: ``fallback_mode`` for a row without a reference, else ``mode``."""
        return self.fallback_mode if self.fallback_mode is not None and not row.get("code") else self.mode

    _known_benchmark = field_validator("benchmark")(known_benchmark)

    # where files go and how the teacher is reached: not what it is asked
    LOCATION_FIELDS: ClassVar[set[str]] = {"out_dir", "dataset", "cache_dir", "progress_every"}
    TRANSPORT_FIELDS: ClassVar[set[str]] = {"base_url", "concurrency", "timeout_s", "max_retries", "api_key_env"}

    def key(self) -> dict:
        """The stage's identity: what the teacher is asked and how answers are kept (the dataset
        enters a recipe's key through its content hash)."""
        d = self.model_dump(exclude=self.LOCATION_FIELDS)
        if not d["mode_options"]:
            del d["mode_options"]  # absent when unused: keys written before it existed stay valid
        if d["fallback_mode"] is None:
            del d["fallback_mode"]  # likewise
        d["teacher"] = {k: v for k, v in d["teacher"].items() if k not in self.TRANSPORT_FIELDS}
        return d

    _one_source = model_validator(mode="after")(one_source)
