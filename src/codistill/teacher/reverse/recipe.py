"""REER in a recipe: the ``reer`` stage (a teach run in mode ``reverse`` on the run's data, into
``reer/``) and the arm kind ``reer`` that trains on its contexts (``reer/train.jsonl``), like
``cd`` trains on ``teach/train.jsonl``: same problems, same student, same format, same training
settings, so the two arms differ only in where the reasoning came from.

Settings: the teach section's (teacher, sampling, checks, its explain template if it has one,
the run's teacher cache — so the explain drafts REER starts from are the teach stage's own
answers, not asked twice), mode
``reverse``, and ``mode_options`` = the recipe's ``reer:`` section (:class:`ReverseOptions`)
over what the run fixes: the scorer is the recipe's student, the format is the recipe's.
Key: the config's key and the data hash (:func:`codistill.recipe.teacher.teach_stage`).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["REER_KIND", "needed", "reer_checks", "reer_dict", "run_reer"]

REER_KIND = "reer"


def reer_dict(recipe, run: Path) -> tuple[dict, bool]:
    """The reer stage's TeachConfig settings, and whether the runner serves the teacher."""
    from codistill.overrides import deep_merge
    from codistill.recipe.settings import _section_dict, _student, _teach_dict

    d, serve = _teach_dict(recipe, run)
    d.pop("mode_options", None)  # the teach section's own mode's
    d.pop("fallback_mode", None)  # REER scores the reference: rows without one are not its
    if d.get("mode", "explain") != "explain":  # an explain template of its own is the drafts' template too
        d.pop("template", None)
    fixed = {"scorer": {"model": _student(recipe)}, "format": recipe.student_format().model_dump()}
    d.update(mode="reverse", out_dir=str(run / "reer"),
             mode_options=deep_merge(fixed, _section_dict(getattr(recipe, "reer", None))))
    return d, serve


def needed(r) -> bool:
    return any(getattr(r.recipe.arms[a], "kind", None) == REER_KIND for a in r.arms)


def reer_checks(recipe):
    from codistill.teacher import TeachConfig

    if any(getattr(a, "kind", None) == REER_KIND for a in (getattr(recipe, "arms", None) or {}).values()):
        yield "reer", TeachConfig, lambda: reer_dict(recipe, Path("x"))[0]


def run_reer(r) -> str:
    from codistill.recipe.teacher import teach_stage

    return teach_stage(r, "reer", *reer_dict(r.recipe, r.run))
