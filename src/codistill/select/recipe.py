"""The select stage in a recipe (ELAD arms): its settings as the runner builds them, its run and
checks (the shape of :mod:`codistill.recipe.stages`' stages), the ``elad`` stage that makes the
arms' training files, and which file each ELAD arm kind trains on. :mod:`codistill.recipe`
registers them (below); nothing here imports the recipe package at module level.

Arm kinds (each a trained arm: LoRA on its file with the arm's train overrides, then judged):

* ``elad`` — the teach stage's training rows of the problems :mod:`codistill.select` chose by
  uncertainty (``select/selected``);
* ``elad-random`` — the same for the random control at the same budget (``select/random``);
* ``elad+claer`` — the chosen problems' contexts from the ``claer`` teacher mode: the student's
  own reasoning with its steps rewritten from the first wrong one (``elad/claer/train.jsonl``).

Stages (run scope, in this order after ``teach``):

* ``select`` — :func:`codistill.select.select` on the run's ``data`` folder (``select/``). Its
  settings are the recipe's ``select:`` section plus what the runner sets: ``dataset`` (the run's
  data), ``model`` (the recipe's student), ``format`` (the recipe's), and the eval section's
  ``backend``, ``backend_options``, ``batch_size``, ``dtype`` (a ``select.backend`` of its own takes
  none of eval's backend options). Key: the config's :meth:`~codistill.select.config.SelectConfig.key`
  and the data stage's hash; a changed budget re-chooses from the stored samples (no sampling).
* ``elad`` — the arms' files in ``elad/``: ``selected.jsonl`` and ``random.jsonl`` (the rows of
  ``teach/train.jsonl`` whose problem is in the subset; a row ``P#alt1`` or ``P#s1`` belongs to
  ``P``), and, when an ``elad+claer`` arm is run, the claer teach run in ``elad/claer`` (the teach
  section's teacher and settings, mode ``claer``, dataset ``select/selected``, the run's teacher
  cache). ``elad/cost.json``: the teacher's tokens per arm's training set (the teach stage's
  records of its rows; claer's own run), and the cost of selection (select_manifest.json). Key:
  the select and teach stages' hashes and the claer teach settings when claer runs.

Registration (in :mod:`codistill.recipe`; tests/test_select_recipe.py checks it once present):

* ``spec.py``: ``SelectSection = section_model(SelectConfig, "SelectSection")``; a ``Recipe`` field
  ``select: SelectSection = Field(default_factory=SelectSection, description=...)`` and ``"select"``
  in ``SECTIONS``; ``class EladArm(TrainedArm): kind: Literal["elad"] = "elad"``,
  ``class EladRandomArm(TrainedArm): kind: Literal["elad-random"] = "elad-random"``,
  ``class EladClaerArm(TrainedArm): kind: Literal["elad+claer"] = "elad+claer"``, and their three
  ``ARM_KINDS`` entries;
* ``stages.py``: ``register(Stage("select", "run", run_select, checks=select_checks,
  needed=needed))`` and ``register(Stage("elad", "run", run_elad, needed=needed))`` after teach,
  before the budget guard; ``train_config`` takes an ELAD arm's file from :func:`codistill.recipe.stages.train_file` (the arm kind's ``train_source``) and
  keys it with ``r.hashes["elad"]`` (like the correction arms' ``train_file``); the budget guard
  reads the training files of the arms judged in the format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codistill.store import atomic_write_json, read_jsonl, write_jsonl

__all__ = ["ELAD_KINDS", "needed", "run_elad", "run_select", "select_checks", "select_dict", "subset_rows"]

# arm kind -> its training set in the run's elad/ folder
ELAD_KINDS = {"elad": "selected.jsonl", "elad-random": "random.jsonl", "elad+claer": "claer/train.jsonl"}


def _kinds(recipe, arms=None) -> set[str]:
    all_arms = getattr(recipe, "arms", None) or {}
    return {getattr(all_arms[a], "kind", None) for a in (arms if arms is not None else all_arms)}


def select_dict(recipe, run: Path) -> dict:
    """The select stage's SelectConfig settings (see the module docstring)."""
    from codistill.overrides import deep_merge
    from codistill.recipe.settings import _section_dict, _student

    section = _section_dict(getattr(recipe, "select", None))
    ev = _section_dict(recipe.eval)
    base: dict[str, Any] = {"dataset": str(run / "data"), "model": _student(recipe),
                            "format": recipe.student_format().model_dump()}
    own_backend = "backend" in section  # then eval's backend options are not its
    for k in ("batch_size", "dtype") if own_backend else ("backend", "backend_options", "batch_size", "dtype"):
        if ev.get(k) is not None:
            base[k] = ev[k]
    return deep_merge(base, section)


def select_checks(recipe):
    """The section checked against SelectConfig, when an arm needs the stage."""
    from codistill.select.config import SelectConfig

    if _kinds(recipe) & set(ELAD_KINDS):
        yield "select", SelectConfig, lambda: select_dict(recipe, Path("x"))


