"""Teacher contexts: prompt templates, answer parsing/validation, leakage scores, the ``teach``
stage (the llama.cpp server that serves the local teacher is :mod:`codistill.serving`).

Importing this package is cheap (no torch, no llama.cpp); heavy pieces load when used.

>>> from codistill.teacher.teach import teach, TeachConfig         # doctest: +SKIP
>>> teach(TeachConfig(out_dir="runs/t", dataset="runs/data", mode="explain"))  # doctest: +SKIP
"""

from __future__ import annotations

from codistill.teacher.leakage import leakage_score
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

    where = {"TeachConfig": "teach", "TeacherConfig": "teach", "TeachSampling": "teach",
             "serve": "server", "start_server": "server"}.get(name)
    if where is None:
        raise AttributeError(f"module 'codistill.teacher' has no attribute {name!r}")
    return getattr(importlib.import_module(f"codistill.teacher.{where}"), name)
