"""Terminal tables with rich."""

from __future__ import annotations

from codistill.report.compute import CAP_WARN  # share of answers at the token cap above which an arm is flagged


def print_judge_summary(summary: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(emoji=False)
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


def print_eval_results(results: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(emoji=False)
    cfg = results.get("config", {})
    t = Table(title=f"eval: {cfg.get('model')}" + (f" + {cfg.get('adapter')}" if cfg.get("adapter") else ""))
    for col in ("benchmark", "tasks", "pass@1", "other pass@k", "hit the cap", "no code", "syntax match",
                "dataflow match"):
        t.add_column(col, justify="right" if col != "benchmark" else "left")
    for name, b in results.get("benchmarks", {}).items():
        pk = b.get("pass@k", {})
        others = ", ".join(f"{k} {100 * v:.1f}%" for k, v in pk.items() if k != "pass@1")
        t.add_row(b.get("benchmark", name), str(b["tasks"]), f"{100 * pk.get('pass@1', 0):.1f}%", others or "-",
                  _pct(b.get("cap_hit_rate")), _pct(b.get("no_code_rate")),
                  _fmt(b.get("syntax_match")), _fmt(b.get("dataflow_match")))
    console.print(t)
    proto = results.get("protocol") or {}
    if proto:
        check = proto.get("check") or {}
        over = ", ".join(check.get("overrides") or [])
        console.print(f"protocol: {proto.get('description') or proto.get('name')}"
                      + (f" [bold red](overrides used: {over})[/]" if over else ""))
    capped = [n for n, b in results.get("benchmarks", {}).items() if (b.get("cap_hit_rate") or 0) > CAP_WARN]
    if capped:
        console.print(f"[bold yellow]more than {CAP_WARN:.0%} of the answers hit the {cfg.get('max_new_tokens')}-token "
                      f"cap on {', '.join(capped)}: the budget, not the model, decides those verdicts[/]")
    qp = results.get("question_perplexity")
    if qp and qp.get("mean") is not None:
        console.print(f"question-completion perplexity (MBPP test questions, {int(100 * qp['prefix_fraction'])}% "
                      f"prefix): mean {qp['mean']:.2f}, median {qp['median']:.2f} over {qp['n']}")
    g = results.get("generation", {})
    if g.get("tokens_per_s"):
        timed = g.get("samples_timed")
        cover = f", {timed} of {g['samples']} generations timed" if timed is not None and timed < g.get("samples", 0) else ""
        console.print(f"generation: {g['new_tokens']} new tokens in {g['seconds']} s ({g['tokens_per_s']} tok/s{cover})")


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"
