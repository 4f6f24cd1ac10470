"""What a teach run leaves behind besides ``contexts.jsonl``: the training rows (``train.jsonl``,
``train_dataset/``), ``teach_manifest.json``, and the account of rows left to do (teacher errors)
that ``codistill teach`` and ``codistill run`` end with. Formats: :mod:`codistill.teacher.teach`."""

from __future__ import annotations

import json
from pathlib import Path

from codistill.metrics import leakage as leak
from codistill.store import replace_dir
from codistill.teacher.parse import PARSER_VERSION
from codistill.teacher.templates import render_context

__all__ = ["TRAIN_KEYS", "TeachIncompleteError", "build_manifest", "describe_teacher_errors", "incomplete_error",
           "mode_counts", "train_rows", "write_dataset"]

TRAIN_KEYS = ("id", "prompt", "context", "code", "tests", "difficulty", "source")


class TeachIncompleteError(RuntimeError):
    """Teacher errors left rows without a record. ``exit_code``: 1 when no row finished in this run
    (every teacher call failed), 3 when some did (a partial run); a re-run asks only the rest."""

    def __init__(self, message: str, exit_code: int = 3):
        super().__init__(message)
        self.exit_code = exit_code


def describe_teacher_errors(manifest: dict) -> str | None:
    """One paragraph on a teach run's teacher errors (None when there were none): how many rows
    got no answer, the distinct errors (most frequent first, with an example row), and what stays."""
    from collections import Counter

    errors: dict[str, str] = manifest.get("teacher_errors") or {}
    if not errors:
        return None
    c = manifest["counts"]
    by_msg = Counter(errors.values())
    example = {}
    for rid, msg in errors.items():
        example.setdefault(msg, rid)
    shown = "; ".join(f"{example[m]}{f' (and {k - 1} more)' if k > 1 else ''}: {m.rstrip('.')}"
                      for m, k in by_msg.most_common(3))
    if len(by_msg) > 3:
        shown += f"; {len(by_msg) - 3} other errors"
    new = (manifest.get("this_run") or {}).get("new_contexts", 0)
    not_asked = c["remaining"] - len(errors)
    text = (f"{len(errors)} of {c['rows']} rows got no answer from the teacher"
            f"{' (every teacher call of this run failed)' if not new else ''}: {shown}. "
            f"{c['finished']} rows are finished and kept ({c['valid']} valid, {c['train_rows']} training rows)")
    if not_asked > 0:
        text += f"; {not_asked} more were not asked (the run stopped asking after repeated failures)"
    return text + "."


def incomplete_error(manifest: dict, resume: str) -> TeachIncompleteError | None:
    """The error to raise when a teach run left rows to do (None when it finished them all).
    ``resume``: the command that continues the run (it asks only the rows left to do)."""
    c = manifest["counts"]
    if manifest.get("complete") or not c.get("remaining"):
        return None
    why = describe_teacher_errors(manifest) or f"{c['remaining']} of {c['rows']} rows are left to do."
    teacher = manifest.get("config", {}).get("teacher", {})
    new = (manifest.get("this_run") or {}).get("new_contexts", 0)
    hint = ""
    if not new and teacher.get("backend", "openai") == "openai":
        hint = f" Check that the teacher server at {teacher.get('base_url')} is up and answering."
    return TeachIncompleteError(f"teach is not complete: {why}{hint} To ask the teacher again for the rows left "
                                f"to do (finished ones are kept), run {resume} again.",
                                exit_code=1 if not new else 3)


def train_rows(records: list[dict], rows_by_id: dict, mode: str) -> list[dict]:
    """The training rows of the valid records (and of their alternatives), keys :data:`TRAIN_KEYS`;
    each context laid out by the mode that made its record (``mode``: of records that name none).
    Rows of every mode have one layout: context, code (the reference, or the teacher's judged code
    where the mode wrote it), tests."""
    out = []
    for rec in records:
        if not rec.get("valid"):
            continue
        row = rows_by_id[rec["id"]]
        rec_mode = rec.get("mode") or mode
        variants = [(rec["id"], rec["sections"], rec["code"])]
        for k, alt in enumerate(rec.get("alternatives") or [], 1):
            variants.append((f"{rec['id']}#s{k}", alt["sections"], alt["code"]))
        for rid, sections, code in variants:
            out.append({"id": rid, "prompt": row["prompt"], "context": render_context(sections, rec_mode),
                        "code": code, "tests": row.get("tests", ""), "difficulty": row.get("difficulty"),
                        "source": row.get("source")})
    return out


