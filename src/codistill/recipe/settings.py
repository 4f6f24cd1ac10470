"""Each stage's settings as the runner builds them from a recipe: the shared section, the arm's
overrides merged on top, the paths and the student format set by the runner.

These plain mappings are what the stage configs validate and what their keys are made from, so
they are kept exactly as they were before the recipe's sections were typed: a run directory made
then is recognised as complete now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from codistill.overrides import deep_merge
from codistill.recipe.spec import ArmSpec, Recipe

# settings of train.data that the student format owns (declared once, in the recipe's `format:`)
FORMAT_OWNED = ("prompt_mode", "prompt_template", "system_prompt", "target_sections", "section_separator",
                "format_name", "stop_after_code")


def _section_dict(section: Any) -> dict:
    """A section (typed, or the raw mapping of a recipe that failed to validate) as a mapping."""
    if isinstance(section, BaseModel):
        return section.model_dump()
    return dict(section) if isinstance(section, dict) else {}


def _student(recipe: Recipe) -> str:
    """The student model of the recipe (the train section's, else TrainConfig's default)."""
    from codistill.training.config import TrainConfig

    return _section_dict(recipe.train).get("model") or TrainConfig.model_fields["model"].default


def _data_dict(recipe: Recipe, out: Path) -> dict:
    data = _section_dict(recipe.data)
    return {**data, "out_dir": str(out), **({"data_dir": recipe.data_dir} if recipe.data_dir and not data.get("data_dir") else {})}


def _train_dict(recipe: Recipe, arm: ArmSpec, out: Path, train_file: str) -> dict:
    d = deep_merge(_section_dict(recipe.train), _section_dict(arm.train))
    d["output_dir"] = str(out)
    d.setdefault("data", {})
    if not isinstance(d["data"], dict):
        raise ValueError("train.data must be a mapping")
    owned = sorted(k for k in d["data"] if k in FORMAT_OWNED)
    if owned:
        raise ValueError(f"train.data sets {', '.join(owned)}: the student format is declared once, in the recipe's "
                         "top-level `format:` section (it is used for training and for judging alike)")
    fmt = recipe.student_format()
    d["data"] = {**d["data"], **fmt.data_fields(), "format_name": fmt.name, "stop_after_code": fmt.stop_after_code,
                 "train_file": train_file}
    d["resume"] = True
    return d


def _teach_dict(recipe: Recipe, run: Path) -> tuple[dict, bool]:
    """The teach stage's config, and whether the runner serves the teacher itself."""
    d = deep_merge(_section_dict(recipe.teach), {"out_dir": str(run / "teach"), "dataset": str(run / "data")})
    d.setdefault("cache_dir", str(run / "cache" / "teach"))
    if recipe.data_dir and not d.get("data_dir"):
        d["data_dir"] = recipe.data_dir
    teacher = d.setdefault("teacher", {})
    serve = not teacher.get("base_url") and teacher.get("backend", "openai") == "openai"
    if not serve and teacher.get("base_url", "") is None:
        del teacher["base_url"]  # llamacpp in-process: no server URL
    if serve:
        teacher["model"] = recipe.serve.model
        teacher.setdefault("concurrency", recipe.serve.n_parallel)
        teacher["base_url"] = "http://127.0.0.1:0/v1"  # placeholder, set once the server is up
    return d, serve


def _eval_dict(recipe: Recipe, arm: ArmSpec, adapter: str | None, protocol: str = "format") -> dict:
    d = deep_merge(_section_dict(recipe.eval), _section_dict(arm.eval))
    train = deep_merge(_section_dict(recipe.train), _section_dict(arm.train))
    d.setdefault("model", train.get("model", _student(recipe)))
    d["adapter"] = adapter
    if "format" in d:
        raise ValueError("eval.format: the student format is declared once, in the recipe's top-level `format:` "
                         "section; choose how each arm is judged with arms.<arm>.protocols")
    d["format"] = recipe.student_format().model_dump() if protocol == "format" else "standard"
    if recipe.data_dir and not d.get("data_dir"):
        d["data_dir"] = recipe.data_dir
    return d
