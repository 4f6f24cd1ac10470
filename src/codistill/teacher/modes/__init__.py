"""Teacher modes: how the teacher is asked and what makes an answer worth keeping.

One module per mode, one line each in the registry below:

=================  ==========================================================================
``explain``        the paper: problem + reference solution in, five sections out, no code;
                   leakage against the reference is scored and rejected (:mod:`.explain`)
``solve``          problem in, reasoning + code out; the code is judged in the sandbox and only
                   passing samples are kept (rejection sampling) (:mod:`.solve`)
``hierarchical``   problem + reference in, ``<Generalized>`` / ``<Step>`` / ``<Key>`` out
                   (SuperCorrect-style), leakage as in explain (:mod:`.hierarchical`)
``correction``     problem + a student's failed attempt + the judge's report in (LEMA), incorrect
                   step, explanation, corrected solution and code out; the code is judged and
                   kept only if it passes; rows come from ``codistill correct`` (:mod:`.correction`)
``reverse``        REER: an explain (or the student's own) draft refined segment by segment by teacher
                   rewrites kept only when they lower PPL(reference | problem, z) under a scorer
                   model (the student); leakage-capped; options in ``mode_options`` (:mod:`.reverse`)
``claer``          ELAD's revision: problem + reference + a student's reasoning steps in, a check
                   of the steps, the first wrong one and the steps rewritten from it out; the
                   context is the student's reasoning so revised; rows from ``codistill select``
                   (:mod:`.claer`)
``first_error``    SuperCorrect for code: problem + reference + a student's steps, failing code and
                   the judge's report in; the first wrong step, the steps rewritten from it and the
                   code out; kept only if the chosen answer passes; rows from ``codistill pairs``
                   (:mod:`.first_error`)
=================  ==========================================================================

Adding a mode (say ``gist``): write ``modes/gist.py`` with a :class:`Mode` subclass
that sets ``spec`` (a :class:`ModeSpec`: sections, their titles and heading aliases, required
sections, whether the prompt shows the reference, stop strings) and overrides the hooks it needs
(:meth:`Mode.select_rows`, :meth:`Mode.open`, :meth:`Mode.split`, :meth:`Mode.check`,
:meth:`Mode.code`, :meth:`Mode.enough`, :meth:`Mode.finish`; see :class:`Mode`), put its prompt
template in ``teacher/prompts/gist.txt`` (or override :meth:`Mode.template`), and add
``register(GistMode())`` below. A mode whose prompt shows more than the problem and the reference
(a student's attempt) names its placeholders in ``ModeSpec.fields`` and fills them per row in
:meth:`Mode.prompt_fields` (see ``correction``). ``TeachConfig.mode``, ``codistill teach --mode``, the parser
(:func:`codistill.teacher.parse.parse_answer`), the templates (:func:`~codistill.teacher.templates.
load_template`, :func:`~codistill.teacher.templates.render_context`) and the teach loop all read
this registry; none of them names a mode.

A mode that needs more than one answer per row (a search with more teacher calls and a scorer)
overrides :meth:`Mode.run_row` (the default runs the attempt loop), declares its settings as
:attr:`Mode.options` (a pydantic model checking ``TeachConfig.mode_options``), its part of the
resume key in :meth:`Mode.run_key`, and its manifest block in :meth:`Mode.summarize` (see
``reverse``).
"""

from __future__ import annotations

from codistill.teacher.modes.base import Mode, ModeSpec, RunContext, aliases, reject_attempt
from codistill.teacher.modes.claer import ClaerMode
from codistill.teacher.modes.correction import CorrectionMode
from codistill.teacher.modes.explain import ExplainMode
from codistill.teacher.modes.first_error import FirstErrorMode
from codistill.teacher.modes.hierarchical import HierarchicalMode
from codistill.teacher.modes.reverse import ReverseMode
from codistill.teacher.modes.solve import SolveMode

__all__ = ["MODE_REGISTRY", "Mode", "ModeSpec", "RunContext", "aliases", "get_mode", "register", "reject_attempt",
           "unregister"]

MODE_REGISTRY: dict[str, Mode] = {}


def register(mode: Mode, replace: bool = False) -> Mode:
    """Make ``mode`` available by its name (``TeachConfig.mode``); returns it."""
    if not isinstance(mode, Mode):
        raise TypeError(f"register a Mode instance, not {mode!r}")
    if mode.name in MODE_REGISTRY and not replace:
        raise ValueError(f"teacher mode {mode.name!r} is already registered ({MODE_REGISTRY[mode.name]!r})")
    MODE_REGISTRY[mode.name] = mode
    return mode


def unregister(name: str) -> None:
    """Remove a mode (tests that register a toy mode)."""
    MODE_REGISTRY.pop(name, None)


def get_mode(name: str) -> Mode:
    """The registered mode ``name``; KeyError naming the known ones otherwise."""
    try:
        return MODE_REGISTRY[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown teacher mode {name!r}; choose one of {', '.join(MODE_REGISTRY)}") from None


register(ExplainMode())
register(SolveMode())
register(HierarchicalMode())
register(CorrectionMode())
register(ClaerMode())
register(FirstErrorMode())
register(ReverseMode())
