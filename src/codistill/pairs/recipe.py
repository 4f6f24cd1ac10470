"""SuperCorrect in a recipe: the ``hsft`` stage (stage 1: hierarchical thought templates) and the
``pairs`` stage (stage 2: cross-model collaborative DPO pairs), their settings as the runner builds
them, and what the arm kinds ``hsft``, ``hsft+dpo`` and ``cd+dpo`` train on. :mod:`codistill.recipe`
registers them (below); nothing here imports the recipe package at module level.

Arm kinds (each a trained arm: a LoRA trained with the arm's train overrides, then judged):

* ``hsft`` — SFT like ``cd``, on the hierarchical templates (``hsft/train.jsonl``);
* ``hsft+dpo`` / ``cd+dpo`` — DPO (``train.dpo``: β, loss type, pairs budget; defaults unless the
  arm's train overrides set them) continuing the adapter of the trained arm named by ``start`` (an
  ``hsft`` arm, or a ``trained`` arm such as ``cd``), on the pairs of that student's failures
  (``arms/<arm>/pairs/pairs.jsonl``); the reference is that starting adapter.

Stages:

* ``hsft`` (run scope, after ``teach``, needed when an ``hsft`` arm runs or a DPO arm starts from
  one): :func:`codistill.teacher.teach.teach` with the teach section's settings (teacher,
  sampling, checks, the run's teacher cache), mode ``hierarchical``, out ``hsft/``, the recipe's
  ``hsft:`` section (TeachConfig settings) on top. Key: the config's key and the data hash.
* ``pairs`` (arm scope, before ``train``, for the DPO kinds): :func:`codistill.pairs.make_pairs` in
  ``arms/<arm>/pairs`` on the run's data; the student is the recipe's student + the ``start`` arm's
  adapter, in the recipe's format, sampled with the eval section's backend, options, batch size and
  dtype (a ``pairs.student.backend`` of its own takes none of eval's options); the teacher is the
  teach section's (served for the stage when teach serves one); the recipe's ``pairs:`` section
  (PairsConfig settings) on top; ``max_pair_tokens``, unless that section sets it (null: no skip),
  is the arm's own ``train.data.max_length`` (:func:`arm_max_length`), so no teacher call is paid
  for a pair its DPO would drop. Key: the config's key without the adapter's path, the data hash and
  the start arm's adapter hash.

Registration (in :mod:`codistill.recipe`; tests/test_pairs_recipe.py checks the pieces):

* ``spec.py``: ``HsftSection = section_model(TeachConfig, "HsftSection")`` and ``PairsSection =
  section_model(PairsConfig, "PairsSection")``; ``Recipe`` fields ``hsft`` and ``pairs`` (default
  empty sections) and both in ``SECTIONS``; ``class HsftArm(TrainedArm): kind: Literal["hsft"] =
  "hsft"``; ``class DpoArm(TrainedArm)`` with ``stages = ("pairs", "train", "eval")``, ``kind:
  Literal["hsft+dpo", "cd+dpo"]``, ``start: str`` (the trained arm it continues) and ``arm_refs()``
  returning ``[self.start]`` (so ``Recipe._names`` checks it names a trained arm, and
  ``_ref_hashes`` gives its adapter hash); ``ARM_KINDS`` entries ``hsft``, ``hsft+dpo``, ``cd+dpo``
  (the two DPO kinds one class; :func:`start_problem` is the check of ``start``'s kind);
* ``stages.py``: ``register(Stage("hsft", "run", run_hsft, checks=hsft_checks, needed=needs_hsft))``
  after teach; ``register(Stage("pairs", "arm", run_pairs, checks=pairs_checks))`` before train;
  ``train_config`` takes the arm's file from its kind's ``train_source`` and keys a DPO arm
  with :func:`train_data_hash`, and merges :func:`train_overrides` under the arm's own train
  overrides (``dpo``, ``init_adapter``); the budget guard reads the ``hsft`` file too (a DPO arm's
  file holds pairs, not SFT rows: its lengths are its start arm's, which the guard already reads;
  the DPO adapter's record keeps the longer of the two, :func:`codistill.training.objectives.dpo.
  pairs_format_record`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["DPO_KINDS", "HSFT_KIND", "arm_max_length", "hsft_checks", "hsft_dict", "needs_hsft", "pairs_checks",
           "pairs_dict", "run_hsft", "run_pairs", "start_problem", "train_data_hash", "train_overrides"]

HSFT_KIND = "hsft"
DPO_KINDS = {"hsft+dpo": HSFT_KIND, "cd+dpo": "trained"}  # DPO kind -> the kind its start arm must have


def _kind(recipe, arm: str) -> str | None:
    return getattr((getattr(recipe, "arms", None) or {}).get(arm), "kind", None)


def _adapter(run: Path, arm: str) -> str:
    return str(run / "arms" / arm / "train" / "adapter")


def start_problem(recipe, arm: str) -> str | None:
    """What is wrong with a DPO arm's ``start`` (None: nothing): it must name a trained arm of the
    kind its own kind continues (``hsft+dpo``: an hsft arm; ``cd+dpo``: a trained arm)."""
    start = getattr(recipe.arms[arm], "start", None)
    want = DPO_KINDS[_kind(recipe, arm)]
    if start not in (getattr(recipe, "arms", None) or {}):
        return f"arm {arm!r} ({_kind(recipe, arm)}) continues arm {start!r}, which is not an arm of this recipe"
    if _kind(recipe, start) != want:
        return (f"arm {arm!r} ({_kind(recipe, arm)}) must start from an arm of kind {want!r}; {start!r} is of kind "
                f"{_kind(recipe, start)!r}")
    return None


# ------------------------------------------------------------------------------------------ hsft


def hsft_dict(recipe, run: Path) -> tuple[dict, bool]:
    """The hsft stage's TeachConfig settings, and whether the runner serves the teacher."""
    from codistill.overrides import deep_merge
    from codistill.recipe.settings import _section_dict, _teach_dict

    d, serve = _teach_dict(recipe, run)
    for k in ("template", "mode_options"):  # the teach section's own mode's (the hsft section may set its own)
        d.pop(k, None)
    d.update(mode="hierarchical", out_dir=str(run / "hsft"))
    section = _section_dict(getattr(recipe, "hsft", None))
    if (section.get("teacher") or {}).get("base_url"):
        serve = False
    return deep_merge(d, section), serve


