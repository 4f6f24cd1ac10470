"""The correct stage's training rows (codistill.correct.rows) in LEMA's layout (An et al., 2023): a
lema row is prompted with the statement plus the student's failed attempt (cut as the teacher saw
it) and answers with the correction; the corrected-only ablation is prompted with the bare
statement and answers with the corrected solution alone; the trainer renders the multi-paragraph
prompt whole (never truncated: too long drops the row); a changed layout re-writes the rows
without asking the student or the teacher again."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from _student_teacher import ScriptedStudent, canned_teacher, toy_problem, write_dataset
from codistill.correct import CorrectConfig, correct
from codistill.correct import rows as rows_mod
from codistill.correct.attempts import failure_rows
from codistill.correct.rows import FILES, correction_rows, lema_prompt, rows_layout, write_rows
from codistill.store import read_jsonl
from codistill.teacher.outputs import TRAIN_KEYS

STATEMENT = "[[inc]] Write inc(n): return n plus one.\n\nExample: inc(1) == 2."
INSTRUCTION = "Find the first incorrect step of the attempt above, explain the error, and write a corrected solution."
SECTIONS = {"incorrect_step": "`return n + 2` adds two.", "explanation": "The statement asks for n plus one.",
            "reasoning": "Add one to n and return it.", "code": "def inc(n):\n    return n + 1\n"}


def _fixes(raw: str, max_attempt_chars: int = 200) -> list[dict]:
    """The failure rows the correct stage asks the teacher about (failure_rows: the attempt cut)."""
    cfg = CorrectConfig.model_validate({"dataset": "d", "student": {"model": "m"},
                                        "max_attempt_chars": max_attempt_chars})
    row = {"id": "inc", "problem_id": "inc", "prompt": STATEMENT, "code": "ref", "tests": "assert inc(1) == 2",
           "entry_point": "inc", "difficulty": "easy", "source": "toy"}
    smp = {"index": 0, "raw": raw, "program": "def inc(n):\n    return n + 2", "passed": False, "status": "fail",
           "report": {"status": "fail", "input": "inc(1)", "expected": "2", "got": "3"}}
    fixes, _ = failure_rows(cfg, [row], {"inc": {"samples": [smp]}})
    return fixes


def _records() -> list[dict]:
    return [{"id": "inc#fix0", "valid": True, "sections": SECTIONS, "code": SECTIONS["code"]},
            {"id": "inc#fix0-dropped", "valid": False, "sections": {}, "code": None}]


def test_lema_rows_show_the_cut_attempt_and_answer_with_the_correction():
    raw = "### Reasoning\nAdd two {problem} {attempt}.\n\n### Code\n```python\ndef inc(n):\n    return n + 2\n```" + \
        "".join(f"\n# line {i}" for i in range(40))
    fixes = _fixes(raw)
    attempt = fixes[0]["attempt"]
    assert attempt.startswith(raw[:200]) and attempt.endswith("[… the rest of the answer is cut]")
    out = correction_rows(_records(), {f["id"]: f for f in fixes})
    (lema,), (only,) = out["lema"], out["corrected-only"]  # the invalid record makes no row

    # lema: the statement, the cut attempt (braces kept as written), the fixed instruction
    assert list(lema) == list(TRAIN_KEYS) and lema["id"] == "inc#fix0"
    assert lema["prompt"] == (STATEMENT + "\n\n### An attempt that fails the tests\n" + attempt
                              + "\n\n### Task\n" + INSTRUCTION)
    assert raw[:200] in lema["prompt"] and raw[200:260] not in lema["prompt"]
    # ... and answers with the correction: incorrect step, explanation, corrected solution (then the code)
    assert lema["context"] == ("### Incorrect step\n`return n + 2` adds two.\n\n### Explanation of the error\n"
                               "The statement asks for n plus one.\n\n### Corrected solution\n"
                               "Add one to n and return it.")
    assert lema["code"] == SECTIONS["code"] and lema["tests"] == "assert inc(1) == 2"

    # corrected-only: the bare statement, only the corrected-solution block, the same code
    assert list(only) == list(TRAIN_KEYS) and only["id"] == lema["id"]
    assert only["prompt"] == STATEMENT
    assert only["context"] == "### Corrected solution\nAdd one to n and return it."
    assert {k: only[k] for k in ("code", "tests", "difficulty", "source")} == \
        {k: lema[k] for k in ("code", "tests", "difficulty", "source")}

    # the same records twice: the same rows
    assert correction_rows(_records(), {f["id"]: f for f in _fixes(raw)}) == out
    # a failure row without its attempt cannot make a lema row
    with pytest.raises(ValueError, match="no 'attempt'"):
        correction_rows(_records(), {"inc#fix0": {k: v for k, v in fixes[0].items() if k != "attempt"}})


def test_write_rows_is_deterministic_and_names_its_layout(tmp_path):
    fixes = {f["id"]: f for f in _fixes("### Code\n```python\ndef inc(n):\n    return n + 2\n```")}
    cfg = SimpleNamespace(context_data=None, mix_ratio=None, mix_seed=0)
    info = write_rows(cfg, tmp_path / "a", _records(), fixes)
    again = write_rows(cfg, tmp_path / "b", _records(), fixes)
    for name in FILES.values():
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert info == again and info["rows"]["layout"] == rows_layout() and info["rows"]["version"] == 2
    lema = next(iter(read_jsonl(tmp_path / "a" / FILES["lema"])))
    assert info["rows"]["prompt_chars"]["lema"]["max"] == len(lema["prompt"])
    assert info["rows"]["prompt_chars"]["corrected-only"]["max"] == len(STATEMENT)


def test_the_layout_names_the_template_and_the_version(monkeypatch):
    before = rows_layout()
    monkeypatch.setattr(rows_mod, "_template", lambda: "{problem}\n\nAttempt:\n{attempt}")
    assert rows_layout() != before
    assert lema_prompt("  Q.\n", "\nA {problem}\n") == "Q.\n\nAttempt:\nA {problem}"  # one pass, stripped
    monkeypatch.undo()
    monkeypatch.setattr(rows_mod, "ROWS_VERSION", rows_mod.ROWS_VERSION + 1)
    assert rows_layout() != before


def test_the_trainer_renders_the_lema_prompt_whole(smollm2_tok):
    """Through the format (chat and completion): the prompt ids are the rendered multi-paragraph prompt,
    never cut; a row whose prompt and code do not fit max_length is dropped, not truncated."""
    from codistill.formats import get_format
    from codistill.training.config import DataConfig
    from codistill.training.data import IGNORE_INDEX, build_example

    fixes = _fixes("### Reasoning\nAdd two.\n\n### Code\n```python\ndef inc(n):\n    return n + 2\n```")
    lema = correction_rows(_records(), {f["id"]: f for f in fixes})["lema"][0]
    for spec in ("paper", {"base": "paper", "prompt_mode": "completion"}):
        fmt = get_format(spec)
        dcfg = DataConfig(**fmt.data_fields(), format_name=fmt.name, max_length=1024)
        text, chat = fmt.render_prompt(smollm2_tok, lema["prompt"])
        assert lema["prompt"] in text and ("<|im_start|>" in text) == chat
        want = list(smollm2_tok(text, add_special_tokens=not chat)["input_ids"])
        ex, why = build_example(lema, smollm2_tok, dcfg)
        assert ex is not None, why
        n_prompt = next(i for i, x in enumerate(ex.labels) if x != IGNORE_INDEX)
        assert ex.input_ids[:n_prompt] == want and not ex.truncated
        assert "### Incorrect step" in smollm2_tok.decode(ex.input_ids[n_prompt:])
        short = DataConfig(**fmt.data_fields(), format_name=fmt.name, max_length=len(want) + 5)
        assert build_example(lema, smollm2_tok, short) == (None, "too_long")


# ---------------------------------------------------------------- a changed layout, end to end
WRONG = "### Reasoning\nAdd two to n.\n\n### Code\n```python\ndef inc(n):\n    return n + 2\n```"
CORRECTION = ("## Incorrect step\n`return n + 2` adds two.\n\n## Explanation of the error\nIt must add one.\n\n"
              "## Corrected solution\nAdd one and return it.\n\n## Corrected code\n```python\ndef inc(n):\n"
              "    return n + 1\n```\n")


class Scripted(ScriptedStudent):
    answers = {"inc": [WRONG]}


def test_a_changed_layout_rewrites_the_rows_without_the_student_or_the_teacher(tmp_path, monkeypatch):
    with canned_teacher(Scripted.answers, {"inc": CORRECTION}) as teacher:
        cfg = CorrectConfig.model_validate({
            "dataset": write_dataset(tmp_path / "data", [toy_problem("inc", [[1]], [2])]),
            "student": {"model": "scripted", "format": {"base": "paper", "prompt_mode": "completion"}},
            "sampling": {"n": 1}, "teacher": {"base_url": teacher.url, "max_retries": 0, "timeout_s": 30},
            "teacher_sampling": {"seed": 1, "max_new_tokens": 200}})
        out = tmp_path / "run"
        m = correct(cfg, out, generator=Scripted())
        assert m["counts"]["kept"] == 1 and len(teacher.prompts) == 1 and m["rows"]["layout"] == rows_layout()
        (lema,) = read_jsonl(out / FILES["lema"])
        assert "### Task\n" + INSTRUCTION in lema["prompt"] and WRONG in lema["prompt"]

        monkeypatch.setattr(rows_mod, "_template", lambda: "{problem}\n\n### Failed attempt\n{attempt}\n\nFix it.")
        student = Scripted()
        m2 = correct(cfg, out, generator=student)
        assert student.calls == [] and len(teacher.prompts) == 1 and m2["this_run"]["teacher_calls"] == 0
        (lema2,) = read_jsonl(out / FILES["lema"])
        assert lema2["prompt"] == "[[inc]] Write inc(n).\n\n### Failed attempt\n" + WRONG + "\n\nFix it."
        assert m2["rows"]["layout"] != m["rows"]["layout"] and lema2["context"] == lema["context"]
        assert list(read_jsonl(out / FILES["corrected-only"]))[0]["prompt"] == "[[inc]] Write inc(n)."
