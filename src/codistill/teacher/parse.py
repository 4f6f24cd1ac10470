"""Parse a teacher answer into named sections and validate it.

Parsing never calls the teacher; :func:`parse_answer` is a pure function of (mode, text, rules),
so cached answers are re-parsed for free when these rules change (:data:`PARSER_VERSION` is stored
with every context; a resumed run re-parses records written by another version).

Headings are recognised in the forms small models actually write: ``## Intent``, ``**Intent**``,
``**Intent:**``, ``Intent:``, ``1. Intent``, ``Intent: text on the same line`` — but only for the
known names of the mode and their aliases (its :class:`~codistill.teacher.modes.ModeSpec`), so prose
lines are never mistaken for headings. Mode-specific parsing (solve's code, hierarchical's tags) is
the mode's :meth:`~codistill.teacher.modes.Mode.split`, in :mod:`codistill.teacher.modes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from codistill.teacher.templates import is_none_text

__all__ = ["PARSER_VERSION", "Parsed", "ValidationRules", "extract_code", "parse_answer", "split_sections",
           "template_echo"]

PARSER_VERSION = 1


class ValidationRules(BaseModel):
    """What a valid context looks like (per mode defaults come from the mode's spec)."""

    model_config = ConfigDict(extra="forbid")

    required: list[str] | None = Field(None, description="sections that must be present (default: the mode's)")
    min_section_chars: int = Field(8, ge=0, description="shortest acceptable required section (chars); "
                                   "a section saying only 'None' counts as present for formulas/built-ins")
    max_section_chars: int = Field(4000, ge=1, description="longest acceptable section (chars)")
    max_chars: int = Field(12000, ge=1, description="longest acceptable whole answer (chars)")
    min_steps: int = Field(2, ge=1, description="hierarchical: fewest <Step> blocks")
    template_echo_words: int = Field(8, ge=0, description="reject answers that repeat this many consecutive "
                                     "words of the template's own text (instructions, the worked example); "
                                     "0 = off. Small teachers copy few-shot examples verbatim.")


# Sections whose body may legitimately be "None".
_MAY_BE_NONE = {"formulas", "builtins"}

def _norm(name: str) -> str:
    name = re.sub(r"\([^)]*\)", " ", name.lower())
    name = name.replace("-", " ").replace("/", " ").replace("&", " and ")
    name = re.sub(r"[^a-z0-9 ]", " ", name)
    return re.sub(r"\s+", " ", name).strip()


def _heading(line: str, aliases: dict[str, str]) -> tuple[str, str] | None:
    """``(section, rest of the line)`` when ``line`` is a heading of a known section."""
    s = line.strip()
    if not s or len(s) > 200:
        return None
    s = re.sub(r"^#{1,6}\s*", "", s)
    s = s.replace("**", "").replace("__", "").strip()
    s = re.sub(r"^(\d{1,2}|[IVX]{1,4})[.)]\s+", "", s)
    name, colon, rest = s.partition(":")
    key = aliases.get(_norm(name))
    if key is None:
        return None
    return key, rest.strip(" *_") if colon else ""


def split_sections(text: str, aliases: dict[str, str]) -> dict[str, str]:
    """Split ``text`` at known headings; returns ``{section: body}`` (first heading wins on repeats,
    later repeats are appended). Text before the first heading is dropped."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    in_fence = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
        if not in_fence:
            h = _heading(line, aliases)
            if h is not None:
                current, rest = h
                out.setdefault(current, [])
                if rest:
                    out[current].append(rest)
                continue
        if current is not None:
            out[current].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block; an unclosed last fence runs to the end."""
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]


def extract_code(text: str) -> str | None:
    """The code of an answer: the last ```python block (else the last fenced block)."""
    blocks = fenced_blocks(text)
    py = [b for lang, b in blocks if lang in ("python", "py", "python3")]
    chosen = (py or [b for _, b in blocks] or [None])[-1]
    return chosen.strip("\n") + "\n" if chosen and chosen.strip() else None


@dataclass
class Parsed:
    sections: dict[str, str]
    valid: bool
    reason: str | None = None
    code: str | None = None
    notes: dict = field(default_factory=dict)

    def reject(self, reason: str) -> Parsed:
        """This answer, now invalid for ``reason``."""
        self.valid = False
        self.reason = reason
        return self


def parse_answer(mode: str, text: str, rules: ValidationRules | None = None) -> Parsed:
    """Sections of a teacher answer plus a validity verdict with the reason when invalid: the
    common checks (empty, too long), the mode's :meth:`~codistill.teacher.modes.Mode.split`, then
    the required sections and their lengths."""
    from codistill.teacher.modes import get_mode

    rules = rules or ValidationRules()
    m = get_mode(mode)
    spec = m.spec
    text = text or ""
    if not text.strip():
        return Parsed({}, False, "empty answer")
    if len(text) > rules.max_chars:
        return Parsed({}, False, f"answer too long ({len(text)} > {rules.max_chars} chars)")
    p = m.split(text, rules)
    if not p.valid:
        return p
    required = rules.required if rules.required is not None else list(spec.required)
    for key in required:
        body = p.sections.get(key)
        if body is None:
            return p.reject(f"missing section {key!r}")
        if key in _MAY_BE_NONE and is_none_text(body):
            continue
        if len(body) < rules.min_section_chars:
            return p.reject(f"section {key!r} too short ({len(body)} chars)")
    for key, body in p.sections.items():
        if len(body) > rules.max_section_chars:
            return p.reject(f"section {key!r} too long ({len(body)} > {rules.max_section_chars} chars)")
    return p


_WORDS = re.compile(r"[a-z0-9]+")


def template_echo(text: str, template_text: str, n: int = 8) -> str | None:
    """The first run of ``n`` consecutive words that ``text`` copies from the template's own text
    (placeholders and the problem/solution are not part of ``template_text``), or None."""
    if n <= 0:
        return None
    tpl = _WORDS.findall(re.sub(r"\{[a-z_]+\}", " ", template_text.lower()))  # placeholders: not the template's words
    grams = {tuple(tpl[i:i + n]) for i in range(len(tpl) - n + 1)}
    words = _WORDS.findall(text.lower())
    for i in range(len(words) - n + 1):
        if tuple(words[i:i + n]) in grams:
            return " ".join(words[i:i + n])
    return None
