"""A reasoning z as segments, the unit of the search's rewrites.

Rule: z is the sections of a context in the mode's canonical order (sections that are empty or
say only "None" are not part of z, as :func:`~codistill.teacher.templates.render_context` leaves
them out). Each section is one segment, except a section whose body is a numbered list
(``1.`` / ``1)`` items at the start of a line, indented at most 3 spaces, at least two of them,
nothing before the first): then each item is one segment, its continuation lines included, and
its marker (``"2. "``) is kept apart so a rewrite replaces the item's text only. Rendering joins
a section's items with single newlines, so a draft whose items were separated by blank lines is
scored and kept in that normalised form (the draft z *is* the rendered segments).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from codistill.teacher.templates import is_none_text

__all__ = ["Segment", "clean_rewrite", "describe", "render_sections", "replace_text", "split_segments"]

_ITEM = re.compile(r"^( {0,3}\d{1,2}[.)][ \t]+)(.*)$")


@dataclass(frozen=True)
class Segment:
    section: str  # the section key
    text: str
    marker: str = ""  # "2. " for a list item, "" for a whole section
    item: int = 0  # 1-based position of a list item in its section (0: the whole section)


def _items(body: str) -> list[tuple[str, str]] | None:
    lines = body.split("\n")
    if not lines or not _ITEM.match(lines[0]):
        return None
    items: list[list] = []
    for line in lines:
        m = _ITEM.match(line)
        if m:
            items.append([m.group(1), [m.group(2)]])
        else:
            items[-1][1].append(line)
    if len(items) < 2:
        return None
    out = [(marker, "\n".join(text).strip()) for marker, text in items]
    return None if any(not t for _, t in out) else out


def split_segments(sections: dict[str, str], order: tuple[str, ...], split_steps: bool = True) -> list[Segment]:
    """The segments of a context's sections (see the module docstring for the rule)."""
    out: list[Segment] = []
    for key in order:
        body = (sections.get(key) or "").strip()
        if key == "code" or is_none_text(body):
            continue
        items = _items(body) if split_steps else None
        if items is None:
            out.append(Segment(key, body))
        else:
            out.extend(Segment(key, text, marker, i) for i, (marker, text) in enumerate(items, 1))
    return out


def render_sections(segments: list[Segment]) -> dict[str, str]:
    """``{section: body}`` of the segments (a list section's items one per line, with their markers)."""
    out: dict[str, list[str]] = {}
    for s in segments:
        out.setdefault(s.section, []).append(s.marker + s.text)
    return {k: "\n".join(v) for k, v in out.items()}


def replace_text(segments: list[Segment], i: int, text: str) -> list[Segment]:
    """The segments with segment ``i``'s text replaced."""
    return [replace(s, text=text) if j == i else s for j, s in enumerate(segments)]


def describe(segment: Segment, titles: dict[str, str]) -> str:
    """Where a segment is, in words for the rewrite prompt."""
    title = titles.get(segment.section, segment.section)
    return f"step {segment.item} of the section \"{title}\"" if segment.item else f"the section \"{title}\""


_FENCE_ONLY = re.compile(r"^```[^\n]*\n(.*?)\n?```\s*$", re.S)


def clean_rewrite(text: str, segment: Segment, titles: dict[str, str], max_chars: int) -> tuple[str | None, str]:
    """``(new text, "")`` from a teacher's rewrite of ``segment``, or ``(None, why)``: a heading the
    teacher echoed (the section's title) and, for a list item, a leading list marker are taken off;
    an answer wrapped in a plain (non-code) fence is unwrapped. Refused: empty, holding a code block,
    longer than ``max_chars``, or unchanged."""
    t = (text or "").strip()
    m = _FENCE_ONLY.match(t)
    if m and not re.match(r"```\s*(python|py|python3)\b", t):
        t = m.group(1).strip()
    title = titles.get(segment.section, segment.section).lower()
    lines = t.split("\n")
    while lines:
        head = re.sub(r"^#{1,6}\s*|\*\*|__|:$", "", lines[0].strip()).strip().rstrip(":").lower()
        if head in (title, "rewritten part", "new text", "rewrite", "part", f"step {segment.item}"):
            lines.pop(0)
        else:
            break
    t = "\n".join(lines).strip()
    if segment.item:
        t = re.sub(r"^\d{1,2}[.)][ \t]+", "", t)
        t = re.sub(r"^(step\s+\d{1,2}\s*[:.)-])\s*", "", t, flags=re.I)
        # further lines stay inside the item (indented), never new items of the list
        first, *rest = t.split("\n")
        t = "\n".join([first] + [ln if not ln.strip() or ln.startswith("   ") else "   " + ln for ln in rest])
    t = t.strip()
    if not t:
        return None, "empty rewrite"
    if "```" in t:
        return None, "rewrite holds a code block"
    if len(t) > max_chars:
        return None, f"rewrite too long ({len(t)} > {max_chars} chars)"
    if t == segment.text.strip():
        return None, "rewrite unchanged"
    return t, ""
