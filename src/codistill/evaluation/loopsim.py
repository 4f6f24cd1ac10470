"""``codistill loops EVAL_DIR``: what a loop stop would have done to an eval made without it.

A loop stop (``stop_on_loop``, :mod:`codistill.loops`) turns an answer into ``cut_at_loop(answer)``.
With greedy decoding the text before the cut is the same with and without the stop, so an eval made
*without* it already holds everything needed to know, answer by answer, what the stop would change:
this module cuts every judged answer where the stop would have, rebuilds the program the judge would
run, judges (in the sandbox) those whose program changes, and reports per benchmark:

* ``answers``, ``stopped`` (answers the stop cuts), ``program_changed`` (of those, the program to
  judge differs: the model had left the loop and written code later, or the cut falls in the code);
* ``pass_full`` / ``pass_stopped``: the share of answers that pass without / with the stop, and
  ``pass_to_fail`` / ``fail_to_pass``: the answers whose verdict the stop flips;
* ``tokens_full`` and ``tokens_saved`` (≈: each cut answer's tokens × the share of its characters cut).

Exact for greedy decoding; with sampling the text after a cut would be drawn again, so the figures
describe the same answers, not what a stopped run would sample. Use it on a validation split (e.g.
``mbpp:validation``) to decide whether a loop stop is worth its changes, never on the test sets.
The result is written to ``EVAL_DIR/loop_stop.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from codistill.loops import loop_stop_point
from codistill.store import atomic_write_json, read_jsonl

__all__ = ["simulate_loop_stop", "print_loop_stop"]

LOGGER = logging.getLogger("codistill.evaluation.loopsim")


def simulate_loop_stop(eval_dir: str | Path, data_dir: str | None = None, workers: int | None = None) -> dict:
    """Per benchmark of a judged eval, what a loop stop would have done (see the module doc)."""
    from codistill.evaluation.config import BENCHMARK_ALIASES
    from codistill.evaluation.extract import build_program
    from codistill.execution.judge import Judge, JudgeConfig
    from codistill.execution.sandbox import SandboxConfig
    from codistill.problems.loaders import load_benchmark

    out = Path(eval_dir)
    if not (out / "results.json").is_file() or not (out / "config.json").is_file():
        raise FileNotFoundError(f"{out} holds no judged eval (config.json and results.json): give an eval run "
                                "directory (a recipe's arms/<arm>/eval) whose eval has finished")
    cfg = json.loads((out / "config.json").read_text())
    results = json.loads((out / "results.json").read_text())
    if cfg.get("stop_on_loop"):
        raise ValueError(f"{out} was generated with stop_on_loop: its answers are already cut")
    mode = "chat" if (results.get("protocol") or {}).get("format") else results.get("prompt_mode", "chat")
    report: dict = {"eval_dir": str(out), "greedy": cfg.get("temperature", 0) == 0, "benchmarks": {}}
    jcfg = JudgeConfig(timeout_s=cfg.get("judge_timeout_s", 3.0),
                       sandbox=SandboxConfig(**({"workers": workers} if workers else {})))
    with Judge(jcfg) as judge:
        for name in results.get("benchmarks", {}):
            path = out / name.replace(":", "_") / "verdicts.jsonl"
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: judge the eval again (codistill eval with the same --out)")
            verdicts = list(read_jsonl(path))
            problems = {p.id: p for p in load_benchmark(BENCHMARK_ALIASES.get(name, name), data_dir=data_dir or
                                                          cfg.get("data_dir"), limit=cfg.get("limit"))}
            report["benchmarks"][name] = _one_benchmark(name, verdicts, problems, mode, judge, build_program)
    atomic_write_json(out / "loop_stop.json", report)
    return report


def _one_benchmark(name: str, verdicts: list[dict], problems: dict, mode: str, judge, build_program) -> dict:
    rows, again = [], []
    for v in verdicts:
        raw = v.get("completion_raw") or ""
        m = loop_stop_point(raw)
        row = {"task_id": v["task_id"], "sample_index": v.get("sample_index", 0), "passed_full": bool(v.get("passed")),
               "stop_at": m, "n_tokens": v.get("n_tokens")}
        row["passed_stopped"] = row["passed_full"]
        if m is not None:
            p = problems[v["task_id"]]
            program = build_program(raw[:m], p.code_prefix, p.entry_point, mode)
            row["program_changed"] = program != v.get("solution")
            if row["program_changed"]:
                again.append((row, {"task_id": v["task_id"], "solution": program,
                                    "sample_index": row["sample_index"]}))
            if row["n_tokens"]:
                row["tokens_saved"] = row["n_tokens"] * (1 - m / len(raw))
        rows.append(row)
    if again:
        judged = judge.judge_samples(problems, [s for _, s in again], progress=False, label=f"loops {name}",
                                     logger=LOGGER)
        for (row, _), jv in zip(again, judged):
            row["passed_stopped"] = bool(jv.get("passed"))
    n = len(rows)
    stopped = [r for r in rows if r["stop_at"] is not None]
    return {"answers": n, "stopped": len(stopped), "program_changed": sum(r.get("program_changed", False) for r in stopped),
            "pass_full": sum(r["passed_full"] for r in rows) / n if n else None,
            "pass_stopped": sum(r["passed_stopped"] for r in rows) / n if n else None,
            "pass_to_fail": sum(r["passed_full"] and not r["passed_stopped"] for r in rows),
            "fail_to_pass": sum(r["passed_stopped"] and not r["passed_full"] for r in rows),
            "tokens_full": sum(r["n_tokens"] or 0 for r in rows),
            "tokens_saved": round(sum(r.get("tokens_saved", 0.0) for r in rows)),
            "flipped": [{"task_id": r["task_id"], "sample_index": r["sample_index"], "passed_full": r["passed_full"]}
                        for r in rows if r["passed_full"] != r["passed_stopped"]]}


def print_loop_stop(report: dict, console=None) -> None:
    """The per-benchmark table of :func:`simulate_loop_stop`."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(emoji=False)
    t = Table(title=f"a loop stop on {report['eval_dir']}" + ("" if report["greedy"] else
                                                             " (sampled answers: what the same answers would become)"))
    for h in ("benchmark", "answers", "stopped", "program changed", "pass@1 full", "pass@1 stopped", "pass→fail",
              "fail→pass", "tokens saved"):
        t.add_column(h, justify="left" if h == "benchmark" else "right")
    for name, b in report["benchmarks"].items():
        pct = (lambda x: "–" if x is None else f"{100 * x:.1f}")
        saved = f"{b['tokens_saved']:,} of {b['tokens_full']:,}" if b["tokens_full"] else "–"
        t.add_row(name, str(b["answers"]), str(b["stopped"]), str(b["program_changed"]), pct(b["pass_full"]),
                  pct(b["pass_stopped"]), str(b["pass_to_fail"]), str(b["fail_to_pass"]), saved)
    console.print(t)