def needs_hsft(r) -> bool:
    """An hsft arm runs, or a DPO arm of this call starts from one."""
    kinds = {_kind(r.recipe, a) for a in r.arms}
    starts = {getattr(r.recipe.arms[a], "start", None) for a in r.arms if _kind(r.recipe, a) in DPO_KINDS}
    return HSFT_KIND in kinds or any(_kind(r.recipe, s) == HSFT_KIND for s in starts if s)


def hsft_checks(recipe):
    from codistill.teacher import TeachConfig

    if any(getattr(a, "kind", None) == HSFT_KIND for a in (getattr(recipe, "arms", None) or {}).values()):
        yield "hsft", TeachConfig, lambda: hsft_dict(recipe, Path("x"))[0]


def run_hsft(r) -> str:
    """The stage: ``codistill teach --mode hierarchical`` on the run's data, inside ``r.keyed``."""
    from codistill.recipe.teacher import teach_stage

    return teach_stage(r, "hsft", *hsft_dict(r.recipe, r.run))


# ------------------------------------------------------------------------------------------ pairs


def pairs_dict(recipe, run: Path, arm: str) -> tuple[dict, bool]:
    """A DPO arm's PairsConfig settings (see the module docstring), and whether the runner serves
    the teacher. ValueError when the arm's ``start`` is not an arm it can continue."""
    from codistill.overrides import deep_merge
    from codistill.recipe.settings import _section_dict, _student, _teach_dict

    problem = start_problem(recipe, arm)
    if problem:
        raise ValueError(problem)
    teach, serve = _teach_dict(recipe, run)
    section = _section_dict(getattr(recipe, "pairs", None))
    ev = _section_dict(recipe.eval)
    student = {"model": _student(recipe), "adapter": _adapter(run, recipe.arms[arm].start),
               "format": recipe.student_format().model_dump()}
    own_backend = "backend" in (section.get("student") or {})  # then eval's backend options are not its
    for k in ("batch_size", "dtype") if own_backend else ("backend", "backend_options", "batch_size", "dtype"):
        if ev.get(k) is not None:
            student[k] = ev[k]
    base = {"dataset": str(run / "data"), "cache_dir": teach.get("cache_dir"), "student": student,
            "teacher": teach["teacher"]}
    if teach.get("data_dir"):
        base["data_dir"] = teach["data_dir"]
    if (section.get("teacher") or {}).get("base_url"):
        serve = False  # the section names its own server
    d = deep_merge(base, section)
    if "max_pair_tokens" not in section:  # the pairs the arm's DPO would drop are not asked for
        d["max_pair_tokens"] = arm_max_length(recipe, arm)
    return d, serve


