"""Tables (terminal) and reports (markdown/HTML).

``from codistill.report import write_report, print_report`` (see :mod:`codistill.report.build`);
the names are loaded on first use, and nothing heavy (matplotlib, numpy, jinja2) is imported until
a report is written.

Modules: ``load`` (run and arm directories), ``compute`` (the report as data), ``plots``
(matplotlib), ``sections`` (the prose), ``render`` (Markdown/HTML via jinja2 templates),
``terminal`` (rich), ``build`` (:func:`write_report`, tying them together), ``tables`` (the
``eval``/``judge`` summaries).
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_report", "print_report", "SMOKE_TEXT", "SMOKE_MIN_TASKS", "discover_arms"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from codistill.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'codistill.report' has no attribute {name!r}")
