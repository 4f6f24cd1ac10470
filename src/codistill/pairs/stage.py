"""``make_pairs(cfg, out_dir)``: the stage (see :mod:`codistill.pairs` for the files it writes).

1. the student's attempts on the training problems, judged in the sandbox: the correct stage's
   step (:func:`codistill.correct.attempts.sample_attempts`, same records, same resume);
2. the failures to correct: per problem, failed answers in sample order (not the sandbox's fault,
   distinct programs, with reasoning steps and a code section), up to ``failures_per_problem``;
3. per failure, the teacher in mode ``first_error`` (:mod:`codistill.teacher.modes.first_error`)
   through the teach stage's machinery (:class:`~codistill.teacher.runner.ProblemRunner`: the cache,
   the call, parsing, the mode's judge of the chosen answer, retries); records in
   ``corrections.jsonl``, appended as they finish;
4. ``pairs.jsonl`` from the kept corrections (:func:`codistill.pairs.layout.build_pair`) and
   ``pairs_manifest.json``: counts, why failures gave no pair, and the cost (student samples and
   tokens, teacher tokens, judge runs, seconds).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

from codistill.pairs.config import MODE, PairsConfig
from codistill.store import JsonlAppender, RunDirLock, atomic_write_json, read_jsonl, sha256_json, write_jsonl
from codistill.teacher.pool import ask_rows

__all__ = ["PairsIncompleteError", "incomplete_error", "make_pairs"]

log = logging.getLogger("codistill.pairs")

PAIRS_FILE = "pairs.jsonl"
MANIFEST = "pairs_manifest.json"


class PairsIncompleteError(RuntimeError):
    """Teacher errors left failures without a correction; a re-run asks only those. ``exit_code``: 1
    when no correction was finished in this run, 3 when some were."""

    def __init__(self, message: str, exit_code: int = 3):
        super().__init__(message)
        self.exit_code = exit_code


def make_pairs(config: PairsConfig | dict, out_dir: str | Path, *, generator=None, tokenizer=None) -> dict:
    """Run (or resume) the stage into ``out_dir``; returns the manifest. ``generator`` / ``tokenizer``: a
    student already loaded (otherwise built from ``config.student``). One process per ``out_dir``."""
    cfg = config if isinstance(config, PairsConfig) else PairsConfig.model_validate(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with RunDirLock(out, "pairs"):
        return _make_pairs(cfg, out, generator, tokenizer)


def _problem_rows(cfg: PairsConfig, out: Path) -> tuple[list[dict], dict]:
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


def _student_format(cfg: PairsConfig):
    from codistill.correct.attempts import resolve_format
    from codistill.evaluation.strategies.reasoner_coder import format_plan_cut

    fmt = resolve_format(cfg)
    try:
        format_plan_cut(fmt)
    except ValueError:
        raise ValueError(f"student format {fmt.name!r} ({fmt.describe()}) has no reasoning section before the code: "
                         "a student in it writes no steps for the teacher to correct; pairs need a format such as "
                         "paper or paper-no-tests") from None
    return fmt


def _run_key(cfg: PairsConfig, template) -> str:
    """What makes a stored correction reusable (the row's own content is checked by its row hash)."""
    from codistill.teacher.parse import PARSER_VERSION

    return sha256_json({"mode": MODE, "teacher": cfg.teacher.model, "extra_body": cfg.teacher.extra_body,
                        "template": template.sha256, "sampling": cfg.teacher_sampling.model_dump(),
                        "validation": cfg.validation.model_dump(), "max_attempts": cfg.max_attempts,
                        "judge_timeout_s": cfg.judge_timeout_s, "parser": PARSER_VERSION})


def failure_rows(cfg: PairsConfig, fmt, rows: list[dict], attempts: dict[str, dict]) -> tuple[list[dict], Counter]:
    """The teacher's rows (one per failure to correct, in problem order) and the failed answers left
    out, by reason. A row is the data row plus ``answer``, ``program``, ``report``, ``format`` and
    ``sample_index``; its id is ``<problem_id>#s<sample index>``."""
    from codistill.correct.attempts import NOT_THE_STUDENTS_FAULT
    from codistill.pairs.layout import read_attempt

    out: list[dict] = []
    skipped: Counter = Counter()
    fdump = fmt.model_dump()
    for r in rows:
        rec = attempts.get(r["id"])
        if rec is None:
            continue
        seen: set[str] = set()
        taken = 0
        for smp in rec["samples"]:
            if smp["passed"]:
                continue
            attempt = read_attempt(smp["raw"], fmt)
            why = ("not_the_students_fault" if smp["status"] in NOT_THE_STUDENTS_FAULT else
                   "no_steps" if not attempt.spans else "no_code" if not attempt.has_code else
                   "duplicate_program" if smp["program"].strip() in seen else
                   "over_failures_per_problem" if taken == cfg.failures_per_problem else None)
            if why:
                skipped[why] += 1
                continue
            seen.add(smp["program"].strip())
            taken += 1
            row = {k: r.get(k) for k in ("prompt", "code", "tests", "difficulty", "source", "entry_point")}
            out.append({**row, "id": f"{r['problem_id']}#s{smp['index']}", "problem_id": r["problem_id"],
                        "sample_index": smp["index"], "answer": smp["raw"], "program": smp["program"],
                        "report": smp["report"], "format": fdump})
    return out, skipped


def _make_pairs(cfg: PairsConfig, out: Path, generator, tokenizer) -> dict:
    from codistill.correct.attempts import sample_attempts
    from codistill.teacher.templates import load_template

    t0 = time.time()
    rows, problems = _problem_rows(cfg, out)
    fmt = _student_format(cfg)  # before any model is loaded
    template = load_template(MODE, cfg.template)
    attempts, student = sample_attempts(cfg, fmt, rows, problems, out, generator, tokenizer)
    fixes, skipped = failure_rows(cfg, fmt, rows, attempts)
    run_key = _run_key(cfg, template)
    records, errors, teacher = _ask(cfg, template, fixes, problems, out, run_key)
    pairs, dropped = _pairs(fmt, records, {r["id"]: r for r in fixes})
    write_jsonl(out / PAIRS_FILE, pairs)
    manifest = _manifest(cfg, out, fmt, template, run_key, rows, attempts, fixes, skipped, records, pairs, dropped,
                         errors, student, teacher, time.time() - t0)
    atomic_write_json(out / MANIFEST, manifest)
    c = manifest["counts"]
    log.info("pairs: %d problems, %d of %d samples passed; %d failures corrected, %d pairs kept, %d dropped %s; "
             "%d teacher tokens", c["problems"], c["samples_passed"], c["samples"], c["corrections"], c["pairs"],
             c["dropped"], c["dropped_by_reason"] or "", manifest["cost"]["teacher"]["total_tokens"])
    return manifest


def _ask(cfg: PairsConfig, template, fixes: list[dict], problems: dict, out: Path,
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
        tcfg = cfg.teach_config(str(out))
        cache = ResponseCache(Path(cfg.cache_dir) if cfg.cache_dir else out / "cache")
        client = TeacherClient(cfg.teacher)
        run = RunContext(cfg=tcfg, problems=problems)
        try:
            mode.open(run)
            runner = ProblemRunner(tcfg, mode, template, cache, client, run)
            workers = 1 if cfg.teacher.backend == "llamacpp" else cfg.teacher.concurrency
            log.info("pairs: the teacher (%s) corrects %d of %d failures, %d in flight", cfg.teacher.model, len(todo),
                     len(fixes), workers)
            prog = Progress("pairs: teacher", len(fixes), unit="failures", done=len(fixes) - len(todo),
                            every_n=cfg.progress_every, logger=log,
                            describe=lambda: f"teacher calls {client.calls}, cache hits {cache.hits}"
                            + (f", errors {len(errors)}" if errors else ""))
            with JsonlAppender(path) as app, prog:
                def record(row: dict, rec: dict) -> None:
                    rec.update(run_key=run_key, row_hash=hashes[row["id"]], sample_index=row["sample_index"])
                    app.append(rec)
                    done[rec["id"]] = rec
                    info["new"] += 1

                ask_rows(runner.run, todo, workers, record, errors, prog.advance, log, "failures", "pairs")
        finally:
            info.update(teacher_calls=client.calls, cache_hits=cache.hits, usage=client.usage())
            client.close()
            cache.close()
            run.close()
    return [done[r["id"]] for r in fixes if r["id"] in done], errors, info


def _pairs(fmt, records: list[dict], rows: dict[str, dict]) -> tuple[list[dict], Counter]:
    """The pairs of the kept corrections (laid out as the mode judged them), and the corrections
    dropped, by reason."""
    from codistill.pairs.layout import build_pair, read_attempt
    from codistill.teacher.templates import is_none_text

    pairs, dropped = [], Counter()
    for rec in records:
        if not rec.get("valid"):
            dropped[_group(rec.get("reason"))] += 1
            continue
        row = rows[rec["id"]]
        revision = (rec.get("sections") or {}).get("revision") or ""
        k = (rec.get("first_error") or {}).get("k")
        pair = build_pair(read_attempt(row["answer"], fmt), fmt, k, None if is_none_text(revision) else revision,
                          rec["code"])
        pairs.append({"id": rec["id"], "problem_id": row["problem_id"], "prompt": row["prompt"], **pair,
                      "difficulty": row.get("difficulty"), "source": row.get("source"),
                      "sample_index": row["sample_index"], "student_status": row["report"].get("status"),
                      "teacher_tokens": rec["tokens"], "format": fmt.model_dump()})
    return pairs, dropped


def _group(reason: str | None) -> str:
    return (reason or "?").split(" (")[0]


def _manifest(cfg, out, fmt, template, run_key, rows, attempts, fixes, skipped, records, pairs, dropped, errors,
              student, teacher, wall) -> dict:
    import json

    from codistill.teacher.parse import PARSER_VERSION

    samples = [s for a in attempts.values() for s in a["samples"]]
    glog_path = out / "attempts_log.jsonl"
    glog = list(read_jsonl(glog_path, resumable=True)) if glog_path.exists() else []
    tries = [a for r in records for a in r.get("attempt_log", [])]
    judged = [a for a in tries if "judge" in a]
    tok_p = sum(r["tokens"]["prompt"] for r in records)
    tok_c = sum(r["tokens"]["completion"] for r in records)
    key = sha256_json(cfg.key())
    prev = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).exists() else {}
    this_run = {"wall_seconds": round(wall, 2), "student_problems": student["problems"],
                "student_samples": student["samples"], "new_corrections": teacher["new"],
                "teacher_calls": teacher["teacher_calls"], "cache_hits": teacher["cache_hits"],
                "teacher_usage": teacher["usage"]}
    runs = (prev.get("runs", []) if prev.get("key") == key else []) + [this_run]
    remaining = len(fixes) - len(records)
    ks = Counter("code" if p["first_wrong_step"] is None else "step" for p in pairs)
    return {
        "stage": "pairs",
        "complete": len(attempts) == len(rows) and remaining == 0 and not errors,
        "key": key, "run_key": run_key, "parser_version": PARSER_VERSION, "mode": MODE,
        "config": cfg.model_dump(), "format": fmt.model_dump(),
        "template": {"source": template.source, "sha256": template.sha256},
        "counts": {
            "problems": len(rows), "problems_attempted": len(attempts), "samples": len(samples),
            "samples_passed": sum(s["passed"] for s in samples),
            "failed_samples": sum(not s["passed"] for s in samples),
            "failed_by_status": dict(Counter(s["status"] for s in samples if not s["passed"])),
            "failures_not_asked": dict(skipped), "failures": len(fixes), "corrections": len(records),
            "pairs": len(pairs), "pairs_by_first_error": dict(ks), "dropped": len(records) - len(pairs),
            "dropped_by_reason": dict(dropped),
            "rejected_attempts_by_reason": dict(Counter(_group(a.get("reason")) for a in tries if not a.get("valid"))),
            "teacher_errors": len(errors), "remaining": remaining,
        },
        "teacher_errors": errors,
        "files": {"attempts": "attempts.jsonl", "corrections": "corrections.jsonl", "pairs": PAIRS_FILE},
        "cost": {
            "student": {"problems": len(attempts), "samples": len(samples),
                        "prompt_tokens": sum(g.get("prompt_tokens") or 0 for g in glog),
                        "completion_tokens": sum(g.get("completion_tokens") or 0 for g in glog),
                        "seconds": round(sum(g.get("generate_s") or 0.0 for g in glog), 2)},
            "teacher": {"calls": len(tries), "prompt_tokens": tok_p, "completion_tokens": tok_c,
                        "total_tokens": tok_p + tok_c, "seconds": round(sum(r.get("seconds", 0.0) for r in records), 2),
                        "tokens_per_pair": round((tok_p + tok_c) / len(pairs), 1) if pairs else None},
            "judge": {"runs": len(samples) + len(judged), "student_samples": len(samples), "chosen_answers": len(judged),
                      "seconds": round(sum(g.get("judge_s") or 0.0 for g in glog)
                                       + sum(a.get("judge_s") or 0.0 for a in judged), 2)},
            "wall_seconds": round(sum(r["wall_seconds"] for r in runs), 2),
        },
        "this_run": this_run,
        "runs": runs,
    }


def incomplete_error(manifest: dict, resume: str = "the same `codistill pairs` command") -> PairsIncompleteError | None:
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
    return PairsIncompleteError(f"pairs is not complete: {why}. Finished corrections are kept; run {resume} again to "
                                "ask the teacher for the rest.", exit_code=3 if new else 1)
