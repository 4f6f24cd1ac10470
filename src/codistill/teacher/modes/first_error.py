"""``first_error`` (SuperCorrect's cross-model collaborative DPO, Yang et al., ICLR 2025, for code): the
teacher sees the problem, the reference solution, a student's reasoning steps, its failing code and
the judge's report; it checks the steps in order, names the first wrong one (``k``; None when every
step is right and the code alone is wrong) and writes the steps from ``k`` on again, with the code
that follows from them. Sections:

* ``check`` — one verdict per step up to the first wrong one;
* ``first_wrong`` — ``k`` (read from ``check`` when the heading is missing), or None;
* ``revision`` — the steps replacing the student's from ``k`` to the end (None when ``k`` is None);
* ``code`` — the corrected program (a Python block).

An answer is kept only when the *chosen answer* it makes passes the sandbox: the pair is laid out
(:func:`codistill.pairs.layout.build_pair`: the student's answer up to step ``k``, the revision, the
code section with the teacher's code) and its program is read as ``eval`` reads an answer
(:func:`codistill.evaluation.extract.build_program`) and judged; a failing, malformed or
out-of-range answer is retried up to ``max_attempts``. The reasoning shown and the pair use the
same step parser (:mod:`codistill.select.steps`, shared with ``claer``); ``k`` is read as ``claer``
reads it (:func:`~codistill.teacher.modes.claer.first_wrong_step`).

Rows come from ``codistill pairs`` (:mod:`codistill.pairs`), never from a data folder: each carries
``answer`` (the student's whole answer), ``program`` (its judged program), ``report`` (the judge's
failure as :func:`codistill.correct.attempts.readable_failure` writes it), ``format`` (the
student format) and ``max_attempt_chars`` (the steps and code shown are cut to it in all:
:func:`codistill.correct.failures.cut_parts`), shown through ``{student_steps}``,
``{student_code}`` and ``{failure}`` (:attr:`ModeSpec.fields`, part of every call's cache key).
The record's ``first_error`` holds ``k``, the number of student steps and the judge's status of
the chosen answer. No leakage check: the chosen code is meant to be right, and the reference is
what the teacher checks against.
"""

from __future__ import annotations

from codistill.teacher.modes.base import Mode, ModeSpec, RunContext, aliases, reject_attempt
from codistill.teacher.parse import Parsed, extract_code, split_sections

__all__ = ["FirstErrorMode"]


def _fmt(row: dict):
    from codistill.formats import StudentFormat

    return StudentFormat.model_validate(row["format"])


def _attempt(row: dict):
    from codistill.pairs.layout import read_attempt

    if not isinstance(row.get("answer"), str) or not isinstance(row.get("format"), dict):
        raise ValueError(f"first_error row {row.get('id')!r} needs the student's 'answer' and its 'format': its rows "
                         "are made by `codistill pairs`")
    return read_attempt(row["answer"], _fmt(row))


class FirstErrorMode(Mode):
    spec = ModeSpec(
        name="first_error",
        needs_solution=True,
        sections=("check", "first_wrong", "revision", "code"),
        titles={"check": "Check", "first_wrong": "First wrong step", "revision": "Revision", "code": "Code"},
        required=("code",),
        aliases=aliases({
            "check": ["check", "checks", "step check", "step by step check", "verification", "verdicts",
                      "checking the steps"],
            "first_wrong": ["first wrong step", "first wrong", "first incorrect step", "first error",
                            "first mistake", "the first wrong step", "wrong step"],
            "revision": ["revision", "revised steps", "revised", "corrected steps", "correction", "rewrite",
                         "rewritten steps", "corrected reasoning"],
            "code": ["code", "corrected code", "python code", "final code", "fixed code", "corrected program"],
        }),
        stop=("\n### Problem", "\n### Reference solution", "\n### The student", "\n### The judge"),
        fields=("student_steps", "student_code", "failure"),
    )

    def select_rows(self, rows: list[dict]) -> list[dict]:
        if rows and not any("answer" in r for r in rows):
            raise ValueError("teacher mode 'first_error' corrects a student's failed answers: its rows are made by "
                             "`codistill pairs` (student samples judged in the sandbox), not by `codistill data`")
        return [r for r in rows if "answer" in r]

    def prompt_fields(self, row: dict) -> dict[str, str]:
        from codistill.select.steps import numbered_steps
        from codistill.teacher.modes.correction import failure_text

        attempt = _attempt(row)
        steps = numbered_steps(attempt.reasoning, attempt.spans) if attempt.spans else "(the student wrote no steps)"
        report = row.get("report")
        if not isinstance(report, dict):
            raise ValueError(f"first_error row {row.get('id')!r} needs 'report' (the judge's failure, a mapping)")
        code = (row.get("program") or "").strip("\n")
        if row.get("max_attempt_chars"):  # the pairs stage's cut of what is shown (the pair keeps the whole answer)
            from codistill.correct.failures import cut_parts

            steps, code = cut_parts([steps, code], row["max_attempt_chars"])
        return {"student_steps": steps, "student_code": code, "failure": failure_text(report)}

    def open(self, run: RunContext) -> None:
        if "judge" not in run.state:
            from codistill.execution.judge import Judge, JudgeConfig

            run.state["judge"] = run.resources.enter_context(Judge(JudgeConfig(timeout_s=run.cfg.judge_timeout_s)))

    def split(self, text: str, rules) -> Parsed:
        sections = split_sections(text, self.spec.aliases)
        body = sections.get("code") or ""
        code = extract_code(body) if body else None
        if code is None:
            code = extract_code(text)  # a code block under another heading (or none)
        p = Parsed(sections, True)
        p.code = code
        if code:
            sections["code"] = code
        else:
            sections.pop("code", None)
        return p

    def check(self, run: RunContext, row: dict, text: str, parsed: Parsed, entry: dict) -> dict | None:
        from codistill.evaluation.extract import build_program
        from codistill.pairs.layout import build_pair
        from codistill.teacher.modes.claer import first_wrong_step
        from codistill.teacher.templates import is_none_text

        if not parsed.valid:
            return None
        k = first_wrong_step(parsed.sections)
        if k is None and not (parsed.sections.get("first_wrong") or "").strip():
            reject_attempt(parsed, entry, "no first wrong step")
            return None
        revision = parsed.sections.get("revision") or ""
        try:
            pair = build_pair(_attempt(row), _fmt(row), k, None if is_none_text(revision) else revision, parsed.code)
        except ValueError as e:
            reject_attempt(parsed, entry, str(e))
            return None
        problem = run.problems.get(row.get("problem_id", row["id"]))
        if problem is None:
            raise KeyError(f"no problem record for {row['id']}: first_error needs the tests")
        program = build_program(pair["chosen"], problem.code_prefix, problem.entry_point, "chat")
        verdict = run.state["judge"].judge(problem, program)
        entry["judge"] = verdict["status"]
        entry["judge_s"] = verdict.get("time_s", 0.0)
        entry["first_error"] = {"k": k, "student_steps": pair["student_steps"], "judge": verdict["status"]}
        if not verdict["passed"]:
            entry["judge_failure"] = verdict.get("failure")
            reject_attempt(parsed, entry, f"judge: {verdict['status']}")
        return None

    def code(self, row: dict, parsed: Parsed) -> str | None:
        return parsed.code

    def finish(self, record: dict, passing: list[dict]) -> None:
        chosen = next((a for a in record.get("attempt_log", []) if a.get("valid")), None)
        record["first_error"] = chosen.get("first_error") if chosen else None
