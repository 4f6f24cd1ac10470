"""Tables (terminal) and reports (markdown/HTML).

``from codistill.report import write_report, print_report`` (see :mod:`codistill.report.build`);
the names are loaded on first use, and nothing heavy (matplotlib, numpy) is imported until a
report is written.
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_report", "print_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from codistill.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'codistill.report' has no attribute {name!r}")
