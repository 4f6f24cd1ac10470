"""The scripted student and the canned teacher of the correct (LEMA) and pairs (SuperCorrect) stage
tests (tests/test_correct.py, tests/test_pairs.py), and their toy problems.

Every problem's prompt carries its marker ``[[pid]]``; the student and the teacher answer by it. A
test module gives its own answers: ``class Scripted(ScriptedStudent): answers = STUDENT`` and a
``teacher`` fixture over :func:`canned_teacher` ``(STUDENT, TEACHER)``.
"""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path
from typing import ClassVar

from conftest import json_server
from codistill.backends.base import Generator
from codistill.problems.rows import problem_rows
from codistill.problems.schema import CallTests, Problem
from codistill.store import write_jsonl


def marker(text: str) -> str:
    """The problem marker ``[[pid]]`` in a prompt."""
    return re.search(r"\[\[(\w+)\]\]", text).group(1)


def pick(answers: list[str], i: int) -> str:
    """The answer of sample ``i`` (the last one repeats)."""
    return answers[min(i, len(answers) - 1)]


class ScriptedStudent(Generator):
    """A student answering from ``answers`` (problem marker -> its answers by sample index) by the
    marker in the prompt; records every call. ``fail_after``: calls made before it is killed
    (KeyboardInterrupt)."""

    name = "scripted"
    answers: ClassVar[dict[str, list[str]]] = {}

    def __init__(self, fail_after: int | None = None):
        super().__init__()
        self.calls: list = []
        self.fail_after = fail_after

    def generate(self, prompts, params):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls.append((list(prompts), params))
        out = [[pick(self.answers[marker(p)], i) for i in range(params.n)] for p in prompts]
        self.usage.add(prompt_tokens=10 * len(prompts), completion_tokens=7 * params.n * len(prompts),
                       requests=len(prompts))
        return out


class CannedTeacher:
    """An OpenAI-compatible server's answers: ``/v1/completions`` is the student (``student``: as
    :class:`ScriptedStudent`'s answers, for backend openai), chat completions are the teacher
    (``answers``: problem marker -> its text). Records every teacher prompt and the token usage it
    reported; a problem in ``down`` gets HTTP 503."""

    def __init__(self, student: dict[str, list[str]], answers: dict[str, str]):
        self.student_answers, self.answers = student, answers
        self.prompts: list[str] = []
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}
        self.down: set[str] = set()
        self.lock = threading.Lock()
        self.url = ""

    def route(self, path: str, body: dict) -> tuple[int, dict]:
        return (self.student if path.endswith("/v1/completions") else self.answer)(body)

    def student(self, body: dict) -> tuple[int, dict]:
        """/v1/completions: the student (backend openai, raw completion prompts)."""
        answers = self.student_answers[marker(body["prompt"])]
        n = body.get("n") or 1
        return 200, {"id": "s", "object": "text_completion", "model": body.get("model"),
                     "usage": {"prompt_tokens": 5, "completion_tokens": 9 * n},
                     "choices": [{"index": i, "text": pick(answers, i), "finish_reason": "stop"} for i in range(n)]}

    def answer(self, body: dict) -> tuple[int, dict]:
        prompt = body["messages"][-1]["content"]
        pid = marker(prompt)
        with self.lock:
            self.prompts.append(prompt)
            if pid in self.down:
                return 503, {"error": {"message": "down"}}
            text = self.answers[pid]
            usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
            for k in usage:
                self.usage[k] += usage[k]
        return 200, {"id": "x", "object": "chat.completion", "model": body.get("model"), "usage": usage,
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop"}]}


@contextlib.contextmanager
def canned_teacher(student: dict[str, list[str]], answers: dict[str, str]):
    """A :class:`CannedTeacher` served locally for the duration (its ``url`` set)."""
    t = CannedTeacher(student, answers)
    with json_server(t.route) as url:
        t.url = url
        yield t


def toy_problem(pid: str, inputs: list[list], outputs: list, reference: str = "n") -> Problem:
    """``pid(n)``, its prompt marked ``[[pid]]``, call-based tests, and the reference ``return <reference>``."""
    return Problem(id=pid, source="toy", prompt=f"[[{pid}]] Write {pid}(n).", entry_point=pid,
                   solutions=[f"def {pid}(n):\n    return {reference}\n"], difficulty="easy",
                   tests=[CallTests(fn_name=pid, inputs=inputs, outputs=outputs)])


def served_student_args(verb: str, folder: Path, dataset: str, url: str, samples: int) -> list[str]:
    """The command line of ``codistill <verb>`` (correct, pairs) on ``dataset`` with the student
    served by the canned teacher's ``/v1/completions`` (backend openai) in the paper format (read
    from a file written in ``folder``), ``samples`` attempts per problem, and no HTTP retries."""
    fmt = folder / "format.yaml"
    fmt.write_text("base: paper\nprompt_mode: completion\n")
    return [verb, "--dataset", dataset, "--student", "served", "--student-backend", "openai",
            "--set", f"student.backend_options.base_url={url}", "--format", str(fmt), "--samples", str(samples),
            "--base-url", url, "--retries", "0"]


def write_dataset(folder: Path, problems: list[Problem]) -> str:
    """A `codistill data` folder of ``problems`` (rows.jsonl, problems.jsonl); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "rows.jsonl", [r for p in problems for r in problem_rows(p, p.solutions[:1])])
    write_jsonl(folder / "problems.jsonl", [p.model_dump() for p in problems])
    return str(folder)
