"""The student's judged failures, corrected by the teacher: the steps the correct stage (LEMA,
:mod:`codistill.correct.stage`) and the pairs stage (SuperCorrect stage 2,
:mod:`codistill.pairs.stage`) share. Their settings share :class:`~codistill.correct.config.
AttemptSettings` and :class:`~codistill.correct.config.CorrectionSettings`; the stages differ in the
teacher mode they ask (the config's ``MODE``: ``correction``, ``first_error``), in which failed
answers they show it, and in what they make of the kept corrections (training rows, DPO pairs).

- :func:`attempt_and_ask`: the training problems (read as the teach stage reads them), the
  student's judged attempts (:func:`codistill.correct.attempts.sample_attempts`), the failures the
  stage picks (:func:`failed_samples`, :func:`teacher_row`), and the teacher's correction of each
  through the teach stage's machinery (:class:`~codistill.teacher.runner.ProblemRunner`,
  :func:`~codistill.teacher.pool.ask_rows`), appended to ``corrections.jsonl`` and resumed from it;
- :func:`manifest`, :func:`write_manifest`: ``<stage>_manifest.json``, the counts and the cost
  (student samples and tokens, teacher tokens, judge runs, seconds), and its log line;
- :func:`incomplete`: the error a command ends with when failures were left without a correction;
- :func:`cut_text`, :func:`cut_parts`: a failed answer cut to ``max_attempt_chars`` for the
  teacher's prompt (the correct stage's ``{attempt}``, the pairs stage's steps and code).

A prompt the teacher's server refuses for its size (:class:`~codistill.backends.base.ContextSizeError`:
llama.cpp without context shift answers HTTP 400 "the request exceeds the available context size")
is a permanent rejection of that failure, not a teacher error: its record (valid False, reason
:data:`OVER_CONTEXT`) is stored like any other, counted in the manifest (``over_teacher_context``,
and under the reason in ``dropped_by_reason``), and a resumed run does not ask again; the stage can
complete. (To ask again after giving the server a larger context, remove those records from
``corrections.jsonl``; a changed ``max_attempt_chars`` changes the rows' prompts, and with them
the rows' hashes, so they are asked again anyway.)
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codistill.store import JsonlAppender, atomic_write_json, read_jsonl, sha256_json

__all__ = ["CUT_NOTE", "OVER_CONTEXT", "FailureRun", "IncompleteError", "attempt_and_ask", "cut_parts", "cut_text",
           "failed_samples", "incomplete", "manifest", "reason_group", "teacher_row", "write_manifest"]

CUT_NOTE = "\n[… the rest of the answer is cut]"
OVER_CONTEXT = "prompt exceeds the teacher's context"  # the reason of a failure the server refused for its size


def cut_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, then :data:`CUT_NOTE` (as it is when not longer)."""
    return text if len(text) <= limit else text[:limit] + CUT_NOTE


def cut_parts(parts: list[str], limit: int) -> list[str]:
    """Texts shown together (a failed answer's steps and its code) cut to ``limit`` characters in
    all, each with :func:`cut_text`: a text shorter than an equal share of what is left is kept
    whole, the longer ones share the rest equally (all kept whole when they fit together)."""
    out = list(parts)
    left = limit
    order = sorted(range(len(parts)), key=lambda i: len(parts[i]))
    for done, i in enumerate(order):
        share = left // (len(parts) - done)
        out[i] = cut_text(parts[i], share)
        left -= min(len(parts[i]), share)
    return out


def load_problems(cfg, out: Path) -> tuple[list[dict], dict]:
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


def failed_samples(rows: list[dict], attempts: dict[str, dict]) -> Iterator[tuple[dict, list[dict]]]:
    """Per problem with stored attempts, in problem order: its data row and its failed samples, in
    sample order (each stage picks the ones it shows the teacher)."""
    for r in rows:
        rec = attempts.get(r["id"])
        if rec is not None:
            yield r, [s for s in rec["samples"] if not s["passed"]]


def teacher_row(row: dict, smp: dict, tag: str, **fields) -> dict:
    """The teacher's row for one failed sample: the data row's problem fields, the id
    ``<problem_id>#<tag><sample index>``, ``problem_id``, ``sample_index``, then ``fields``."""
    problem = {k: row.get(k) for k in ("prompt", "code", "tests", "difficulty", "source", "entry_point")}
    return {**problem, "id": f"{row['problem_id']}#{tag}{smp['index']}", "problem_id": row["problem_id"],
            "sample_index": smp["index"], **fields}


