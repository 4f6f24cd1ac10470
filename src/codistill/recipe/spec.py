"""A recipe's typed parts: one section per stage, the arms (by kind), and :class:`Recipe`.

A stage's section (``data:``, ``teach:``, ``train:``, ``eval:``) is generated from the stage's
own config (:func:`section_model`): the same setting names, types, constraints, defaults and
descriptions, so a setting added to ``EvalConfig`` is a recipe setting too, with no edit here.
Each setting is optional in a section (the runner sets the paths; an arm's overrides are merged
on top) and may be null; only what the recipe wrote is dumped (:meth:`Section.settings`), so a
setting left out takes the stage's default and the stage keys are those of the settings written.
Checks that need the whole stage config (cross-field rules, names of benchmarks, backends) run
on each stage's config as the runner builds it (:func:`codistill.recipe.load.check_stages`).

Arms have a kind (:data:`ARM_KINDS`): ``base`` (the student as it is: judged only) and
``trained`` (a LoRA trained with the arm's overrides, then judged). A later kind (``dpo``,
``pipeline``) is a class here with its ``kind`` literal and the arm stages it goes through
(``stages``), one entry in ``ARM_KINDS``, and its stages registered in
:mod:`codistill.recipe.stages`.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, create_model, field_validator, model_serializer

from codistill.correct.config import CorrectConfig
from codistill.correct.rows import MIX_FILES
from codistill.data.prepare import PrepareConfig
from codistill.evaluation.config import EvalConfig
from codistill.pairs.config import PairsConfig
from codistill.pairs.recipe import DPO_KINDS
from codistill.select.config import SelectConfig
from codistill.select.recipe import ELAD_KINDS
from codistill.teacher import TeachConfig
from codistill.teacher.reverse.config import ReverseOptions
from codistill.training.config import TrainConfig

__all__ = ["Section", "section_model", "DataSection", "TeachSection", "TrainSection", "EvalSection", "ReportSection",
           "CorrectSection", "ServeSpec", "ArmSpec", "BaseArm", "TrainedArm", "PipelineArm", "LemaArm",
           "CorrectedOnlyArm", "EladArm", "EladRandomArm", "EladClaerArm", "SelectSection",
           "HsftArm", "DpoArm", "ReerArm", "HsftSection", "PairsSection", "ReerSection", "ARM_KINDS", "Arm", "Recipe", "SECTIONS", "RECIPE_VERSION"]

RECIPE_VERSION = 1


# ------------------------------------------------------------------------------------------ sections


def _written(obj: Any, dumped: Any) -> Any:
    """``dumped`` (a dump of ``obj``) less every model field that was not given."""
    if isinstance(obj, BaseModel) and isinstance(dumped, dict):
        return {k: _written(getattr(obj, k, None), v) for k, v in dumped.items() if k in obj.model_fields_set}
    if isinstance(obj, (list, tuple)) and isinstance(dumped, (list, tuple)):
        return type(dumped)(_written(o, d) for o, d in zip(obj, dumped))
    if isinstance(obj, dict) and isinstance(dumped, dict):
        return {k: _written(obj.get(k), v) for k, v in dumped.items()}
    return dumped


class Section(BaseModel):
    """A stage's settings as a recipe writes them (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid")
    stage_config: ClassVar[type[BaseModel] | None] = None  # the config this section is made from

    @model_serializer(mode="wrap")
    def _only_written(self, handler):
        return _written(self, handler(self))

    def settings(self) -> dict:
        """What the recipe wrote, as a plain mapping (nested sections too)."""
        return self.model_dump()

    # read like the mapping a section used to be: the settings written
    def __getitem__(self, name: str) -> Any:
        return self.settings()[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.settings().get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self.model_fields_set


_PARTIAL: dict[tuple[type, bool], type[Section]] = {}


def _partial_type(tp: Any) -> Any:
    """``tp`` with every pydantic model in it replaced by its section model (nested)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return section_model(tp, top=False)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is None or not args or origin is Literal:
        return tp
    if origin is Annotated:
        return Annotated[(_partial_type(args[0]), *tp.__metadata__)]
    mapped = tuple(a if a is Ellipsis else _partial_type(a) for a in args)
    if origin in (Union, types.UnionType):
        return Union[mapped]
    try:
        return origin[mapped if len(mapped) > 1 else mapped[0]]
    except TypeError:
        return tp


def section_model(config: type[BaseModel], name: str | None = None, top: bool = True) -> type[Section]:
    """A :class:`Section` made from ``config``: its fields (type or null, constraints, default,
    description), nested models made sections too, none of its validators. ``top``: required
    settings become optional (the runner or an arm gives them); in nested models they stay required."""
    key = (config, top)
    if key in _PARTIAL:
        return _PARTIAL[key]
    fields: dict[str, Any] = {}
    for fname, fi in config.model_fields.items():
        tp = Optional[_partial_type(fi.annotation)]
        if fi.metadata:
            tp = Annotated[(tp, *fi.metadata)]
        kw: dict[str, Any] = {"description": fi.description}
        factory = fi.default_factory
        if isinstance(factory, type) and issubclass(factory, BaseModel):
            kw["default_factory"] = section_model(factory, top=False)
        elif factory is not None:
            kw["default_factory"] = factory
        elif not fi.is_required():
            kw["default"] = fi.default
        elif top:
            kw["default"] = None
        fields[fname] = (tp, Field(**kw))
    model = create_model(name or f"{config.__name__}Section", __base__=Section, __module__=__name__,
                         __doc__=f"{config.__name__}'s settings as a recipe section.", **fields)
    model.stage_config = config
    _PARTIAL[key] = model
    return model


DataSection = section_model(PrepareConfig, "DataSection")
TeachSection = section_model(TeachConfig, "TeachSection")
TrainSection = section_model(TrainConfig, "TrainSection")
EvalSection = section_model(EvalConfig, "EvalSection")
CorrectSection = section_model(CorrectConfig, "CorrectSection")
SelectSection = section_model(SelectConfig, "SelectSection")
HsftSection = section_model(TeachConfig, "HsftSection")
PairsSection = section_model(PairsConfig, "PairsSection")
ReerSection = section_model(ReverseOptions, "ReerSection")


class ReportSection(BaseModel):
    """The report of the run (``codistill report`` on the run directory)."""

    model_config = ConfigDict(extra="forbid")

    baseline: str = Field("base", description="arm the others are compared with (each with its "
                          "eval under the arm's protocol: base, base@standard)")
    title: str | None = Field(None, description="report title (default: the recipe's name)")
    fixed_before_run: list[str] = Field(default_factory=list, description="what was decided before any test "
                                        "number was seen (shown at the top of the report)")
    references: list[str] | None = Field(
        None, description="reference arms each trained arm is also compared with (paired, same protocol, on the "
        "tasks both have); null: [cd] when the recipe has a trained arm cd; []: none")
    pairs: list[tuple[str, str]] = Field(
        default_factory=list, description="named comparisons [arm, reference] (delta = arm - reference, under each "
        "protocol both were judged under), e.g. [[elad50, random50], [lema, corrected_only]]")


class ServeSpec(BaseModel):
    """The local llama.cpp teacher started when ``teach.teacher.base_url`` is null."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("qwen2.5-coder-1.5b", description="packaged teacher name or .gguf path")
    n_parallel: int = Field(4, ge=1, description="parallel slots (the teach stage's concurrency follows)")
    ctx: int = Field(3072, ge=256, description="context tokens per slot")
    threads: int | None = Field(None, ge=1, description="CPU threads (default: the usable cores, fewer when "
                                "other processes keep some busy now; codistill.cpu.default_threads)")


# ------------------------------------------------------------------------------------------ arms


class ArmSpec(BaseModel):
    """What every arm has: how it is judged, overrides of the shared train/eval sections."""

    model_config = ConfigDict(extra="forbid")
    stages: ClassVar[tuple[str, ...]] = ("eval",)  # the arm stages (recipe.stages) it goes through, in order

    base: bool = Field(False, description="true: evaluate the student as it is (no training)")
    protocols: list[Literal["format", "standard"]] | None = Field(
        None, description="how this arm is judged: 'format' (the recipe's student format) and/or 'standard' "
        "(zero-shot, EvalPlus instruction prompt). Default: a base arm both, a trained arm 'format' only")
    train: TrainSection = Field(default_factory=TrainSection, description="overrides deep-merged onto the recipe's train section")
    eval: EvalSection = Field(default_factory=EvalSection, description="overrides deep-merged onto the recipe's eval section")
    description: str | None = None

    def default_protocols(self) -> list[str]:
        return ["format"]

    def trains(self) -> bool:
        return "train" in self.stages


class BaseArm(ArmSpec):
    """The student as packaged: judged, never trained."""

    stages: ClassVar[tuple[str, ...]] = ("eval",)
    kind: Literal["base"] = "base"
    base: Literal[True] = True

    def default_protocols(self) -> list[str]:
        return ["standard", "format"]


class TrainedArm(ArmSpec):
    """A LoRA trained on the teach stage's examples with the arm's train overrides, then judged."""

    stages: ClassVar[tuple[str, ...]] = ("train", "eval")
    # (its training file under the run directory, the run stage whose output hash keys it)
    train_source: ClassVar[tuple[str, str]] = ("teach/train.jsonl", "teach")
    kind: Literal["trained"] = "trained"
    base: Literal[False] = False


class PipelineArm(ArmSpec):
    """Reasoner→Coder (issue 17): a Reasoner writes ``plans`` plans per task from the statement,
    the Coder writes ``codes_per_plan`` programs per plan; judged, never trained.

    ``reasoner`` / ``coder``: ``student`` (the recipe's student as packaged), ``teacher`` (the
    served teacher model, ``serve.model``), ``arm:<name>`` (a trained arm's adapter on the
    student: a Reasoner is then prompted in its training format and stopped before its code; a
    Coder is judged in the run's format), or any model name/path (``MODEL[+ADAPTER]`` for a
    Reasoner). The Reasoner's sampling is set with the eval overrides (``eval:
    {reasoner_temperature, reasoner_max_new_tokens}``)."""

    stages: ClassVar[tuple[str, ...]] = ("eval",)
    kind: Literal["pipeline"] = "pipeline"
    base: Literal[False] = False
    reasoner: str = Field(..., description="student | teacher | arm:<name> | MODEL[+ADAPTER]")
    coder: str = Field("student", description="student | teacher | arm:<name> | MODEL")
    plans: int = Field(1, ge=1, description="plans per task (M)")
    codes_per_plan: int = Field(1, ge=1, description="programs per plan (T)")

    def default_protocols(self) -> list[str]:
        return ["format"] if self.coder.startswith("arm:") else ["standard"]

    def arm_refs(self) -> list[str]:
        """The trained arms whose adapters this arm uses."""
        return [v[4:] for v in (self.reasoner, self.coder) if v.startswith("arm:")]


class LemaArm(TrainedArm):
    """cd + LEMA: trained on the teach stage's rows plus the correct stage's correction rows (incorrect
    step, explanation of the error, corrected solution: ``correct/train_cd_lema.jsonl``), then judged."""

    kind: Literal["cd+lema"] = "cd+lema"
    train_source: ClassVar[tuple[str, str]] = ("correct/" + MIX_FILES["lema"], "correct")


class CorrectedOnlyArm(TrainedArm):
    """The LEMA ablation: the same corrected solutions without the error and its explanation
    (``correct/train_cd_corrected_only.jsonl``), then judged."""

    kind: Literal["cd+corrected-only"] = "cd+corrected-only"
    train_source: ClassVar[tuple[str, str]] = ("correct/" + MIX_FILES["corrected-only"], "correct")


class EladArm(TrainedArm):
    """ELAD: trained on the teach stage's rows of the problems chosen by the student's uncertainty
    (codistill.select; ``elad/selected.jsonl``), then judged."""

    kind: Literal["elad"] = "elad"
    train_source: ClassVar[tuple[str, str]] = ("elad/" + ELAD_KINDS["elad"], "elad")


class EladRandomArm(TrainedArm):
    """ELAD's control: the teach stage's rows of a random subset of the same size (``elad/random.jsonl``)."""

    kind: Literal["elad-random"] = "elad-random"
    train_source: ClassVar[tuple[str, str]] = ("elad/" + ELAD_KINDS["elad-random"], "elad")


class EladClaerArm(TrainedArm):
    """ELAD + CLAER: the chosen problems with the student's reasoning revised by the teacher from its
    first wrong step (``elad/claer/train.jsonl``)."""

    kind: Literal["elad+claer"] = "elad+claer"
    train_source: ClassVar[tuple[str, str]] = ("elad/" + ELAD_KINDS["elad+claer"], "elad")


class HsftArm(TrainedArm):
    """SuperCorrect stage 1: SFT like cd, on the teacher's hierarchical thought templates
    (``hsft/train.jsonl``, the ``hsft`` stage: teach in mode hierarchical)."""

    kind: Literal["hsft"] = "hsft"
    train_source: ClassVar[tuple[str, str]] = ("hsft/train.jsonl", "hsft")


class DpoArm(TrainedArm):
    """SuperCorrect stage 2: cross-model DPO continuing the adapter of the trained arm ``start``
    (``hsft+dpo``: an hsft arm; ``cd+dpo``: a trained arm), on the pairs of that student's failures
    corrected by the teacher at their first wrong step (``arms/<arm>/pairs/pairs.jsonl``, the arm's
    ``pairs`` stage); the reference model is the starting adapter. β, loss type, pairs budget:
    the arm's ``train: {dpo: {...}}``."""

    stages: ClassVar[tuple[str, ...]] = ("pairs", "train", "eval")
    kind: Literal["hsft+dpo", "cd+dpo"]
    start: str = Field(..., description="the trained arm whose adapter DPO continues")
    train_source: ClassVar[tuple[str, str]] = ("arms/{arm}/pairs/pairs.jsonl", "pairs:{arm}")

    def arm_refs(self) -> list[str]:
        return [self.start]


class ReerArm(TrainedArm):
    """REER: trained like cd on reasoning searched to minimise PPL(code | problem, reasoning) under
    the student (``reer/train.jsonl``, the ``reer`` stage: teach in mode reverse)."""

    kind: Literal["reer"] = "reer"
    train_source: ClassVar[tuple[str, str]] = ("reer/train.jsonl", "reer")


# kind -> class. A new kind: its class above, one line here, its stages in stages.py.
ARM_KINDS: dict[str, type[ArmSpec]] = {"base": BaseArm, "trained": TrainedArm, "pipeline": PipelineArm,
                                       "cd+lema": LemaArm, "cd+corrected-only": CorrectedOnlyArm,
                                       "elad": EladArm, "elad-random": EladRandomArm, "elad+claer": EladClaerArm,
                                       "hsft": HsftArm, "hsft+dpo": DpoArm, "cd+dpo": DpoArm, "reer": ReerArm}


def _arm_kind(v: Any) -> str:
    if isinstance(v, dict):
        return v.get("kind") or ("base" if v.get("base") else "trained")
    return getattr(v, "kind", None) or ("base" if getattr(v, "base", False) else "trained")


Arm = Annotated[Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in ARM_KINDS.items())],
                Discriminator(_arm_kind, custom_error_type="arm_kind",
                              custom_error_message=f"unknown arm kind; the kinds are {', '.join(ARM_KINDS)}")]