def needed(r) -> bool:
    """Only a run with an arm of an ELAD kind needs the stages."""
    return bool(_kinds(r.recipe, r.arms) & set(ELAD_KINDS))


def run_select(r) -> str:
    """The stage: ``codistill select`` on the run's data, inside ``r.keyed``."""
    from codistill.recipe.manifest import _file_hash, _hash
    from codistill.select.config import SelectConfig
    from codistill.select.run import select

    folder = r.run / "select"
    cfg = SelectConfig.model_validate(select_dict(r.recipe, r.run))
    key = _hash(["select", cfg.key(), r.hashes.get("data")])

    def go() -> dict[str, Any]:
        m = select(cfg, folder)
        if not m["complete"]:
            raise RuntimeError(f"select left {m['counts']['remaining']} problems unscored; see {folder}")
        c = m["cost"]
        return {"candidates": m["counts"]["candidates"], "selected": m["subsets"]["selected"]["problems"],
                "random": m["subsets"]["random"]["problems"], "student_samples": c["student_samples"],
                "step_ablations": c["step_ablations"], "generated_tokens": c["generated_tokens"],
                "seconds": c["seconds"]}

    return r.keyed("select", key, folder, go,
                   lambda: _file_hash(folder / "selected" / "rows.jsonl", folder / "random" / "rows.jsonl"))


def _problem_of(row_id: str) -> str:
    return row_id.split("#", 1)[0]


def subset_rows(train: list[dict], problem_ids: set[str]) -> list[dict]:
    """The training rows whose problem is one of ``problem_ids`` (``P#alt1`` and ``P#s1`` are ``P``'s)."""
    return [t for t in train if _problem_of(t["id"]) in problem_ids]


def _teacher_tokens(contexts: Path, ids: set[str]) -> dict:
    """The teach stage's tokens of the rows of ``ids``' problems (the last record of a row wins)."""
    recs: dict[str, dict] = {}
    if contexts.is_file():
        for rec in read_jsonl(contexts, resumable=True):
            recs[rec["id"]] = rec
    mine = [v for k, v in recs.items() if _problem_of(k) in ids]
    return {"rows": len(mine), "prompt": sum(v["tokens"]["prompt"] for v in mine),
            "completion": sum(v["tokens"]["completion"] for v in mine)}


def _claer_dict(recipe, run: Path) -> tuple[dict, bool]:
    from codistill.recipe.settings import _teach_dict

    d, serve = _teach_dict(recipe, run)
    for k in ("template", "mode_options", "fallback_mode"):  # the teach section's own mode's
        d.pop(k, None)
    d.update(mode="claer", dataset=str(run / "select" / "selected"), out_dir=str(run / "elad" / "claer"))
    return d, serve


def run_elad(r) -> str:
    """The stage: the ELAD arms' training files (and the claer teach run when an arm needs it)."""
    from codistill.recipe.manifest import _file_hash, _hash
    from codistill.teacher import TeachConfig

    folder = r.run / "elad"
    claer = "elad+claer" in _kinds(r.recipe, r.arms)
    ccfg, serve = None, False
    if claer:
        d, serve = _claer_dict(r.recipe, r.run)
        ccfg = TeachConfig.model_validate(d)
    key = _hash(["elad", r.hashes.get("select"), r.hashes.get("teach"), ccfg.key() if ccfg else None])
    files = ["selected.jsonl", "random.jsonl"] + (["claer/train.jsonl"] if claer else [])

    def go() -> dict[str, Any]:
        sel = json.loads((r.run / "select" / "select_manifest.json").read_text())
        train = list(read_jsonl(r.run / "teach" / "train.jsonl"))
        cost: dict[str, Any] = {"selection": sel["cost"]}
        info: dict[str, Any] = {}
        for name in ("selected", "random"):
            ids = set(sel["subsets"][name]["ids"])
            rows = subset_rows(train, ids)
            write_jsonl(folder / f"{name}.jsonl", rows)
            cost[name] = _teacher_tokens(r.run / "teach" / "contexts.jsonl", ids)
            info[name] = {"problems": len(ids), "train_rows": len(rows)}
        if claer:
            m = _claer_teach(r, ccfg, serve)
            cost["claer"] = {"rows": m["counts"]["rows"], "prompt": m["tokens"]["prompt"],
                             "completion": m["tokens"]["completion"]}
            info["claer"] = {"train_rows": m["counts"]["train_rows"], "valid": m["counts"]["valid"]}
        atomic_write_json(folder / "cost.json", cost)
        return info

    return r.keyed("elad", key, folder, go, lambda: _file_hash(*(folder / f for f in files)))


def _claer_teach(r, cfg, serve: bool) -> dict:
    from codistill.teacher.teach import incomplete_error, teach

    from codistill.recipe.teacher import with_teacher

    m = with_teacher(r, serve, cfg, teach)
    err = incomplete_error(m, "the same `codistill run` command")
    if err is not None:
        raise err
    if not m["counts"].get("train_rows"):
        raise RuntimeError(f"the claer teach run produced no training rows ({json.dumps(m['counts'])})")
    return m
