"""The report as data: every table, comparison, check and note, computed from the loaded arms.

:func:`compute_report` turns the arms and runs of :mod:`codistill.report.load` into the
:class:`Report` dict that ``report.json`` holds and the renderers (Markdown, HTML, terminal) read.

Statistics: pass@1 with a Wilson 95% interval per arm and benchmark; every arm against the
baseline judged under the arm's own protocol (``base`` for the run's format, ``base@standard`` for
the standard protocol; a pipeline against the direct arm with its Coder), the trained arms against
the reference arms (``cd``) and the named pairs, on the tasks both evaluated: Δpass@1 with a paired
bootstrap 95% CI, exact McNemar test and a Holm adjustment over all comparisons in the table --
:mod:`codistill.report.paired`, :mod:`codistill.report.references`.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import statistics
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from codistill.report.cost import cost_part
from codistill.report.load import Arm, RunInfo, _split_spec
from codistill.report.paired import Comparison, _nc, _task_p1, protocol_name, significance
from codistill.report.pipeline import pipeline_part

__all__ = ["SMOKE_TEXT", "SMOKE_MIN_TASKS", "CAP_WARN", "VERDICT_COLUMNS", "PROVENANCE_KEYS", "Report",
           "compute_report"]

SMOKE_TEXT = "Smoke run: these numbers are not a result"
SMOKE_MIN_TASKS = 30
CAP_WARN = 0.05  # share of answers at the token cap above which an arm is flagged
VERDICT_COLUMNS = ("pass", "fail", "error", "timeout", "syntax_error")  # judge statuses with a column
PROVENANCE_KEYS = ("model", "adapter", "backend", "benchmarks", "n_samples", "temperature", "top_p",
                   "max_new_tokens", "prompt_mode", "seed", "limit", "dtype", "stop_on_loop")
COMPARED_KEYS = ("n_samples", "temperature", "top_p", "max_new_tokens", "prompt_mode", "seed", "limit", "stop_on_loop")
LATER_DEFAULTS = {"stop_on_loop": False}  # compared settings an older results.json does not hold: their default


# --------------------------------------------------------------------------- the shape
# Keys with "@" in them need TypedDict's functional form.
PassCell = TypedDict("PassCell", {
    "label": str | None,  # results.json's benchmark label
    "pass@1": float,  # mean over tasks of c/n
    "pass@k": dict[str, float],  # results.json's other pass@k
    "n_tasks": int | None, "k": int, "n": int,  # Wilson CI over k of n (tasks, or samples when n > 1)
    "ci": list[float] | None, "ci_basis": str, "samples_per_task": list[int],
    "source": str,  # "tasks.jsonl" or "results.json" (no per-task rows: no CI)
    "results_json_pass@1": float,  # only where results.json disagrees with tasks.jsonl
}, total=False)

class StructureCell(TypedDict):
    syntax_match: float | None
    dataflow_match: float | None
    n_syntax: int | None
    n_dataflow: int | None


class Perplexity(TypedDict):
    n: int | None
    mean: float | None
    median: float | None
    prefix_fraction: float | None
    source: str


class Protocol(TypedDict):
    name: str | None
    description: str | None
    overrides: list[str]
    primary: bool | None  # the protocol the recipe declared primary (None: no declaration)
    max_new_tokens: int | None


class AnswerRates(TypedDict):
    cap_hit_rate: float | None
    no_code_rate: float | None
    loop_rate: float | None  # None: judged before the rate existed
    ended_no_code_rate: float | None  # no code, neither capped nor looping (evaluation.judging.answer_rates)
    finish_known: NotRequired[int]  # answers whose backend said why they ended
    no_code_finish: NotRequired[dict[str, int]]  # why the answers with no code ended, where said


class Smoke(TypedDict):
    is_smoke: bool
    reasons: list[str]
    text: str | None


class RunSummary(TypedDict):
    path: str
    stages: dict | None
    teach_counts: dict | None
    data_counts: dict | None
    leakage_valid: dict | None  # n, mean, median, max of the valid contexts' leakage


class Report(TypedDict, total=False):
    """``report.json``. Arm-keyed tables list the evaluated arms, baseline first (``arms``)."""

    title: str
    generated: str
    inputs: list[str]
    arms: list[str]
    baseline: str | None  # the primary baseline; each significance row names the baseline it used
    baseline_note: str | None
    benchmarks: list[str]
    smoke: Smoke
    warnings: list[str]
    table1: dict[str, dict[str, PassCell]]  # arm -> benchmark -> cell
    table3: dict[str, dict[str, StructureCell]]
    perplexity: dict[str, Perplexity | None]
    verdicts: dict[str, dict[str, dict[str, int]]]  # arm -> benchmark -> status -> tasks
    protocols: dict[str, Protocol]
    fixed_before_run: dict[str, list[str]]  # run -> recipe's report.fixed_before_run
    answers: dict[str, dict[str, AnswerRates]]
    significance: list[Comparison]  # against the same-protocol baseline, a Coder's direct arm, a reference, a pair
    significance_notes: list[str]
    n_boot: int
    provenance: dict[str, dict[str, Any]]  # every arm, evaluated or not: source, config, versions, train...
    runs: dict[str, RunSummary]
    missing: list[str]
    notes: list[str]
    plots: dict[str, dict[str, str]]  # added by write_report
    skipped_plots: dict[str, str]
    files: dict[str, str]


# --------------------------------------------------------------------------- tables
def _pass_cell(arm: Arm, bench: str) -> PassCell | None:
    from codistill.metrics.stats import wilson_interval

    summ = ((arm.results or {}).get("benchmarks") or {}).get(bench) or {}
    rows = arm.rows.get(bench)
    cell: PassCell = {"label": summ.get("benchmark")}
    pk = {k: v for k, v in (summ.get("pass@k") or {}).items() if k != "pass@1" and v is not None}
    if pk:
        cell["pass@k"] = pk
    if rows:
        nc = [_nc(r) for r in rows.values()]
        n_tasks = len(rows)
        p1 = sum(_task_p1(r) for r in rows.values()) / n_tasks
        spt = sorted({n for n, _ in nc})
        if spt == [1]:
            k, n = sum(c for _, c in nc), n_tasks
            basis = "tasks"
        else:
            k, n = sum(c for _, c in nc), sum(n for n, _ in nc)
            basis = "samples"
        lo, hi = wilson_interval(k, n)
        cell.update({"pass@1": p1, "n_tasks": n_tasks, "k": k, "n": n, "ci": [lo, hi], "ci_basis": basis,
                     "samples_per_task": spt, "source": "tasks.jsonl"})
        rp1 = (summ.get("pass@k") or {}).get("pass@1")
        if rp1 is not None and abs(rp1 - p1) > 1e-9:
            cell["results_json_pass@1"] = rp1
        return cell
    p1 = (summ.get("pass@k") or {}).get("pass@1")
    if p1 is None:
        return None
    cell.update({"pass@1": float(p1), "n_tasks": summ.get("tasks"), "ci": None, "source": "results.json"})
    return cell


def _verdict_counts(arm: Arm, bench: str) -> dict[str, int]:
    """Judge statuses of each task's first sample (tasks.jsonl ``status``); other statuses summed as ``other``."""
    counts = {k: 0 for k in VERDICT_COLUMNS + ("other",)}
    for r in (arm.rows.get(bench) or {}).values():
        st = r.get("status")
        if st is None:  # older tasks.jsonl: pass/fail only
            st = "pass" if r.get("passed") else "fail"
        counts[st if st in VERDICT_COLUMNS else "other"] += 1
    return counts


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _structure_cell(arm: Arm, bench: str) -> StructureCell | None:
    summ = ((arm.results or {}).get("benchmarks") or {}).get(bench) or {}
    rows = list((arm.rows.get(bench) or {}).values())
    syn = [float(r["syntax_match"]) for r in rows if r.get("syntax_match") is not None]
    dfl = [float(r["dataflow_match"]) for r in rows if r.get("dataflow_match") is not None]
    s = summ.get("syntax_match", _mean(syn))
    d = summ.get("dataflow_match", _mean(dfl))
    if s is None and d is None:
        return None
    return {"syntax_match": s, "dataflow_match": d, "n_syntax": len(syn) if rows else None,
            "n_dataflow": summ.get("n_dataflow_tasks", len(dfl) if rows else None)}


