"""Reading a recipe and checking all of it before its first stage runs.

Two passes, one message. The typed recipe (:class:`codistill.recipe.spec.Recipe`: every section's
setting names, types and constraints), then every stage's config as the runner will build it
(each arm's train and eval with its overrides merged in; the checks each registered stage
declares). One ValueError lists every problem, each naming its section, the setting, the bad
value and (where there is a list) the allowed values; a problem shared by sections is listed once.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from codistill.overrides import apply_sets
from codistill.recipe.spec import ARM_KINDS, SECTIONS, Arm, Recipe, ReportSection, Section, ServeSpec

__all__ = ["recipe_path", "load_recipe", "check_stages"]


def recipe_path(spec: str | os.PathLike) -> Path:
    """A recipe file, or the name of a packaged recipe (``demo``, ``paper-small``, ``paper-medium``, ``gpu-vllm``)."""
    p = Path(spec)
    if p.is_file():
        return p
    name = str(spec).removesuffix(".yaml")
    packaged = resources.files("codistill").joinpath("recipes", f"{name}.yaml")
    if packaged.is_file():
        return Path(str(packaged))
    known = sorted(f.name.removesuffix(".yaml") for f in resources.files("codistill").joinpath("recipes").iterdir()
                   if f.name.endswith(".yaml"))
    raise FileNotFoundError(f"recipe {spec!r} not found: give a YAML file or one of the packaged recipes {known}")


def load_recipe(spec: str | os.PathLike, sets: list[str] | None = None, **overrides) -> Recipe:
    """Read a recipe (file or packaged name) and check every stage section against its config model.
    ``sets``: dotted overrides (see :func:`apply_sets`); ``overrides``: top-level fields."""
    import yaml

    path = recipe_path(spec)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a recipe is a mapping with data, teach, train, eval and arms sections")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if sets:
        raw = apply_sets(raw, sets)
    return validate_recipe(raw, path)


def validate_recipe(raw: dict, where: Path | str) -> Recipe:
    """``raw`` as a checked :class:`Recipe`, or one ValueError naming every problem."""
    problems: dict[str, list[str]] = {}  # problem -> the sections that have it
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as e:
        top = _sort_errors(e, problems)
        if top:  # the recipe's own shape (a missing section, an arm's name, the format): as it is
            raise ValueError(f"{where}: " + "; ".join(top + _lines(problems))) from e
        recipe = None
    check_stages(recipe if recipe is not None else _lenient(raw), problems)
    _raise(problems, where)
    return recipe


def _check_sections(recipe: Recipe, where: Path | str) -> None:
    """Validate every stage's settings (each arm's train and eval with its overrides merged in)
    now, so a typo fails before hours of work."""
    problems: dict[str, list[str]] = {}
    check_stages(recipe, problems)
    _raise(problems, where)


def check_stages(recipe: Recipe, problems: dict[str, list[str]]) -> None:
    """Each registered stage's checks: its config validated on the settings the runner will give it."""
    from codistill.errors import validation_items
    from codistill.recipe.stages import stages

    checks = [c for st in stages("run") if st.checks for c in st.checks(recipe)]
    for arm, spec in recipe.arms.items():
        checks += [c for st in stages("arm") if st.checks and st.name in spec.stages for c in st.checks(recipe, arm)]
    for section, model, data in checks:
        try:
            model.model_validate(data())
        except ValidationError as e:
            for item in validation_items(e, model=model):
                _add(problems, item, section)
        except (ValueError, TypeError, AttributeError) as e:  # a section that is not a mapping, ...
            _add(problems, str(e), section)


def _add(problems: dict[str, list[str]], item: str, section: str) -> None:
    sections = problems.setdefault(item, [])
    if section not in sections:  # an arm judged under two protocols is one section
        sections.append(section)


def _lines(problems: dict[str, list[str]]) -> list[str]:
    return [f"section {', '.join(sections)}: {item}" for item, sections in problems.items()]


def _raise(problems: dict[str, list[str]], where: Path | str) -> None:
    if problems:
        raise ValueError(f"{where}: invalid settings: " + " | ".join(_lines(problems)))


class _Errors(list):
    """Some errors of a ValidationError, in the shape validation_items reads."""

    def errors(self):
        return list(self)


def _section_of(loc: tuple) -> tuple[str | None, tuple, Any]:
    """(section, loc inside it, model listing its settings) of an error of Recipe; section None:
    the recipe's own fields. An arm's loc loses the kind tag pydantic puts in it."""
    if len(loc) > 2 and loc[0] == "arms" and loc[2] in ARM_KINDS:
        loc = (*loc[:2], *loc[3:])
        if len(loc) > 3 and loc[2] in ("train", "eval"):
            section_cls = Recipe.model_fields[loc[2]].annotation
            return f"arms.{loc[1]}.{loc[2]}", loc[3:], section_cls.stage_config
        return None, loc, None
    if len(loc) > 1 and loc[0] in SECTIONS:
        ann = Recipe.model_fields[loc[0]].annotation
        model = ann.stage_config if isinstance(ann, type) and issubclass(ann, Section) else ann
        return loc[0], loc[1:], model
    return None, loc, None


def _sort_errors(e: ValidationError, problems: dict[str, list[str]]) -> list[str]:
    """Errors inside a section go to ``problems``; the recipe's own are returned as items."""
    from codistill.errors import validation_items

    top = _Errors()
    for err in e.errors():
        section, loc, model = _section_of(tuple(err.get("loc") or ()))
        if section is None:
            top.append({**err, "loc": loc})
        else:
            for item in validation_items(_Errors([{**err, "loc": loc}]), model=model):
                _add(problems, item, section)
    return validation_items(top, model=Recipe) if top else []


def _lenient(raw: dict) -> Recipe:
    """The recipe as far as it validates, for the stage checks of a recipe with bad sections:
    stage sections as written, the arms that validate, defaults for a bad serve or report."""
    fields: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in Recipe.model_fields:
            continue
        if name in ("data", "teach", "train", "eval"):
            fields[name] = value if isinstance(value, dict) else {}
        elif name == "arms":
            arms = {}
            for arm, spec in (value.items() if isinstance(value, dict) else ()):
                try:
                    arms[arm] = TypeAdapter(Arm).validate_python(spec)
                except ValidationError:
                    pass  # reported by the first pass
            fields[name] = arms
        elif name in ("serve", "report"):
            model: type[BaseModel] = ServeSpec if name == "serve" else ReportSection
            try:
                fields[name] = model.model_validate(value)
            except ValidationError:
                pass
        else:
            fields[name] = value
    return Recipe.model_construct(**fields)
