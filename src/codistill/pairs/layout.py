"""A preference pair from a student's failed answer and the teacher's first-error correction (pure
text: no model, no sandbox).

**The student's answer** in its student format (:mod:`codistill.formats`) is read as
:mod:`codistill.select.steps` reads it (the step parser the select stage and the ``claer`` mode
share): the *reasoning* is the context section's body (:func:`~codistill.select.steps.reasoning_of`),
its *steps* are spans of whole lines (:func:`~codistill.select.steps.split_steps`), and what follows
the reasoning is the code section the student wrote.

**The pair** for first wrong step ``k`` (1-based; ``None``: every step is right and the code is the
first wrong step)::

    prefix   = the answer up to the start of step k: header and the student's steps s<k
               (k None: the whole reasoning)
    chosen   = prefix + the teacher's revised steps k.. (the reasoning after the student's last
               step, later sections it wrote, is kept, as CLAER keeps it: select.steps.splice)
               + the code section laid out as the format lays it out, holding the teacher's code
    rejected = the student's answer as it wrote it: prefix + its steps k.. + its failing code

Both answers begin with ``prefix`` (what :mod:`codistill.training.objectives.dpo` checks), and
both end where generation stops in the format (after the code section), so the completions the
DPO loss reads are exactly the corrected steps + code and the wrong steps + code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Attempt", "build_pair", "code_section", "read_attempt"]


@dataclass
class Attempt:
    """A student's answer as steps: ``reasoning`` = ``answer[start:start + len(reasoning)]``,
    ``spans`` its steps (relative to the reasoning), ``code_at`` where the text after it begins."""

    answer: str
    start: int
    reasoning: str
    spans: list[tuple[int, int]]

    @property
    def code_at(self) -> int:
        return self.start + len(self.reasoning)

    @property
    def has_code(self) -> bool:
        return "```" in self.answer[self.code_at:]

    def step_start(self, k: int) -> int:
        """Where step ``k`` (1-based) begins in the answer."""
        return self.start + self.spans[k - 1][0]


def read_attempt(answer: str, fmt) -> Attempt:
    """The answer's reasoning and steps; ValueError when the format has no reasoning section
    before its code (such a student writes no steps to correct)."""
    from codistill.evaluation.strategies.reasoner_coder import format_plan_cut
    from codistill.select.steps import reasoning_of, split_steps

    header, _ = format_plan_cut(fmt)  # the ValueError for a format without reasoning
    answer = answer.rstrip()
    reasoning = reasoning_of(answer, fmt)
    lead = len(answer) - len(answer.lstrip())
    after = lead + len(header.strip()) if header.strip() and answer.lstrip().startswith(header.strip()) else 0
    start = answer.find(reasoning, after) if reasoning else -1
    if start < 0:
        return Attempt(answer=answer, start=after, reasoning="", spans=[])
    return Attempt(answer=answer, start=start, reasoning=reasoning, spans=split_steps(reasoning))


def code_section(fmt, code: str) -> str:
    """What follows the reasoning in the format's layout up to the end of the code section, holding
    ``code``: the separator, then the code section (a tests section between them is left out, as
    generation stops before tests)."""
    from codistill.training.data import clean_field

    kinds = [next(f for f in ("context", "code", "tests") if "{" + f + "}" in s) for s in fmt.sections]
    section = fmt.sections[kinds.index("code")]
    return fmt.section_separator + section.replace("{code}", clean_field(code))


def build_pair(attempt: Attempt, fmt, k: int | None, revision: str | None, code: str) -> dict:
    """``{"prefix", "chosen", "rejected", "first_wrong_step", "student_steps"}`` (layout: the module
    docstring). ValueError when ``k`` is not one of the attempt's steps, the revision is empty, or the
    answer has no code section after its reasoning."""
    from codistill.select.steps import splice

    n = len(attempt.spans)
    if not attempt.has_code:
        raise ValueError("the student's answer has no code after its reasoning")
    if not code or not code.strip():
        raise ValueError("the teacher wrote no code")
    answer = attempt.answer
    if k is None:
        prefix = answer[:attempt.code_at]
        chosen = prefix + code_section(fmt, code)
    else:
        if not 1 <= k <= n:
            raise ValueError(f"first wrong step {k} is not one of the student's {n} steps")
        revision = _clean_revision(revision or "")
        if not revision:
            raise ValueError(f"step {k} is wrong but the revision is empty")
        prefix = answer[:attempt.step_start(k)]
        revised = splice(attempt.reasoning, attempt.spans, k, revision)
        chosen = answer[:attempt.start] + revised + code_section(fmt, code)
    return {"prefix": prefix, "chosen": chosen, "rejected": answer, "first_wrong_step": k, "student_steps": n}


_FENCE = re.compile(r"^[ \t]*```[^\n]*\n.*?(?:^[ \t]*```[ \t]*$|\Z)", re.S | re.M)


def _clean_revision(text: str) -> str:
    """The revised steps as reasoning: code blocks taken out (the code has its own section), blank
    lines at the ends removed."""
    return _FENCE.sub("", text).strip("\n").rstrip()
