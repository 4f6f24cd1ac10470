"""The claer teacher mode (ELAD's revision) against the canned teacher server of test_teacher: the
student's steps in the prompt, the context spliced from the student's kept steps and the teacher's
revision, an all-correct check keeping the student's reasoning, out-of-range answers retried, rows
without a student attempt refused, and the teacher's tokens against full explanations."""

from __future__ import annotations

import re

import pytest

from test_teacher import _cfg, server  # noqa: F401  (the canned teacher fixture)
from codistill.problems.rows import problem_rows
from codistill.problems.schema import CallTests, Problem
from codistill.select.steps import split_steps
from codistill.store import read_jsonl, write_jsonl
from codistill.teacher.modes.claer import first_wrong_step
from codistill.teacher.teach import teach

REASONING = ("### Intent\nReturn the absolute value of x.\n\n### Steps\n1. Read x.\n2. Return x unchanged.\n"
             "3. Stop.\n\n### Edge cases\nZero stays zero.")

WRONG = ("## Check\nStep 1: correct\nStep 2: wrong - a negative x must be negated.\n\n## First wrong step\n2\n\n"
         "## Revision\n2. If x is negative, return minus x.\n3. Otherwise return x as it is.\n")
ALL_RIGHT = "## Check\nStep 1: correct\nStep 2: correct\nStep 3: correct\n\n## First wrong step\nNone\n\n## Revision\nNone\n"
OUT_OF_RANGE = "## Check\nStep 7: wrong - there is no such step here.\n\n## First wrong step\n7\n\n## Revision\n7. Redo it.\n"
# pid -> answers by attempt (the last one repeats)
CLAER = {"cwrong": [WRONG], "cright": [ALL_RIGHT], "cretry": [OUT_OF_RANGE, WRONG]}


def _problem(pid: str) -> Problem:
    return Problem(id=pid, source="toy", prompt=f"[[{pid}]] Write f(x): the absolute value of x.", entry_point="f",
                   solutions=["def f(x):\n    return abs(x)\n"], difficulty="easy",
                   tests=[CallTests(fn_name="f", inputs=[[-2], [3]], outputs=[2, 3])])


def _subset(folder, pids, student: bool = True) -> str:
    """A `codistill select` subset folder: data-stage rows with the student's attempt."""
    probs = [_problem(p) for p in pids]
    folder.mkdir(parents=True, exist_ok=True)
    rows = [r for p in probs for r in problem_rows(p, p.solutions[:1])]
    if student:
        for r in rows:
            r["student"] = {"sample": 0, "reasoning": REASONING, "steps": 3, "code": "def f(x):\n    return x\n",
                            "passed": False, "outcome": "abc"}
    write_jsonl(folder / "rows.jsonl", rows)
    write_jsonl(folder / "problems.jsonl", [p.model_dump() for p in probs])
    return str(folder)


@pytest.fixture()
def teacher(server):  # noqa: F811
    """The canned server, answering claer prompts from CLAER (by problem and attempt) and recording
    every prompt; other prompts get its explain answers."""
    prompts: list[str] = []
    explain = server.answer

    def answer(body):
        prompt = body["messages"][-1]["content"]
        prompts.append(prompt)
        if "### The student's steps" not in prompt:
            return explain(body)
        pid = re.search(r"\[\[(\w+)\]\]", prompt).group(1)
        answers = CLAER[pid]
        text = answers[min(max(int(body.get("seed") or 0) - 100, 0), len(answers) - 1)]
        return 200, {"id": "x", "object": "chat.completion", "model": body.get("model"),
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}}

    server.answer = answer
    server.prompts = prompts
    return server


def test_first_wrong_step_parsing():
    assert first_wrong_step({"first_wrong": "2", "check": ""}) == 2
    assert first_wrong_step({"first_wrong": "Step 3."}) == 3
    assert first_wrong_step({"first_wrong": "None"}) is None
    assert first_wrong_step({"first_wrong": "All steps are correct."}) is None
    assert first_wrong_step({"check": "Step 1: correct\nStep 2 is wrong: it forgets negatives"}) == 2
    assert first_wrong_step({"check": "Step 1: correct"}) is None