def _perplexity(arm: Arm) -> Perplexity | None:
    qp = (arm.results or {}).get("question_perplexity") or {}
    if qp.get("mean") is not None:
        out = {k: qp.get(k) for k in ("n", "mean", "median", "prefix_fraction")}
        out["source"] = "results.json"
        return out
    if arm.ppl:
        xs = sorted(arm.ppl)
        return {"n": len(xs), "mean": sum(xs) / len(xs), "median": xs[len(xs) // 2], "prefix_fraction": None,
                "source": "tasks.jsonl"}
    return None


def _smoke(arms: list[Arm], runs: list[RunInfo], table1: dict) -> list[str]:
    reasons = []
    for run in runs:
        m = run.manifest or {}
        if m.get("smoke") is True or (m.get("recipe") or {}).get("smoke") is True:
            reasons.append(f"{run.name}: run_manifest.json has \"smoke\": true")
        elif run.recipe_text and re.search(r"(?m)^smoke:\s*(true|yes|on)\s*$", run.recipe_text, re.I):
            reasons.append(f"{run.name}: recipe.yaml has smoke: true")
    for arm in arms:
        if ((arm.results or {}).get("config") or {}).get("smoke") is True:
            reasons.append(f"{arm.name}: eval config has \"smoke\": true")
    small: dict[str, int] = {}
    for arm_name, cells in table1.items():
        for bench, cell in cells.items():
            n = (cell or {}).get("n_tasks")
            if n is not None and n < SMOKE_MIN_TASKS:
                small[bench] = min(small.get(bench, n), n)
    for bench, n in small.items():
        reasons.append(f"{bench}: only {n} task(s) (fewer than {SMOKE_MIN_TASKS})")
    return reasons


def _consistency(arms: list[Arm], benches: list[str]) -> list[str]:
    warn = []
    ev = [a for a in arms if a.results]
    for bench in benches:
        hashes = {}
        for a in ev:
            h = (a.results.get("data_hashes") or {}).get(bench)
            if h:
                hashes.setdefault(h, []).append(a.name)
        if len(hashes) > 1:
            desc = "; ".join(f"{h[:12]}: {', '.join(n)}" for h, n in hashes.items())
            warn.append(f"{bench}: arms were evaluated on different problem data (data hashes differ: {desc})")
    for key in COMPARED_KEYS:
        vals = {}
        for a in ev:
            vals.setdefault(json.dumps((a.results.get("config") or {}).get(key, LATER_DEFAULTS.get(key))), []).append(a.name)
        if len(vals) > 1:
            desc = "; ".join(f"{k}: {', '.join(n)}" for k, n in vals.items())
            extra = _loop_stop_evidence([a for a in ev if not (a.results.get("config") or {}).get(key)]) \
                if key == "stop_on_loop" else ""
            warn.append(f"eval setting '{key}' differs between arms ({desc}){extra}")
    for a in ev:
        lim = (a.results.get("config") or {}).get("limit")
        if lim:
            warn.append(f"{a.name}: evaluated on the first {lim} tasks of each benchmark only (limit={lim})")
    return warn


def _loop_stop_evidence(unstopped: list[Arm]) -> str:
    """What ``codistill loops`` (EVAL_DIR/loop_stop.json) measured for the arms judged without a loop
    stop: with greedy decoding, how many of their verdicts the stop would flip (0: the same verdicts)."""
    said = []
    for a in unstopped:
        path = a.eval_dir / "loop_stop.json" if a.eval_dir is not None else None
        try:
            ls = json.loads(path.read_text()) if path is not None and path.is_file() else None
        except (OSError, json.JSONDecodeError):
            ls = None
        if not ls or not ls.get("greedy"):
            said.append(f"{a.name}: not measured (`codistill loops {a.eval_dir}` would say what the stop changes)")
            continue
        b = ls.get("benchmarks") or {}
        flips = sum(x.get("pass_to_fail", 0) + x.get("fail_to_pass", 0) for x in b.values())
        cut = sum(x.get("stopped", 0) for x in b.values())
        n = sum(x.get("answers", 0) for x in b.values())
        said.append(f"{a.name}: the stop would cut {cut} of {n} answers and flip {flips} verdicts"
                    + (", so its verdicts are those it would have had with the stop" if flips == 0 else ""))
    return " — measured by `codistill loops` (exact for greedy decoding): " + "; ".join(said) if said else ""


def _protocol(arm: Arm) -> Protocol:
    """How an arm was judged (results.json ``protocol``; runs before it: the standard one)."""
    res = arm.results or {}
    p = res.get("protocol") or {}
    check = p.get("check") or {}
    primary = None
    if arm.run is not None and arm.run.recipe_text:
        import yaml

        try:
            spec = yaml.safe_load(arm.run.recipe_text) or {}
        except yaml.YAMLError:
            spec = {}
        declared, fmt = spec.get("primary_protocol"), spec.get("format")
        if declared:
            name = p.get("name", "standard")
            # "format" is the recipe's own format; an eval in another one (e.g. code-only) is neither
            kind = ("standard" if name == "standard" else
                    "format" if not isinstance(fmt, str) or name == fmt else "other")
            primary = kind == declared
    return {"name": protocol_name(arm), "description": p.get("description"),
            "overrides": check.get("overrides") or [], "primary": primary,
            "max_new_tokens": (res.get("config") or {}).get("max_new_tokens"), "stop_rule": res.get("stop_rule")}


def _fixed_before_run(run: RunInfo) -> list[str]:
    """The recipe's ``report.fixed_before_run``: what was decided before any test number was seen."""
    if not run.recipe_text:
        return []
    import yaml

    try:
        items = ((yaml.safe_load(run.recipe_text) or {}).get("report") or {}).get("fixed_before_run") or []
    except (yaml.YAMLError, AttributeError):
        return []
    return [str(x) for x in items] if isinstance(items, list) else [str(items)]


def _answer_rates(arm: Arm, bench: str) -> AnswerRates:
    b = ((arm.results or {}).get("benchmarks") or {}).get(bench) or {}
    loops, ended = b.get("loop_rate"), b.get("ended_no_code_rate")
    samples = arm.eval_dir / bench.replace(":", "_") / "samples.jsonl" if arm.eval_dir else None
    # judged before a rate existed: counted from the stored answers as the judge counts them now
    if (loops is None or ended is None) and b and samples is not None and samples.is_file():
        from codistill.evaluation.judging import answer_rates
        from codistill.store import read_jsonl

        now = answer_rates(list(read_jsonl(samples)))
        loops = now["loop_rate"] if loops is None else loops
        ended = now["ended_no_code_rate"] if ended is None else ended
    out: AnswerRates = {"cap_hit_rate": b.get("cap_hit_rate"), "no_code_rate": b.get("no_code_rate"),
                        "loop_rate": loops, "ended_no_code_rate": ended}
    if b.get("finish_known"):
        out["finish_known"], out["no_code_finish"] = b["finish_known"], dict(b.get("no_code_finish") or {})
    return out


def _cap_warnings(arms: list[Arm], benches: list[str]) -> list[str]:
    out = []
    for a in arms:
        hit = [f"{bch} {100 * r:.0f}%" for bch in benches
               if (r := (((a.results or {}).get("benchmarks") or {}).get(bch) or {}).get("cap_hit_rate")) is not None
               and r > CAP_WARN]
        if hit:
            out.append(f"{a.name}: more than {CAP_WARN:.0%} of the answers hit the "
                       f"{(a.results.get('config') or {}).get('max_new_tokens')}-token cap ({', '.join(hit)}): the "
                       "budget, not the model, decides those verdicts")
    return out


def _provenance(arm: Arm) -> dict:
    r = arm.results or {}
    cfg = r.get("config") or {}
    out: dict[str, Any] = {
        "source": str(arm.eval_dir or arm.source),
        "config": {k: cfg.get(k) for k in PROVENANCE_KEYS if k in cfg},
        "versions": r.get("versions") or {},
        "data_hashes": r.get("data_hashes") or {},
        "prompt_mode": r.get("prompt_mode"),
        "generation": r.get("generation") or {},
        "timings_s": r.get("timings_s") or {},
    }
    if arm.train_rows or arm.train_config:
        tc = arm.train_config or {}
        last = arm.train_rows[-1] if arm.train_rows else {}
        st = tc.get("structure") if isinstance(tc.get("structure"), dict) else {}
        out["train"] = {
            "model": tc.get("model"), "structure_loss": st.get("enabled"), "max_steps": tc.get("max_steps"),
            "epochs": tc.get("epochs"),
            "lr": (tc.get("optim") or {}).get("lr") if isinstance(tc.get("optim"), dict) else None,
            "lora_r": (tc.get("lora") or {}).get("r") if isinstance(tc.get("lora"), dict) else None,
            "steps_logged": len(arm.train_rows), "last_step": last.get("step"),
            "final_token_loss": last.get("token_loss"), "final_structure_loss": last.get("structure_loss"),
            "peak_rss_gib": max((x.get("peak_rss_gib") or 0 for x in arm.train_rows), default=None) or None,
            "mean_tokens_per_s": _mean([x["tokens_per_s"] for x in arm.train_rows[1:] if x.get("tokens_per_s")]),
        }
        data = (arm.train_summary or {}).get("data") or {}
        if data:  # how the teach stage's rows became examples: shortened to max_length, dropped
            out["train"]["examples"] = {k: data.get(k) for k in ("total", "kept", "truncated", "dropped_too_long",
                                                                 "dropped_empty_code", "train", "val")}
            out["train"]["max_length"] = (tc.get("data") or {}).get("max_length") if isinstance(tc.get("data"), dict) else None
    if arm.run and arm.run.manifest:
        stages = arm.run.manifest.get("stages") or {}
        short = arm.name.split("/")[-1]
        mine = {k: v.get("wall_s") for k, v in stages.items()
                if isinstance(v, dict) and short in re.split(r"[:/]", k)}
        if mine:
            out["stage_wall_s"] = mine
    return out


# --------------------------------------------------------------------------- the report
def _generated(when: str | _dt.datetime | None) -> str:
    """The "generated" stamp: ``when`` (text as given), else ``SOURCE_DATE_EPOCH``, else now (UTC)."""
    if isinstance(when, str):
        return when
    if when is None:
        import os

        epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
        when = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch.isdigit()
                else _dt.datetime.now(_dt.timezone.utc))
    if when.tzinfo is not None:
        when = when.astimezone(_dt.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _jsonable(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


def compute_report(arms: list[Arm], runs: list[RunInfo], inputs: list, *, baseline: str = "base",
                   title: str | None = None, n_boot: int = 10000, seed: int = 0,
                   generated: str | _dt.datetime | None = None, references=None, pairs=None) -> Report:
    """The report of ``arms``/``runs`` (from :func:`~codistill.report.load.discover_arms` on ``inputs``),
    all but ``plots``, ``skipped_plots`` and ``files``. ``baseline``: the primary baseline arm (if
    absent, the first evaluated arm, with a ``baseline_note``); each arm is compared with the member
    of its family (``base``, ``base@standard``) judged under the arm's protocol
    (:func:`~codistill.report.paired.choose_baselines`), a pipeline with the direct arm that has its
    Coder, and the trained arms with the reference arms and the named pairs (``references``,
    ``pairs``: None = each recipe's ``report.references`` / ``report.pairs``;
    :mod:`codistill.report.references`)."""
    evaluated = [a for a in arms if a.has_eval]
    base_arm = next((a for a in evaluated if a.name == baseline), None)
    baseline_note = None
    if base_arm is None and evaluated:
        base_arm = evaluated[0]
        baseline_note = (f"No arm named '{baseline}' with results; the first arm, '{base_arm.name}', is the baseline "
                         "(choose with --baseline).")
    order = ([base_arm] if base_arm else []) + [a for a in evaluated if a is not base_arm]
    names = [a.name for a in order]

    benches: list[str] = []
    for a in order:
        for bch in a.benchmarks():
            if bch not in benches:
                benches.append(bch)

    table1 = {a.name: {bch: c for bch in benches if (c := _pass_cell(a, bch))} for a in order}
    table3 = {a.name: {bch: c for bch in benches if (c := _structure_cell(a, bch))} for a in order}
    ppl = {a.name: _perplexity(a) for a in order}
    sig, sig_notes = (significance(order, base_arm, benches, n_boot, seed, runs=runs, references=references,
                                   pairs=pairs) if base_arm else ([], []))
    smoke = _smoke(arms, runs, table1)

    missing: list[str] = []
    notes: list[str] = []
    for run in runs:
        if run.missing:
            missing.append(f"{run.name}: " + ", ".join(run.missing))
        notes += [f"{run.name}: {n}" for n in run.notes]
    for a in arms:
        if not a.has_eval:
            missing.append(f"{a.name}: no evaluation results ({', '.join(a.missing) or 'results.json'}); left out of the tables")
        elif a.missing:
            missing.append(f"{a.name}: " + ", ".join(a.missing))
        notes += [f"{a.name}: {n}" for n in a.notes]

    title = title or ("codistill report: " + ", ".join(_split_spec(s)[1].name or str(s) for s in inputs))
    return {
        "title": title,
        "generated": _generated(generated),
        "inputs": [str(s) for s in inputs], "arms": names, "baseline": base_arm.name if base_arm else None,
        "baseline_note": baseline_note, "benchmarks": benches,
        "smoke": {"is_smoke": bool(smoke), "reasons": smoke, "text": SMOKE_TEXT if smoke else None},
        "warnings": _consistency(order, benches) + _cap_warnings(order, benches),
        "table1": table1, "table3": table3, "perplexity": ppl,
        "verdicts": {a.name: {bch: _verdict_counts(a, bch) for bch in benches if a.rows.get(bch)} for a in order},
        "protocols": {a.name: _protocol(a) for a in order},
        "fixed_before_run": {r.name: items for r in runs if (items := _fixed_before_run(r))},
        "answers": {a.name: {bch: _answer_rates(a, bch) for bch in benches
                             if bch in ((a.results or {}).get("benchmarks") or {})} for a in order},
        "significance": sig, "significance_notes": sig_notes, "n_boot": n_boot,
        "provenance": {a.name: _provenance(a) for a in arms},
        "runs": {r.name: {"path": str(r.path), "stages": (r.manifest or {}).get("stages"),
                          "teach_counts": (r.teach_manifest or {}).get("counts"),
                          "data_counts": (r.data_manifest or {}).get("counts"),
                          "leakage_valid": ({"n": len(r.leakage_valid), "mean": _mean(r.leakage_valid),
                                             "median": statistics.median(r.leakage_valid), "max": max(r.leakage_valid)}
                                            if r.leakage_valid else None)} for r in runs},
        "missing": missing, "notes": notes,
        **pipeline_part(order, benches), **cost_part(order, arms, benches, table1),
    }