# ------------------------------------------------------------------------------------------ recipe

SECTIONS = ("data", "teach", "hsft", "reer", "select", "correct", "pairs", "train", "eval", "serve", "report")  # the recipe's per-stage parts


class Recipe(BaseModel):
    """A whole experiment. Sections hold the stage configs without their paths (the runner sets them)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("experiment", description="shown in the report")
    description: str | None = None
    out_dir: str | None = Field(None, description="run directory (the CLI's --out wins; default runs/<name>)")
    data_dir: str | None = Field(None, description="benchmark data folder for every stage (default: codistill's)")
    smoke: bool = Field(False, description="a smoke run: the report says its numbers are not a result")
    data: DataSection = Field(..., description="codistill data settings (PrepareConfig without out_dir)")
    teach: TeachSection = Field(..., description="codistill teach settings (TeachConfig without out_dir/dataset)")
    hsft: HsftSection = Field(default_factory=HsftSection, description="teach settings of the hsft stage over the "
                              "teach section's (SuperCorrect's hierarchical templates, for hsft arms)")
    reer: ReerSection = Field(default_factory=ReerSection, description="REER search settings (ReverseOptions; the "
                              "scorer is the run's student and the format the run's unless set), for reer arms")
    pairs: PairsSection = Field(default_factory=PairsSection, description="codistill pairs settings (DPO pairs, for "
                                "hsft+dpo / cd+dpo arms; the student, format and teacher default to the run's)")
    select: SelectSection = Field(default_factory=SelectSection, description="codistill select settings (ELAD "
                                  "active selection, for the elad, elad-random and elad+claer arms; the student, its "
                                  "format and the eval backend default to the run's)")
    correct: CorrectSection = Field(default_factory=CorrectSection, description="codistill correct settings (LEMA "
                                    "correction data, for the cd+lema and cd+corrected-only arms; CorrectConfig without "
                                    "dataset/context_data; the student, its format and the teacher default to the run's)")
    serve: ServeSpec = Field(default_factory=ServeSpec, description="local teacher when teach.teacher.base_url is null")
    train: TrainSection = Field(default_factory=TrainSection, description="codistill train settings shared by the arms")
    eval: EvalSection = Field(default_factory=EvalSection, description="codistill eval settings shared by the arms (EvalConfig without model/adapter)")
    format: str | dict[str, Any] = Field("paper", description="the student format, declared once: how problems are "
                                         "prompted and answers laid out, for training and for judging (a packaged "
                                         "name: paper, paper-no-tests, code-only; or a mapping, see codistill.formats)")
    primary_protocol: Literal["format", "standard"] = Field(
        "format", description="the protocol declared primary before the run (the report leads with it); each "
        "arm's primary-protocol eval is in arms/<arm>/eval, any other in arms/<arm>/eval@<protocol>")
    arms: dict[str, Arm] = Field(..., min_length=1, description="arm name -> spec; e.g. base, cd, cd_sa")
    default_arms: list[str] | None = Field(None, description="the arms `codistill run` runs when --arms is not "
                                           "given (default: all); the others run on request")
    report: ReportSection = Field(default_factory=ReportSection, description="baseline arm, title")

    @field_validator("format")
    @classmethod
    def _known_format(cls, v):
        from codistill.formats import get_format

        get_format(v)
        return v

    def student_format(self):
        from codistill.formats import get_format

        return get_format(self.format)

    def protocols(self, arm: str) -> list[str]:
        spec = self.arms[arm]
        return list(spec.protocols or spec.default_protocols())

    @field_validator("default_arms")
    @classmethod
    def _known_default_arms(cls, v, info):
        unknown = [a for a in v or [] if a not in (info.data.get("arms") or {})]
        if unknown:
            raise ValueError(f"unknown arm(s) {unknown}; the recipe has {list(info.data.get('arms') or {})}")
        return v

    @field_validator("report")
    @classmethod
    def _known_report_arms(cls, v: ReportSection, info):
        arms = info.data.get("arms") or {}
        named = list(v.references or []) + [a for pair in v.pairs for a in pair]
        unknown = sorted({a for a in named if a not in arms})
        if arms and unknown:
            raise ValueError(f"report.references/pairs name unknown arm(s) {unknown}; the recipe has {list(arms)}")
        return v

    @field_validator("arms")
    @classmethod
    def _names(cls, arms: dict[str, ArmSpec]) -> dict[str, ArmSpec]:
        for name in arms:
            if not name or not all(c.isalnum() or c in "-_." for c in name):
                raise ValueError(f"arm name {name!r}: use letters, digits, '-', '_' or '.' (it names a folder)")
        names = list(arms)
        for name, spec in arms.items():
            for ref in getattr(spec, "arm_refs", lambda: [])():
                if ref not in arms or not arms[ref].trains():
                    raise ValueError(f"arm {name!r} uses arm:{ref}, which is not a trained arm of this recipe "
                                     f"(trained arms: {', '.join(a for a in names if arms[a].trains()) or 'none'})")
                if names.index(ref) > names.index(name):
                    raise ValueError(f"arm {name!r} uses arm:{ref}: list {ref!r} before {name!r} (arms run in order)")
            want = DPO_KINDS.get(getattr(spec, "kind", None))
            if want is not None and arms[spec.start].kind != want:
                raise ValueError(f"arm {name!r} ({spec.kind}) must start from an arm of kind {want!r}; "
                                 f"{spec.start!r} is of kind {arms[spec.start].kind!r}")
        return arms