def reason_group(reason: str | None) -> str:
    """A rejection reason without its details (``judge: fail (case 2)`` -> ``judge: fail``)."""
    return (reason or "?").split(" (")[0]


def run_key(cfg, template) -> str:
    """What makes a stored correction reusable (the row's own content is checked by its row hash)."""
    from codistill.teacher.parse import PARSER_VERSION

    return sha256_json({"mode": cfg.MODE, "teacher": cfg.teacher.model, "extra_body": cfg.teacher.extra_body,
                        "template": template.sha256, "sampling": cfg.teacher_sampling.model_dump(),
                        "validation": cfg.validation.model_dump(), "max_attempts": cfg.max_attempts,
                        "judge_timeout_s": cfg.judge_timeout_s, "parser": PARSER_VERSION})


@dataclass
class FailureRun:
    """What :func:`attempt_and_ask` did (its fields are the keyword arguments of a stage's
    ``_manifest``, with that stage's outputs and the wall time): the config, the run directory, the
    student's format, the teacher's template, the run key, the problems' rows, the student's attempts
    (by row id), the failures asked about and those left out (by reason), the teacher's records (in
    failure order) and errors (by row id), and this run's student and teacher counts."""

    cfg: Any
    out: Path
    fmt: Any
    template: Any
    run_key: str
    rows: list[dict]
    attempts: dict[str, dict]
    fixes: list[dict]
    skipped: dict
    records: list[dict]
    errors: dict[str, str]
    student: dict
    teacher: dict


def attempt_and_ask(stage: str, cfg, out: Path, student_format: Callable[[Any], Any],
                    pick: Callable[[Any, list[dict], dict], tuple[list[dict], dict]], generator=None,
                    tokenizer=None) -> FailureRun:
    """The problems, the student's judged attempts, ``pick(fmt, rows, attempts)`` -> (the failures to
    correct, those left out by reason), and the teacher's correction of each (resumed: stored records
    of the same run key and row are kept). ``student_format(cfg)``: the run's format, checked before
    any model is loaded."""
    from codistill.correct.attempts import sample_attempts
    from codistill.teacher.templates import load_template

    rows, problems = load_problems(cfg, out)
    fmt = student_format(cfg)  # before any model is loaded
    template = load_template(cfg.MODE, cfg.template)
    attempts, student = sample_attempts(cfg, fmt, rows, problems, out, generator, tokenizer)
    fixes, skipped = pick(fmt, rows, attempts)
    key = run_key(cfg, template)
    records, errors, teacher = _ask(stage, cfg, template, fixes, problems, out, key)
    return FailureRun(cfg, out, fmt, template, key, rows, attempts, fixes, skipped, records, errors, student, teacher)


def _ask(stage: str, cfg, template, fixes: list[dict], problems: dict, out: Path,
         key: str) -> tuple[list[dict], dict, dict]:
    """(correction records in failure order, teacher errors by row id, this run's teacher counts)."""
    from codistill.backends.base import ContextSizeError
    from codistill.progress import PROGRESS_FILE, Progress
    from codistill.teacher.cache import ResponseCache
    from codistill.teacher.client import TeacherClient
    from codistill.teacher.modes import RunContext, get_mode
    from codistill.teacher.pool import ask_rows
    from codistill.teacher.runner import ProblemRunner, row_hash

    log = logging.getLogger(f"codistill.{stage}")
    mode = get_mode(cfg.MODE)
    path = out / "corrections.jsonl"
    hashes = {r["id"]: row_hash(r, mode.prompt_fields(r)) for r in fixes}
    done: dict[str, dict] = {}
    if path.exists():
        for rec in read_jsonl(path, resumable=True):
            if rec.get("run_key") == key and rec.get("row_hash") == hashes.get(rec["id"]):
                done[rec["id"]] = rec
    todo = [r for r in fixes if r["id"] not in done]
    errors: dict[str, str] = {}
    info = {"teacher_calls": 0, "cache_hits": 0, "new": 0, "usage": None}
    if todo:
        tcfg = cfg.teach_config(out)
        cache = ResponseCache(Path(cfg.cache_dir) if cfg.cache_dir else out / "cache")
        client = TeacherClient(cfg.teacher)
        run = RunContext(cfg=tcfg, problems=problems)
        try:
            mode.open(run)
            runner = ProblemRunner(tcfg, mode, template, cache, client, run)

            def ask(row: dict) -> dict:
                try:
                    return runner.run(row)
                except ContextSizeError as e:  # permanent: recorded as rejected, never a teacher error
                    log.warning("%s: %s: the teacher's server refused the prompt for its size (%s); recorded as "
                                "rejected", stage, row["id"], e)
                    return over_context_record(runner, row, e)

            tc = cfg.teacher
            workers = 1 if tc.backend == "llamacpp" else tc.concurrency
            log.info("%s: the teacher (%s) corrects %d of %d failures, %d in flight", stage, tc.model, len(todo),
                     len(fixes), workers)
            prog = Progress(f"{stage}: teacher", len(fixes), unit="failures", done=len(fixes) - len(todo),
                            every_n=cfg.progress_every, logger=log, state=out / PROGRESS_FILE,
                            describe=lambda: f"teacher calls {client.calls}, cache hits {cache.hits}"
                            + (f", errors {len(errors)}" if errors else ""))
            with JsonlAppender(path) as app, prog:
                def record(row: dict, rec: dict) -> None:
                    rec.update(run_key=key, row_hash=hashes[row["id"]], sample_index=row["sample_index"])
                    app.append(rec)
                    done[rec["id"]] = rec
                    info["new"] += 1

                ask_rows(ask, todo, workers, record, errors, prog.advance, log, "failures", stage)
        finally:
            info.update(teacher_calls=client.calls, cache_hits=cache.hits, usage=client.usage())
            client.close()
            cache.close()
            run.close()
    return [done[r["id"]] for r in fixes if r["id"] in done], errors, info


