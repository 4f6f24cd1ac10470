"""Step 2 of an eval: answers → programs → verdicts, per benchmark, in the sandboxed judge.

Writes ``<bench>/samples.jsonl`` (EvalPlus format: task_id, solution, + completion_raw, n_tokens,
hit_cap, has_code) and ``<bench>/verdicts.jsonl``; returns each benchmark's summary (pass@k,
statuses, CodeBLEU syntax/dataflow match, cap-hit, no-code and loop rates) and the per-task rows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from codistill.evaluation.config import EVAL_LABELS, EvalConfig
from codistill.evaluation.generate import LOGGER
from codistill.loops import ends_in_a_loop  # noqa: F401 - re-exported: answer_rates and the report read it here
from codistill.problems.schema import Problem
from codistill.store import write_jsonl

CAP_SLACK = 2  # a completion re-tokenised may count a token or two off what the model generated
# generations.jsonl fields a sample is built from; any other field (a strategy's plan, ...) is kept as is
_GENERATION_KEYS = ("gen_key", "task_id", "sample_index", "completion_raw", "n_tokens")


def judge_all(cfg: EvalConfig, benches: dict[str, list[Problem]], key_of, have: dict[str, list[dict]],
              protocol, out: Path, progress: bool) -> tuple[dict, list[dict]]:
    """(benchmark name → summary, task rows). ``key_of(problem)``: the key of its answers in ``have``."""
    from codistill.evaluation.extract import build_program
    from codistill.execution.judge import Judge, JudgeConfig
    from codistill.execution.sandbox import SandboxConfig
    from codistill.metrics.summary import summarize
    from codistill.problems.loaders import BENCHMARK_LABELS

    jcfg = JudgeConfig(timeout_s=cfg.judge_timeout_s,
                       sandbox=SandboxConfig(**({"workers": cfg.workers} if cfg.workers else {})))
    summaries: dict[str, dict] = {}
    task_rows: list[dict] = []
    mode = protocol.mode
    with Judge(jcfg) as judge:
        for name, problems in benches.items():
            bdir = out / name.replace(":", "_")
            samples = []
            for p in problems:
                for rec in sorted(have[key_of(p)], key=lambda r: r["sample_index"])[:cfg.n_samples]:
                    raw = rec["completion_raw"]
                    n_tok = rec.get("n_tokens")
                    samples.append({"task_id": p.id, "solution": build_program(raw, p.code_prefix, p.entry_point, mode),
                                    "completion_raw": raw, "sample_index": rec["sample_index"], "n_tokens": n_tok,
                                    "hit_cap": None if n_tok is None else n_tok >= cfg.max_new_tokens - CAP_SLACK,
                                    "has_code": has_code(raw, p.entry_point, mode),
                                    **{k: v for k, v in rec.items() if k not in _GENERATION_KEYS}})
            write_jsonl(bdir / "samples.jsonl", samples)
            byid = {p.id: p for p in problems}
            verdicts = judge.judge_samples(byid, samples, progress=progress, label=f"judge {name}",
                                           logger=logging.getLogger(LOGGER))
            write_jsonl(bdir / "verdicts.jsonl", verdicts)
            label = EVAL_LABELS.get(name) or BENCHMARK_LABELS.get(name, name)
            summary = summarize(verdicts, label)
            summary.update(_structure_metrics(byid, verdicts))
            summary.update(answer_rates(samples))
            summary.update(cost_per_solved(verdicts))
            if any("plan_index" in v for v in verdicts):
                summary["plans"] = plan_summary(verdicts, cfg.plans, cfg.codes_per_plan)
            summaries[name] = summary
            task_rows.extend(_task_rows(name, byid, verdicts))
    return summaries, task_rows


def has_code(answer: str, entry_point: str | None, mode: str) -> bool:
    """Whether an answer holds code the judge can run: code that defines the entry point, or (no
    entry point) a non-empty program that parses."""
    from codistill.evaluation.extract import _defines, _parses, extract_code

    if mode == "completion" and not answer.lstrip().startswith("```"):
        return bool(answer.strip())
    code = extract_code(answer, entry_point)
    if entry_point:
        return _defines(code, entry_point)
    return bool(code.strip()) and _parses(code)


def answer_rates(samples: list[dict]) -> dict:
    """Share of answers that hit the token cap, share with no extractable code, share that end in a
    loop (:func:`ends_in_a_loop`), and ``ended_no_code_rate``: share that hold no code although
    neither the cap nor a loop ended them; the model stopped before writing any (end of sequence, or
    the header of a section after the code, where a format stops generation). None where the cap
    was not recorded."""
    n = len(samples)
    counted = [s["hit_cap"] for s in samples if s.get("hit_cap") is not None]
    loops = [ends_in_a_loop(s.get("completion_raw") or "") for s in samples]
    ended = [not s.get("has_code", True) and not s["hit_cap"] and not lp
             for s, lp in zip(samples, loops) if s.get("hit_cap") is not None]
    return {"cap_hit_rate": (sum(counted) / len(counted)) if counted else None,
            "no_code_rate": (sum(not s.get("has_code", True) for s in samples) / n) if n else None,
            "loop_rate": (sum(loops) / n) if n else None,
            "ended_no_code_rate": (sum(ended) / len(ended)) if ended else None,
            "answers": n, **_finish_counts(samples)}


def _finish_counts(samples: list[dict]) -> dict:
    """Where the backend said why each answer ended (``finish_reason``, one of
    :data:`codistill.backends.base.FINISH_REASONS`): ``finish_known`` answers say, and
    ``no_code_finish`` counts the reasons among those with no code -- which tells a model that ended
    before its code (``eos``) from one cut at a later section's header (``stop``). Empty where none says."""
    known = [s for s in samples if s.get("finish_reason")]
    if not known:
        return {}
    counts: dict[str, int] = {}
    for s in known:
        if not s.get("has_code", True):
            counts[s["finish_reason"]] = counts.get(s["finish_reason"], 0) + 1
    return {"finish_known": len(known), "no_code_finish": dict(sorted(counts.items()))}


