"""The report's prose: sections of blocks (paragraphs, tables, lists, warnings, images, folded
text) assembled from the report data, the same for Markdown and HTML (:mod:`codistill.report.render`),
and the cell formatting shared with the terminal tables (:mod:`codistill.report.terminal`).

Block text may use ``**bold**`` and ```code``` (rendered as such in HTML; Markdown as is).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from codistill.report.compute import CAP_WARN, PROVENANCE_KEYS, SMOKE_TEXT, VERDICT_COLUMNS
from codistill.report.load import Arm, RunInfo
from codistill.report.paired import (baseline_cell, baselines_used, beyond_baselines, beyond_text, crosses_protocols,
                                     same_model)

__all__ = ["Block", "Section", "build_sections"]

# codistill.backends.base.FINISH_REASONS, as the report says them
FINISH_LABELS = {"eos": "end of sequence", "stop": "a later section's header (stop string)", "length": "the cap",
                 "loop": "the loop stop", "stop_or_eos": "stop string or end of sequence"}


def _pct(x: float | None, nd: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{nd}f}"


def _share(n: int | None, of: int | None) -> str:
    return "–" if n is None else f"{n} ({_pct(n / of)}%)" if of else str(n)


def _families(sig: list[dict]) -> str:
    kinds = [("against the baseline or the Coder's direct arm", {"baseline", "coder"}),
             ("against a reference arm", {"reference"}), ("the named pairs", {"pair"})]
    return "; ".join(f"{name} ({n} comparisons)" for name, fam in kinds
                     for n in [sum(1 for s in sig if s.get("against", "baseline") in fam)] if n)


def _num(x, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _pval(p: float) -> str:
    if p >= 0.001:
        return f"{p:.3f}"
    return f"{p:.1e}"


def _cell_p1(cell: dict | None) -> str:
    if not cell:
        return "–"
    s = _pct(cell["pass@1"])
    if cell.get("ci"):
        s += f" [{_pct(cell['ci'][0])}, {_pct(cell['ci'][1])}]"
    if cell.get("n_tasks") is not None:
        s += f" n={cell['n_tasks']}"
    return s


@dataclass
class Block:
    """One piece of a section; ``kind`` says which fields it uses."""

    kind: str  # p (text) | table (headers, rows) | img (path, text) | pre (text, summary) | list (items)
    #            | banner / warn (text, items)
    text: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    path: Path | None = None
    summary: str = ""


Section = tuple[str, list[Block]]  # (heading, "" for none; blocks)


def _baseline_list(rep: dict, names: list[str]) -> str:
    """``**base** (protocol `paper`), **base@standard** (protocol `standard`)``."""
    pr = rep.get("protocols") or {}
    return ", ".join(f"**{n}** (protocol `{(pr.get(n) or {}).get('name') or '?'}`)" for n in names)


def _cross_text(rep: dict) -> str:
    """A sentence on the rows whose arm and baseline were judged under different protocols ('' if none)."""
    pr = rep.get("protocols") or {}
    pairs: dict[tuple[str, str], bool] = {}
    for r in rep["significance"]:
        if crosses_protocols(r, pr):
            pairs[(r["arm"], r["baseline"])] = same_model(r)
    if not pairs:
        return ""
    desc = [f"{a} vs {bl} (`{pr[a]['name']}` vs `{pr[bl]['name']}`: "
            + ("the same model, so Δ is the protocol's effect)" if same else "Δ mixes the model and the protocol "
               "difference)") for (a, bl), same in pairs.items()]
    return " Rows across two protocols: " + "; ".join(desc) + "."


def build_sections(rep: dict, arms: list[Arm], runs: list[RunInfo], plots: dict) -> list[Section]:
    """The report's sections, in order. ``plots``: {key: {"path", "title", ...}} of the plots drawn."""
    secs: list[Section] = []
    benches = rep["benchmarks"]
    order = rep["arms"]
    t1 = rep["table1"]

    head: list[Block] = []
    if rep["smoke"]["is_smoke"]:
        head.append(Block("banner", SMOKE_TEXT, items=rep["smoke"]["reasons"]))
    head.append(Block("p", f"Generated {rep['generated']} from: " + ", ".join(rep["inputs"]) + "."))
    used = baselines_used(rep)
    if len(used) > 1:
        said = (f"Baselines: {_baseline_list(rep, used)}; each arm is compared with the one judged under its own "
                "protocol.")
    else:
        said = f"Baseline: **{rep['baseline'] or '–'}**."
    also = beyond_text(rep)
    head.append(Block("p", f"Arms: {', '.join(order) or 'none'}. {said}" + (f" {also}" if also else "")
                      + (f" {rep['baseline_note']}" if rep.get("baseline_note") else "")))
    for run_name, items in (rep.get("fixed_before_run") or {}).items():
        head.append(Block("p", f"Fixed before the run ({run_name}'s recipe, `report.fixed_before_run`):"))
        head.append(Block("list", items=items))
    if rep["warnings"]:
        head.append(Block("warn", "Check before comparing:", items=rep["warnings"]))
    secs.append(("", head))

    # Table 1 ------------------------------------------------------------------------------
    b: list[Block] = []
    if benches and order:
        pk_cols = sorted({k for a in order for bch in benches for k in ((t1.get(a) or {}).get(bch) or {}).get("pass@k", {})},
                         key=lambda k: int(k.split("@")[1]))
        headers = ["arm"] + benches + [f"{bch} {k}" for bch in benches for k in pk_cols
                                       if any(k in (((t1.get(a) or {}).get(bch) or {}).get("pass@k") or {}) for a in order)]
        rows = []
        for a in order:
            row = [a] + [_cell_p1((t1.get(a) or {}).get(bch)) for bch in benches]
            for h in headers[1 + len(benches):]:
                bch, k = h.rsplit(" ", 1)
                v = (((t1.get(a) or {}).get(bch) or {}).get("pass@k") or {}).get(k)
                row.append(_pct(v))
            rows.append(row)
        b.append(Block("table", headers=headers, rows=rows))
        cells = [(a, bch, c) for a in order for bch, c in (t1.get(a) or {}).items() if c and c.get("ci")]
        multi = [f"{a}/{bch}" for a, bch, c in cells if c.get("ci_basis") == "samples"]
        where = "every cell here" if multi and len(multi) == len(cells) else ", ".join(multi)
        b.append(Block("p", "pass@1 in %, [Wilson 95% CI], n = tasks. pass@1 is the mean over tasks of c/n "
                       "(n samples per task, c of them passing)."
                       + (f" Where n > 1 ({where}) the Wilson interval counts the samples as independent, so it is "
                          "narrower than a task-level interval would be." if multi else "")))
        summ_only = [f"{a}/{bch}" for a in order for bch, c in (t1.get(a) or {}).items()
                     if c and c.get("source") == "results.json"]
        if summ_only:
            b.append(Block("p", "From results.json only (no tasks.jsonl, so no CI and no paired test): "
                           + ", ".join(summ_only) + "."))
        diff = [f"{a}/{bch}: tasks.jsonl {_pct(c['pass@1'], 2)} vs results.json {_pct(c['results_json_pass@1'], 2)}"
                for a in order for bch, c in (t1.get(a) or {}).items() if c and "results_json_pass@1" in c]
        if diff:
            b.append(Block("warn", "pass@1 recomputed from tasks.jsonl differs from results.json:", items=diff))
    else:
        b.append(Block("p", "No evaluation results found."))
    if "pass_at_1" in plots:
        b.append(Block("img", path=plots["pass_at_1"]["path"], text=plots["pass_at_1"]["title"]))
    secs.append(("Table 1: pass@1 per benchmark", b))

    # significance -------------------------------------------------------------------------
    b = []
    sig = rep["significance"]
    multi = len({s["baseline"] for s in sig}) > 1 or bool(beyond_baselines(rep))
    if sig:
        headers = ["arm", "benchmark", "tasks compared", f"{rep['baseline']} pass@1", "arm pass@1", "Δpass@1 (pp)",
                   "95% bootstrap CI (pp)", "b: arm only", "c: baseline only", "McNemar exact p", "Holm p"]
        if multi:  # a column naming each row's baseline
            headers[1:1] = ["baseline"]
            headers[4] = "baseline pass@1"
        rows = []
        for s in sig:
            extra = ""
            if s["n_baseline_only"] or s["n_arm_only"]:
                extra = f" (of {s['n_common'] + s['n_baseline_only']} / {s['n_common'] + s['n_arm_only']})"
            rows.append([s["arm"], s["benchmark"], f"{s['n_common']}{extra}", _pct(s["baseline_pass@1"]),
                         _pct(s["arm_pass@1"]),
                         f"{100 * s['delta']:+.1f}", f"[{100 * s['ci'][0]:+.1f}, {100 * s['ci'][1]:+.1f}]",
                         str(s["b"]), str(s["c"]), _pval(s["p_value"]), _pval(s["p_holm"])])
            if multi:
                rows[-1][1:1] = [baseline_cell(s)]
        b.append(Block("table", headers=headers, rows=rows))
        against = (f"the baseline judged under the same protocol (column baseline: {_baseline_list(rep, used)})"
                   if len(used) > 1 else f"**{rep['baseline']}**")
        also = beyond_text(rep)
        b.append(Block("p", f"Each arm against {against}" + (f" (the rows without a mark). {also} Every row is on"
                                                              if also else " on")
                       + " the tasks both evaluated (intersection of task ids; "
                       "\"of X / Y\" gives each side's total where they differ). Δ = arm − baseline in percentage points, "
                       f"CI from a paired bootstrap over tasks ({rep['n_boot']} resamples). McNemar: exact two-sided binomial "
                       "test on the discordant tasks b and c. Holm p adjusts within each family of this table: "
                       + _families(sig) + ". A CI that contains 0 / p ≥ 0.05 is no evidence of a difference."
                       + (" With n > 1 samples per task, McNemar compares each task's first sample (pass/fail) while Δ and "
                          "its CI use the per-task pass@1 c/n." if any(s["mcnemar_on"] != "pass/fail" for s in sig) else "")
                       + _cross_text(rep)))
    else:
        b.append(Block("p", "No paired comparison: it needs a baseline and another arm with per-task results "
                       "(tasks.jsonl) on a shared benchmark."))
    if rep["significance_notes"]:
        b.append(Block("list", items=rep["significance_notes"]))
    extra = beyond_baselines(rep)
    parts = [f"the same-protocol baselines ({', '.join(used)})" if len(used) > 1
             else f"the baseline ({rep['baseline'] or '–'})"]
    parts += (["the pipelines' Coders"] if "coder" in extra else []) + (
        [f"the reference arm{'s' if len(extra['reference']) > 1 else ''} ({', '.join(extra['reference'])})"]
        if "reference" in extra else []) + (["named pairs"] if "pair" in extra else [])
    heading = "Paired significance against " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1
                                                 else parts[0])
    secs.append((heading, b))

    # protocol and answer lengths ------------------------------------------------------------
    pr, ans = rep.get("protocols") or {}, rep.get("answers") or {}
    rows = []
    for a in order:
        p = pr.get(a) or {}
        for bch, r in (ans.get(a) or {}).items():
            if r.get("cap_hit_rate") is None and r.get("no_code_rate") is None:
                continue
            flag = " ⚠" if (r.get("cap_hit_rate") or 0) > CAP_WARN else ""
            rows.append([a, str(p.get("name")) + (" (primary)" if p.get("primary") else ""),
                         str(p.get("max_new_tokens") or "–"), bch, _pct(r.get("cap_hit_rate")) + flag,
                         _pct(r.get("no_code_rate")), _pct(r.get("ended_no_code_rate")), _pct(r.get("loop_rate"))])
    if rows:
        over = [f"{a}: {', '.join(p['overrides'])}" for a, p in pr.items() if p.get("overrides")]
        b = [Block("table", headers=["arm", "protocol", "max new tokens", "benchmark", "hit the cap", "no code",
                                     "ended with no code", "ends in a loop"], rows=rows),
             Block("p", "Protocol: `standard` = zero-shot, EvalPlus instruction prompt, any answer layout; otherwise the "
                   "student format the arm was judged in (the one it was trained in, unless an override is listed). "
                   "(primary) marks the protocol the recipe declared primary before the run. *Hit the cap*: answers "
                   f"that used the whole token budget; more than {CAP_WARN:.0%} (⚠) means the budget decides verdicts. "
                   "*No code*: answers with no code defining the entry point; *ended with no code*: those of them that "
                   "neither the cap nor a loop ended (the model stopped before writing code: end of sequence, or the "
                   "header of a section after the code, where the format stops generation). *Ends in a loop*: answers whose last "
                   "200+ characters repeat one block at least three times (a degenerate repetition; – where the eval "
                   "was judged before this rate existed).")]
        why = [f"{a}, {bch}: " + (", ".join(f"{FINISH_LABELS.get(k, k)} {v}" for k, v in r["no_code_finish"].items())
                                   or "none") + f" ({r['finish_known']} answers say why they ended)"
               for a in order for bch, r in (ans.get(a) or {}).items() if r.get("finish_known")]
        if why:
            b.append(Block("p", "Why the answers with no code ended, where the backend said (a streamed answer "
                           "knows; answers generated before this was recorded do not say):"))
            b.append(Block("list", items=why))
        rules = [f"{a}: rule {sr.get('rule')}" + (f", {sr['superseded']} answer(s) made under rule 1 asked again"
                                                   if sr.get("superseded") else "")
                 for a, p in pr.items() if isinstance(sr := p.get("stop_rule"), dict)]
        unmarked = [a for a, p in pr.items() if p.get("name") not in (None, "standard") and not p.get("stop_rule")]
        if rules or unmarked:
            b.append(Block("p", "Stop rule of the format evals: rule 2 stops at the header of a section after the "
                           "code only once the code section is closed; rule 1 (evals made before 2026-12-02) stopped "
                           "there even before the code, cutting off a student that wrote its tests first. A rule-1 "
                           "eval run again asks those answers again (`generations.superseded.jsonl` keeps the old ones):"))
            b.append(Block("list", items=rules + [f"{a}: rule 1 (made before rule 2; run it again to redo what it "
                                                  "cut short)" for a in unmarked]))
        if over:
            b.append(Block("warn", "Guard overrides used:", items=over))
        secs.append(("Protocol and answer lengths", b))

    # verdicts -----------------------------------------------------------------------------
    vd = rep.get("verdicts") or {}
    rows = [[a, bch, str(sum(c.values()))] + [str(c[k]) for k in VERDICT_COLUMNS + ("other",)]
            for a in order for bch, c in (vd.get(a) or {}).items()]
    if rows:
        b = [Block("table", headers=["arm", "benchmark", "tasks", *VERDICT_COLUMNS, "other"], rows=rows),
             Block("p", "Judge verdict of each task's first sample. `syntax_error` includes answers with no code in "
                   "them (e.g. cut off at max_new_tokens before the code), `error` a runtime error, `other` memory, "
                   "output-limit and sandbox errors. Where an arm loses, this says whether it wrote wrong code or "
                   "no usable code.")]
        secs.append(("Verdicts per arm", b))

    # Table 3 ------------------------------------------------------------------------------
    b = []
    t3 = rep["table3"]
    if any(t3.get(a) for a in order):
        headers = ["arm"] + [f"{bch} {m}" for bch in benches for m in ("syntax", "dataflow")]
        rows = []
        for a in order:
            row = [a]
            for bch in benches:
                c = (t3.get(a) or {}).get(bch)
                row.append(_num(c["syntax_match"]) + (f" n={c['n_syntax']}" if c and c.get("n_syntax") else "") if c else "–")
                row.append(_num(c["dataflow_match"]) + (f" n={c['n_dataflow']}" if c and c.get("n_dataflow") else "") if c else "–")
            rows.append(row)
        b.append(Block("table", headers=headers, rows=rows))
        b.append(Block("p", "Average CodeBLEU syntax match (AST subtrees) and dataflow match of each task's first sample "
                       "against the reference solution; n = tasks averaged (dataflow only where the reference has dataflow)."))
    else:
        b.append(Block("p", "No syntax/dataflow match values in the results."))
    secs.append(("Table 3: CodeBLEU syntax and dataflow match", b))

    # perplexity ---------------------------------------------------------------------------
    b = []
    ppl = rep["perplexity"]
    if any(ppl.get(a) for a in order):
        rows = []
        for a in order:
            q = ppl.get(a)
            rows.append([a, _num(q["mean"], 2), _num(q["median"], 2), str(q.get("n")),
                         _pct(q["prefix_fraction"], 0) + "%" if q.get("prefix_fraction") is not None else "–"]
                        if q else [a, "–", "–", "–", "–"])
        b.append(Block("table", headers=["arm", "mean", "median", "n", "prefix given"], rows=rows))
        b.append(Block("p", "Perplexity of the rest of each MBPP test question given its first words (lower = the "
                       "model's language modelling of problem statements is better preserved)."))
    else:
        b.append(Block("p", "No question-completion perplexity in the results."))
    if "perplexity" in plots:
        b.append(Block("img", path=plots["perplexity"]["path"], text=plots["perplexity"]["title"]))
    secs.append(("Question-completion perplexity", b))

    # training -----------------------------------------------------------------------------
    b = []
    tr = [(a, rep["provenance"][a.name].get("train")) for a in arms if rep["provenance"].get(a.name, {}).get("train")]
    if tr:
        yn = {True: "yes", False: "no", None: "–"}
        rows = [[a.name, yn.get(t.get("structure_loss"), str(t.get("structure_loss"))), str(t.get("last_step")), _num(t.get("final_token_loss"), 4),
                 _num(t.get("final_structure_loss"), 4), _num(t.get("mean_tokens_per_s"), 1), _num(t.get("peak_rss_gib"), 2)]
                for a, t in tr]
        b.append(Block("table", headers=["arm", "structure loss on", "last step", "final token loss",
                                         "final structure loss", "train tokens/s", "peak RSS GiB"], rows=rows))
        ex = [(a, t) for a, t in tr if t.get("examples")]
        if ex:  # a target longer than max_length is shortened (tests, then context; never the code)
            b.append(Block("table", headers=["arm", "teach rows", "examples kept", "shortened to max_length",
                                             "dropped (too long / no code)", "train / val", "max_length"],
                           rows=[[a.name, str(e.get("total")), str(e.get("kept")), _share(e.get("truncated"), e.get("kept")),
                                  f"{e.get('dropped_too_long')} / {e.get('dropped_empty_code')}", f"{e.get('train')} / {e.get('val')}",
                                  str(t.get("max_length") or "–")]
                                 for a, t in ex for e in [t["examples"]]]))
    for key in ("loss", "alpha_beta"):
        if key in plots:
            b.append(Block("img", path=plots[key]["path"], text=plots[key]["title"]))
    if not b:
        b.append(Block("p", "No training logs (arms without train/ are evaluated as they are)."))
    secs.append(("Training", b))

    # teacher / data -----------------------------------------------------------------------
    b = []
    for run in runs:
        tm = run.teach_manifest or {}
        if tm.get("counts"):
            c = tm["counts"]
            items = [f"{k}: {v}" for k, v in c.items() if not isinstance(v, dict)]
            items += [f"{k}: " + ", ".join(f"{kk} {vv}" for kk, vv in v.items()) for k, v in c.items() if isinstance(v, dict) and v]
            b.append(Block("p", f"**{run.name}**: teacher contexts (teach_manifest.json counts)"))
            b.append(Block("list", items=items))
        lk = ((tm.get("leakage") or {}).get("final")) or {}
        if lk.get("count"):
            b.append(Block("p", f"Leakage of final contexts: mean {_num(lk.get('mean'))}, median {_num(lk.get('median'))}, "
                           f"max {_num(lk.get('max'))}" + (f", threshold {lk['threshold']}, above it {lk.get('above_threshold')}"
                                                            if lk.get("threshold") is not None else "") + "."))
        if run.contexts_counts:
            lv = run.leakage_valid or []
            b.append(Block("p", f"contexts.jsonl: {run.contexts_counts['rows']} rows, {run.contexts_counts['valid']} valid"
                           + (f"; leakage of valid contexts: mean {_num(sum(lv) / len(lv))}, median "
                              f"{_num(statistics.median(lv))}, max {_num(max(lv))}" if lv else "") + "."))
        dm = run.data_manifest or {}
        if dm.get("counts"):
            c = dm["counts"]
            items = [f"rows: {c.get('rows')}", f"problems: {c.get('problems')}"]
            if isinstance(c.get("total"), dict):
                items.append("stages: " + ", ".join(f"{k} {v}" for k, v in c["total"].items()))
            b.append(Block("p", f"**{run.name}**: training data (data/manifest.json)"))
            b.append(Block("list", items=items))
    if "leakage" in plots:
        b.append(Block("img", path=plots["leakage"]["path"], text=f"{plots['leakage']['title']} (from {plots['leakage']['source']})"))
    if b:
        secs.append(("Teacher contexts and training data", b))

    from codistill.report.pipeline import pipeline_section  # it builds Blocks: imported here, not above

    pipe = pipeline_section(rep, plots)
    if pipe:
        secs.append(pipe)
    from codistill.report.cost import cost_section  # it builds Blocks: imported here, not above

    cost = cost_section(rep)
    if cost:
        secs.append(cost)

    # provenance ---------------------------------------------------------------------------
    b = []
    prov = rep["provenance"]
    cfg_keys = [k for k in PROVENANCE_KEYS if any(k in (prov.get(a) or {}).get("config", {}) for a in order)]
    if cfg_keys:
        rows = []
        for a in order:
            c = (prov.get(a) or {}).get("config", {})
            rows.append([a] + [", ".join(map(str, c[k])) if isinstance(c.get(k), list) else _num(c.get(k), 2) if c.get(k) is not None else "–"
                               for k in cfg_keys])
        b.append(Block("p", "Eval settings (results.json config):"))
        b.append(Block("table", headers=["arm"] + cfg_keys, rows=rows))
    rows = []
    for a in order:
        p = prov.get(a) or {}
        g = p.get("generation") or {}
        t = p.get("timings_s") or {}
        stage = p.get("stage_wall_s") or {}
        timed = g.get("samples_timed")
        cover = (f" ({timed} of {g['samples']} generations timed)"
                 if timed is not None and g.get("samples") and timed < g["samples"] else "")
        rows.append([a, p.get("prompt_mode") or "–", _num(g.get("tokens_per_s"), 1),
                     f"{g['new_tokens']}{cover}" if "new_tokens" in g else "–",
                     ", ".join(f"{k} {v}" for k, v in t.items()) or "–",
                     ", ".join(f"{k} {_num(v, 1)}" for k, v in stage.items()) or "–"])
    if rows:
        b.append(Block("p", "Generation and wall times (seconds):"))
        b.append(Block("table", headers=["arm", "prompt mode", "gen tokens/s", "new tokens", "eval timings_s",
                                         "run stages wall_s"], rows=rows))
    hashes = sorted({bch for a in order for bch in (prov.get(a) or {}).get("data_hashes", {})})
    if hashes:
        rows = [[a] + [((prov.get(a) or {}).get("data_hashes", {}).get(bch) or "–")[:12] for bch in hashes] for a in order]
        b.append(Block("p", "Benchmark data hashes (first 12 hex digits; equal hashes = same problems):"))
        b.append(Block("table", headers=["arm"] + hashes, rows=rows))
    vkeys = sorted({k for a in order for k in (prov.get(a) or {}).get("versions", {})})
    if vkeys:
        rows = [[a] + [str((prov.get(a) or {}).get("versions", {}).get(k, "–")) for k in vkeys] for a in order]
        b.append(Block("p", "Versions:"))
        b.append(Block("table", headers=["arm"] + vkeys, rows=rows))
    b.append(Block("p", "Sources: " + "; ".join(f"{a}: {(prov.get(a) or {}).get('source')}" for a in order) + "."))
    for run in runs:
        st = (run.manifest or {}).get("stages") or {}
        if st:
            rows = [[k, str(v.get("status", "–")), _num(v.get("wall_s"), 1), str(v.get("started") or "–"),
                     str(v.get("finished") or "–"), str(v.get("key") or "–")[:12]]
                    for k, v in st.items() if isinstance(v, dict)]
            b.append(Block("p", f"**{run.name}** stages (run_manifest.json):"))
            b.append(Block("table", headers=["stage", "status", "wall_s", "started", "finished", "key"], rows=rows))
        vers = (run.manifest or {}).get("versions")
        if vers:
            b.append(Block("p", f"**{run.name}** versions: " + ", ".join(f"{k} {v}" for k, v in vers.items())))
        if run.recipe_text:
            b.append(Block("pre", run.recipe_text, summary=f"{run.name}: recipe.yaml (resolved recipe)"))
    secs.append(("Provenance", b))

    # missing ------------------------------------------------------------------------------
    b = []
    if rep["missing"]:
        b.append(Block("list", items=rep["missing"]))
    if rep["skipped_plots"]:
        b.append(Block("p", "Plots not drawn:"))
        b.append(Block("list", items=[f"{k}: {v}" for k, v in rep["skipped_plots"].items()]))
    if rep["notes"]:
        b.append(Block("p", "Notes:"))
        b.append(Block("list", items=rep["notes"]))
    if b:
        secs.append(("Missing inputs and notes", b))
    return secs