def over_context_record(runner, row: dict, error: BaseException) -> dict:
    """The record of a failure whose prompt the teacher's server refused for its size: invalid, reason
    :data:`OVER_CONTEXT` (with the server's words), one refused call in its attempt log, no tokens;
    the fields of :meth:`~codistill.teacher.runner.ProblemRunner.attempts`' records."""
    from codistill.teacher.parse import PARSER_VERSION

    cfg, template = runner.cfg, runner.template
    reason = f"{OVER_CONTEXT} ({str(error)[:240]})"
    rec = {"id": row["id"], "problem_id": row.get("problem_id", row["id"]), "mode": cfg.mode, "sections": {},
           "context": "", "raw": "", "code": None, "valid": False, "reason": reason, "leakage": None,
           "leakage_detail": None, "teacher": cfg.teacher.model, "template_hash": template.sha256,
           "template": template.source, "params": runner.params(0).model_dump(), "parser_version": PARSER_VERSION,
           "attempts": 1, "attempt_log": [{"attempt": 0, "cached": False, "valid": False, "reason": reason,
                                           "completion_tokens": 0}],
           "tokens": {"prompt": 0, "completion": 0}, "seconds": 0.0}
    runner.mode.finish(rec, [])
    return rec


def manifest(stage: str, run: FailureRun, wall: float, *, kept: str, per_kept: str, judged_as: str, outcome: dict,
             files: dict, head: dict | None = None, solved: bool = False, tail: dict | None = None,
             extra: dict | None = None) -> dict:
    """``<stage>_manifest.json``'s content: config, counts, cost and runs (``wall``: this run's
    seconds, the stage's outputs written). The stage gives its own parts: ``outcome`` (the counts of
    what the kept corrections made; ``outcome[kept]`` of them, priced per ``per_kept`` in teacher
    tokens), ``files`` (besides attempts and corrections), ``judged_as`` (what the judge's runs on the
    teacher's programs are called), ``head`` (after the parser version), ``solved`` (count the problems
    the student solved), ``tail`` (the last counts), ``extra`` (after the files)."""
    import json

    from codistill.teacher.parse import PARSER_VERSION

    out, cfg, records, attempts = run.out, run.cfg, run.records, run.attempts
    name = f"{stage}_manifest.json"
    samples = [s for a in attempts.values() for s in a["samples"]]
    log_path = out / "attempts_log.jsonl"
    glog = list(read_jsonl(log_path, resumable=True)) if log_path.exists() else []
    tries = [a for r in records for a in r.get("attempt_log", [])]
    judged = [a for a in tries if "judge" in a]
    tok_p = sum(r["tokens"]["prompt"] for r in records)
    tok_c = sum(r["tokens"]["completion"] for r in records)
    key = sha256_json(cfg.key())
    prev = json.loads((out / name).read_text()) if (out / name).exists() else {}
    student, teacher = run.student, run.teacher
    this_run = {"wall_seconds": round(wall, 2), "student_problems": student["problems"],
                "student_samples": student["samples"], "new_corrections": teacher["new"],
                "teacher_calls": teacher["teacher_calls"], "cache_hits": teacher["cache_hits"],
                "teacher_usage": teacher["usage"]}
    runs = (prev.get("runs", []) if prev.get("key") == key else []) + [this_run]
    remaining = len(run.fixes) - len(records)
    n_kept = outcome[kept]
    return {
        "stage": stage,
        "complete": len(attempts) == len(run.rows) and remaining == 0 and not run.errors,
        "key": key, "run_key": run.run_key, "parser_version": PARSER_VERSION, **(head or {}),
        "config": cfg.model_dump(), "format": run.fmt.model_dump(),
        "template": {"source": run.template.source, "sha256": run.template.sha256},
        "counts": {
            "problems": len(run.rows), "problems_attempted": len(attempts), "samples": len(samples),
            "samples_passed": sum(s["passed"] for s in samples),
            **({"problems_solved": sum(1 for a in attempts.values() if a["passed"])} if solved else {}),
            "failed_samples": sum(not s["passed"] for s in samples),
            "failed_by_status": dict(Counter(s["status"] for s in samples if not s["passed"])),
            "failures_not_asked": dict(run.skipped), "failures": len(run.fixes), "corrections": len(records),
            **outcome,
            "rejected_attempts_by_reason": dict(Counter(reason_group(a.get("reason")) for a in tries
                                                        if not a.get("valid"))),
            "over_teacher_context": sum(reason_group(r.get("reason")) == OVER_CONTEXT for r in records),
            "teacher_errors": len(run.errors), "remaining": remaining, **(tail or {}),
        },
        "teacher_errors": run.errors,
        "files": {"attempts": "attempts.jsonl", "corrections": "corrections.jsonl", **files},
        **(extra or {}),
        "cost": {
            "student": {"problems": len(attempts), "samples": len(samples),
                        "prompt_tokens": sum(g.get("prompt_tokens") or 0 for g in glog),
                        "completion_tokens": sum(g.get("completion_tokens") or 0 for g in glog),
                        "seconds": round(sum(g.get("generate_s") or 0.0 for g in glog), 2)},
            "teacher": {"calls": len(tries), "prompt_tokens": tok_p, "completion_tokens": tok_c,
                        "total_tokens": tok_p + tok_c, "seconds": round(sum(r.get("seconds", 0.0) for r in records), 2),
                        per_kept: round((tok_p + tok_c) / n_kept, 1) if n_kept else None},
            "judge": {"runs": len(samples) + len(judged), "student_samples": len(samples), judged_as: len(judged),
                      "seconds": round(sum(g.get("judge_s") or 0.0 for g in glog)
                                       + sum(a.get("judge_s") or 0.0 for a in judged), 2)},
            "wall_seconds": round(sum(r["wall_seconds"] for r in runs), 2),
        },
        "this_run": this_run,
        "runs": runs,
    }


