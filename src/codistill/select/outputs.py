"""What ``codistill select`` writes once every candidate has a record: the choice (scores.jsonl),
the two subsets (selected/, random/) in the data stage's layout, and select_manifest.json; plus
:func:`teacher_tokens`, the teacher's tokens of teach runs compared on the problems they share
(CLAER's revisions against full explanations)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from codistill.store import atomic_write_json, read_jsonl, sha256_file, write_jsonl

__all__ = ["SUBSETS", "teacher_tokens", "write_outputs"]

SUBSETS = ("selected", "random")


def _dist(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "mean": round(statistics.fmean(values), 4), "median": round(statistics.median(values), 4),
            "min": round(min(values), 4), "max": round(max(values), 4)}


def _subset(out: Path, name: str, ids: list[str], rows: dict[str, list[dict]], problems: dict,
            records: dict[str, dict]) -> dict:
    folder = out / name
    chosen = set(ids)
    subset_rows = [{**r, "student": records[pid].get("student")} for pid, rs in rows.items() if pid in chosen
                   for r in rs]
    write_jsonl(folder / "rows.jsonl", subset_rows)
    write_jsonl(folder / "problems.jsonl", [problems[pid].model_dump() for pid in rows if pid in chosen])
    return {"problems": len(ids), "rows": len(subset_rows),
            "hashes": {f: sha256_file(folder / f) for f in ("rows.jsonl", "problems.jsonl")}}


def write_outputs(cfg, out: Path, order: list[str], rows: dict[str, list[dict]], problems: dict,
                  done: dict[str, dict], run_key: str, this_run: dict) -> dict:
    """The choice and its files from the records of ``order`` (all of them, or the manifest says
    ``complete: false`` and no subset is written)."""
    from codistill.select.scores import choose, combined_score

    prev_path = out / "select_manifest.json"
    prev = json.loads(prev_path.read_text()) if prev_path.exists() else {}
    runs = (prev.get("runs", []) if prev.get("run_key") == run_key else []) + [this_run]
    records = {pid: done[pid] for pid in order if pid in done}
    complete = len(records) == len(order)
    scores = {pid: combined_score(r["inter_norm"], r.get("intra"), cfg.combine, cfg.intra_weight)
              for pid, r in records.items()}
    manifest: dict = {"stage": "select", "complete": complete, "run_key": run_key, "config": cfg.model_dump(),
                      "counts": {"candidates": len(order), "scored": len(records), "remaining": len(order) - len(records)},
                      "runs": runs}
    costs = [r["cost"] for r in records.values()]
    tokens = [c["generated_tokens"] for c in costs]
    manifest["cost"] = {
        "student_samples": sum(c["samples"] for c in costs),
        "step_ablations": sum(c["ablations"] for c in costs),
        "baseline_regenerations": sum(c["baselines"] for c in costs),
        "generations": sum(c["samples"] + c["ablations"] + c["baselines"] for c in costs),
        "generated_tokens": None if any(t is None for t in tokens) else sum(tokens),
        "generate_s": round(sum(c["generate_s"] for c in costs), 2),
        "judge_s": round(sum(c["judge_s"] for c in costs), 2),
        "usage": _sum_usage(runs),
    }
    manifest["cost"]["seconds"] = round(manifest["cost"]["generate_s"] + manifest["cost"]["judge_s"], 2)
    manifest["scores"] = {
        "inter_norm": _dist([r["inter_norm"] for r in records.values()]),
        "intra": _dist([r["intra"] for r in records.values() if r.get("intra") is not None]),
        "score": _dist(list(scores.values())),
        "pass_rate": _dist([r["pass_rate"] for r in records.values()]),
        "intra_undefined": sum(r.get("intra") is None for r in records.values()),
    }
    if not complete:
        atomic_write_json(prev_path, manifest)
        return manifest
    chosen, drawn = choose(scores, order, cfg.budget, cfg.seed)
    rank = {pid: i for i, pid in enumerate(chosen)}
    sel, rnd = set(chosen), set(drawn)
    write_jsonl(out / "scores.jsonl", [
        {"problem_id": pid, "score": scores[pid], "inter_norm": records[pid]["inter_norm"],
         "entropy": records[pid]["entropy"], "intra": records[pid].get("intra"),
         "clusters": len(records[pid]["clusters"]), "pass_rate": records[pid]["pass_rate"],
         "rank": rank.get(pid), "selected": pid in sel, "random": pid in rnd} for pid in order])
    manifest["subsets"] = {
        "selected": {**_subset(out, "selected", chosen, rows, problems, records), "ids": chosen},
        "random": {**_subset(out, "random", drawn, rows, problems, records), "ids": drawn},
        "overlap": len(sel & rnd),
        "mean_score": {"selected": round(statistics.fmean([scores[i] for i in chosen]), 4) if chosen else None,
                       "random": round(statistics.fmean([scores[i] for i in drawn]), 4) if drawn else None},
    }
    atomic_write_json(prev_path, manifest)
    return manifest


def _sum_usage(runs: list[dict]) -> dict | None:
    usages = [r.get("usage") for r in runs if r.get("usage")]
    if not usages:
        return None
    return {k: sum(u.get(k, 0) for u in usages) for k in usages[0]}


def teacher_tokens(teach_dirs: dict[str, str | Path], ids: list[str] | None = None) -> dict:
    """The teacher's tokens per teach run (``{label: teach out_dir}``), summed from each run's
    ``contexts.jsonl`` over the rows every run finished (or those of ``ids``), so that CLAER's revisions
    and full explanations are compared on the same problems: per label ``prompt``, ``completion``,
    ``problems``, ``per_problem_completion``; ``ratio_completion`` of each label to the first."""
    per: dict[str, dict[str, dict]] = {}
    for label, d in teach_dirs.items():
        recs: dict[str, dict] = {}
        path = Path(d) / "contexts.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: {label!r} is not a teach run directory")
        for r in read_jsonl(path, resumable=True):
            recs[r["id"]] = r  # by row id (a problem's main row is its id); the last record wins
        per[label] = recs
    shared = set.intersection(*(set(r) for r in per.values())) if per else set()
    if ids is not None:
        shared &= set(ids)
    out: dict = {"problems": len(shared), "runs": {}}
    for label, recs in per.items():
        p = sum(recs[i]["tokens"]["prompt"] for i in shared)
        c = sum(recs[i]["tokens"]["completion"] for i in shared)
        out["runs"][label] = {"prompt": p, "completion": c, "total": p + c,
                              "per_problem_completion": round(c / len(shared), 1) if shared else None}
    first = next(iter(out["runs"].values()), None)
    for v in out["runs"].values():
        v["ratio_completion"] = round(v["completion"] / first["completion"], 4) if first and first["completion"] else None
    return out
