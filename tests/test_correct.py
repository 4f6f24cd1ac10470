"""The correct stage (LEMA) end to end with a scripted student and a REAL local HTTP teacher (canned
corrections): the student's failures reach the teacher with the judge's details, a corrected
program that fails the sandbox is dropped, one that passes is kept with its three parts, the two
row variants and their mixes, the cost in the manifest, and resumption without new calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _student_teacher import (ScriptedStudent, canned_teacher, served_student_args, toy_problem,
                              write_dataset)
from codistill.correct import CorrectConfig, correct, incomplete_error
from codistill.correct.rows import mix_ids
from codistill.problems.schema import CallTests, Problem
from codistill.store import read_jsonl, write_jsonl
from codistill.teacher.outputs import TRAIN_KEYS

FORMAT = {"base": "paper", "prompt_mode": "completion"}  # no tokenizer needed to render prompts

# the student: per problem, answers by sample index (the last one repeats)
WRONG_INC = "### Reasoning\nAdd two to n.\n\n### Code\n```python\ndef inc(n):\n    return n + 2\n```"
RIGHT_INC = "### Reasoning\nAdd one.\n\n### Code\n```python\ndef inc(n):\n    return n + 1\n```"
WRONG_DBL = "### Reasoning\nSquare it.\n\n### Code\n```python\ndef dbl(n):\n    return n * n\n```"
CRASH_HALF = "### Reasoning\nDivide.\n\n### Code\n```python\ndef half(n):\n    return n // 0\n```"
STUDENT = {"inc": [WRONG_INC, WRONG_INC, RIGHT_INC], "dbl": [WRONG_DBL], "half": [CRASH_HALF],
           "ok": ["### Code\n```python\ndef ok(n):\n    return n\n```"]}


def _correction(step: str, code: str) -> str:
    return (f"## Incorrect step\n{step}\n\n## Explanation of the error\nThe judge's expected output shows the "
            f"intended arithmetic; this step computes something else.\n\n## Corrected solution\nApply the "
            f"operation the statement asks for, once, and return it.\n\n## Corrected code\n```python\n{code}\n```\n")


TEACHER = {
    "inc": _correction("`return n + 2` adds two.", "def inc(n):\n    return n + 1"),
    "dbl": _correction("`return n * n` squares.", "def dbl(n):\n    return n * 3"),  # still wrong: dropped
    "half": _correction("`n // 0` divides by zero.", "def half(n):\n    return n // 2"),
}


class Scripted(ScriptedStudent):
    """A student answering from STUDENT by the problem marker in the prompt; records every call."""

    answers = STUDENT


@pytest.fixture()
def teacher():
    with canned_teacher(STUDENT, TEACHER) as t:
        yield t


PROBLEMS = [toy_problem("inc", [[1], [5]], [2, 6]), toy_problem("dbl", [[0], [3]], [0, 6]),
            toy_problem("half", [[4]], [2]), toy_problem("ok", [[1]], [1])]


def _dataset(folder: Path) -> str:
    return write_dataset(folder, PROBLEMS)


def _cfg(tmp_path: Path, url: str, **kw) -> CorrectConfig:
    base = dict(dataset=_dataset(tmp_path / "data"), student={"model": "scripted", "format": FORMAT, "batch_size": 2},
                sampling={"n": 3, "seed": 5}, failures_per_problem=2,
                teacher={"base_url": url, "concurrency": 2, "max_retries": 0, "timeout_s": 30},
                teacher_sampling={"seed": 100, "max_new_tokens": 300}, progress_every=1)
    base.update(kw)
    return CorrectConfig.model_validate(base)


def test_corrections_kept_dropped_rows_and_cost(tmp_path, teacher):
    cd = tmp_path / "teach" / "train.jsonl"
    write_jsonl(cd, [{k: f"{k} {i}" if k != "id" else f"cd{i}" for k in TRAIN_KEYS} for i in range(4)])
    cfg = _cfg(tmp_path, teacher.url, context_data=str(cd), mix_ratio=0.5, mix_seed=1)
    student = Scripted()
    out = tmp_path / "run"
    m = correct(cfg, out, generator=student)

    # 1. every attempt and verdict stored; failures with the judge's details
    att = {r["id"]: r for r in read_jsonl(out / "attempts.jsonl")}
    assert set(att) == {"inc", "dbl", "half", "ok"}
    assert [s["passed"] for s in att["inc"]["samples"]] == [False, False, True] and att["inc"]["passed"] == 1
    assert att["inc"]["samples"][0]["report"] == {"status": "fail", "input": "inc(1)", "expected": "2", "got": "3"}
    assert att["half"]["samples"][0]["status"] == "error"
    assert "ZeroDivisionError" in att["half"]["samples"][0]["report"]["error"]
    assert student.calls[0][1].n == 3 and student.calls[0][1].stop == ("\n```\n\n### Tests",)
    assert student.calls[0][0][0] == "[[inc]] Write inc(n).\n"  # the format's prompt (completion mode)

    # 2. the teacher saw the problem, the failed answer and the judge's report, once per distinct failure
    assert len(teacher.prompts) == 3  # inc (two equal wrong programs: one), dbl (one), half; ok passed
    inc_prompt = next(p for p in teacher.prompts if "[[inc]]" in p)
    assert "### Student's attempt\n" + WRONG_INC in inc_prompt
    assert "Failing input: inc(1)\nExpected output: 2\nStudent's output: 3" in inc_prompt
    assert "Error: ZeroDivisionError" in next(p for p in teacher.prompts if "[[half]]" in p)

    recs = {r["id"]: r for r in read_jsonl(out / "corrections.jsonl")}
    assert set(recs) == {"inc#fix0", "dbl#fix0", "half#fix0"}
    kept = recs["inc#fix0"]
    assert kept["valid"] and kept["code"] == "def inc(n):\n    return n + 1\n"
    assert kept["sections"]["incorrect_step"] == "`return n + 2` adds two."
    assert kept["sections"]["explanation"].startswith("The judge's expected output")
    assert kept["sections"]["reasoning"].startswith("Apply the operation")
    assert kept["attempt_log"][0]["judge"] == "pass"
    dropped = recs["dbl#fix0"]
    assert not dropped["valid"] and dropped["reason"] == "judge: fail"
    assert dropped["attempt_log"][0]["judge_failure"]["case"] == 1  # 3 * 3 != 6 (0 passes)

    # 3. rows: both variants, the same ids, the documented layouts
    lema = {r["id"]: r for r in read_jsonl(out / "train_lema.jsonl")}
    only = {r["id"]: r for r in read_jsonl(out / "train_corrected_only.jsonl")}
    assert list(lema) == list(only) == ["inc#fix0", "half#fix0"]
    reasoning = "### Corrected solution\nApply the operation the statement asks for, once, and return it."
    assert lema["inc#fix0"]["context"] == ("### Incorrect step\n`return n + 2` adds two.\n\n### Explanation of the "
                                           "error\nThe judge's expected output shows the intended arithmetic; this "
                                           "step computes something else.\n\n" + reasoning)
    assert only["inc#fix0"]["context"] == reasoning and lema["inc#fix0"]["context"].endswith(only["inc#fix0"]["context"])
    for r in (lema["inc#fix0"], only["inc#fix0"]):
        assert list(r) == list(TRAIN_KEYS) and r["code"] == kept["code"]
        assert r["tests"].startswith("assert inc(1) == 2")
    # lema is prompted with the statement and the failed attempt the teacher saw; the ablation with the statement
    assert only["inc#fix0"]["prompt"] == "[[inc]] Write inc(n)."
    assert lema["inc#fix0"]["prompt"].startswith("[[inc]] Write inc(n).\n\n### An attempt that fails the tests\n"
                                                 + WRONG_INC + "\n\n### Task\n")
    # the mixes: 4 context rows, ratio 0.5 -> 2 corrections wanted, 2 kept: both, the same in each variant
    mix_l = list(read_jsonl(out / "train_cd_lema.jsonl"))
    mix_o = list(read_jsonl(out / "train_cd_corrected_only.jsonl"))
    assert [r["id"] for r in mix_l] == [r["id"] for r in mix_o] == ["cd0", "cd1", "cd2", "cd3", "inc#fix0", "half#fix0"]
    assert mix_l[-1]["context"] != mix_o[-1]["context"] and mix_l[0] == mix_o[0]
    assert m["mix"]["corrections_wanted"] == 2 and m["mix"]["shortfall"] == 0 and m["mix"]["achieved_ratio"] == 0.5

    # 4. counts and cost
    c = m["counts"]
    assert m["complete"] and c["problems"] == 4 and c["samples"] == 12 and c["samples_passed"] == 1 + 3
    assert c["failures"] == 3 and c["kept"] == 2 and c["dropped"] == 1 and c["dropped_by_reason"] == {"judge: fail": 1}
    assert c["failures_not_asked"]["duplicate_program"] == 1 + 2 + 2  # inc's 2nd, dbl's and half's repeats
    assert c["train_rows"] == {"lema": 2, "corrected-only": 2}
    cost = m["cost"]
    assert cost["student"] == {"problems": 4, "samples": 12, "prompt_tokens": 40, "completion_tokens": 84,
                               "seconds": cost["student"]["seconds"]}
    assert cost["teacher"]["calls"] == 3 and cost["teacher"]["prompt_tokens"] == teacher.usage["prompt_tokens"]
    assert cost["teacher"]["completion_tokens"] == teacher.usage["completion_tokens"] > 0
    assert cost["judge"]["runs"] == 12 + 3 and cost["judge"]["corrections"] == 3
    assert json.loads((out / "correct_manifest.json").read_text())["cost"] == cost

    # a second run: nothing sampled, nothing asked, the same outputs
    again = Scripted()
    m2 = correct(cfg, out, generator=again)
    assert again.calls == [] and len(teacher.prompts) == 3 and m2["this_run"]["teacher_calls"] == 0
    assert m2["counts"] == m["counts"] and len(m2["runs"]) == 2


def test_resume_after_interruption_makes_no_new_calls(tmp_path, teacher):
    cfg = _cfg(tmp_path, teacher.url, student={"model": "scripted", "format": FORMAT, "batch_size": 1})
    out = tmp_path / "run"
    # killed while sampling: the problems already judged are kept
    with pytest.raises(KeyboardInterrupt):
        correct(cfg, out, generator=Scripted(fail_after=2))
    assert [r["id"] for r in read_jsonl(out / "attempts.jsonl")] == ["inc", "dbl"]
    # the teacher is down for one failure: the others are finished, that one stays to do
    teacher.down.add("half")
    student = Scripted()
    m = correct(cfg, out, generator=student)
    assert [p for p, _ in student.calls] == [["[[half]] Write half(n).\n"], ["[[ok]] Write ok(n).\n"]]
    assert not m["complete"] and m["counts"]["remaining"] == 1 and list(m["teacher_errors"]) == ["half#fix0"]
    err = incomplete_error(m)
    assert err is not None and err.exit_code == 3 and "1 of 3 failures got no correction" in str(err)
    asked = len(teacher.prompts)
    teacher.down.clear()
    m = correct(cfg, out, generator=Scripted())
    assert m["complete"] and len(teacher.prompts) == asked + 1  # only the one left to do
    assert m["counts"]["kept"] == 2 and incomplete_error(m) is None
    # killed in the middle of writing a correction: the stored answers come from the cache, not the teacher
    path = out / "corrections.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1][:25])
    asked = len(teacher.prompts)
    m = correct(cfg, out, generator=Scripted())
    assert len(teacher.prompts) == asked and m["this_run"]["cache_hits"] == 2 and m["counts"]["kept"] == 2
    assert len(list(read_jsonl(out / "train_lema.jsonl"))) == 2
    # another teacher template: the cache key changes, the corrections are asked again
    tpl = tmp_path / "tpl.txt"
    from codistill.teacher.templates import load_template

    tpl.write_text(load_template("correction").text + "\nBe brief.\n")
    correct(cfg.model_copy(update={"template": str(tpl)}), out, generator=Scripted())
    assert len(teacher.prompts) == asked + 3


def test_mix_ratio_arithmetic():
    ids = [f"c{i}" for i in range(5)]
    chosen, info = mix_ids(4, ids, 0.5, seed=3)  # 0.5 * 4 = 2 of 5
    assert len(chosen) == 2 and chosen == sorted(chosen, key=ids.index) and set(chosen) <= set(ids)
    assert chosen == mix_ids(4, ids, 0.5, seed=3)[0]  # seeded
    assert {tuple(mix_ids(4, ids, 0.5, seed=s)[0]) for s in range(20)} != {tuple(chosen)}
    assert info == {"mix_ratio": 0.5, "seed": 3, "context_rows": 4, "corrections_available": 5,
                    "corrections_wanted": 2, "corrections_used": 2, "shortfall": 0, "achieved_ratio": 0.5}
    assert mix_ids(6, ids, 0.25, seed=0)[1]["corrections_wanted"] == 2  # 1.5 rounds half up
    assert mix_ids(10, ids, 0.34, seed=0)[1]["corrections_wanted"] == 3  # 3.4 -> 3
    chosen, info = mix_ids(4, ids, 2.0, seed=0)  # 8 wanted, 5 kept: all of them, once
    assert chosen == ids and info["shortfall"] == 3 and info["corrections_used"] == 5 and info["achieved_ratio"] == 1.25
    assert mix_ids(4, ids, None, seed=0)[0] == ids and mix_ids(4, ids, 0.0, seed=0)[0] == []


def test_config_errors():
    base = {"dataset": "d", "student": {"model": "m"}}
    with pytest.raises(ValueError, match="give context_data"):
        CorrectConfig.model_validate({**base, "mix_ratio": 1.0})
    with pytest.raises(ValueError, match="exactly one of dataset"):
        CorrectConfig.model_validate({"student": {"model": "m"}})
    with pytest.raises(ValueError, match="give the adapter"):
        CorrectConfig.model_validate({**base, "student": {"model": "m", "format": "adapter"}})
    with pytest.raises(ValueError, match="unknown format"):
        CorrectConfig.model_validate({**base, "student": {"model": "m", "format": "nope"}})
    with pytest.raises(ValueError, match="cannot apply an adapter"):
        CorrectConfig.model_validate({**base, "student": {"model": "m", "backend": "openai", "adapter": "a",
                                                          "backend_options": {"base_url": "http://x/v1"}}})
    k = CorrectConfig.model_validate({**base, "teacher": {"base_url": "http://a/v1"}}).key()
    assert k == CorrectConfig.model_validate({"dataset": "elsewhere", "student": {"model": "m"}}).key()
    assert "base_url" not in k["teacher"] and "dataset" not in k


def test_readable_failures_and_which_failures_are_asked():
    from codistill.correct.attempts import failure_rows, readable_failure
    from codistill.problems.schema import StdioTests

    p = Problem(id="t", source="toy", prompt="x", entry_point="f",
                tests=[CallTests(name="base", fn_name="f", inputs=[[[1, 2], "a"]], outputs=[(1, "a")]),
                       StdioTests(name="io", inputs=["3\n"], outputs=["4\n"])])
    v = {"status": "fail", "failure": {"suite": "base", "case": 0, "input": "...", "expected": "...",
                                       "got": json.dumps([1, "b"])}}
    assert readable_failure(p, v) == {"status": "fail", "input": "f([1, 2], 'a')", "expected": "(1, 'a')",
                                      "got": "[1, 'b']"}
    v = {"status": "fail", "failure": {"suite": "io", "case": 0, "input": "3\n", "expected": "4\n", "got": "5\n"}}
    assert readable_failure(p, v) == {"status": "fail", "input": "3\n", "expected": "'4\\n'", "got": "'5\\n'"}
    v = {"status": "timeout", "failure": {"suite": "base", "case": 0, "input": "...", "error": "took over 1 s"}}
    assert readable_failure(p, v) == {"status": "timeout", "input": "f([1, 2], 'a')", "error": "took over 1 s"}

    def smp(i, status, prog):
        return {"index": i, "raw": f"answer {i}", "program": prog, "passed": status == "pass", "status": status,
                "report": {"status": status}}

    rows = [{"id": "t", "problem_id": "t", "prompt": "x", "code": "c", "tests": "", "entry_point": "f"}]
    att = {"t": {"samples": [smp(0, "sandbox_error", "a"), smp(1, "fail", "b"), smp(2, "fail", "b\n"),
                             smp(3, "pass", "c"), smp(4, "error", "d"), smp(5, "fail", "e")]}}
    cfg = CorrectConfig.model_validate({"dataset": "d", "student": {"model": "m"}, "failures_per_problem": 2,
                                        "max_attempt_chars": 200})
    fixes, skipped = failure_rows(cfg, rows, att)
    assert [f["id"] for f in fixes] == ["t#fix1", "t#fix4"] and fixes[0]["attempt"] == "answer 1"
    assert skipped == {"not_the_students_fault": 1, "duplicate_program": 1, "over_failures_per_problem": 1}
    att["t"]["samples"][1]["raw"] = "y" * 500
    assert failure_rows(cfg, rows, att)[0][0]["attempt"].startswith("y" * 200 + "\n[… the rest")


def test_the_command_line_with_a_served_student(tmp_path, teacher, capsys):
    from codistill.cli import main

    args = [*served_student_args("correct", tmp_path, _dataset(tmp_path / "data"), teacher.url, 2),
            "--set", "teacher_sampling.seed=100"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["counts"]["kept"] == 2 and summary["counts"]["samples"] == 8
    assert summary["cost"]["student"]["completion_tokens"] == 4 * 18 and summary["cost"]["student"]["prompt_tokens"] == 20
    assert summary["files"]["lema"] == "train_lema.jsonl" and summary["mix"] is None
    # the teacher unreachable: nothing corrected in this run, exit 1, one line saying how to resume
    teacher.down.update(STUDENT)
    assert main([*args, "--out", str(tmp_path / "run2")]) == 1
    err = capsys.readouterr().err
    assert "codistill correct: correct is not complete: 3 of 3 failures got no correction" in err
    assert "run the same `codistill correct` command again" in err
