"""``codistill select``: explanation-guided active selection (ELAD) for code, a stage that writes
a training subset and its random control. See :mod:`codistill.select.run` (the stage and its
files), :mod:`codistill.select.scores` (the scores' definitions), :mod:`codistill.select.steps`
(what a reasoning step is), :mod:`codistill.execution.outcomes` (outcome clusters) and the
``claer`` teacher mode (:mod:`codistill.teacher.modes.claer`), which revises the selected
problems' student attempts. Importing this package imports no model library."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codistill.select.config import SelectConfig

__all__ = ["SelectConfig", "select", "teacher_tokens"]


def __getattr__(name: str) -> Any:
    if name == "SelectConfig":
        from codistill.select.config import SelectConfig

        return SelectConfig
    if name == "select":
        from codistill.select.run import select

        return select
    if name == "teacher_tokens":
        from codistill.select.outputs import teacher_tokens

        return teacher_tokens
    raise AttributeError(name)
