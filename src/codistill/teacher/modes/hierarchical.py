"""``hierarchical``: a SuperCorrect-style thought template. The teacher sees the problem and the
reference solution and writes ``<Generalized>`` then ``<Step>`` blocks, each with a ``<Key>``
insight, without code; small teachers often write markdown headings instead, which are accepted
too. Leakage is scored and rejected as in ``explain``; the training row's code is the reference.

Steps are rendered as a numbered list with ``Key:`` lines under each step (tag format), or followed
by a "Key insights" list (markdown format).
"""

from __future__ import annotations

import re

from codistill.teacher.modes.base import ModeSpec
from codistill.teacher.modes.explain import ShowsReference
from codistill.teacher.parse import Parsed, ValidationRules, split_sections

__all__ = ["HierarchicalMode", "parse_hierarchical"]


class HierarchicalMode(ShowsReference):
    spec = ModeSpec(
        name="hierarchical",
        needs_solution=True,
        sections=("generalized", "steps", "keys"),
        titles={"generalized": "Generalized approach", "steps": "Steps", "keys": "Key insights"},
        required=("generalized", "steps"),
        aliases={},
        stop=("\n### Problem", "\n### Reference solution"),
    )

    def split(self, text: str, rules: ValidationRules) -> Parsed:
        return parse_hierarchical(text, rules)


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


def parse_hierarchical(text: str, rules: ValidationRules) -> Parsed:
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
        return p.reject("missing <Generalized>")
    if len(steps) < rules.min_steps:
        return p.reject(f"only {len(steps)} <Step> blocks (need {rules.min_steps})")
    if empty_step:
        return p.reject("empty <Step>")
    if missing_key:
        return p.reject("a <Step> without <Key>" if notes["format"] == "tags" else "no key insights")
    return p
