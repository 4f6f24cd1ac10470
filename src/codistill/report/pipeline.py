"""The report's Reasoner→Coder part: who reasoned and who coded, what the plans leaked and cost,
and the sweep — pass@k of direct sampling against solve@k of plans × codes, at the same number of
programs per task. Present only when some arm was judged with the reasoner-coder strategy or
drew more than one sample per task (a run without either has a report as before).

Numbers are read from each arm's ``results.json`` (``benchmarks.<b>.plans``, written by
:func:`codistill.evaluation.judging.plan_summary`) and ``tasks.jsonl`` (per task ``n`` and
``c``, for the sweep curves: the unbiased estimator of :mod:`codistill.metrics.passk`).
"""

from __future__ import annotations

from pathlib import Path

from codistill.report.load import Arm


def _model(cfg: dict, model_key: str = "model", adapter_key: str = "adapter") -> str:
    model = str(cfg.get(model_key) or "–")
    adapter = cfg.get(adapter_key)
    return model + (f" + {Path(adapter).parent.name or adapter}/{Path(adapter).name}" if adapter else "")


def _reasoner(cfg: dict) -> str:
    from codistill.evaluation.config import split_model_spec

    model, adapter = split_model_spec(str(cfg.get("reasoner") or ""))
    return _model({"model": model, "adapter": adapter})


def pipeline_rows(order: list[Arm], benches: list[str]) -> list[dict]:
    """One row per arm and benchmark where the arm is a Reasoner→Coder pipeline or its answers
    carry a token count (a direct arm is the row without a Reasoner, for the cost comparison)."""
    rows = []
    pipelines = [a for a in order if ((a.results or {}).get("config") or {}).get("strategy") == "reasoner-coder"]
    if not pipelines:
        return rows
    for a in order:
        cfg = (a.results or {}).get("config") or {}
        is_pipe = a in pipelines
        for bch in benches:
            b = ((a.results or {}).get("benchmarks") or {}).get(bch)
            if not b:
                continue
            plans = b.get("plans") or {}
            leak = plans.get("leakage") or {}
            rows.append({
                "arm": a.name, "benchmark": bch, "reasoner": _reasoner(cfg) if is_pipe else None,
                "coder": _model(cfg), "plans": cfg.get("plans", 1) if is_pipe else None,
                "codes_per_plan": cfg.get("codes_per_plan", 1) if is_pipe else None,
                "n_samples": cfg.get("n_samples", 1), "pass@1": (b.get("pass@k") or {}).get("pass@1"),
                "solve@k": plans.get("solve@k"), "plan_pass_rate": plans.get("plan_pass_rate"),
                "plan_parsed_rate": plans.get("parsed_rate"), "leakage_mean": leak.get("mean"),
                "leakage_above_0.5": leak["above_threshold"] / leak["count"] if leak.get("count") else None,
                "plan_tokens_mean": plans.get("plan_tokens_mean"), "tokens_per_solved": b.get("tokens_per_solved"),
            })
    return rows


def sweep_curves(order: list[Arm], benches: list[str]) -> dict:
    """{benchmark: {arm: {"kind": "solve" | "pass", "n": programs per task, "curve": {"k": mean}}}}
    for every arm with at least two programs per task on every task of the benchmark."""
    from codistill.metrics.passk import pass_at_k_table

    out: dict = {}
    for bch in benches:
        for a in order:
            rows = a.rows.get(bch) or {}
            counts = {t: (int(r["n"]), int(r["c"])) for t, r in rows.items() if r.get("n") is not None}
            if not counts or min(n for n, _ in counts.values()) < 2:
                continue
            n = min(n for n, _ in counts.values())
            table = pass_at_k_table(counts, ks=range(1, n + 1))
            is_pipe = ((a.results or {}).get("config") or {}).get("strategy") == "reasoner-coder"
            out.setdefault(bch, {})[a.name] = {"kind": "solve" if is_pipe else "pass", "n": n,
                                               "curve": {k.split("@")[1]: v for k, v in table.items()}}
    return out


