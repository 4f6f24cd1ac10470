"""The eval stage's settings: :class:`EvalConfig`, validated field by field (so ``codistill run``
refuses a bad eval section before its first stage), owning its identity (:meth:`EvalConfig.key`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

DEFAULT_BENCHMARKS = ["humaneval", "humaneval+", "mbpp", "mbpp+"]
# The paper evaluates MBPP on its test split (task ids 11-510).
BENCHMARK_ALIASES = {"mbpp": "mbpp:test"}
EVAL_LABELS = {"mbpp": "MBPP test split (500)"}


class EvalConfig(BaseModel):
    """Settings of ``codistill eval`` (one model, optionally + adapter, on some benchmarks)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="packaged short name, local HF folder, GGUF file, or server model name")
    adapter: str | None = Field(None, description="peft LoRA adapter folder, applied without merging")
    backend: str = Field("hf", description="hf | llama-server | openai | llamacpp (see codistill.backends)")
    backend_options: dict = Field(default_factory=dict, validate_default=True,
                                  description="extra backend arguments (base_url, concurrency, ...)")
    benchmarks: list[str] = Field(default_factory=lambda: list(DEFAULT_BENCHMARKS))
    n_samples: int = Field(1, ge=1, description="samples per task (pass@k for k <= n)")
    temperature: float = Field(0.0, ge=0, description="0 = greedy (the paper's setting)")
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=1)
    seed: int = 0
    limit: int | None = Field(None, ge=1, description="first K tasks of each benchmark")
    batch_size: int = Field(8, ge=1)
    prompt_mode: Literal["auto", "chat", "completion"] = "auto"
    template_dir: str | None = Field(None, description="folder with eval_chat.txt / eval_completion.txt to override, "
                                     "or a packaged set: 'bare' = the problem statement alone as the user turn, "
                                     "as the training data shows it")
    dtype: str = "float32"
    perplexity: bool = Field(True, description="question-completion perplexity on MBPP test questions")
    perplexity_prefix: float = Field(0.1, gt=0, lt=1, description="fraction of question tokens given as context")
    token_nll: bool = Field(True, description="per-token NLL along greedy solutions (paper Fig. 2)")
    data_dir: str | None = None
    judge_timeout_s: float = Field(3.0, gt=0)
    workers: int | None = Field(None, ge=1)
    format: str | dict | None = Field(None, description="the protocol: None or 'standard' = zero-shot (EvalPlus "
                                      "instruction prompt through the backend's chat, any answer layout); a student "
                                      "format (packaged name such as 'paper', or a mapping; see codistill.formats); "
                                      "'adapter' = the format the adapter was trained in")
    budget_margin: int = Field(32, ge=0, description="tokens over the 99th percentile of the adapter's training "
                               "targets that max_new_tokens must leave (the budget guard)")
    allow_format_mismatch: bool = Field(False, description="judge an adapter in a format it was not trained in "
                                        "(recorded in results.json)")
    allow_short_budget: bool = Field(False, description="judge an adapter with max_new_tokens under its training "
                                     "targets' length (recorded in results.json)")
    stop_on_loop: bool = Field(False, description="end an answer as soon as it ends in a loop (a block of text "
                               "repeated; codistill.loops): saves the tokens a looping greedy answer spends up to the "
                               "cap, and can change a verdict only where the model would have left the loop; "
                               "`codistill loops EVAL_DIR` measures that on an eval made without it")

    strategy: str = Field("direct", description="inference strategy (codistill.evaluation.strategies): direct = "
                          "one model answers each prompt; reasoner-coder = a Reasoner writes plans, the model "
                          "(the Coder) writes code from statement + plan")
    # -- reasoner-coder (ignored by direct) --------------------------------------------------
    reasoner: str | None = Field(None, description="reasoner-coder: the Reasoner, MODEL[+ADAPTER] (packaged short "
                                 "name, HF folder or GGUF; +ADAPTER a codistill-trained LoRA folder, prompted in "
                                 "its training format and stopped before its code)")
    reasoner_backend: str | None = Field(None, description="reasoner-coder: the Reasoner's backend (default: backend)")
    plans: int = Field(1, ge=1, description="reasoner-coder: plans per task (M); n_samples = plans x codes_per_plan")
    codes_per_plan: int = Field(1, ge=1, description="reasoner-coder: codes the Coder writes per plan (T)")
    reasoner_temperature: float | None = Field(None, ge=0, description="reasoner-coder: the Reasoner's temperature "
                                               "(default: temperature)")
    reasoner_max_new_tokens: int = Field(768, ge=1, description="reasoner-coder: tokens a plan may take")

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        from codistill.evaluation.strategies import check_strategy

        return check_strategy(v)

    # -- identity ----------------------------------------------------------------------------
    # Settings that change what is generated: a resumed eval with other values would mix answers
    # (the run directory refuses it), and they are in a recipe's eval key.
    GENERATION_FIELDS: ClassVar[tuple[str, ...]] = (
        "model", "adapter", "backend", "temperature", "top_p", "max_new_tokens", "prompt_mode", "seed", "dtype",
        "format", "template_dir", "strategy", "reasoner", "reasoner_backend", "plans", "codes_per_plan",
        "reasoner_temperature", "reasoner_max_new_tokens", "stop_on_loop")
    # Settings that change only speed or where files are: outside every key.
    SPEED_FIELDS: ClassVar[tuple[str, ...]] = ("workers", "batch_size", "data_dir", "backend_options")

    # Added after runs were made: in the key only when not at their default, so that a run made
    # before they existed keeps its identity (and is not judged again).
    LATER_FIELDS: ClassVar[dict] = {"reasoner": None, "reasoner_backend": None, "plans": 1, "codes_per_plan": 1,
                                    "reasoner_temperature": None, "reasoner_max_new_tokens": 768, "stop_on_loop": False}

    def key(self) -> dict:
        """The stage's identity for a recipe (the adapter enters through its content hash)."""
        d = self.model_dump(exclude={"adapter", *self.SPEED_FIELDS})
        key = {k: v for k, v in d.items() if k not in self.LATER_FIELDS or v != self.LATER_FIELDS[k]}
        if self.format not in (None, "standard"):  # a format eval made under an earlier stop rule is run
            from codistill.formats import STOP_RULE  # again: it asks again what that rule cut short

            key["stop_rule"] = STOP_RULE
        return key

    def compat_key(self) -> dict:
        """:meth:`key` without what a resumed eval can add to or redo (benchmarks, limit, the stop
        rule): the same generations, kept."""
        return {k: v for k, v in self.key().items() if k not in ("benchmarks", "limit", "stop_rule")}

    def changed_generation_settings(self, old: dict) -> list[str]:
        """Names of generation settings that differ from an earlier run's config.json."""
        defaults = {"backend": "hf", "dtype": "float32", "strategy": "direct", **self.LATER_FIELDS}
        return [k for k in self.GENERATION_FIELDS if old.get(k, defaults.get(k)) != getattr(self, k)]

    @model_validator(mode="after")
    def _pipeline_settings(self) -> "EvalConfig":
        """reasoner-coder needs a Reasoner and draws plans x codes_per_plan programs per task;
        direct takes none of the pipeline's settings (a forgotten --strategy is not silently ignored)."""
        if self.strategy != "reasoner-coder":
            given = [f for f in ("reasoner", "reasoner_backend", "plans", "codes_per_plan", "reasoner_temperature")
                     if getattr(self, f) != self.LATER_FIELDS[f]]
            if given:
                raise ValueError(f"{', '.join(given)} set but strategy is {self.strategy!r}: these settings are for "
                                 "strategy 'reasoner-coder' (--strategy reasoner-coder)")
            return self
        if not self.reasoner:
            raise ValueError("strategy 'reasoner-coder' needs a Reasoner: reasoner MODEL[+ADAPTER] (--reasoner)")
        total = self.plans * self.codes_per_plan
        if "n_samples" in self.model_fields_set and self.n_samples != total:
            raise ValueError(f"n_samples={self.n_samples} but plans x codes_per_plan = {self.plans} x "
                             f"{self.codes_per_plan} = {total}: leave n_samples out (it follows) or make them agree")
        object.__setattr__(self, "n_samples", total)
        return self

    def reasoner_spec(self) -> tuple[str, str | None]:
        """(model, adapter) of the Reasoner (``MODEL[+ADAPTER]``)."""
        return split_model_spec(self.reasoner or "")

    @field_validator("format")
    @classmethod
    def _known_format(cls, v):
        if v in (None, "standard", "adapter"):
            return v
        from codistill.formats import get_format

        get_format(v)
        return v

    # Checked here, so that `codistill run` refuses a bad eval section before its first stage
    # and `codistill eval` before loading a model. Field by field, so every problem shows at once.
    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str, info: ValidationInfo) -> str:
        from codistill.backends import backend_kind

        kind = backend_kind(v)
        if info.data.get("adapter") and kind not in ("hf", "llama-server"):
            raise ValueError(f"backend {v!r} cannot apply a LoRA adapter here: use backend hf, or llama-server "
                             "(converts the adapter to GGUF), or serve the adapter yourself")
        return v

    @field_validator("backend_options")
    @classmethod
    def _known_backend_options(cls, v: dict, info: ValidationInfo) -> dict:
        from codistill.backends import backend_kind, check_backend_options

        if "backend" in info.data:  # else the backend itself is wrong (reported on its own)
            kind = backend_kind(info.data["backend"])
            check_backend_options(kind, v, _SET_BY_EVAL.get(kind, ("model",)))
        return v

    @field_validator("benchmarks")
    @classmethod
    def _known_benchmarks(cls, names: list[str]) -> list[str]:
        from codistill.problems.loaders import check_benchmark_name

        if not names:
            raise ValueError("no benchmarks given")
        for name in names:
            check_benchmark_name(BENCHMARK_ALIASES.get(name, name))
        return names

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, v: str) -> str:
        if v not in ("float32", "bfloat16", "float16"):
            raise ValueError("choose float32, bfloat16 or float16")
        return v

    @field_validator("template_dir")
    @classmethod
    def _template_dir_exists(cls, v: str | None) -> str | None:
        if v and v not in PACKAGED_TEMPLATE_SETS and not Path(v).is_dir():
            raise ValueError(f"neither a folder nor a packaged template set ({', '.join(PACKAGED_TEMPLATE_SETS)})")
        return v


def split_model_spec(spec: str) -> tuple[str, str | None]:
    """``MODEL[+ADAPTER]`` → (model, adapter or None); the split is at the last ``+`` whose right
    side is an existing folder, so a model name holding ``+`` stays whole."""
    head, sep, tail = spec.rpartition("+")
    if sep and head and Path(tail).expanduser().is_dir():
        return head, tail
    return spec, None


# What run_eval passes to each backend itself (so not allowed in backend_options).
_SET_BY_EVAL = {"hf": ("model", "adapter", "batch_size", "prompt_mode", "dtype"),
                "llama-server": ("model", "adapter", "prompt_mode")}
PACKAGED_TEMPLATE_SETS = ("bare",)
