"""Library functions behind the CLI verbs (each verb is one call here)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from codistill.execution.judge import Judge, JudgeConfig
from codistill.problems.schema import Problem
from codistill.metrics.summary import summarize  # noqa: F401 - re-exported (judge verb, tests)
from codistill.store import read_jsonl, sha256_file, write_jsonl


def load_problems(benchmark: str | None = None, problems_file: Path | None = None, data_dir=None,
                  limit: int | None = None) -> tuple[dict[str, Problem], str]:
    """Problems by id, and a label for reports (e.g. 'MBPP+ v0.1.0 (unofficial copy)')."""
    if problems_file is not None:
        problems = {}
        for i, rec in enumerate(read_jsonl(problems_file)):
            try:
                p = Problem.model_validate(rec)
            except Exception as e:
                raise ValueError(f"{problems_file}:{i + 1}: not a valid Problem record: {e}") from e
            problems[p.id] = p
        return problems, str(problems_file)
    from codistill.problems.loaders import BENCHMARK_LABELS, load_benchmark

    plist = load_benchmark(benchmark, data_dir=data_dir, limit=limit)
    return {p.id: p for p in plist}, BENCHMARK_LABELS.get(benchmark, benchmark)


def judge_files(samples: Path, out: Path, benchmark: str | None = None, problems_file: Path | None = None,
                data_dir=None, config: JudgeConfig | None = None, progress: bool = True) -> dict:
    """``codistill judge``: judge a samples file; write verdicts JSONL and a summary JSON."""
    if not samples.is_file():
        raise FileNotFoundError(f"samples file not found: {samples}")
    problems, label = load_problems(benchmark, problems_file, data_dir)
    rows = []
    for i, rec in enumerate(read_jsonl(samples)):
        if "task_id" not in rec:
            raise ValueError(f"{samples}:{i + 1}: sample has no 'task_id' (EvalPlus format expected)")
        rows.append(rec)
    t0 = time.perf_counter()
    with Judge(config) as judge:
        verdicts = judge.judge_samples(problems, rows, progress=progress)
        isolation = judge.sandbox.isolation
    wall = time.perf_counter() - t0
    write_jsonl(out, verdicts)
    summary = summarize(verdicts, label, wall)
    summary["samples_file"] = str(samples)
    summary["samples_sha256"] = sha256_file(samples)
    summary["verdicts_file"] = str(out)
    summary["sandbox_isolation"] = isolation
    from codistill.store import atomic_write_json

    atomic_write_json(out.with_name(out.stem + ".summary.json"), summary)
    return summary


def reference_samples(problems: dict[str, Problem]) -> list[dict]:
    """One EvalPlus-format sample per problem: its first reference solution."""
    return [{"task_id": pid, "solution": p.solutions[0]} for pid, p in problems.items() if p.solutions]


def demo(data_dir=None, config: JudgeConfig | None = None, progress: bool = True) -> int:
    """Judge the reference solutions of HumanEval and HumanEval+ and print the tables."""
    from rich.console import Console

    from codistill.report.tables import print_judge_summary

    console = Console(emoji=False)
    console.print("[bold]codistill demo[/]: judging the benchmarks' own reference solutions in the sandbox")
    with Judge(config) as judge:
        console.print(f"sandbox isolation: {json.dumps(judge.sandbox.isolation)}")
        for name in ("humaneval", "humaneval+"):
            problems, label = load_problems(name, data_dir=data_dir)
            t0 = time.perf_counter()
            verdicts = judge.judge_samples(problems, reference_samples(problems), progress=progress)
            summary = summarize(verdicts, label, time.perf_counter() - t0)
            print_judge_summary(summary, console=console)
            bad = [v for v in verdicts if not v["passed"]]
            for v in bad[:10]:
                console.print(f"  [yellow]{v['task_id']}[/]: {v['status']} {json.dumps(v.get('failure'))[:200]}")
    return 0
