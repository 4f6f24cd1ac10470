"""The pairs stage (SuperCorrect's DPO pairs, for code) end to end with a scripted student and a REAL
local HTTP teacher (canned first-error corrections): the student's steps, code and judge report
reach the teacher; a correction whose chosen answer fails the sandbox is dropped; a kept pair shares
the student's prefix up to the first wrong step; a code-only error gives a pair that differs in the
code; the cost is in the manifest; a resumed run makes no new student or teacher calls; the pairs
load as DPO examples in the run's format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _student_teacher import (ScriptedStudent, canned_teacher, served_student_args, toy_problem,
                              write_dataset)
from codistill.formats import get_format
from codistill.pairs import PairsConfig, incomplete_error, make_pairs
from codistill.pairs.layout import build_pair, read_attempt
from codistill.store import read_jsonl

FORMAT = {"base": "paper", "prompt_mode": "completion"}  # no tokenizer needed to render prompts


def _answer(steps: list[str], code: str) -> str:
    return "### Reasoning\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1)) + \
        f"\n\n### Code\n```python\n{code}\n```"


STUDENT = {
    "inc": [_answer(["Read n.", "Add two to n.", "Return the result."], "def inc(n):\n    return n + 2")],
    "dbl": [_answer(["Read n.", "Square n."], "def dbl(n):\n    return n * n")],
    "half": [_answer(["Divide n by two, rounding down."], "def half(n):\n    return n // 3")],
    "ok": [_answer(["Return n."], "def ok(n):\n    return n")],
}


def _fix(check: str, k: str, revision: str, code: str) -> str:
    return (f"## Check\n{check}\n\n## First wrong step\n{k}\n\n## Revision\n{revision}\n\n"
            f"## Code\n```python\n{code}\n```\n")


TEACHER = {
    "inc": _fix("Step 1: correct\nStep 2: wrong, the problem adds one", "2",
                "2. Add one to n.\n3. Return the result.", "def inc(n):\n    return n + 1"),
    "dbl": _fix("Step 1: correct\nStep 2: wrong, doubling is not squaring", "2",
                "2. Multiply n by three.", "def dbl(n):\n    return n * 3"),  # still wrong: dropped
    "half": _fix("Step 1: correct", "None", "None", "def half(n):\n    return n // 2"),  # the code alone was wrong
}

PROBLEMS = [toy_problem("inc", [[1], [5]], [2, 6], "n + 1"), toy_problem("dbl", [[2], [5]], [4, 10], "n * 2"),
            toy_problem("half", [[4], [9]], [2, 4], "n // 2"), toy_problem("ok", [[3]], [3], "n")]


class Scripted(ScriptedStudent):
    """A student answering from STUDENT by the problem marker in the prompt; records every call."""

    answers = STUDENT


@pytest.fixture()
def teacher():
    with canned_teacher(STUDENT, TEACHER) as t:
        yield t


def _dataset(folder: Path) -> str:
    return write_dataset(folder, PROBLEMS)


def _cfg(tmp_path: Path, url: str, **kw) -> PairsConfig:
    base = {"dataset": _dataset(tmp_path / "data"), "student": {"model": "scripted", "format": FORMAT},
            "sampling": {"n": 1, "temperature": 0.0}, "judge_timeout_s": 10,
            "teacher": {"base_url": url, "model": "t", "concurrency": 2, "max_retries": 0, "timeout_s": 30},
            "max_attempts": 1}
    base.update(kw)
    return PairsConfig.model_validate(base)


def test_pairs_end_to_end_and_resume(tmp_path, teacher):
    out = tmp_path / "pairs"
    cfg = _cfg(tmp_path, teacher.url)
    student = Scripted()
    m = make_pairs(cfg, out, generator=student)
    assert incomplete_error(m) is None
    c = m["counts"]
    assert c["problems"] == 4 and c["samples_passed"] == 1 and c["failures"] == 3 and c["corrections"] == 3
    assert c["pairs"] == 2 and c["dropped"] == 1 and c["dropped_by_reason"] == {"judge: fail": 1}
    assert c["pairs_by_first_error"] == {"step": 1, "code": 1}

    # what the teacher saw: numbered steps, the failing code, the judge's report, the reference
    inc_prompt = next(p for p in teacher.prompts if "[[inc]]" in p)
    assert "Step 1: Read n.\nStep 2: Add two to n.\nStep 3: Return the result." in inc_prompt
    assert "return n + 2" in inc_prompt and "return n + 1" in inc_prompt  # student's code; the reference
    assert "Verdict: wrong answer" in inc_prompt and "inc(1)" in inc_prompt

    pairs = {p["id"]: p for p in read_jsonl(out / "pairs.jsonl")}
    assert set(pairs) == {"inc#s0", "half#s0"}
    inc = pairs["inc#s0"]
    assert inc["first_wrong_step"] == 2 and inc["student_steps"] == 3
    assert inc["prefix"] == "### Reasoning\n1. Read n.\n"
    assert inc["chosen"] == ("### Reasoning\n1. Read n.\n2. Add one to n.\n3. Return the result.\n\n### Code\n"
                             "```python\ndef inc(n):\n    return n + 1\n```")
    assert inc["rejected"] == STUDENT["inc"][0]
    assert inc["prompt"].startswith("[[inc]]") and inc["format"]["name"] == "paper"
    half = pairs["half#s0"]
    assert half["first_wrong_step"] is None  # the steps were right: the pair differs in the code
    assert half["prefix"] == "### Reasoning\n1. Divide n by two, rounding down."
    assert half["chosen"].endswith("return n // 2\n```") and half["rejected"].endswith("return n // 3\n```")
    for p in pairs.values():
        assert p["chosen"].startswith(p["prefix"]) and p["rejected"].startswith(p["prefix"])

    # the cost: teacher tokens as the server counted them, judge runs, student samples
    cost = m["cost"]
    assert cost["teacher"]["prompt_tokens"] == teacher.usage["prompt_tokens"]
    assert cost["teacher"]["completion_tokens"] == teacher.usage["completion_tokens"]
    assert cost["teacher"]["calls"] == 3 and cost["student"]["samples"] == 4 and cost["judge"]["chosen_answers"] == 3
    records = {r["id"]: r for r in read_jsonl(out / "corrections.jsonl")}
    assert records["dbl#s0"]["attempt_log"][0]["judge"] == "fail" and not records["dbl#s0"]["valid"]
    assert records["inc#s0"]["first_error"] == {"k": 2, "student_steps": 3, "judge": "pass"}

    # resumed: no student sample, no teacher call; the same pairs
    before = (out / "pairs.jsonl").read_text()
    asked = len(teacher.prompts)
    again = Scripted()
    m2 = make_pairs(cfg, out, generator=again)
    assert again.calls == [] and len(teacher.prompts) == asked
    assert m2["this_run"]["teacher_calls"] == 0 and m2["counts"]["pairs"] == 2
    assert (out / "pairs.jsonl").read_text() == before
    # even without the stored corrections, the cache answers: still no teacher call
    (out / "corrections.jsonl").unlink()
    m3 = make_pairs(cfg, out, generator=Scripted())
    assert len(teacher.prompts) == asked and m3["this_run"]["cache_hits"] == 3
    assert (out / "pairs.jsonl").read_text() == before


def test_a_pair_whose_corrected_code_fails_is_dropped_even_when_retried(tmp_path, teacher):
    m = make_pairs(_cfg(tmp_path, teacher.url, ids=["dbl"], max_attempts=2), tmp_path / "pairs", generator=Scripted())
    assert m["counts"]["pairs"] == 0 and m["counts"]["dropped_by_reason"] == {"judge: fail": 1}
    assert m["counts"]["rejected_attempts_by_reason"] == {"judge: fail": 2}
    assert not (tmp_path / "pairs" / "pairs.jsonl").read_text().strip()


def test_layout_rules():
    fmt = get_format(FORMAT)
    answer = STUDENT["inc"][0]
    attempt = read_attempt(answer, fmt)
    assert len(attempt.spans) == 3 and attempt.has_code
    with pytest.raises(ValueError, match="not one of the student's 3 steps"):
        build_pair(attempt, fmt, 4, "4. More.", "def inc(n):\n    return n + 1")
    with pytest.raises(ValueError, match="revision is empty"):
        build_pair(attempt, fmt, 2, "", "def inc(n):\n    return n + 1")
    first = build_pair(attempt, fmt, 1, "1. Take n.\n2. Add one.", "def inc(n):\n    return n + 1")
    assert first["prefix"] == "### Reasoning\n" and first["chosen"].startswith("### Reasoning\n1. Take n.\n2. Add one.\n\n")
    no_code = read_attempt("### Reasoning\n1. Read n.\n2. Add two.", fmt)
    assert not no_code.has_code


def test_a_format_without_reasoning_is_refused(tmp_path, teacher):
    cfg = _cfg(tmp_path, teacher.url, student={"model": "scripted", "format": {"base": "code-only",
                                                                                 "prompt_mode": "completion"}})
    with pytest.raises(ValueError, match="no reasoning section before the code"):
        make_pairs(cfg, tmp_path / "pairs", generator=Scripted())


def test_pairs_load_as_dpo_examples_in_the_runs_format(tmp_path, teacher, smollm2_tok):
    from codistill.training.config import DataConfig
    from codistill.training.objectives.dpo import build_pair_examples, load_pairs

    out = tmp_path / "pairs"
    make_pairs(_cfg(tmp_path, teacher.url), out, generator=Scripted())
    data = DataConfig(prompt_mode="completion", format_name="paper")
    examples, stats = build_pair_examples(load_pairs(out / "pairs.jsonl"), smollm2_tok, data)
    assert stats.kept == 2 and {e.id for e in examples} == {"inc#s0", "half#s0"}
    inc = next(e for e in examples if e.id == "inc#s0")
    assert smollm2_tok.decode(inc.chosen).startswith("2. Add one") and smollm2_tok.decode(inc.rejected).startswith(
        "2. Add two")


def test_the_command_line_with_a_served_student(tmp_path, teacher, capsys):
    from codistill.cli import main

    args = [*served_student_args("pairs", tmp_path, _dataset(tmp_path / "data"), teacher.url, 1),
            "--max-attempts", "1"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["counts"]["pairs"] == 2 and summary["counts"]["samples"] == 4
    assert summary["cost"]["student"]["completion_tokens"] == 4 * 9 and summary["files"]["pairs"] == "pairs.jsonl"
    assert summary["cost"]["teacher"]["total_tokens"] == sum(teacher.usage.values())