def _structure_metrics(problems: dict[str, Problem], verdicts: list[dict]) -> dict:
    """Average CodeBLEU syntax / dataflow match of each task's first sample vs its reference."""
    from codistill.metrics.codebleu import pair_syntax_dataflow

    syn, dfl = [], []
    for v in verdicts:
        if v.get("sample_index", 0) != 0:
            continue
        ref = problems[v["task_id"]].solutions[0] if problems[v["task_id"]].solutions else None
        if not ref:
            continue
        m = pair_syntax_dataflow(ref, v["solution"])
        v["syntax_match"], v["dataflow_match"] = m["syntax_match"], m["dataflow_match"]
        syn.append(m["syntax_match"])
        if m["dataflow_match"] is not None:
            dfl.append(m["dataflow_match"])
    return {"syntax_match": sum(syn) / len(syn) if syn else None,
            "dataflow_match": sum(dfl) / len(dfl) if dfl else None,
            "n_dataflow_tasks": len(dfl)}


def _task_rows(name: str, problems: dict[str, Problem], verdicts: list[dict]) -> list[dict]:
    by_task: dict[str, list[dict]] = defaultdict(list)
    for v in verdicts:
        by_task[v["task_id"]].append(v)
    rows = []
    for tid, vs in by_task.items():
        first = min(vs, key=lambda v: v.get("sample_index", 0))
        rows.append({
            "benchmark": name, "task_id": tid, "program": first["solution"], "passed": first["passed"],
            "status": first["status"], "failure": first.get("failure"), "n": len(vs), "c": sum(v["passed"] for v in vs),
            "pass@1": sum(v["passed"] for v in vs) / len(vs),
            "syntax_match": first.get("syntax_match"), "dataflow_match": first.get("dataflow_match"),
        })
    return rows


def cost_per_solved(verdicts: list[dict]) -> dict:
    """Generated tokens (codes, plus each distinct plan once) per task with a passing program:
    what a solved task cost, to compare strategies at equal compute. None when a count is missing."""
    code = [v.get("n_tokens") for v in verdicts]
    plans = {(v["task_id"], v["plan_index"]): v.get("plan_tokens") for v in verdicts if "plan_index" in v}
    solved = len({v["task_id"] for v in verdicts if v["passed"]})
    if any(x is None for x in code) or any(x is None for x in plans.values()):
        return {"tokens_generated": None, "tokens_per_solved": None}
    total = sum(code) + sum(plans.values())
    return {"tokens_generated": total, "tokens_per_solved": round(total / solved, 1) if solved else None}


def plan_summary(verdicts: list[dict], plans: int, codes_per_plan: int) -> dict:
    """The plans of a reasoner-coder run: solve@k over the M x T programs, the share of plans with
    a passing program, the plans' leakage against the reference solution and their length."""
    from codistill.metrics.passk import solve_at_k
    from codistill.metrics.leakage import summarize as leakage_summary

    by_task: dict[str, list[dict]] = defaultdict(list)
    by_plan: dict[tuple, list[bool]] = defaultdict(list)
    for v in verdicts:
        by_task[v["task_id"]].append(v)
        by_plan[(v["task_id"], v["plan_index"])].append(bool(v["passed"]))
    counts = {t: (len(vs), sum(bool(v["passed"]) for v in vs)) for t, vs in by_task.items()}
    first = {key: next(v for v in verdicts if (v["task_id"], v["plan_index"]) == key) for key in by_plan}
    scores = [v["plan_leakage"] for v in first.values() if v.get("plan_leakage") is not None]
    tokens = [v["plan_tokens"] for v in first.values() if v.get("plan_tokens") is not None]
    return {"plans_per_task": plans, "codes_per_plan": codes_per_plan, "n_plans": len(by_plan),
            "solve@k": solve_at_k(counts, ks=sorted({1, codes_per_plan, plans, plans * codes_per_plan})),
            "plan_pass_rate": sum(any(p) for p in by_plan.values()) / len(by_plan) if by_plan else None,
            "parsed_rate": sum(bool(v.get("plan_parsed")) for v in first.values()) / len(first) if first else None,
            "leakage": leakage_summary(scores, threshold=0.5),
            "plan_tokens_mean": round(sum(tokens) / len(tokens), 1) if tokens else None}
