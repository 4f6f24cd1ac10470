"""Terminal tables with rich."""

from __future__ import annotations


def print_judge_summary(summary: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title=f"judge: {summary['benchmark']}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("samples", str(summary["samples"]))
    t.add_row("tasks", str(summary["tasks"]))
    t.add_row("passed", str(summary["passed"]))
    for k, v in summary.get("pass@k", {}).items():
        t.add_row(k, f"{100 * v:.1f}%")
    for suite in ("base", "plus"):
        if f"{suite}_pass_rate" in summary:
            t.add_row(f"{suite} tests pass rate", f"{100 * summary[f'{suite}_pass_rate']:.1f}%")
    for status, n in summary.get("status", {}).items():
        t.add_row(f"status: {status}", str(n))
    if "wall_s" in summary:
        t.add_row("wall time", f"{summary['wall_s']:.1f} s")
    console.print(t)
