"""Counts and pass@k over verdict records: the summary every judging step writes."""

from __future__ import annotations

from collections import Counter, defaultdict


def summarize(verdicts: list[dict], label: str, wall_s: float | None = None) -> dict:
    """Counts and pass@k over verdict records (several samples per task allowed)."""
    from codistill.metrics.passk import estimate_pass_at_k

    by_task: dict[str, list[bool]] = defaultdict(list)
    for v in verdicts:
        by_task[v["task_id"]].append(bool(v["passed"]))
    n_min = min((len(x) for x in by_task.values()), default=0)
    summary = {
        "benchmark": label,
        "samples": len(verdicts),
        "tasks": len(by_task),
        "passed": sum(bool(v["passed"]) for v in verdicts),
        "status": dict(Counter(v["status"] for v in verdicts).most_common()),
        "pass@k": {},
    }
    for k in (1, 5, 10, 100):
        if k <= n_min:
            ns = [len(x) for x in by_task.values()]
            cs = [sum(x) for x in by_task.values()]
            summary["pass@k"][f"pass@{k}"] = float(estimate_pass_at_k(ns, cs, k).mean())
    for suite in ("base", "plus"):
        key = f"{suite}_status"
        vals = [v[key] == "pass" for v in verdicts if key in v]
        if vals:
            summary[f"{suite}_pass_rate"] = sum(vals) / len(vals)
    if wall_s is not None:
        summary["wall_s"] = round(wall_s, 2)
    return summary
