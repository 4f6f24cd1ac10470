"""``correction`` (LEMA, "Learning From Mistakes Makes LLM Better Reasoner", 2024): the teacher sees
the problem, a student's failed attempt (its whole answer: reasoning and code) and the judge's
report of the failure (status, failing input, expected vs got, error), and writes four sections:

* ``incorrect_step`` — the first wrong step of the attempt (a reasoning step or a code line);
* ``explanation`` — why it is wrong and how it leads to the reported failure;
* ``reasoning`` — the corrected solution's reasoning, in words;
* ``code`` — the corrected program (a Python block).

The corrected program is judged in the sandbox and the answer is kept only if it passes (as in
``solve``: ``max_attempts`` teacher calls per failure at most, a failing or malformed answer is
retried). The reference solution is not shown (needs_solution False): the judge is the filter.

Rows come from ``codistill correct`` (:mod:`codistill.correct`), never from a data folder: each
carries ``attempt`` (the student's answer as text) and ``failure`` (the judge's report, a dict of
readable strings: ``status``, ``input``, ``expected``, ``got``, ``error``), shown through the
template's ``{attempt}`` and ``{failure}`` placeholders (:attr:`ModeSpec.fields`).
"""

from __future__ import annotations

import re

from codistill.teacher.modes.base import ModeSpec, RunContext, aliases, reject_attempt
from codistill.teacher.modes.solve import SolveMode
from codistill.teacher.parse import Parsed, extract_code, fenced_blocks, split_sections

__all__ = ["CorrectionMode", "failure_text"]

_STATUS = {"fail": "wrong answer", "error": "runtime error", "timeout": "time limit exceeded",
           "memory": "memory limit exceeded", "syntax_error": "syntax error", "output_limit": "too much output"}


def failure_text(failure: dict) -> str:
    """The judge's report as the teacher reads it: one line per detail present."""
    status = failure.get("status") or "fail"
    lines = [f"Verdict: {_STATUS.get(status, status)} ({status})"]
    for key, label in (("input", "Failing input"), ("expected", "Expected output"), ("got", "Student's output"),
                       ("error", "Error")):
        if failure.get(key) not in (None, ""):
            lines.append(f"{label}: {failure[key]}")
    return "\n".join(lines)


def _parses(code: str) -> bool:
    from codistill.problems._common import parse_quietly

    try:
        parse_quietly(code)
    except (SyntaxError, ValueError):
        return False
    return True


_FENCED = re.compile(r"^[ \t]*```[^\n]*\n.*?(?:^[ \t]*```[ \t]*$|\Z)", re.S | re.M)


class CorrectionMode(SolveMode):
    spec = ModeSpec(
        name="correction",
        needs_solution=False,
        sections=("incorrect_step", "explanation", "reasoning", "code"),
        titles={"incorrect_step": "Incorrect step", "explanation": "Explanation of the error",
                "reasoning": "Corrected solution", "code": "Corrected code"},
        required=("incorrect_step", "explanation", "reasoning", "code"),
        aliases=aliases({
            "incorrect_step": ["incorrect step", "the incorrect step", "first incorrect step", "wrong step",
                               "erroneous step", "mistake", "the mistake", "error location", "incorrect line"],
            "explanation": ["explanation of the error", "explanation", "error explanation", "why it is wrong",
                            "why it fails", "what went wrong", "explanation of the mistake", "the error"],
            "reasoning": ["corrected solution", "correct solution", "corrected reasoning", "correct reasoning",
                          "corrected approach", "correction", "fixed solution"],
            "code": ["corrected code", "correct code", "fixed code", "code", "python code", "final code",
                     "corrected program"],
        }),
        stop=("\n### Problem", "\n### Student's attempt", "\n### Judge's report"),
        fields=("attempt", "failure"),
    )

    def select_rows(self, rows: list[dict]) -> list[dict]:
        """Only rows that carry a failed attempt (written by ``codistill correct``)."""
        if rows and not any("attempt" in r for r in rows):
            raise ValueError("teacher mode 'correction' corrects a student's failed attempts: its rows are "
                             "made by `codistill correct` (student samples judged in the sandbox), not by "
                             "`codistill data`; run `codistill correct` instead of `codistill teach`")
        return [r for r in rows if "attempt" in r]

    def prompt_fields(self, row: dict) -> dict[str, str]:
        failure = row.get("failure")
        if row.get("attempt") is None or not isinstance(failure, dict):
            raise ValueError(f"correction row {row.get('id')!r} needs 'attempt' (text) and 'failure' (the "
                             "judge's report, a mapping)")
        return {"attempt": row["attempt"], "failure": failure_text(failure)}

    def split(self, text: str, rules) -> Parsed:
        sections = split_sections(text, self.spec.aliases)
        body = sections.get("code") or ""
        code = extract_code(body) if body else None
        if code is None and body.strip() and _parses(body):  # the code written under its heading, unfenced
            code = body.strip("\n") + "\n"
        if code is None:
            # no code heading: the last Python block of the answer, taken out of the section it was in
            code = extract_code(text)
            if code is not None:
                for key in ("reasoning", "explanation"):
                    if sections.get(key) and any(b.strip("\n") + "\n" == code for _, b in fenced_blocks(sections[key])):
                        sections[key] = _FENCED.sub("", sections[key]).strip()
                        break
        if sections.get("reasoning"):  # the corrected solution in words: its code is the code field
            sections["reasoning"] = _FENCED.sub("", sections["reasoning"]).strip()
        p = Parsed(sections, True)
        p.code = code
        if code:
            sections["code"] = code
        else:
            sections.pop("code", None)
        return p

    def check(self, run: RunContext, row: dict, text: str, parsed: Parsed, entry: dict) -> dict | None:
        """The corrected program in the sandbox; kept only if it passes every test."""
        if parsed.valid:
            verdict = self._judge(run, row, parsed.code)
            entry["judge"] = verdict["status"]
            entry["judge_s"] = verdict.get("time_s", 0.0)
            if not verdict["passed"]:
                entry["judge_failure"] = verdict.get("failure")
                reject_attempt(parsed, entry, f"judge: {verdict['status']}")
        return None
