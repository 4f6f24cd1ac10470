"""The rows of a problem: what ``codistill data`` writes to ``rows.jsonl`` and ``codistill teach``
reads (one row per reference solution; the first is the main row, the others ``<id>#alt<k>``).

A row is ``{"id", "problem_id", "prompt", "code", "tests", "difficulty", "source", "entry_point",
"alt"}``; ``tests`` is the problem's tests as readable text (:func:`render_tests`).
"""

from __future__ import annotations

from codistill.problems.schema import AssertTests, CallTests, Problem, StdioTests

__all__ = ["problem_rows", "render_tests"]


def _call_expr(fn_name: str, args: list) -> str:
    rendered = ", ".join(repr(a) for a in args)
    if "." in fn_name:
        cls, meth = fn_name.split(".", 1)
        return f"{cls}().{meth}({rendered})"
    return f"{fn_name}({rendered})"


def render_tests(problem: Problem, max_cases: int = 5) -> str:
    """The problem's tests as readable text: assert programs as they are, call cases as
    ``assert f(args) == expected``, stdio cases as input/output pairs."""
    from codistill.execution.wire import decode

    parts: list[str] = []
    for s in problem.tests:
        if isinstance(s, AssertTests):
            text = (s.setup.strip() + "\n" if s.setup.strip() else "") + s.program.strip()
            if s.call:
                text += f"\n{s.call}({problem.entry_point})"
            parts.append(text)
        elif isinstance(s, CallTests):
            lines = []
            for i, args in enumerate(s.inputs[:max_cases]):
                call = _call_expr(s.fn_name, [decode(a) for a in args])
                if s.outputs is None:
                    lines.append(f"{call}  # expected: the reference solution's output")
                elif s.atol:
                    lines.append(f"assert abs({call} - {decode(s.outputs[i])!r}) <= {s.atol}")
                else:
                    lines.append(f"assert {call} == {decode(s.outputs[i])!r}")
            parts.append("\n".join(lines))
        elif isinstance(s, StdioTests):
            cases = []
            for i, stdin in enumerate(s.inputs[:max_cases]):
                out = s.outputs[i] if s.outputs is not None else "(from the reference solution)"
                cases.append(f"# input\n{stdin.rstrip()}\n# expected output\n{out.rstrip()}")
            parts.append("\n".join(cases))
    return "\n\n".join(p for p in parts if p)


def problem_rows(problem: Problem, solutions: list[str], max_cases: int = 5) -> list[dict]:
    """Output rows of a problem: one per solution given (the first is the main row)."""
    tests = render_tests(problem, max_cases)
    rows = []
    for k, code in enumerate(solutions or [""]):
        rows.append({
            "id": problem.id if k == 0 else f"{problem.id}#alt{k}",
            "problem_id": problem.id,
            "prompt": problem.prompt,
            "code": code,
            "tests": tests,
            "difficulty": problem.difficulty,
            "source": problem.source,
            "entry_point": problem.entry_point,
            "alt": k,
        })
    return rows
