"""Teacher prompt templates (one ``.txt`` file per mode) and the text layout of a context.

Building a prompt is kept apart from parsing the answer (curator style): the cache key of a
teacher call covers the template *text* (its sha256), the teacher and the sampling parameters,
never the parser, so a changed parser re-parses cached answers without paying the teacher again.

Modes
=====
``explain`` (the paper), ``solve`` and ``hierarchical``; each is a module of
:mod:`codistill.teacher.modes` (what the teacher sees, the sections of its answer, what makes an
answer worth keeping). :data:`MODES` maps every registered mode's name to its
:class:`~codistill.teacher.modes.ModeSpec`.

Placeholders in a template are ``{problem}``, ``{solution}`` and ``{entry_point}``, plus the
mode's own :attr:`ModeSpec.fields` (e.g. ``correction``'s ``{attempt}`` and ``{failure}``: the
student's failed answer and the judge's report), whose values the mode takes from each row
(:meth:`~codistill.teacher.modes.Mode.prompt_fields`); nothing else in the file is interpreted
(braces in code examples are safe).

Context layout (what the trainer gets as ``context``; :func:`render_context`): the sections in the
mode's canonical order, each as a markdown heading ``### <Title>`` followed by its text, separated
by blank lines; sections that are empty or say only "None" are left out. Hierarchical steps are a
numbered list with ``Key:`` lines under each step (tag format), or followed by a "Key insights"
list when the teacher wrote markdown headings instead of tags.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MODES", "ModeSpec", "PromptTemplate", "load_template", "render_context", "is_none_text"]


@dataclass(frozen=True)
class ModeSpec:
    """What a teacher mode's answers look like (a mode's ``spec``, :mod:`codistill.teacher.modes`)."""

    name: str
    needs_solution: bool  # the prompt shows the reference solution (rows without one are refused)
    sections: tuple[str, ...]  # canonical order
    titles: dict  # section -> heading in the rendered context
    required: tuple[str, ...]  # default required sections
    aliases: dict  # normalised heading text -> section
    stop: tuple[str, ...] = ()  # stop strings: small teachers tend to echo the prompt's next heading
    # placeholders beyond problem/solution/entry_point that the template must hold, filled per row
    # by Mode.prompt_fields (part of the cache key of every call: codistill.teacher.runner.row_hash)
    fields: tuple[str, ...] = ()


class _ModeSpecs(Mapping):
    """``name -> ModeSpec`` of every registered mode: a live view of :mod:`codistill.teacher.modes`
    (imported on first use, so that the modes may import this module)."""

    @staticmethod
    def _registry() -> dict:
        from codistill.teacher.modes import MODE_REGISTRY

        return MODE_REGISTRY

    def __getitem__(self, name: str) -> ModeSpec:
        return self._registry()[name].spec

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry())

    def __len__(self) -> int:
        return len(self._registry())

    def __repr__(self) -> str:
        return f"MODES({', '.join(self)})"


MODES: Mapping[str, ModeSpec] = _ModeSpecs()

_BUILTIN_FIELDS = ("problem", "solution", "entry_point")


def _placeholders(fields: tuple[str, ...] = ()) -> re.Pattern:
    return re.compile(r"\{(" + "|".join(map(re.escape, _BUILTIN_FIELDS + tuple(fields))) + r")\}")


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt template: its mode, text and sha256 (part of every cache key)."""

    mode: str
    text: str
    source: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def render(self, problem: str, solution: str | None = None, entry_point: str | None = None,
               fields: Mapping[str, str] | None = None) -> str:
        """The prompt; ``fields``: the values of the mode's own placeholders (:attr:`ModeSpec.fields`)."""
        spec = MODES[self.mode]
        if spec.needs_solution and not solution:
            raise ValueError(f"mode {self.mode!r} shows the teacher the reference solution, "
                             "but this problem has none (use mode 'solve' for problems without solutions)")
        fields = dict(fields or {})
        missing = [f for f in spec.fields if fields.get(f) is None]
        if missing:
            raise ValueError(f"mode {self.mode!r} needs {', '.join(missing)} for its prompt (none given)")
        values = {"problem": problem.strip(), "solution": (solution or "").strip("\n"),
                  "entry_point": entry_point or "the required function",
                  **{f: str(fields[f]).strip("\n") for f in spec.fields}}
        return _placeholders(spec.fields).sub(lambda m: values[m.group(1)], self.text)


def load_template(mode: str, path: str | Path | None = None) -> PromptTemplate:
    """The packaged template of ``mode`` (``teacher/prompts/<mode>.txt``, see
    :meth:`codistill.teacher.modes.Mode.template`) or a file of your own."""
    if mode not in MODES:
        raise ValueError(f"unknown teacher mode {mode!r}; choose one of {', '.join(MODES)}")
    if path is not None:
        p = Path(path)
        text = p.read_text(encoding="utf-8")
        source = str(p)
    else:
        from codistill.teacher.modes import get_mode

        text, source = get_mode(mode).template()
    if "{problem}" not in text:
        raise ValueError(f"template {source} has no {{problem}} placeholder")
    if MODES[mode].needs_solution and "{solution}" not in text:
        raise ValueError(f"template {source} for mode {mode!r} must show the reference via {{solution}}")
    for f in MODES[mode].fields:
        if "{" + f + "}" not in text:
            raise ValueError(f"template {source} for mode {mode!r} has no {{{f}}} placeholder")
    return PromptTemplate(mode=mode, text=text, source=source)


_NONE = re.compile(r"^\W*(none|n/?a|not applicable|no(ne)? (special )?(formulas?|built-?ins?|edge cases?)"
                   r"( (are )?(needed|used|required))?)\W*$", re.I)


def is_none_text(text: str) -> bool:
    """True for section bodies that only say there is nothing ("None", "N/A", ...)."""
    return bool(_NONE.match(text.strip())) if text.strip() else True


def render_context(sections: dict[str, str], mode: str) -> str:
    """Sections as one text in the documented layout (see module docstring)."""
    spec = MODES[mode]
    parts = []
    for key in spec.sections:
        body = (sections.get(key) or "").strip()
        if key == "code" or is_none_text(body):
            continue
        parts.append(f"### {spec.titles[key]}\n{body}")
    return "\n\n".join(parts)
