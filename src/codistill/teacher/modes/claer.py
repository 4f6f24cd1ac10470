"""``claer`` (ELAD's "customized LLM-annotated explanation revision", Zhang et al., ACL Findings
2024): the teacher sees the problem, the reference solution and a student's reasoning steps, checks
the steps in order and rewrites them from the first wrong one. Answers have three sections:

* ``check`` — one verdict per step up to the first wrong one (required);
* ``first_wrong`` — that step's number, or None (read from ``check`` when the heading is missing);
* ``revision`` — the steps from the first wrong one to the end, as a numbered list (None when every
  step is correct).

The training context is the student's own reasoning with its steps from the first wrong one on
replaced by the revision (:func:`codistill.select.steps.splice`; the other sections the student
wrote, intent, formulas, edge cases, are kept), laid out as the explain mode's sections; when every
step is correct it is the student's reasoning unchanged. The teacher writes only the verdicts and
the revised tail, so its tokens are what CLAER saves over a full explanation
(``teach_manifest.json`` ``tokens``; :func:`codistill.select.teacher_tokens` compares two runs on
the same problems). The training row's code is the reference. Answers are scored for leakage
against the reference, as in explain.

Rows: those of a ``codistill select`` subset (``<select out>/selected``), each carrying the
``student`` attempt (its ``reasoning``); steps are split as :mod:`codistill.select.steps` splits
them for the step ablations, and shown to the teacher through ``{student_steps}`` (``Step 1: …``).
The record's ``claer`` holds ``first_wrong``, ``student_steps``, ``kept_steps`` and
``written_steps`` of the chosen answer.
"""

from __future__ import annotations

import re

from codistill.teacher.modes.base import ModeSpec, RunContext, aliases, reject_attempt
from codistill.teacher.modes.explain import ExplainMode, ShowsReference
from codistill.teacher.parse import Parsed
from codistill.teacher.templates import is_none_text

__all__ = ["ClaerMode", "first_wrong_step"]

_WRONG = re.compile(r"step\s*(\d{1,3})\s*(?:[:.)\-\u2013\u2014]|is)?\s*\**\s*(?:wrong|incorrect|flawed|mistaken|error)",
                    re.I)
_NONE = re.compile(r"^\W*(none|no\b|n/?a|all\b|every\b|nothing)", re.I)


def first_wrong_step(sections: dict[str, str]) -> int | None:
    """The first wrong step's number from ``first_wrong`` (None when it says none), else the first
    ``Step N: wrong`` line of ``check``, else None."""
    body = (sections.get("first_wrong") or "").strip()
    if body:
        if is_none_text(body) or _NONE.match(body):
            return None
        m = re.search(r"\d{1,3}", body)
        if m:
            return int(m.group(0))
    m = _WRONG.search(sections.get("check") or "")
    return int(m.group(1)) if m else None


def _student(row: dict) -> dict:
    st = row.get("student")
    if not isinstance(st, dict) or not isinstance(st.get("reasoning"), str):
        raise ValueError(f"claer row {row.get('id')!r} has no student attempt ('student' with its 'reasoning'): "
                         "teach the rows of a `codistill select` subset (<select out>/selected)")
    return st


class ClaerMode(ShowsReference):
    spec = ModeSpec(
        name="claer",
        needs_solution=True,
        sections=ExplainMode.spec.sections,  # the context: the revised reasoning in explain's layout
        titles=ExplainMode.spec.titles,
        required=("check",),
        aliases=aliases({
            "check": ["check", "checks", "step check", "step by step check", "verification", "verdicts",
                      "checking the steps"],
            "first_wrong": ["first wrong step", "first wrong", "first incorrect step", "first error",
                            "first mistake", "the first wrong step"],
            "revision": ["revision", "revised steps", "revised", "corrected steps", "correction", "rewrite",
                         "rewritten steps"],
        }),
        stop=("\n### Problem", "\n### Reference solution", "\n### The student"),
        fields=("student_steps",),
    )

    def select_rows(self, rows: list[dict]) -> list[dict]:
        """The main rows that carry a student attempt (a ``codistill select`` subset)."""
        if rows and not any(isinstance(r.get("student"), dict) for r in rows):
            raise ValueError("teacher mode 'claer' revises a student's reasoning: teach the rows of a "
                             "`codistill select` subset (--dataset <select out>/selected), which carry the "
                             "student's attempt, not a `codistill data` folder")
        return [r for r in rows if isinstance(r.get("student"), dict) and not r.get("alt")]

    def prompt_fields(self, row: dict) -> dict[str, str]:
        from codistill.select.steps import numbered_steps, split_steps

        reasoning = _student(row)["reasoning"]
        spans = split_steps(reasoning)
        return {"student_steps": numbered_steps(reasoning, spans) if spans else "(the student wrote no steps)"}

    def check(self, run: RunContext, row: dict, text: str, parsed: Parsed, entry: dict) -> dict | None:
        from codistill.select.steps import splice, split_steps
        from codistill.teacher.parse import split_sections
        from codistill.teacher.templates import MODES

        detail = super().check(run, row, text, parsed, entry)  # leakage against the reference
        if not parsed.valid:
            return detail
        reasoning = _student(row)["reasoning"]
        spans = split_steps(reasoning)
        k = first_wrong_step(parsed.sections)
        revision = (parsed.sections.get("revision") or "").strip()
        if k is not None and not 1 <= k <= max(len(spans), 1):
            reject_attempt(parsed, entry, f"first wrong step {k} is not one of the student's {len(spans)} steps")
            return detail
        if k is not None and is_none_text(revision):
            reject_attempt(parsed, entry, f"step {k} is wrong but there is no revision")
            return detail
        revised = splice(reasoning, spans, k, revision) if k is not None else reasoning
        sections = split_sections(revised, MODES["explain"].aliases)
        if not (sections.get("steps") or "").strip():
            sections = {"steps": revised.strip()}
        if not sections["steps"]:
            reject_attempt(parsed, entry, "the revised reasoning is empty")
            return detail
        parsed.sections.update(sections)
        entry["claer"] = {"first_wrong": k, "student_steps": len(spans),
                          "kept_steps": len(spans) if k is None else k - 1,
                          "written_steps": 0 if k is None else len(split_steps(revision))}
        return detail

    def finish(self, record: dict, passing: list[dict]) -> None:
        chosen = next((a for a in record.get("attempt_log", []) if a.get("valid")), None)
        record["claer"] = chosen.get("claer") if chosen else None
