"""The correct stage in a recipe: its settings as the runner builds them, its run and checks (the
shape of :mod:`codistill.recipe.stages`' stages), and the training data of the two correction arm
kinds. :mod:`codistill.recipe` registers them (a ``correct:`` section, the arm kinds ``cd+lema`` and
``cd+corrected-only``, one ``register(Stage("correct", ...))``); nothing here imports the recipe
package at module level.

The stage's settings are the recipe's ``correct:`` section plus what the runner sets:

* ``dataset``: the run's ``data`` folder; ``context_data``: the teach stage's ``train.jsonl``;
* ``student``: the recipe's student (the train section's model) in the recipe's ``format:``,
  sampled with the eval section's backend and its options, batch size and dtype; the section's
  ``student.*`` win (a ``student.backend`` of its own takes none of eval's backend options);
* ``teacher``: the teach section's teacher (the same model; the local server started for the stage
  when teach serves one), unless the section sets ``teacher.*``; ``cache_dir``: the run's teacher
  cache (``cache/teach``, shared with the teach stage);
* ``max_row_tokens``, unless the section sets it (null: no check): the smallest ``train.data.
  max_length`` of the recipe's correction arms (:func:`arms_max_length`), so the two arms keep the
  same ids (:mod:`codistill.correct.fit`) and no teacher call is paid for a row they would drop.

Its key is the config's :meth:`~codistill.correct.config.CorrectConfig.key` with the data and
teach stages' output hashes and the training rows' layout (:func:`codistill.correct.rows.rows_layout`);
its compat key is the same without the layout and without ``max_row_tokens``, so a run whose only
change is one of them keeps the folder: the stage runs again, reuses the stored attempts and
corrections (no student sample; a teacher call only for a failure not asked before, which a changed
``max_row_tokens`` can bring in) and re-writes the rows. Its output hash covers the two mixed training sets, which the arms
of kind ``cd+lema`` / ``cd+corrected-only`` train on (:func:`codistill.recipe.stages.train_file` (the arm kind's ``train_source``)).

Registration (in :mod:`codistill.recipe`; tests/test_correct_recipe.py checks it once present):

* ``spec.py``: ``CorrectSection = section_model(CorrectConfig, "CorrectSection")``; a ``Recipe``
  field ``correct: CorrectSection = Field(default_factory=CorrectSection, ...)`` and ``"correct"``
  in ``SECTIONS``; ``class LemaArm(TrainedArm): kind: Literal["cd+lema"] = "cd+lema"`` and
  ``class CorrectedOnlyArm(TrainedArm): kind: Literal["cd+corrected-only"] = "cd+corrected-only"``
  with their two ``ARM_KINDS`` entries;
* ``stages.py``: ``register(Stage("correct", "run", run_correct, checks=correct_checks,
  needed=needed))`` between teach and budget; ``train_config`` takes its file from
  :func:`codistill.recipe.stages.train_file` (the arm kind's ``train_source``) and ``_train`` keys it with ``r.hashes[train_file(...)[1]]`` (the teach
  stage's hash for other arms: their keys do not change); the budget guard reads the training
  files of the arms judged in the format (``train_file`` of each trained one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["CORRECTION_KINDS", "arms_max_length", "correct_checks", "correct_dict", "needed", "run_correct"]

# arm kind -> the training set (codistill.correct.rows.MIX_FILES) its arms train on
CORRECTION_KINDS = {"cd+lema": "lema", "cd+corrected-only": "corrected-only"}


def _section(recipe) -> dict:
    from codistill.recipe.settings import _section_dict

    return _section_dict(getattr(recipe, "correct", None))


def correct_dict(recipe, run: Path) -> tuple[dict, bool]:
    """The correct stage's CorrectConfig settings, and whether the runner serves the teacher."""
    from codistill.overrides import deep_merge
    from codistill.recipe.settings import _section_dict, _student, _teach_dict

    teach, serve = _teach_dict(recipe, run)
    section = _section(recipe)
    ev = _section_dict(recipe.eval)
    student = {"model": _student(recipe), "format": recipe.student_format().model_dump()}
    own_backend = "backend" in (section.get("student") or {})  # then eval's backend options are not its
    for k in ("batch_size", "dtype") if own_backend else ("backend", "backend_options", "batch_size", "dtype"):
        if ev.get(k) is not None:
            student[k] = ev[k]
    base = {"dataset": str(run / "data"), "context_data": str(run / "teach" / "train.jsonl"),
            "cache_dir": teach.get("cache_dir"), "student": student, "teacher": teach["teacher"]}
    if teach.get("data_dir"):
        base["data_dir"] = teach["data_dir"]
    if (section.get("teacher") or {}).get("base_url"):
        serve = False  # the section names its own server
    d = deep_merge(base, section)
    if "max_row_tokens" not in section:  # the rows the correction arms' trainer would drop are left out of both
        d["max_row_tokens"] = arms_max_length(recipe)
    return d, serve


