"""Step 1 of the correct stage: the student's attempts on the training problems, judged.

The student is prompted in the run's student format (:mod:`codistill.formats`: the prompt it
was, or will be, trained on; generation stops where the section after the code begins), samples
``sampling.n`` answers per problem, and each answer's program (read as eval reads an answer in a
format: :func:`codistill.evaluation.extract.build_program`) is judged in the sandbox
(:class:`codistill.execution.judge.Judge`: untrusted code never runs in this process).

``attempts.jsonl`` gets one record per problem, appended once all its samples are judged:
``{"id", "problem_id", "student_key", "samples": [{"index", "raw", "program", "passed", "status",
"failure", "report", "time_s"}], "passed"}``; ``report`` (failed samples) is the judge's failure in
readable form (:func:`readable_failure`), what the teacher is shown. A resumed run skips problems
whose record has the same ``student_key`` (:func:`student_key`). ``attempts_log.jsonl`` gets one
line per generate call: problems, samples, prompt/completion tokens, generate and judge seconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codistill.correct.failures import cut_text, failed_samples, teacher_row
from codistill.store import JsonlAppender, read_jsonl, sha256_json

__all__ = ["NOT_THE_STUDENTS_FAULT", "failure_rows", "make_student", "readable_failure", "resolve_format",
           "sample_attempts", "student_key"]

log = logging.getLogger("codistill.correct")

ATTEMPTS_VERSION = 1
EXCERPT = 300
# verdicts that say nothing about the student's program: no correction is asked for them
NOT_THE_STUDENTS_FAULT = ("sandbox_error", "no_tests")


def resolve_format(cfg) -> Any:
    """The student format of the run (checked against the adapter's record when there is one)."""
    from codistill.formats import FORMAT_FILE, StudentFormat, check_adapter, get_format

    st = cfg.student
    if st.format == "adapter":
        fmt = StudentFormat.model_validate(json.loads((Path(st.adapter) / FORMAT_FILE).read_text())["format"])
    else:
        fmt = get_format(st.format)
    # the budget belongs to eval: only a format mismatch is an error here
    check_adapter(st.adapter, fmt, cfg.sampling.max_new_tokens, 0, allow_short_budget=True, where="correct")
    return fmt


def student_key(cfg, fmt) -> str:
    """What makes a stored attempt reusable: the student, its format and sampling, the judge's limit."""
    return sha256_json({"student": cfg.student.model_dump(exclude={"format"}), "format": fmt.key(),
                        "sampling": cfg.sampling.model_dump(), "judge_timeout_s": cfg.judge_timeout_s,
                        "version": ATTEMPTS_VERSION})


def make_student(cfg):
    """The student's generator, given the settings codistill owns for its backend (as eval does);
    prompts are rendered here, so the backend gets raw completion prompts."""
    from codistill.backends import backend_kind, make_generator
    from codistill.evaluation.config import _SET_BY_EVAL

    st = cfg.student
    kind = backend_kind(st.backend)
    owned = {"model": st.model, "adapter": st.adapter, "batch_size": st.batch_size, "dtype": st.dtype}
    kwargs = {k: owned[k] for k in _SET_BY_EVAL.get(kind, ("model",)) if k in owned}
    options = {k: v for k, v in st.backend_options.items() if k != "prompt_mode"}
    return make_generator(st.backend, **kwargs, **options, prompt_mode="completion")


def _clip(text: str, n: int = EXCERPT) -> str:
    return text if len(text) <= n else text[:n] + "…"


def _readable(excerpt: Any) -> str:
    """A judge excerpt of an encoded value as Python's repr (kept as written when it was cut)."""
    from codistill.execution.wire import decode

    if not isinstance(excerpt, str):
        return _clip(repr(excerpt))
    try:
        return _clip(repr(decode(json.loads(excerpt))))
    except (ValueError, TypeError, KeyError):
        return excerpt


def readable_failure(problem, verdict: dict) -> dict:
    """The judge's failure as the teacher reads it: ``status``, and where present ``input`` (a call
    ``f(args)`` for call-based tests, stdin for stdio ones), ``expected``, ``got`` and ``error``."""
    from codistill.execution.wire import decode
    from codistill.problems.rows import _call_expr
    from codistill.problems.schema import CallTests

    f = verdict.get("failure") or {}
    out = {"status": verdict.get("status") or "fail"}
    suite = next((s for s in problem.tests if s.name == f.get("suite")), None)
    case = f.get("case")
    call = isinstance(suite, CallTests) and isinstance(case, int) and 0 <= case < len(suite.inputs)
    if call:
        out["input"] = _clip(_call_expr(suite.fn_name, [decode(a) for a in suite.inputs[case]]))
    elif f.get("input") is not None:
        out["input"] = _clip(str(f["input"]))
    for key in ("expected", "got"):
        if key in f:
            if call and key == "expected" and suite.outputs is not None:
                out[key] = _clip(repr(decode(suite.outputs[case])))
            else:
                out[key] = _readable(f[key]) if call else _clip(repr(f[key]))
    if f.get("error"):
        out["error"] = _clip(str(f["error"]))
    return out


def _done(path: Path, key: str) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if path.exists():
        for r in read_jsonl(path, resumable=True):
            if r.get("student_key") == key:
                done[r["id"]] = r
    return done


def sample_attempts(cfg, fmt, rows: list[dict], problems: dict, out: Path, generator=None,
                    tokenizer=None) -> tuple[dict[str, dict], dict]:
    """(attempt records by row id, this call's counts). ``generator``/``tokenizer``: a student
    already loaded (tests pass scripted ones); otherwise built from ``cfg.student`` when there is
    anything to sample, and closed afterwards."""
    from codistill.backends import SamplingParams
    from codistill.evaluation.extract import build_program
    from codistill.execution.judge import Judge, JudgeConfig
    from codistill.progress import PROGRESS_FILE, Progress

    path = out / "attempts.jsonl"
    key = student_key(cfg, fmt)
    done = _done(path, key)
    todo = [r for r in rows if r["id"] not in done]
    stats = {"problems": 0, "samples": 0, "generate_s": 0.0, "judge_s": 0.0}
    if not todo:
        return {r["id"]: done[r["id"]] for r in rows if r["id"] in done}, stats
    own = generator is None
    gen = generator if generator is not None else make_student(cfg)
    try:
        tok = tokenizer
        if tok is None and fmt.prompt_mode == "chat":
            tok = gen.tokenizer if gen.capabilities.tokenizer else _load_tokenizer(cfg)
        s = cfg.sampling
        stops = tuple(fmt.stop_strings())
        log.info("correct: the student (%s%s) attempts %d of %d problems, %d samples each, format %s",
                 cfg.student.model, f" + {cfg.student.adapter}" if cfg.student.adapter else "", len(todo), len(rows),
                 s.n, fmt.name)
        with Judge(JudgeConfig(timeout_s=cfg.judge_timeout_s)) as judge, JsonlAppender(path) as app, \
                JsonlAppender(out / "attempts_log.jsonl") as logapp, \
                Progress("correct: student", len(rows), unit="problems", done=len(rows) - len(todo),
                         every_n=cfg.progress_every, logger=log, state=out / PROGRESS_FILE) as prog:
            for start in range(0, len(todo), cfg.student.batch_size):
                chunk = todo[start:start + cfg.student.batch_size]
                prompts = [fmt.render_prompt(tok, r["prompt"])[0] for r in chunk]
                params = SamplingParams(n=s.n, temperature=s.temperature, top_p=s.top_p if s.temperature > 0 else 1.0,
                                        max_new_tokens=s.max_new_tokens, seed=s.seed + start, stop=stops)
                before = gen.usage.as_dict()
                t0 = time.perf_counter()
                outs = gen.generate(prompts, params)
                gen_s = time.perf_counter() - t0
                usage = {k: v - before[k] for k, v in gen.usage.as_dict().items()}
                samples = []
                for r, texts in zip(chunk, outs):
                    p = problems[r["problem_id"]]
                    for i, text in enumerate(texts[:s.n]):
                        samples.append({"task_id": p.id, "solution": build_program(text, p.code_prefix, p.entry_point,
                                                                                   "chat"),
                                        "raw": text, "index": i, "row": r["id"]})
                t1 = time.perf_counter()
                verdicts = judge.judge_samples({r["problem_id"]: problems[r["problem_id"]] for r in chunk}, samples,
                                               progress=False)
                judge_s = time.perf_counter() - t1
                if not usage.get("completion_tokens") and tok is not None:
                    usage["completion_tokens"] = sum(len(tok(v["raw"], add_special_tokens=False)["input_ids"])
                                                     for v in verdicts)
                for r in chunk:
                    rec = _record(r, [v for v in verdicts if v["row"] == r["id"]], problems[r["problem_id"]], key)
                    app.append(rec)
                    done[r["id"]] = rec
                    prog.advance()
                logapp.append({"problems": len(chunk), "samples": len(samples), "prompt_tokens": usage["prompt_tokens"],
                               "completion_tokens": usage["completion_tokens"], "generate_s": round(gen_s, 3),
                               "judge_s": round(judge_s, 3)})
                stats["problems"] += len(chunk)
                stats["samples"] += len(samples)
                stats["generate_s"] += gen_s
                stats["judge_s"] += judge_s
    finally:
        if own:
            gen.close()
    return {r["id"]: done[r["id"]] for r in rows if r["id"] in done}, stats


def _load_tokenizer(cfg):
    from codistill.evaluation.run import load_tokenizer

    tok = load_tokenizer(cfg.student.model, cfg.student.dtype)
    if tok is None:
        raise ValueError(f"format prompt_mode 'chat' needs the student's tokenizer, and none could be loaded for "
                         f"{cfg.student.model!r}: use a format with prompt_mode: completion, or a local model")
    return tok


def _record(row: dict, verdicts: list[dict], problem, key: str) -> dict:
    samples = []
    for v in sorted(verdicts, key=lambda v: v["index"]):
        smp = {"index": v["index"], "raw": v["raw"], "program": v["solution"], "passed": bool(v["passed"]),
               "status": v["status"], "failure": v.get("failure"), "time_s": v.get("time_s", 0.0)}
        if not smp["passed"]:
            smp["report"] = readable_failure(problem, v)
        samples.append(smp)
    return {"id": row["id"], "problem_id": row["problem_id"], "student_key": key, "samples": samples,
            "passed": sum(x["passed"] for x in samples)}


def failure_rows(cfg, rows: list[dict], attempts: dict[str, dict],
                 prompt_fits: Callable[[str], bool] | None = None) -> tuple[list[dict], dict]:
    """The teacher's rows (one per failure to correct, in problem order) and what was left out.

    Per problem: failed samples in sample order, skipping verdicts that are not the student's fault
    (:data:`NOT_THE_STUDENTS_FAULT`) and programs already taken (duplicates), up to
    ``failures_per_problem``. A row is the data row plus ``attempt`` (the student's answer, cut to
    ``max_attempt_chars``), ``failure`` (the readable report) and ``sample_index``; its id is
    ``<problem_id>#fix<sample index>``. ``prompt_fits`` (:meth:`codistill.correct.fit.RowFit.
    prompt_fits`, when ``max_row_tokens`` is set): a failure whose lema prompt (the statement and
    the cut attempt, :func:`codistill.correct.rows.lema_prompt`) could not fit is left out
    (``prompt_too_long``, counted only then) before the teacher is asked, and the next failure of
    its problem taken."""
    from codistill.correct.rows import lema_prompt

    out: list[dict] = []
    skipped = {"not_the_students_fault": 0, "duplicate_program": 0, "over_failures_per_problem": 0,
               **({"prompt_too_long": 0} if prompt_fits is not None else {})}
    for r, failed in failed_samples(rows, attempts):
        seen: set[str] = set()
        taken = 0
        for smp in failed:
            if smp["status"] in NOT_THE_STUDENTS_FAULT:
                skipped["not_the_students_fault"] += 1
                continue
            prog = smp["program"].strip()
            if prog in seen:
                skipped["duplicate_program"] += 1
                continue
            if taken == cfg.failures_per_problem:
                seen.add(prog)
                skipped["over_failures_per_problem"] += 1
                continue
            attempt = cut_text(smp["raw"], cfg.max_attempt_chars)
            if prompt_fits is not None and not prompt_fits(lema_prompt(r["prompt"], attempt)):
                skipped["prompt_too_long"] += 1  # its program stays free: a shorter answer with it may fit
                continue
            seen.add(prog)
            taken += 1
            out.append(teacher_row(r, smp, "fix", attempt=attempt, failure=smp["report"]))
    return out, skipped