def test_claer_revises_from_the_first_wrong_step(tmp_path, teacher):
    ds = _subset(tmp_path / "selected", ["cwrong", "cright", "cretry"])
    m = teach(_cfg(tmp_path, teacher.url, ds, mode="claer"))
    assert m["counts"]["valid"] == 3 and m["counts"]["train_rows"] == 3
    # the teacher saw the problem, the reference and the student's numbered steps
    p = next(p for p in teacher.prompts if "[[cwrong]]" in p)
    assert "Step 1: Read x.\nStep 2: Return x unchanged.\nStep 3: Stop." in p and "return abs(x)" in p
    recs = {r["id"]: r for r in read_jsonl(tmp_path / "run" / "contexts.jsonl")}
    wrong = recs["cwrong"]
    # the student's step 1 kept, steps 2-3 replaced by the revision, the other sections kept
    assert wrong["context"] == ("### Intent\nReturn the absolute value of x.\n\n### Steps\n1. Read x.\n"
                                "2. If x is negative, return minus x.\n3. Otherwise return x as it is.\n\n"
                                "### Edge cases\nZero stays zero.")
    assert wrong["claer"] == {"first_wrong": 2, "student_steps": 3, "kept_steps": 1, "written_steps": 2}
    assert wrong["code"] == "def f(x):\n    return abs(x)\n"  # trained on the reference
    # every step correct: the student's reasoning is the context, nothing rewritten
    right = recs["cright"]
    assert "2. Return x unchanged." in right["context"] and right["claer"]["written_steps"] == 0
    assert right["claer"]["kept_steps"] == 3 and right["claer"]["first_wrong"] is None
    # a first wrong step the student does not have: rejected, asked again
    retry = recs["cretry"]
    assert retry["attempts"] == 2 and "not one of the student's 3 steps" in retry["attempt_log"][0]["reason"]
    assert retry["context"] == wrong["context"]
    train = {r["id"]: r for r in read_jsonl(tmp_path / "run" / "train.jsonl")}
    assert train["cwrong"]["context"] == wrong["context"]
    # the teacher's tokens: counted per record and in the manifest
    words = len(WRONG.split()) + len(ALL_RIGHT.split()) + len(OUT_OF_RANGE.split()) + len(WRONG.split())
    assert m["tokens"]["completion"] == words


def test_claer_tokens_against_full_explanations(tmp_path, teacher):
    from codistill.select import teacher_tokens

    ds = _subset(tmp_path / "selected", ["cwrong", "cright"])
    teach(_cfg(tmp_path / "e", teacher.url, ds, mode="explain"))
    teach(_cfg(tmp_path / "c", teacher.url, ds, mode="claer"))
    cmp = teacher_tokens({"explain": tmp_path / "e" / "run", "claer": tmp_path / "c" / "run"})
    assert cmp["problems"] == 2
    e, c = cmp["runs"]["explain"], cmp["runs"]["claer"]
    assert c["completion"] == len(WRONG.split()) + len(ALL_RIGHT.split())
    assert c["completion"] < e["completion"] and c["ratio_completion"] == round(c["completion"] / e["completion"], 4)
    assert e["ratio_completion"] == 1.0


def test_claer_needs_the_student_attempt(tmp_path, teacher):
    plain = _subset(tmp_path / "data", ["cwrong"], student=False)
    with pytest.raises(ValueError, match="codistill select"):
        teach(_cfg(tmp_path, teacher.url, plain, mode="claer"))
    assert teacher.prompts == []


def test_student_steps_are_the_ablation_steps():
    spans = split_steps(REASONING)
    assert [REASONING[s:e].strip() for s, e in spans] == ["1. Read x.", "2. Return x unchanged.", "3. Stop."]