def write_manifest(stage: str, out: Path, manifest: dict, kept: str) -> dict:
    """Write ``<stage>_manifest.json`` and log its summary (``kept``: the count of what was kept); returns it."""
    atomic_write_json(out / f"{stage}_manifest.json", manifest)
    c = manifest["counts"]
    logging.getLogger(f"codistill.{stage}").info(
        "%s: %d problems, %d of %d samples passed; %d failures corrected, %d %s, %d dropped %s; %d teacher tokens",
        stage, c["problems"], c["samples_passed"], c["samples"], c["corrections"], c[kept],
        "kept" if kept == "kept" else f"{kept} kept", c["dropped"], c["dropped_by_reason"] or "",
        manifest["cost"]["teacher"]["total_tokens"])
    return manifest


class IncompleteError(RuntimeError):
    """Teacher errors left failures without a correction; a re-run asks only those. ``exit_code``: 1
    when no correction was finished in this run, 3 when some were."""

    def __init__(self, message: str, exit_code: int = 3):
        super().__init__(message)
        self.exit_code = exit_code


def incomplete(manifest: dict, stage: str, resume: str, error: type[IncompleteError]) -> IncompleteError | None:
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
    return error(f"{stage} is not complete: {why}. Finished corrections are kept; run {resume} again to ask the "
                 "teacher for the rest.", exit_code=3 if new else 1)
