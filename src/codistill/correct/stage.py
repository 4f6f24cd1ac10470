"""``correct(cfg, out_dir)``: the stage (see :mod:`codistill.correct` for the files it writes).

1. the student's attempts, judged (:mod:`.attempts`);
2. per failure, the teacher's correction in mode ``correction`` (:mod:`codistill.teacher.modes.
   correction`), through the teach stage's own machinery: :class:`~codistill.teacher.runner.
   ProblemRunner` (cache look-up, the call, parsing, the mode's judge of the corrected program,
   retries up to ``max_attempts``), :class:`~codistill.teacher.client.TeacherClient` (each call's
   exact token usage), :class:`~codistill.teacher.cache.ResponseCache`;
3. training rows in two variants and their mixes (:mod:`.rows`);
4. ``correct_manifest.json``: counts, why corrections were dropped, and the cost.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

from codistill.correct.config import CorrectConfig
from codistill.store import JsonlAppender, RunDirLock, atomic_write_json, read_jsonl, sha256_json
from codistill.teacher.pool import ask_rows

__all__ = ["CorrectIncompleteError", "correct", "incomplete_error"]

log = logging.getLogger("codistill.correct")

MODE = "correction"


class CorrectIncompleteError(RuntimeError):
    """Teacher errors left failures without a correction; a re-run asks only those.
    ``exit_code``: 1 when no correction was finished in this run, 3 when some were."""

    def __init__(self, message: str, exit_code: int = 3):
        super().__init__(message)
        self.exit_code = exit_code


def correct(config: CorrectConfig | dict, out_dir: str | Path, *, generator=None, tokenizer=None) -> dict:
    """Run (or resume) the stage into ``out_dir``; returns the manifest. ``generator`` /
    ``tokenizer``: a student already loaded (otherwise built from ``config.student``). One process
    per ``out_dir`` (:class:`codistill.store.RunDirBusyError` for a second)."""
    cfg = config if isinstance(config, CorrectConfig) else CorrectConfig.model_validate(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with RunDirLock(out, "correct"):
        return _correct(cfg, out, generator, tokenizer)


def _teach_config(cfg: CorrectConfig, out: Path):
    """The teach settings the correction runner reads (mode, teacher, sampling, checks, judge)."""
    from codistill.teacher.config import TeachConfig

    return TeachConfig(out_dir=str(out), mode=MODE, dataset=cfg.dataset, benchmark=cfg.benchmark,
                       benchmark_kwargs=cfg.benchmark_kwargs, data_dir=cfg.data_dir, template=cfg.template,
                       teacher=cfg.teacher, sampling=cfg.teacher_sampling, validation=cfg.validation,
                       max_attempts=cfg.max_attempts, keep_passing=1, leakage_threshold=None,
                       judge_timeout_s=cfg.judge_timeout_s, cache_dir=cfg.cache_dir,
                       progress_every=cfg.progress_every)


def _problem_rows(cfg: CorrectConfig, out: Path) -> tuple[list[dict], dict]:
    """The training problems as the teach stage reads them: one main row per problem (no #alt rows)."""
    from codistill.teacher.config import TeachConfig
    from codistill.teacher.teach import load_rows

    rows, problems = load_rows(TeachConfig(out_dir=str(out), mode="solve", dataset=cfg.dataset,
                                           benchmark=cfg.benchmark, benchmark_kwargs=cfg.benchmark_kwargs,
                                           data_dir=cfg.data_dir, limit=cfg.limit, ids=cfg.ids))
    if not rows:
        raise ValueError(f"no training problems in {cfg.dataset or cfg.benchmark}"
                         + (" with the given ids/limit" if cfg.ids is not None or cfg.limit is not None else ""))
    return rows, problems


def _run_key(cfg: CorrectConfig, template) -> str:
    """What makes a stored correction reusable (the row's own content is checked by its row hash)."""
    from codistill.teacher.parse import PARSER_VERSION

    return sha256_json({"mode": MODE, "teacher": cfg.teacher.model, "extra_body": cfg.teacher.extra_body,
                        "template": template.sha256, "sampling": cfg.teacher_sampling.model_dump(),
                        "validation": cfg.validation.model_dump(), "max_attempts": cfg.max_attempts,
                        "judge_timeout_s": cfg.judge_timeout_s, "parser": PARSER_VERSION})


def _correct(cfg: CorrectConfig, out: Path, generator, tokenizer) -> dict:
    from codistill.correct.attempts import failure_rows, resolve_format, sample_attempts
    from codistill.correct.rows import write_rows
    from codistill.teacher.templates import load_template

    t0 = time.time()
    rows, problems = _problem_rows(cfg, out)
    fmt = resolve_format(cfg)  # before any model is loaded
    template = load_template(MODE, cfg.template)
    attempts, student = sample_attempts(cfg, fmt, rows, problems, out, generator, tokenizer)
    fixes, skipped = failure_rows(cfg, rows, attempts)
    run_key = _run_key(cfg, template)
    records, errors, teacher = _ask(cfg, _teach_config(cfg, out), template, fixes, problems, out, run_key)
    outputs = write_rows(cfg, out, records, {r["id"]: r for r in fixes})
    wall = time.time() - t0
    manifest = _manifest(cfg, out, fmt, template, run_key, rows, attempts, fixes, skipped, records, errors,
                         student, teacher, outputs, wall)
    atomic_write_json(out / "correct_manifest.json", manifest)
    c = manifest["counts"]
    log.info("correct: %d problems, %d of %d samples passed; %d failures corrected, %d kept, %d dropped %s; "
             "%d teacher tokens", c["problems"], c["samples_passed"], c["samples"], c["corrections"], c["kept"],
             c["dropped"], c["dropped_by_reason"] or "", manifest["cost"]["teacher"]["total_tokens"])
    return manifest


def _ask(cfg: CorrectConfig, tcfg, template, fixes: list[dict], problems: dict, out: Path,
         run_key: str) -> tuple[list[dict], dict, dict]:
    """(correction records in failure order, teacher errors by row id, this run's teacher counts)."""
    from codistill.progress import Progress
    from codistill.teacher.cache import ResponseCache
    from codistill.teacher.client import TeacherClient
    from codistill.teacher.modes import RunContext, get_mode
    from codistill.teacher.runner import ProblemRunner, row_hash

    mode = get_mode(MODE)
    path = out / "corrections.jsonl"
    hashes = {r["id"]: row_hash(r, mode.prompt_fields(r)) for r in fixes}
    done: dict[str, dict] = {}
    if path.exists():
        for rec in read_jsonl(path, resumable=True):
            if rec.get("run_key") == run_key and rec.get("row_hash") == hashes.get(rec["id"]):
                done[rec["id"]] = rec
    todo = [r for r in fixes if r["id"] not in done]
    errors: dict[str, str] = {}
    info = {"teacher_calls": 0, "cache_hits": 0, "new": 0, "usage": None}
    if todo:
        cache = ResponseCache(Path(cfg.cache_dir) if cfg.cache_dir else out / "cache")
        client = TeacherClient(cfg.teacher)
        run = RunContext(cfg=tcfg, problems=problems)
        try:
            mode.open(run)
            runner = ProblemRunner(tcfg, mode, template, cache, client, run)
            tc = cfg.teacher
            workers = 1 if tc.backend == "llamacpp" else tc.concurrency
            log.info("correct: the teacher (%s) corrects %d of %d failures, %d in flight", tc.model, len(todo),
                     len(fixes), workers)
            prog = Progress("correct: teacher", len(fixes), unit="failures", done=len(fixes) - len(todo),
                            every_n=cfg.progress_every, logger=log,
                            describe=lambda: f"teacher calls {client.calls}, cache hits {cache.hits}"
                            + (f", errors {len(errors)}" if errors else ""))
            with JsonlAppender(path) as app, prog:
                def record(row: dict, rec: dict) -> None:
                    rec.update(run_key=run_key, row_hash=hashes[row["id"]], sample_index=row["sample_index"])
                    app.append(rec)
                    done[rec["id"]] = rec
                    info["new"] += 1

                ask_rows(runner.run, todo, workers, record, errors, prog.advance, log, "failures", "correct")
        finally:
            info.update(teacher_calls=client.calls, cache_hits=cache.hits, usage=client.usage())
            client.close()
            cache.close()
            run.close()
    return [done[r["id"]] for r in fixes if r["id"] in done], errors, info


def _group(reason: str | None) -> str:
    return (reason or "?").split(" (")[0]


def _manifest(cfg, out, fmt, template, run_key, rows, attempts, fixes, skipped, records, errors, student, teacher,
              outputs, wall) -> dict:
    import json

    from codistill.teacher.parse import PARSER_VERSION

    samples = [s for a in attempts.values() for s in a["samples"]]
    kept = [r for r in records if r.get("valid")]
    log_path = out / "attempts_log.jsonl"
    glog = list(read_jsonl(log_path, resumable=True)) if log_path.exists() else []
    tries = [a for r in records for a in r.get("attempt_log", [])]
    judged = [a for a in tries if "judge" in a]
    tok_p = sum(r["tokens"]["prompt"] for r in records)
    tok_c = sum(r["tokens"]["completion"] for r in records)
    key = sha256_json(cfg.key())
    prev_path = out / "correct_manifest.json"
    prev = json.loads(prev_path.read_text()) if prev_path.exists() else {}
    this_run = {"wall_seconds": round(wall, 2), "student_problems": student["problems"],
                "student_samples": student["samples"], "new_corrections": teacher["new"],
                "teacher_calls": teacher["teacher_calls"], "cache_hits": teacher["cache_hits"],
                "teacher_usage": teacher["usage"]}
    runs = (prev.get("runs", []) if prev.get("key") == key else []) + [this_run]
    remaining = len(fixes) - len(records)
    return {
        "stage": "correct",
        "complete": len(attempts) == len(rows) and remaining == 0 and not errors,
        "key": key, "run_key": run_key, "parser_version": PARSER_VERSION,
        "config": cfg.model_dump(),
        "format": fmt.model_dump(),
        "template": {"source": template.source, "sha256": template.sha256},
        "counts": {
            "problems": len(rows), "problems_attempted": len(attempts), "samples": len(samples),
            "samples_passed": sum(s["passed"] for s in samples),
            "problems_solved": sum(1 for a in attempts.values() if a["passed"]),
            "failed_samples": sum(not s["passed"] for s in samples),
            "failed_by_status": dict(Counter(s["status"] for s in samples if not s["passed"])),
            "failures_not_asked": skipped, "failures": len(fixes), "corrections": len(records),
            "kept": len(kept), "dropped": len(records) - len(kept),
            "dropped_by_reason": dict(Counter(_group(r.get("reason")) for r in records if not r.get("valid"))),
            "rejected_attempts_by_reason": dict(Counter(_group(a.get("reason")) for a in tries if not a.get("valid"))),
            "teacher_errors": len(errors), "remaining": remaining,
            "train_rows": outputs["train_rows"],
        },
        "teacher_errors": errors,
        "files": {"attempts": "attempts.jsonl", "corrections": "corrections.jsonl", **outputs["files"]},
        "mix": outputs["mix"],
        "cost": {
            "student": {"problems": len(attempts), "samples": len(samples),
                        "prompt_tokens": sum(g.get("prompt_tokens") or 0 for g in glog),
                        "completion_tokens": sum(g.get("completion_tokens") or 0 for g in glog),
                        "seconds": round(sum(g.get("generate_s") or 0.0 for g in glog), 2)},
            "teacher": {"calls": len(tries), "prompt_tokens": tok_p, "completion_tokens": tok_c,
                        "total_tokens": tok_p + tok_c,
                        "seconds": round(sum(r.get("seconds", 0.0) for r in records), 2),
                        "tokens_per_kept_correction": round((tok_p + tok_c) / len(kept), 1) if kept else None},
            "judge": {"runs": len(samples) + len(judged), "student_samples": len(samples),
                      "corrections": len(judged),
                      "seconds": round(sum(g.get("judge_s") or 0.0 for g in glog)
                                       + sum(a.get("judge_s") or 0.0 for a in judged), 2)},
            "wall_seconds": round(sum(r["wall_seconds"] for r in runs), 2),
        },
        "this_run": this_run,
        "runs": runs,
    }


def incomplete_error(manifest: dict, resume: str = "the same `codistill correct` command") -> CorrectIncompleteError | None:
    """The error a command ends with when failures are left without a correction (None: complete)."""
    if manifest.get("complete"):
        return None
    c = manifest["counts"]
    errs = manifest.get("teacher_errors") or {}
    example = next(iter(errs.items()), None)
    why = f"{c['remaining']} of {c['failures']} failures got no correction"
    if example:
        why += f" ({len(errs)} teacher errors, e.g. {example[0]}: {example[1]})"
    new = (manifest.get("this_run") or {}).get("new_corrections", 0)
    return CorrectIncompleteError(f"correct is not complete: {why}. Finished corrections are kept; run {resume} "
                                  "again to ask the teacher for the rest.", exit_code=3 if new else 1)
