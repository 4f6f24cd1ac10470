"""Markdown and HTML from the report's sections (:mod:`codistill.report.sections`), with the jinja2
templates ``codistill/templates/report/report.md.j2`` and ``report.html.j2``.

jinja2 is imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import html as _html
import re
from functools import lru_cache
from pathlib import Path

from codistill.report.load import _rel
from codistill.report.sections import Block, Section

__all__ = ["render_markdown", "render_html"]

_NUMERIC = re.compile(r"^[\s+\-–−]?[\d.]")  # a cell that starts like a number: right-aligned


def _md_cell(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _numeric_col(rows: list[list[str]], i: int) -> bool:
    vals = [str(r[i]) for r in rows if i < len(r) and str(r[i]) not in ("–", "")]
    return i > 0 and bool(vals) and all(_NUMERIC.match(v) for v in vals)


def _md_align(bl: Block) -> str:
    return "|".join("---:" if _numeric_col(bl.rows, i) else "---" for i in range(len(bl.headers)))


def _png_base64(path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


@lru_cache(maxsize=None)
def _env(html: bool):
    from jinja2 import Environment, PackageLoader, StrictUndefined
    from markupsafe import Markup

    def esc(s) -> Markup:  # html.escape, not markupsafe's (which writes ' and " differently)
        return Markup(_html.escape(str(s)))

    def inline(s) -> Markup:  # escaped, then `code` and **bold**
        out = _html.escape(str(s))
        out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
        return Markup(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out))

    env = Environment(loader=PackageLoader("codistill", "templates/report"), autoescape=html,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=StrictUndefined)
    env.filters.update(esc=esc, inline=inline, md_cell=_md_cell, trim_newlines=lambda s: str(s).rstrip("\n"))
    env.tests["numeric_text"] = lambda s: bool(_NUMERIC.match(str(s)))
    env.globals.update(align_row=_md_align, png_base64=_png_base64)
    return env


def render_markdown(title: str, sections: list[Section], out: Path) -> str:
    """``report.md``; images are linked relative to ``out``, the folder the file is written to."""
    text = _env(False).get_template("report.md.j2").render(title=title, sections=sections,
                                                           rel_path=lambda p: _rel(Path(p), out))
    return text.rstrip() + "\n"


def render_html(title: str, sections: list[Section]) -> str:
    """``report.html``: one self-contained page (inline CSS, plots embedded as base64 PNG)."""
    return _env(True).get_template("report.html.j2").render(title=title, sections=sections)
