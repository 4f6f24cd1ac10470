"""The ``correction`` teacher mode (LEMA): its prompt carries the student's attempt and the judge's
report (ModeSpec.fields, Mode.prompt_fields), its answers parse into the incorrect step, the
explanation, the corrected reasoning and code, and the cache key covers what the teacher saw."""

from __future__ import annotations

import pytest

from codistill.teacher.modes import get_mode
from codistill.teacher.parse import parse_answer
from codistill.teacher.runner import row_hash
from codistill.teacher.templates import load_template, render_context

ANSWER = """## Incorrect step
`return n + 2` adds two instead of one.

## Explanation of the error
The problem asks for n + 1; adding two returns 3 for the input 1, where 2 is expected.

## Corrected solution
Return the number plus one; there is no edge case.

## Corrected code
```python
def inc(n):
    return n + 1
```
"""


def _row(**kw):
    row = {"id": "inc#fix0", "problem_id": "inc", "prompt": "Write inc(n).", "code": "", "entry_point": "inc",
           "attempt": "### Reasoning\nAdd two.\n\n### Code\n```python\ndef inc(n):\n    return n + 2\n```",
           "failure": {"status": "fail", "input": "inc(1)", "expected": "2", "got": "3"}}
    row.update(kw)
    return row


def test_the_prompt_shows_the_attempt_and_the_judges_report():
    mode = get_mode("correction")
    t = load_template("correction")
    prompt = t.render("Write inc(n).", None, "inc", fields=mode.prompt_fields(_row()))
    assert "### Student's attempt\n### Reasoning\nAdd two." in prompt and "return n + 2" in prompt
    assert ("### Judge's report\nVerdict: wrong answer (fail)\nFailing input: inc(1)\nExpected output: 2\n"
            "Student's output: 3") in prompt
    assert "{attempt}" not in prompt and "{failure}" not in prompt and "`inc`" in prompt
    err = mode.prompt_fields(_row(failure={"status": "error", "input": "inc(None)", "error": "TypeError: x"}))
    assert err["failure"] == "Verdict: runtime error (error)\nFailing input: inc(None)\nError: TypeError: x"
    with pytest.raises(ValueError, match="needs attempt, failure"):
        t.render("Write inc(n).", None, "inc")
    with pytest.raises(ValueError, match="needs 'attempt'"):
        mode.prompt_fields({"id": "x", "prompt": "p"})


def test_a_template_without_the_modes_placeholders_is_refused(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("{problem}\n{attempt}\n")
    with pytest.raises(ValueError, match=r"no \{failure\} placeholder"):
        load_template("correction", f)


def test_the_cache_key_covers_the_attempt_and_keeps_old_keys():
    row = _row()
    mode = get_mode("correction")
    other = _row(attempt="### Code\n```python\ndef inc(n):\n    return n\n```")
    assert row_hash(row, mode.prompt_fields(row)) != row_hash(other, mode.prompt_fields(other))
    plain = {"id": "a", "prompt": "p", "code": "c"}
    assert row_hash(plain) == row_hash(plain, {}) == row_hash(plain, get_mode("explain").prompt_fields(plain))


def test_the_answer_parses_into_the_three_parts_and_the_code():
    p = parse_answer("correction", ANSWER)
    assert p.valid and p.code == "def inc(n):\n    return n + 1\n"
    assert p.sections["incorrect_step"].startswith("`return n + 2`")
    assert p.sections["explanation"].startswith("The problem asks for n + 1")
    assert p.sections["reasoning"] == "Return the number plus one; there is no edge case."
    assert render_context(p.sections, "correction") == (
        "### Incorrect step\n`return n + 2` adds two instead of one.\n\n"
        "### Explanation of the error\nThe problem asks for n + 1; adding two returns 3 for the input 1, where 2 "
        "is expected.\n\n### Corrected solution\nReturn the number plus one; there is no edge case.")
    # the code under the reasoning (no code heading): taken out of the reasoning
    p = parse_answer("correction", ANSWER.replace("## Corrected code\n", ""))
    assert p.valid and p.code == "def inc(n):\n    return n + 1\n" and "```" not in p.sections["reasoning"]
    # unfenced code under its heading
    p = parse_answer("correction", ANSWER.replace("```python\n", "").replace("```\n", ""))
    assert p.valid and p.code == "def inc(n):\n    return n + 1\n"
    # a quoted wrong line in the incorrect step is not the corrected code
    quoted = ANSWER.replace("`return n + 2` adds two", "```python\nreturn n + 2\n```\nadds two")
    assert parse_answer("correction", quoted).code == "def inc(n):\n    return n + 1\n"
    missing = ANSWER.replace("## Explanation of the error\n", "")
    assert not parse_answer("correction", missing).valid
    assert parse_answer("correction", missing).reason == "missing section 'explanation'"
    assert parse_answer("correction", ANSWER.split("## Corrected code")[0]).reason == "missing section 'code'"


def test_rows_of_a_data_folder_are_refused_with_the_verb_to_use():
    mode = get_mode("correction")
    with pytest.raises(ValueError, match="run `codistill correct`"):
        mode.select_rows([{"id": "a", "prompt": "p", "code": "c"}])
    assert mode.select_rows([]) == [] and mode.select_rows([_row()]) == [_row()]
