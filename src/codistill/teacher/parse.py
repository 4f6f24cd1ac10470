"""Parse a teacher answer into named sections and validate it.

Parsing never calls the teacher; :func:`parse_answer` is a pure function of (mode, text, rules),
so cached answers are re-parsed for free when these rules change (:data:`PARSER_VERSION` is stored
with every context; a resumed run re-parses records written by another version).

Headings are recognised in the forms small models actually write: ``## Intent``, ``**Intent**``,
``**Intent:**``, ``Intent:``, ``1. Intent``, ``Intent: text on the same line`` — but only for the
known names of the mode and their aliases (see :data:`codistill.teacher.templates.MODES`), so prose
lines are never mistaken for headings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from codistill.teacher.templates import MODES, is_none_text

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


def _tag(text: str, tag: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"<{tag}>(.*?)(?:</{tag}>|(?=<{tag}>)|\Z)", text, re.S | re.I)]


_HIER_ALIASES = {
    "generalized": "generalized", "generalized approach": "generalized", "general approach": "generalized",
    "generalization": "generalized", "step": "steps", "steps": "steps", "key": "keys", "keys": "keys",
    "key insight": "keys", "key insights": "keys", "key points": "keys",
}
_ITEM = re.compile(r"^\s{0,3}(?:\d{1,2}[.)]|[-*+])\s+(.*)$")


def _items(text: str) -> list[str]:
    """Top-level list items of a markdown block: nested items and continuation lines are joined to
    their item; a paragraph after a blank line ends the list."""
    items: list[str] = []
    base: int | None = None
    blank = False
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        m = _ITEM.match(line.strip() and " " * min(indent, 3) + line.lstrip())
        if m and (base is None or indent <= base):
            base = indent if base is None else base
            items.append(m.group(1).strip())
        elif items and line.strip() and (not blank or m or indent > (base or 0)):
            items[-1] += " " + (m.group(1).strip() if m else line.strip())
        elif items and line.strip():
            break
        blank = not line.strip()
    return [i for i in items if i]


def _parse_hierarchical(text: str, rules: ValidationRules) -> Parsed:
    """SuperCorrect-style template. The tag format asked for (``<Generalized>``, ``<Step>`` with a
    ``<Key>`` each) is preferred; small teachers often write markdown headings instead (``### Step``
    with a numbered list, ``### Key`` with bullets), which is accepted as well (``notes['format']``)."""
    # an unclosed <Generalized> ends at the first <Step> or markdown heading
    g = re.search(r"<Generalized>(.*?)(?:</Generalized>|(?=<Step>)|(?=^\s{0,3}#{1,6}\s)|\Z)", text, re.S | re.I | re.M)
    gen = [g.group(1).strip()] if g else []
    body = text[:g.start()] + text[g.end():] if g else text
    steps_raw = _tag(body, "Step")
    sections: dict[str, str] = {}
    notes: dict = {}
    if steps_raw:
        notes["format"] = "tags"
        steps = []
        for st in steps_raw:
            keys = _tag(st, "Key")
            main = re.sub(r"<Key>.*?(</Key>|\Z)", "", st, flags=re.S | re.I).strip()
            steps.append((main, keys[0] if keys else ""))
        if steps:
            sections["steps"] = "\n".join(f"{i}. {b}" + (f"\n   Key: {k}" if k else "")
                                          for i, (b, k) in enumerate(steps, 1))
        n_keys = sum(1 for _, k in steps if k)
        missing_key = any(not k for _, k in steps)
        empty_step = any(not b for b, _ in steps)
    else:
        notes["format"] = "markdown"
        md = split_sections(body, _HIER_ALIASES)
        if not gen and md.get("generalized"):
            gen = [md["generalized"]]
        step_items = _items(md.get("steps", ""))
        key_items = _items(md.get("keys", "")) or ([md["keys"]] if md.get("keys") else [])
        steps = [(b, "") for b in step_items]
        if step_items:
            sections["steps"] = "\n".join(f"{i}. {b}" for i, b in enumerate(step_items, 1))
        if key_items:
            sections["keys"] = "\n".join(f"- {k}" for k in key_items)
        n_keys = len(key_items)
        missing_key = n_keys == 0
        empty_step = False
    if gen and gen[0]:
        sections["generalized"] = gen[0]
    notes.update(n_steps=len(steps), n_keys=n_keys)
    p = Parsed(sections, True, notes=notes)
    if not gen or len(gen[0]) < rules.min_section_chars:
        return _invalid(p, "missing <Generalized>")
    if len(steps) < rules.min_steps:
        return _invalid(p, f"only {len(steps)} <Step> blocks (need {rules.min_steps})")
    if empty_step:
        return _invalid(p, "empty <Step>")
    if missing_key:
        return _invalid(p, "a <Step> without <Key>" if notes["format"] == "tags" else "no key insights")
    return p


def _invalid(p: Parsed, reason: str) -> Parsed:
    p.valid = False
    p.reason = reason
    return p


def parse_answer(mode: str, text: str, rules: ValidationRules | None = None) -> Parsed:
    """Sections of a teacher answer plus a validity verdict with the reason when invalid."""
    rules = rules or ValidationRules()
    spec = MODES[mode]
    text = text or ""
    if not text.strip():
        return Parsed({}, False, "empty answer")
    if len(text) > rules.max_chars:
        return Parsed({}, False, f"answer too long ({len(text)} > {rules.max_chars} chars)")
    if mode == "hierarchical":
        p = _parse_hierarchical(text, rules)
    else:
        sections = split_sections(text, spec.aliases)
        p = Parsed(sections, True)
        if mode == "solve":
            p.code = extract_code(text)
            if p.code:
                sections["code"] = p.code
                if "reasoning" not in sections:
                    # reasoning = everything before the code block when no heading was written
                    head = text.split("```", 1)[0]
                    head = re.sub(r"^\s*#+\s*(reasoning|code)\s*:?\s*$", "", head, flags=re.I | re.M).strip()
                    if head:
                        sections["reasoning"] = head
    if not p.valid:
        return p
    required = rules.required if rules.required is not None else list(spec.required)
    for key in required:
        body = p.sections.get(key)
        if body is None:
            return _invalid(p, f"missing section {key!r}")
        if key in _MAY_BE_NONE and is_none_text(body):
            continue
        if len(body) < rules.min_section_chars:
            return _invalid(p, f"section {key!r} too short ({len(body)} chars)")
    for key, body in p.sections.items():
        if len(body) > rules.max_section_chars:
            return _invalid(p, f"section {key!r} too long ({len(body)} > {rules.max_section_chars} chars)")
    return p


_WORDS = re.compile(r"[a-z0-9]+")


def template_echo(text: str, template_text: str, n: int = 8) -> str | None:
    """The first run of ``n`` consecutive words that ``text`` copies from the template's own text
    (placeholders and the problem/solution are not part of ``template_text``), or None."""
    if n <= 0:
        return None
    tpl = _WORDS.findall(re.sub(r"\{(problem|solution|entry_point)\}", " ", template_text.lower()))
    grams = {tuple(tpl[i:i + n]) for i in range(len(tpl) - n + 1)}
    words = _WORDS.findall(text.lower())
    for i in range(len(words) - n + 1):
        if tuple(words[i:i + n]) in grams:
            return " ".join(words[i:i + n])
    return None