def arm_max_length(recipe, arm: str) -> int:
    """The ``train.data.max_length`` a DPO arm trains with (its train overrides on the recipe's train
    section, else TrainConfig's default): what its pairs must fit."""
    from codistill.overrides import deep_merge
    from codistill.recipe.settings import _section_dict
    from codistill.training.config import DataConfig

    train = deep_merge(_section_dict(recipe.train), _section_dict(getattr(recipe.arms[arm], "train", None)))
    data = train.get("data") if isinstance(train.get("data"), dict) else {}
    return int(data.get("max_length") or DataConfig.model_fields["max_length"].default)


def pairs_checks(recipe, arm: str):
    from codistill.pairs.config import PairsConfig

    if _kind(recipe, arm) in DPO_KINDS:
        yield f"pairs ({arm})", PairsConfig, lambda: pairs_dict(recipe, Path("x"), arm)[0]


def _pairs_key(cfg, data_hash: str | None, start_hash: str | None) -> str:
    from codistill.recipe.manifest import _hash

    key = cfg.key()
    key["student"] = {k: v for k, v in key["student"].items() if k != "adapter"}  # keyed by its hash instead
    return _hash(["pairs", key, data_hash, start_hash])


def run_pairs(r, arm: str) -> str | None:
    """The arm stage: ``codistill pairs`` with the start arm's student, inside ``r.keyed``
    (nothing for an arm of another kind)."""
    if _kind(r.recipe, arm) not in DPO_KINDS:
        return None
    from codistill.pairs.config import PairsConfig
    from codistill.pairs.stage import incomplete_error, make_pairs
    from codistill.recipe.manifest import _file_hash
    from codistill.recipe.stages import _ref_hashes

    folder = r.run / "arms" / arm / "pairs"
    d, serve = pairs_dict(r.recipe, r.run, arm)
    cfg = PairsConfig.model_validate(d)
    start = r.recipe.arms[arm].start
    key = _pairs_key(cfg, r.hashes.get("data"), _ref_hashes(r, arm).get(start))

    def go() -> dict[str, Any]:
        from codistill.recipe.teacher import with_teacher

        m = with_teacher(r, serve, cfg, lambda c: make_pairs(c, folder))
        err = incomplete_error(m, "the same `codistill run` command")
        if err is not None:
            raise err
        c = m["counts"]
        if not c["pairs"]:
            raise RuntimeError(f"the pairs stage of arm {arm} kept no pair ({json.dumps(c)}); see {folder}")
        return {"problems": c["problems"], "failures": c["failures"], "pairs": c["pairs"], "dropped": c["dropped"],
                "teacher_tokens": m["cost"]["teacher"]["total_tokens"]}

    out = r.keyed(f"pairs:{arm}", key, folder, go, lambda: _file_hash(folder / "pairs.jsonl"))
    r.arm_hashes[arm]["pairs"] = out
    return out


# ------------------------------------------------------------------------------------------ training


def train_overrides(recipe, run: Path, arm: str) -> dict:
    """Train settings a DPO arm gets beneath its own overrides: DPO with its defaults, continuing the
    start arm's adapter ({} for any other arm)."""
    if _kind(recipe, arm) not in DPO_KINDS:
        return {}
    return {"dpo": {}, "init_adapter": _adapter(run, recipe.arms[arm].start)}


def train_data_hash(r, arm: str) -> str | None:
    """What keys a DPO arm's training data: its pairs' hash and the start adapter's hash (a
    retrained start arm retrains the DPO arm even if its pairs came out the same); None for any
    other arm (keyed by the stage that wrote its file)."""
    if _kind(r.recipe, arm) not in DPO_KINDS:
        return None
    from codistill.recipe.manifest import _hash
    from codistill.recipe.stages import _ref_hashes

    return _hash([r.arm_hashes[arm].get("pairs"), _ref_hashes(r, arm).get(r.recipe.arms[arm].start)])