def pipeline_part(order: list[Arm], benches: list[str]) -> dict:
    """The report.json keys of this part (none when there is nothing to show)."""
    part = {}
    rows = pipeline_rows(order, benches)
    if rows:
        part["pipelines"] = rows
    sweep = sweep_curves(order, benches)
    if sweep:
        part["sweep"] = sweep
    return part


def plot_sweep(sweep: dict, path: Path) -> Path | None:
    """solve@k / pass@k against k, one panel per benchmark, one line per arm."""
    from codistill.report.plots import _colors, _figure, _save

    if not sweep:
        return None
    benches = list(sweep)
    fig = _figure(4.2 * len(benches) + 1, 3.6)
    arms = list(dict.fromkeys(a for curves in sweep.values() for a in curves))
    colors = dict(zip(arms, _colors(len(arms))))
    for i, bch in enumerate(benches, 1):
        ax = fig.add_subplot(1, len(benches), i)
        for arm, c in sweep[bch].items():
            ks = sorted(c["curve"], key=int)
            ax.plot([int(k) for k in ks], [100 * c["curve"][k] for k in ks], marker="o", color=colors[arm],
                    ls="-" if c["kind"] == "solve" else "--", label=f"{arm} ({c['kind']}@k)")
        ax.set_xlabel("k (programs drawn per task)")
        ax.set_ylabel("%")
        ax.set_title(bch)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=7)
    return _save(fig, path)


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def pipeline_section(rep: dict, plots: dict):
    """("Reasoner → Coder", blocks), or None when the report has no pipeline or sweep."""
    from codistill.report.sections import Block

    rows, sweep = rep.get("pipelines"), rep.get("sweep")
    if not rows and not sweep:
        return None
    b = []
    if rows:
        headers = ["arm", "benchmark", "Reasoner", "Coder", "M×T", "pass@1", "solve@M×T", "plans with a pass",
                   "plan leakage (mean)", "plans leaking ≥0.5", "plan tokens", "tokens / solved task"]
        table = []
        for r in rows:
            mt = f"{r['plans']}×{r['codes_per_plan']}" if r["plans"] else f"direct n={r['n_samples']}"
            solve = r["solve@k"] or {}
            top = solve.get(f"solve@{(r['plans'] or 1) * (r['codes_per_plan'] or 1)}")
            table.append([r["arm"], r["benchmark"], r["reasoner"] or "– (direct)", r["coder"], mt, _pct(r["pass@1"]),
                          _pct(top), _pct(r["plan_pass_rate"]),
                          "–" if r["leakage_mean"] is None else f"{r['leakage_mean']:.3f}", _pct(r["leakage_above_0.5"]),
                          "–" if r["plan_tokens_mean"] is None else f"{r['plan_tokens_mean']:.0f}",
                          "–" if r["tokens_per_solved"] is None else f"{r['tokens_per_solved']:.0f}"])
        b.append(Block("table", headers=headers, rows=table))
        b.append(Block("p", "Percentages. M plans per task from the Reasoner (statement only), T codes per plan from "
                       "the Coder (statement + plan). solve@k = mean over tasks of 1 − C(n−g, k)/C(n, k) over the "
                       "M×T programs (g passing). Plan leakage: the teach stage's score of the plan against the "
                       "task's reference solution (1 = the plan was the code). Tokens per solved task: every "
                       "generated token (plans once, codes) over tasks with a passing program. Paired tests "
                       "against the direct arm with the same Coder, judged under the same protocol (the plan's "
                       "effect), are in the significance table."))
    if sweep:
        b.append(Block("p", "Sweep at a fixed number of programs per task: solid lines sample plans (solve@k), "
                       "dashed lines sample codes directly (pass@k), both with the unbiased estimator on each arm's "
                       "per-task counts."))
        if "sweep" in plots:
            b.append(Block("img", path=plots["sweep"]["path"], text=plots["sweep"]["title"]))
    return ("Reasoner → Coder and sampling sweep", b)
