"""Teacher prompt templates (one ``.txt`` file per mode) and the text layout of a context.

Building a prompt is kept apart from parsing the answer (curator style): the cache key of a
teacher call covers the template *text* (its sha256), the teacher and the sampling parameters,
never the parser, so a changed parser re-parses cached answers without paying the teacher again.

Modes
=====
``explain`` (the paper)  the teacher sees the problem AND the reference solution and explains it in
                         five sections (intent, steps, formulas, edge cases, built-ins), no code.
``solve``                the teacher sees only the problem and writes reasoning + code; the code is
                         judged in the sandbox and only passing samples are kept.
``hierarchical``         SuperCorrect-style thought template: ``<Generalized>`` then ``<Step>``
                         blocks each with a ``<Key>`` insight; sees the solution, no code.

Placeholders in a template are ``{problem}``, ``{solution}`` and ``{entry_point}``; nothing else
in the file is interpreted (braces in code examples are safe).

Context layout (what the trainer gets as ``context``; :func:`render_context`): the sections in the
mode's canonical order, each as a markdown heading ``### <Title>`` followed by its text, separated
by blank lines; sections that are empty or say only "None" are left out. Hierarchical steps are a
numbered list with ``Key:`` lines under each step (tag format), or followed by a "Key insights"
list when the teacher wrote markdown headings instead of tags.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["MODES", "ModeSpec", "PromptTemplate", "load_template", "render_context", "is_none_text"]


@dataclass(frozen=True)
class ModeSpec:
    name: str
    needs_solution: bool
    sections: tuple[str, ...]  # canonical order
    titles: dict  # section -> heading in the rendered context
    required: tuple[str, ...]  # default required sections
    aliases: dict  # normalised heading text -> section
    stop: tuple[str, ...] = ()  # stop strings: small teachers tend to echo the prompt's next heading


def _aliases(table: dict[str, list[str]]) -> dict[str, str]:
    out = {}
    for key, names in table.items():
        for n in names:
            out[n] = key
    return out


MODES: dict[str, ModeSpec] = {
    "explain": ModeSpec(
        name="explain",
        needs_solution=True,
        sections=("intent", "steps", "formulas", "edge_cases", "builtins"),
        titles={"intent": "Intent", "steps": "Steps", "formulas": "Formulas",
                "edge_cases": "Edge cases", "builtins": "Built-ins"},
        required=("intent", "steps", "formulas", "edge_cases", "builtins"),
        aliases=_aliases({
            "intent": ["intent", "problem intent", "goal", "purpose", "overview",
                       "understanding the problem", "problem understanding"],
            "steps": ["steps", "algorithm", "algorithm steps", "approach", "steps of the algorithm",
                      "step by step", "algorithm steps in plain words", "solution steps", "method"],
            "formulas": ["formulas", "formula", "key formulas", "math", "equations", "formulas and invariants",
                         "invariants", "recurrences", "mathematical formulas", "key formulas invariants or recurrences"],
            "edge_cases": ["edge cases", "edge case", "corner cases", "special cases", "edge cases and special inputs"],
            "builtins": ["built ins", "builtins", "built in functions", "library functions", "built ins used",
                         "functions used", "data structures", "built in functions and data structures",
                         "libraries", "builtin functions", "built ins and data structures"],
        }),
        stop=("\n### Problem", "\n### Reference solution"),
    ),
    "solve": ModeSpec(
        name="solve",
        needs_solution=False,
        sections=("reasoning", "code"),
        titles={"reasoning": "Reasoning", "code": "Code"},
        required=("reasoning", "code"),
        aliases=_aliases({
            "reasoning": ["reasoning", "analysis", "explanation", "approach", "thoughts", "thinking"],
            "code": ["code", "solution", "python code", "final code", "implementation"],
        }),
    ),
    "hierarchical": ModeSpec(
        name="hierarchical",
        needs_solution=True,
        sections=("generalized", "steps", "keys"),
        titles={"generalized": "Generalized approach", "steps": "Steps", "keys": "Key insights"},
        required=("generalized", "steps"),
        aliases={},
        stop=("\n### Problem", "\n### Reference solution"),
    ),
}

_PLACEHOLDER = re.compile(r"\{(problem|solution|entry_point)\}")


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt template: its mode, text and sha256 (part of every cache key)."""

    mode: str
    text: str
    source: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def render(self, problem: str, solution: str | None = None, entry_point: str | None = None) -> str:
        spec = MODES[self.mode]
        if spec.needs_solution and not solution:
            raise ValueError(f"mode {self.mode!r} shows the teacher the reference solution, "
                             "but this problem has none (use mode 'solve' for problems without solutions)")
        values = {"problem": problem.strip(), "solution": (solution or "").strip("\n"),
                  "entry_point": entry_point or "the required function"}
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text)


def load_template(mode: str, path: str | Path | None = None) -> PromptTemplate:
    """The packaged template of ``mode`` (``teacher/prompts/<mode>.txt``) or a file of your own."""
    if mode not in MODES:
        raise ValueError(f"unknown teacher mode {mode!r}; choose one of {', '.join(MODES)}")
    if path is not None:
        p = Path(path)
        text = p.read_text(encoding="utf-8")
        source = str(p)
    else:
        text = resources.files("codistill.teacher").joinpath("prompts", f"{mode}.txt").read_text(encoding="utf-8")
        source = f"codistill/teacher/prompts/{mode}.txt"
    if "{problem}" not in text:
        raise ValueError(f"template {source} has no {{problem}} placeholder")
    if MODES[mode].needs_solution and "{solution}" not in text:
        raise ValueError(f"template {source} for mode {mode!r} must show the reference via {{solution}}")
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
