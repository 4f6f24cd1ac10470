"""A student's reasoning and its steps: what ``codistill select`` ablates and CLAER revises.

**Reasoning** (:func:`reasoning_of`): in a student format (:mod:`codistill.formats`) the reasoning
is the context section, before the code: the answer's text after the context section's header,
cut where the next section begins (its header, e.g. ``\\n\\n### Code``) or at the first code
fence, whichever comes first.

**Steps** (:func:`split_steps`), in this order of preference:

1. the *Steps section*: the lines after a heading the teach stage reads as ``steps`` (``## Steps``,
   ``**Algorithm:**``, ``Approach:`` …, the explain mode's aliases) up to the next heading (a known
   section's, or any markdown ``#`` heading). Its steps are its top-level list items (``1.``,
   ``1)``, ``-``, ``*``, ``•``, ``+`` at the smallest indentation of the section's items), each with
   its continuation lines (deeper items, wrapped text); without list items, each non-blank line;
2. no Steps section: the top-level *numbered* items (``1.``, ``1)``) anywhere in the reasoning;
3. neither: each non-blank line that is not a heading.

A step is a span of whole lines (its trailing blank lines excluded); removing it
(:func:`ablate`) leaves everything else as written: the other items keep their numbers.
"""

from __future__ import annotations

import re

__all__ = ["ablate", "numbered_steps", "reasoning_of", "splice", "split_steps", "step_text"]

_ITEM = re.compile(r"^([ \t]*)(?:\d{1,3}[.)]|[-*\u2022+])[ \t]+\S")
_NUMBERED = re.compile(r"^([ \t]*)\d{1,3}[.)][ \t]+\S")
_MARKER = re.compile(r"^[ \t]*(?:\d{1,3}[.)]|[-*\u2022+])[ \t]+")
_MD_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]")


def reasoning_of(answer: str, fmt) -> str:
    """The reasoning of an answer laid out in student format ``fmt`` (see the module docstring).
    ValueError when the format has no context section before its code."""
    from codistill.evaluation.strategies.reasoner_coder import format_plan_cut

    header, stops = format_plan_cut(fmt)
    text = answer
    head = header.strip()
    stripped = text.lstrip()
    if head and stripped.startswith(head):
        text = stripped[len(head):]
    cuts = [text.find(s) for s in stops if s and s in text]
    fence = re.search(r"^[ \t]*```", text, re.M)
    if fence:
        cuts.append(fence.start())
    return text[:min(cuts)].strip("\n") if cuts else text.strip("\n")


def _lines(text: str) -> list[tuple[int, int, str]]:
    """(start, end, line) of every line; ``end`` includes the newline."""
    out, pos = [], 0
    for line in text.splitlines(keepends=True):
        out.append((pos, pos + len(line), line.rstrip("\r\n")))
        pos += len(line)
    return out


def _section_of(line: str) -> str | None:
    """The explain section a line is the heading of (None: not a known heading)."""
    from codistill.teacher.parse import split_sections
    from codistill.teacher.templates import MODES

    if not line.strip() or len(line) > 200:
        return None
    found = split_sections(line, MODES["explain"].aliases)
    return next(iter(found), None)


def _is_heading(line: str) -> bool:
    return bool(_MD_HEADING.match(line)) or _section_of(line) is not None


def _spans(lines: list[tuple[int, int, str]], item: re.Pattern, per_line: bool) -> list[tuple[int, int]]:
    """Steps of a region: its top-level items with their continuation lines, else (``per_line``)
    each non-blank line."""
    items = [(k, len(m.group(1).expandtabs(4))) for k, (_, _, ln) in enumerate(lines) if (m := item.match(ln))]
    if items:
        top = min(ind for _, ind in items)
        starts = [k for k, ind in items if ind == top]
        spans = []
        for n, k in enumerate(starts):
            last = (starts[n + 1] if n + 1 < len(starts) else len(lines)) - 1
            while last > k and not lines[last][2].strip():
                last -= 1
            spans.append((lines[k][0], lines[last][1]))
        return spans
    if not per_line:
        return []
    return [(s, e) for s, e, ln in lines if ln.strip() and not _is_heading(ln)]


def split_steps(reasoning: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the reasoning's steps (rule: the module docstring)."""
    lines = _lines(reasoning)
    start = next((k for k, (_, _, ln) in enumerate(lines) if _section_of(ln) == "steps"), None)
    if start is not None:
        end = next((k for k in range(start + 1, len(lines)) if _is_heading(lines[k][2])), len(lines))
        body = lines[start + 1:end]
        if any(ln.strip() for _, _, ln in body):
            return _spans(body, _ITEM, per_line=True)
    spans = _spans(lines, _NUMBERED, per_line=False)
    if spans:
        return spans
    return [(s, e) for s, e, ln in lines if ln.strip() and not _is_heading(ln)]


def step_text(reasoning: str, span: tuple[int, int]) -> str:
    """A step's text without its list marker."""
    return _MARKER.sub("", reasoning[span[0]:span[1]].strip(), count=1)


def numbered_steps(reasoning: str, spans: list[tuple[int, int]] | None = None) -> str:
    """``Step 1: …`` lines, one per step (what the teacher is shown by CLAER)."""
    spans = split_steps(reasoning) if spans is None else spans
    return "\n".join(f"Step {i}: {step_text(reasoning, sp)}" for i, sp in enumerate(spans, 1))


def ablate(reasoning: str, spans: list[tuple[int, int]], j: int) -> str:
    """The reasoning without step ``j`` (0-based)."""
    s, e = spans[j]
    return reasoning[:s] + reasoning[e:]


def splice(reasoning: str, spans: list[tuple[int, int]], k: int, revision: str) -> str:
    """The reasoning with steps ``k`` (1-based) to the last replaced by ``revision`` (CLAER); the
    text after the last step (later sections) is kept. Without steps, the revision follows the
    reasoning."""
    revision = revision.strip("\n")
    if not spans:
        return (reasoning.rstrip("\n") + "\n" + revision).strip("\n")
    head = reasoning[:spans[k - 1][0]]
    tail = reasoning[spans[-1][1]:]
    if tail or reasoning[:spans[-1][1]].endswith("\n"):
        revision += "\n"
    return head + revision + tail