def arms_max_length(recipe) -> int | None:
    """The smallest ``train.data.max_length`` the recipe's correction arms (kinds
    :data:`CORRECTION_KINDS`) train with (:func:`codistill.pairs.recipe.arm_max_length`); None
    when it has none."""
    from codistill.pairs.recipe import arm_max_length

    arms = getattr(recipe, "arms", None) or {}
    lengths = [arm_max_length(recipe, a) for a, spec in arms.items() if getattr(spec, "kind", None) in CORRECTION_KINDS]
    return min(lengths) if lengths else None


def correct_checks(recipe):
    """The section checked against CorrectConfig, when an arm needs the stage."""
    from codistill.correct.config import CorrectConfig

    if any(getattr(a, "kind", None) in CORRECTION_KINDS for a in (getattr(recipe, "arms", None) or {}).values()):
        yield "correct", CorrectConfig, lambda: correct_dict(recipe, Path("x"))[0]


def needed(r) -> bool:
    """Only a run with an arm of a correction kind needs the stage."""
    return any(getattr(r.recipe.arms[a], "kind", None) in CORRECTION_KINDS for a in r.arms)


def run_correct(r) -> str:
    """The stage: ``codistill correct`` on the run's data and teach outputs, inside ``r.keyed``."""
    from codistill.correct.config import CorrectConfig
    from codistill.correct.rows import MIX_FILES, rows_layout
    from codistill.correct.stage import correct, incomplete_error
    from codistill.recipe.manifest import _file_hash, _hash

    folder = r.run / "correct"
    d, serve = correct_dict(r.recipe, r.run)
    cfg = CorrectConfig.model_validate(d)
    # attempts, corrections: max_row_tokens only chooses among them (a changed one keeps the folder)
    same = {k: v for k, v in cfg.key().items() if k != "max_row_tokens"}
    compat = _hash(["correct", same, r.hashes.get("data"), r.hashes.get("teach")])
    key = _hash(["correct", cfg.key(), r.hashes.get("data"), r.hashes.get("teach"), {"rows": rows_layout()}])

    def go() -> dict[str, Any]:
        from codistill.recipe.teacher import with_teacher

        m = with_teacher(r, serve, cfg, lambda c: correct(c, folder))
        err = incomplete_error(m, "the same `codistill run` command")
        if err is not None:
            raise err
        c = m["counts"]
        if not c["kept"]:
            raise RuntimeError(f"the correct stage kept no correction ({json.dumps(c)}); see {folder}")
        return {"problems": c["problems"], "failures": c["failures"], "kept": c["kept"], "dropped": c["dropped"],
                "teacher_tokens": m["cost"]["teacher"]["total_tokens"], "mix": m["mix"]}

    return r.keyed("correct", key, folder, go, lambda: _file_hash(*(folder / f for f in MIX_FILES.values())),
                   compat=compat)
