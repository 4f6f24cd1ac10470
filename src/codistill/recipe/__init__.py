"""``codistill run recipe.yaml``: data → teach → train (every arm) → eval (every arm) → report.

A recipe is one YAML file (see ``recipes/``). Each stage is the library call behind its own verb
(``prepare_dataset``, ``teach``, ``train``, ``run_eval``, ``write_report``); the runner only
wires their artifacts together inside one run directory and keeps ``run_manifest.json``::

    RUN/recipe.yaml                 the recipe as resolved (defaults filled in)
    RUN/run_manifest.json           per stage: key, output hash, status, wall time, timestamps
    RUN/data/                       codistill data   (rows.jsonl, problems.jsonl, manifest.json)
    RUN/teach/                      codistill teach  (contexts.jsonl, train.jsonl, teach_manifest.json)
    RUN/arms/<arm>/train/           codistill train  (adapter/, checkpoints/, train_log.jsonl)
    RUN/arms/<arm>/eval/            codistill eval   (results.json, tasks.jsonl, per-benchmark samples)
    RUN/report.md, report.html      codistill report

Skipping and resuming. A stage's *key* is the hash of its own resolved settings and of the
*content hash* of what it reads (data rows → teach; training examples → train; the adapter's
weights → eval). A stage whose key and recorded output are unchanged is skipped; an interrupted
stage is resumed by the stage itself (teach and eval continue from their JSONL files, train from
its newest checkpoint, data from its manifest). When a stage's key changes, its old folder is
moved to ``RUN/.stale/`` (never deleted) and the stage runs again, and so does everything
downstream of it, because their keys include its output hash. The teacher's response cache lives
outside the teach folder (``RUN/cache/teach`` unless the recipe names one), so re-teaching after
a data change asks the teacher only about new problems.

The package: ``spec`` (the typed recipe: a section per stage, arms by kind), ``load`` (reading
and checking a recipe before its first stage), ``settings`` (each stage's config as the runner
builds it), ``stages`` (the registered stages, in order), ``runner`` (runs them), ``manifest``.

The teacher: ``teach.teacher.base_url`` points at any OpenAI-compatible server (vLLM, SGLang, a
running ``codistill serve-teacher``). When it is null the runner starts the packaged llama.cpp
teacher (``serve``) on loopback for the teach stage and stops it afterwards.
"""

from __future__ import annotations

from codistill.overrides import apply_sets, deep_merge
from codistill.recipe.load import _check_sections, check_stages, load_recipe, recipe_path, validate_recipe
from codistill.recipe.manifest import _file_hash, _hash, _Manifest
from codistill.recipe.runner import ArmsFailed, _NotRun, _Runner, run_recipe
from codistill.recipe.settings import FORMAT_OWNED, _eval_dict, _student, _teach_dict, _train_dict
from codistill.recipe.spec import (ARM_KINDS, RECIPE_VERSION, ArmSpec, BaseArm, EvalSection, Recipe, ReportSection,
                                   Section, ServeSpec, TeachSection, TrainedArm, TrainSection, DataSection, PipelineArm)
from codistill.recipe.stages import Stage, register, stage_names

__all__ = ["Recipe", "ArmSpec", "BaseArm", "TrainedArm", "PipelineArm", "ServeSpec", "load_recipe", "run_recipe",
           "ArmsFailed", "recipe_path",
           "RECIPE_VERSION", "apply_sets", "deep_merge", "Stage", "register", "stage_names", "STAGES"]

STAGES = stage_names()  # the names --only takes: data, teach, train, eval, report
