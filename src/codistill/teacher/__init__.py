"""Teacher contexts: prompt templates, answer parsing/validation, the ``teach`` stage (the llama.cpp
server that serves the local teacher is :mod:`codistill.serving`; the leakage score the stage
checks contexts with is :mod:`codistill.metrics.leakage`, ``leakage_score`` re-exported here).

Importing this package is cheap (no torch, no llama.cpp); heavy pieces load when used.

Modules: ``teach`` (the stage: rows in, records out, resume, progress), ``config`` (TeachConfig),
``modes/`` (one module per teacher mode + the registry), ``runner`` (one problem's attempts),
``client`` (the teacher, one client per run), ``cache`` (answers by key), ``outputs`` (train set,
manifest, teacher errors), ``command`` (the ``codistill teach`` flags), ``templates``, ``parse``.

Teacher modes (``explain``, ``solve``, ``hierarchical``, ``correction``) live in :mod:`codistill.teacher.modes`, one
module each. A new mode is one new module there (a :class:`~codistill.teacher.modes.Mode` subclass
with its ``spec`` and the hooks it needs, plus its prompt ``prompts/<name>.txt``) and one
``register(...)`` line in ``modes/__init__.py``; nothing else names a mode (see that module).

>>> from codistill.teacher.teach import teach, TeachConfig         # doctest: +SKIP
>>> teach(TeachConfig(out_dir="runs/t", dataset="runs/data", mode="explain"))  # doctest: +SKIP
"""

from __future__ import annotations

from codistill.metrics.leakage import leakage_score
from codistill.teacher.parse import PARSER_VERSION, Parsed, ValidationRules, parse_answer
from codistill.teacher.templates import MODES, PromptTemplate, load_template, render_context

__all__ = [
    "MODES",
    "PARSER_VERSION",
    "Parsed",
    "PromptTemplate",
    "TeachConfig",
    "TeacherConfig",
    "TeachSampling",
    "ValidationRules",
    "leakage_score",
    "load_template",
    "parse_answer",
    "render_context",
    "serve",
    "start_server",
]


def __getattr__(name: str):
    # ``teach`` (the function) lives in the submodule of the same name: import it from there,
    # ``from codistill.teacher.teach import teach``.
    import importlib

    where = {"TeachConfig": "config", "TeacherConfig": "config", "TeachSampling": "config",
             "serve": "codistill.serving", "start_server": "codistill.serving"}.get(name)
    if where is None:
        raise AttributeError(f"module 'codistill.teacher' has no attribute {name!r}")
    return getattr(importlib.import_module(where if "." in where else f"codistill.teacher.{where}"), name)
