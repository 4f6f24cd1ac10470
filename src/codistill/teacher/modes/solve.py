"""``solve``: the teacher sees only the problem and writes reasoning + code; the code is judged in
the sandbox and only passing samples are kept (rejection sampling: ``max_attempts`` is the k,
``keep_passing`` samples are kept per problem, the extra ones as the record's ``alternatives``).
The training row's code is the teacher's passing code, so ``#alt`` rows (other references of the
same problem) are not taught."""

from __future__ import annotations

import re

from codistill.teacher.modes.base import Mode, ModeSpec, RunContext, aliases, reject_attempt
from codistill.teacher.parse import Parsed, extract_code, split_sections

__all__ = ["SolveMode"]


class SolveMode(Mode):
    spec = ModeSpec(
        name="solve",
        needs_solution=False,
        sections=("reasoning", "code"),
        titles={"reasoning": "Reasoning", "code": "Code"},
        required=("reasoning", "code"),
        aliases=aliases({
            "reasoning": ["reasoning", "analysis", "explanation", "approach", "thoughts", "thinking"],
            "code": ["code", "solution", "python code", "final code", "implementation"],
        }),
    )

    def select_rows(self, rows: list[dict]) -> list[dict]:
        return [r for r in rows if not r.get("alt")]  # solve does not depend on the reference

    def open(self, run: RunContext) -> None:
        from codistill.execution.judge import Judge, JudgeConfig

        run.state["judge"] = run.resources.enter_context(Judge(JudgeConfig(timeout_s=run.cfg.judge_timeout_s)))

    def split(self, text: str, rules) -> Parsed:
        sections = split_sections(text, self.spec.aliases)
        p = Parsed(sections, True)
        p.code = extract_code(text)
        if p.code:
            sections["code"] = p.code
            if "reasoning" not in sections:
                # reasoning = everything before the code block when no heading was written
                head = text.split("```", 1)[0]
                head = re.sub(r"^\s*#+\s*(reasoning|code)\s*:?\s*$", "", head, flags=re.I | re.M).strip()
                if head:
                    sections["reasoning"] = head
        return p

    def check(self, run: RunContext, row: dict, text: str, parsed: Parsed, entry: dict) -> dict | None:
        if parsed.valid:
            verdict = self._judge(run, row, parsed.code)
            entry["judge"] = verdict["status"]
            if not verdict["passed"]:
                reject_attempt(parsed, entry, f"judge: {verdict['status']}")
        return None

    def code(self, row: dict, parsed: Parsed) -> str | None:
        return parsed.code

    def enough(self, passing: list[dict], cfg) -> bool:
        return len(passing) >= cfg.keep_passing

    def finish(self, record: dict, passing: list[dict]) -> None:
        if len(passing) > 1:
            record["alternatives"] = [{"sections": c["sections"], "code": c["code"], "raw": c["raw"]}
                                      for c in passing[1:]]

    @staticmethod
    def _judge(run: RunContext, row: dict, code: str | None) -> dict:
        if not code:
            return {"passed": False, "status": "no_code"}
        problem = run.problems.get(row.get("problem_id", row["id"]))
        if problem is None:
            raise KeyError(f"no problem record for {row['id']}: solve mode needs the tests")
        return run.state["judge"].judge(problem, code)