def mode_counts(cfg, rows: list[dict], records: list[dict], training_rows: list[dict]) -> dict:
    """Per mode a run teaches in (``mode`` and ``fallback_mode``): its rows, finished and valid
    records, and training rows (``counts.by_mode`` of the manifest)."""
    row_mode = {r["id"]: cfg.row_mode(r) for r in rows}
    out = {m: {"rows": 0, "finished": 0, "valid": 0, "invalid": 0, "train_rows": 0}
           for m in (cfg.mode, cfg.fallback_mode) if m is not None}
    for m in row_mode.values():
        out[m]["rows"] += 1
    for rec in records:
        c = out[row_mode[rec["id"]]]
        c["finished"] += 1
        c["valid" if rec.get("valid") else "invalid"] += 1
    for t in training_rows:
        rid = t["id"] if t["id"] in row_mode else t["id"].rsplit("#s", 1)[0]  # P#s1: another sample of P
        out[row_mode[rid]]["train_rows"] += 1
    return out


def write_dataset(path: Path, rows: list[dict]) -> None:
    """``rows`` as a ``datasets`` folder, replaced atomically (skipped when ``datasets`` is missing)."""
    try:
        import datasets
    except ImportError:
        return
    import shutil
    import tempfile

    data = {k: [r[k] for r in rows] for k in TRAIN_KEYS}
    ds = datasets.Dataset.from_dict(data)
    tmp = Path(tempfile.mkdtemp(prefix=".train_dataset.", dir=path.parent))
    try:
        ds.save_to_disk(str(tmp))
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_manifest(cfg, template, rows, records, training_rows, client, cache, errors, new, fresh, wall, run_key,
                   path) -> dict:
    """``teach_manifest.json`` of a run (``path``: the previous one, whose ``runs`` it continues)."""
    from collections import Counter

    prev = json.loads(path.read_text()) if path.exists() else {}
    valid = [r for r in records if r.get("valid")]
    reasons = Counter(r.get("reason") or "?" for r in records if not r.get("valid"))
    reasons_grouped = Counter(("leakage" if (r or "").startswith("leakage") else (r or "?").split(" (")[0])
                              for r in reasons.elements())
    attempts_rejected = Counter()
    for r in records:
        for a in r.get("attempt_log", []):
            if not a.get("valid"):
                why = a.get("reason") or "?"
                attempts_rejected["leakage" if why.startswith("leakage") else why.split(" (")[0]] += 1
    tok_p = sum(r["tokens"]["prompt"] for r in records)
    tok_c = sum(r["tokens"]["completion"] for r in records)
    usage = client.usage()
    this_run = {"teacher_calls": client.calls, "cache_hits": cache.hits, "new_contexts": new,
                "from_teacher": fresh, "from_cache_only": new - fresh, "wall_seconds": round(wall, 2), **usage,
                "completion_tokens_per_s": round(usage["completion_tokens"] / wall, 3) if wall > 0 else None,
                "contexts_per_min": round(60 * fresh / wall, 3) if wall > 0 and fresh else 0.0}
    runs = prev.get("runs", []) + [this_run] if (prev.get("run_key") == run_key) else [this_run]
    tc = cfg.teacher
    cost = None
    if tc.price_per_1k_prompt is not None or tc.price_per_1k_completion is not None:
        cost = round(tok_p / 1000 * (tc.price_per_1k_prompt or 0) + tok_c / 1000 * (tc.price_per_1k_completion or 0), 6)
    leak_scores = [r["leakage"] for r in records if r.get("leakage") is not None]
    attempt_leaks = [a["leakage"] for r in records for a in r.get("attempt_log", []) if a.get("leakage") is not None]
    teacher_seconds = sum(r.get("seconds", 0.0) for r in records)
    return {
        "stage": "teach",
        "complete": len(records) == len(rows) and not errors,
        "run_key": run_key,
        "config": cfg.model_dump(),
        "template": {"source": template.source, "sha256": template.sha256},
        "parser_version": PARSER_VERSION,
        "counts": {"rows": len(rows), "finished": len(records), "valid": len(valid),
                   "invalid": len(records) - len(valid), "train_rows": len(training_rows),
                   "teacher_errors": len(errors), "remaining": len(rows) - len(records),
                   "invalid_by_reason": dict(reasons_grouped),
                   "rejected_attempts_by_reason": dict(attempts_rejected),
                   "attempts_total": sum(r.get("attempts", 0) for r in records),
                   "first_attempt_valid": sum(1 for r in valid if r.get("attempts") == 1)},
        "teacher_errors": errors,
        "tokens": {"prompt": tok_p, "completion": tok_c, "total": tok_p + tok_c,
                   "mean_completion_per_valid_context": round(tok_c / len(valid), 1) if valid else None},
        "time": {"teacher_seconds_sum": round(teacher_seconds, 1),
                 "completion_tokens_per_teacher_second": round(tok_c / teacher_seconds, 3) if teacher_seconds else None},
        "cost": cost,
        "leakage": {"final": leak.summarize(leak_scores, cfg.leakage_threshold),
                    "all_attempts": leak.summarize(attempt_leaks, cfg.leakage_threshold)},
        "this_run": this_run,
        "runs": runs,
    }
