"""The report in the terminal (rich): Table 1, protocols and answer rates, the paired comparisons."""

from __future__ import annotations

from pathlib import Path

from codistill.report.compute import CAP_WARN, SMOKE_TEXT
from codistill.report.paired import baseline_cell, baselines_used, beyond_baselines
from codistill.report.sections import _cell_p1, _pct, _pval

__all__ = ["print_report"]


def print_report(rep: dict, console=None) -> None:
    """Table 1 (pass@1 with Wilson CIs) and the paired significance table, in the terminal."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape as esc
    from rich.panel import Panel
    from rich.table import Table

    console = console or Console(emoji=False)
    if rep["smoke"]["is_smoke"]:
        console.print(Panel("[bold]" + SMOKE_TEXT + "[/]\n" + "\n".join(f"• {esc(r)}" for r in rep["smoke"]["reasons"]),
                            style="bold red", expand=False))
    if rep.get("baseline_note"):
        console.print(f"[yellow]{esc(rep['baseline_note'])}[/]")
    for w in rep.get("warnings", []):
        console.print(f"[yellow]warning:[/] {esc(w)}")
    t = Table(title=esc("pass@1 % [Wilson 95% CI] n=tasks"), box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    t.add_column("arm", no_wrap=True)
    for b in rep["benchmarks"]:
        t.add_column(esc(b), justify="right")
    for a in rep["arms"]:
        t.add_row(esc(a), *[esc(_cell_p1((rep["table1"].get(a) or {}).get(b))) for b in rep["benchmarks"]])
    console.print(t)
    ans = rep.get("answers") or {}
    if any(r.get("cap_hit_rate") is not None or r.get("no_code_rate") is not None
           for v in ans.values() for r in v.values()):
        u = Table(title="protocol; answers that hit the token cap / hold no code (%)", box=box.SIMPLE_HEAD,
                  pad_edge=False, show_edge=False)
        u.add_column("arm", no_wrap=True)
        u.add_column("protocol")
        for b in rep["benchmarks"]:
            u.add_column(esc(b), justify="right")
        for a in rep["arms"]:
            p = (rep.get("protocols") or {}).get(a) or {}
            cells = []
            for b in rep["benchmarks"]:
                r = (ans.get(a) or {}).get(b) or {}
                cells.append(f"{_pct(r.get('cap_hit_rate'))} / {_pct(r.get('no_code_rate'))}"
                             + (" !" if (r.get("cap_hit_rate") or 0) > CAP_WARN else ""))
            u.add_row(esc(a), esc(str(p.get("name")) + (" (primary)" if p.get("primary") else "")), *map(esc, cells))
        console.print(u)
    if rep["significance"]:
        used = baselines_used(rep)
        extra = beyond_baselines(rep)
        multi = len({r["baseline"] for r in rep["significance"]}) > 1 or bool(extra)
        title = (f"paired vs the baseline judged under the same protocol ({esc(', '.join(used))}) on the same tasks"
                 if len(used) > 1 else f"paired vs {esc(str(rep['baseline']))} on the same tasks")
        if extra:
            title += esc("; marked: a pipeline vs the direct arm with its Coder (same Coder), trained arms vs a "
                         "reference arm (reference), named pairs (pair)")
        s = Table(title=title, box=box.SIMPLE_HEAD,
                  pad_edge=False, show_edge=False,
                  caption=esc("Δ: arm − baseline pass@1 in percentage points [paired bootstrap 95% CI]; "
                              "b / c: tasks only the arm / only the baseline passes; p: exact McNemar; "
                              "Holm: p adjusted for all rows"), caption_justify="left")
        for col in ("arm",) + (("baseline",) if multi else ()) + ("benchmark", "tasks", esc("Δ pp [95% CI]"), "b",
                                                                  "c", "p", "Holm"):
            s.add_column(col, justify="left" if col in ("arm", "baseline", "benchmark") else "right", no_wrap=True)
        for r in rep["significance"]:
            style = "green" if r["p_holm"] < 0.05 and r["delta"] > 0 else ("red" if r["p_holm"] < 0.05 else None)
            s.add_row(esc(r["arm"]), *([esc(baseline_cell(r))] if multi else []), esc(r["benchmark"]), str(r["n_common"]),
                      esc(f"{100 * r['delta']:+.1f} [{100 * r['ci'][0]:+.1f}, {100 * r['ci'][1]:+.1f}]"), str(r["b"]),
                      str(r["c"]), _pval(r["p_value"]), _pval(r["p_holm"]), style=style)
        console.print(s)
    for n in rep.get("significance_notes", []):
        console.print(f"[dim]{esc(n)}[/]")
    if rep.get("pipelines"):
        r = Table(title="Reasoner → Coder: pass@1 / solve@M×T %, plan leakage, tokens per solved task",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for col in ("arm", "benchmark", "Reasoner", "Coder", "M×T", "pass@1", "solve@M×T", "leakage", "tok/solved"):
            r.add_column(col, justify="left" if col in ("arm", "benchmark", "Reasoner", "Coder") else "right")
        for row in rep["pipelines"]:
            m, t = row["plans"], row["codes_per_plan"]
            top = (row["solve@k"] or {}).get(f"solve@{(m or 1) * (t or 1)}")
            r.add_row(*map(esc, (row["arm"], row["benchmark"], row["reasoner"] or "– (direct)", row["coder"],
                                 f"{m}×{t}" if m else f"n={row['n_samples']}", _pct(row["pass@1"]), _pct(top),
                                 "–" if row["leakage_mean"] is None else f"{row['leakage_mean']:.3f}",
                                 "–" if row["tokens_per_solved"] is None else f"{row['tokens_per_solved']:.0f}")))
        console.print(r)
    if rep.get("cost"):
        from codistill.report.cost import fmt_per_mtok, fmt_samples, fmt_tokens

        c = Table(title="cost per arm: teacher tokens (training data, inference), student samples, training "
                  "examples; pass@1 per million teacher tokens (pass@1 itself: the first table)", box=box.SIMPLE_HEAD,
                  pad_edge=False, show_edge=False,
                  caption="– : not priced (see the report's notes); ≥ / ≤: some answers' usage unrecorded",
                  caption_justify="left")
        for col in ["arm", "tokens data", "tokens infer", "samples", "examples",
                    *[f"{b} /Mtok" for b in rep["benchmarks"]]]:
            c.add_column(esc(col), justify="left" if col == "arm" else "right", no_wrap=col == "arm")
        for row in rep["cost"]:
            c.add_row(*map(esc, [row["arm"], fmt_tokens(row, "teacher_tokens_data"),
                                 fmt_tokens(row, "teacher_tokens_inference"), fmt_samples(row),
                                 fmt_tokens(row, "training_examples"),
                                 *[fmt_per_mtok(row, b) for b in rep["benchmarks"]]]))
        console.print(c)
    ppl = {a: q for a, q in rep["perplexity"].items() if q}
    if ppl:
        console.print("question-completion perplexity: " + esc("; ".join(
            f"{a} mean {q['mean']:.2f} median {q['median']:.2f} (n={q['n']})" for a, q in ppl.items())))
    if rep["missing"]:
        console.print(f"[dim]missing inputs: {len(rep['missing'])} (listed in the report)[/]")
    if rep["skipped_plots"]:
        console.print("[dim]plots not drawn: " + ", ".join(rep["skipped_plots"]) + "[/]")
    console.print("wrote " + esc(", ".join(rep["files"].values())) + (f" and {len(rep['plots'])} plot(s) under "
                  f"{Path(rep['files']['html']).parent / 'plots'}" if rep["plots"] else ""))
