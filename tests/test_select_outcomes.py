"""Outcome clusters (codistill.execution.outcomes) on programs with known outputs: the same outputs
from other code are one cluster; a crash, a timeout, a syntax error and an answer without code are
outcomes of their own; stdio and assert suites; floats within EvalPlus's tolerance."""

from __future__ import annotations

import pytest

from codistill.execution.outcomes import program_outcome, program_outcomes
from codistill.problems.schema import AssertTests, CallTests, Problem, StdioTests


@pytest.fixture(scope="module")
def judge():
    from codistill.execution.judge import Judge, JudgeConfig
    from codistill.execution.sandbox import SandboxConfig

    with Judge(JudgeConfig(timeout_s=1.0, min_time_limit=0.5, sandbox=SandboxConfig(workers=2, timeout_s=1.0))) as j:
        yield j


SQ = Problem(id="t/sq", source="t", prompt="square of x", entry_point="sq", solutions=["def sq(x):\n    return x * x\n"],
             tests=[CallTests(fn_name="sq", inputs=[[2], [3], [0.5]])])  # expected outputs: from the reference

PROGRAMS = {
    "mul": "def sq(x):\n    return x * x\n",
    "pow": "def sq(x):\n    return x ** 2\n",  # other code, the same outputs
    "float": "def sq(x):\n    return x * x + 1e-12\n",  # within 1e-6: the judge's tolerance, one cluster
    "double": "def sq(x):\n    return x + x\n",  # 4, 6, 1.0: another answer
    "crash": "def sq(x):\n    return 1 // (x - 3) * 0 + x * x\n",  # ZeroDivisionError on x = 3
    "loop": "def sq(x):\n    while True:\n        pass\n",
    "syntax": "def sq(x)\n    return x\n",
    "missing": "def square(x):\n    return x * x\n",
}


def test_call_suite_outcomes(judge):
    got = dict(zip(PROGRAMS, program_outcomes(judge, [(SQ, prog) for prog in PROGRAMS.values()])))
    sig = {k: v["signature"] for k, v in got.items()}
    assert sig["mul"] == sig["pow"] == sig["float"]
    assert got["mul"]["kind"] == "ok" and got["mul"]["cases"]["base"][0].startswith("=")
    assert len({sig["mul"], sig["double"], sig["crash"], sig["loop"], sig["syntax"], sig["missing"]}) == 6
    assert got["double"]["cases"]["base"][0] == got["mul"]["cases"]["base"][0]  # 2 + 2 == 2 * 2: same token
    assert got["crash"]["cases"]["base"][1] == "!ZeroDivisionError" and got["crash"]["kind"] == "crash"
    assert got["crash"]["cases"]["base"][0] == got["mul"]["cases"]["base"][0]  # the other cases still answered
    assert got["loop"]["cases"]["base"] == ["timeout"] and got["loop"]["kind"] == "timeout"
    assert got["syntax"]["cases"]["base"] == ["syntax_error"] and got["syntax"]["kind"] == "syntax_error"
    assert got["missing"]["cases"]["base"] == ["error:KeyError"]  # the entry point is not defined
    # deterministic: the same program, the same signature
    assert program_outcome(judge, SQ, PROGRAMS["pow"])["signature"] == sig["mul"]


def test_stdio_and_assert_suites(judge):
    echo = Problem(id="t/io", source="t", prompt="reverse", io_style="stdio",
                   tests=[StdioTests(inputs=["ab\n", "xyz\n"], outputs=["ba\n", "zyx\n"])])
    rev = program_outcome(judge, echo, "print(input()[::-1])")
    spaced = program_outcome(judge, echo, "s = input()[::-1]\nprint(' ' + s + '  ')")  # the judge ignores spacing
    crash = program_outcome(judge, echo, "s = input()\nprint(s[::-1] if s != 'xyz' else 1 / 0)")
    assert rev["signature"] == spaced["signature"] and rev["kind"] == "ok"
    assert crash["cases"]["base"][0] == rev["cases"]["base"][0] and crash["cases"]["base"][1] == "error:ZeroDivisionError"
    asserts = Problem(id="t/as", source="t", prompt="inc", entry_point="inc",
                      tests=[AssertTests(program="assert inc(1) == 2\nassert inc(-1) == 0\n")])
    assert program_outcome(judge, asserts, "def inc(n):\n    return n + 1\n")["cases"] == {"base": ["pass"]}
    assert program_outcome(judge, asserts, "def inc(n):\n    return n\n")["cases"] == {"base": ["fail"]}
    assert program_outcome(judge, asserts, "def inc(n):\n    raise ValueError\n")["cases"] == {"base": ["error:ValueError"]}


def test_no_code_answer_is_its_own_cluster():
    from codistill.select.sample import NO_CODE, BatchScorer

    p = Problem(id="t/sq", source="t", prompt="square", entry_point="sq")
    assert BatchScorer.program("### Reasoning\nMultiply x by itself.\n", p) is None
    assert BatchScorer.program("```python\ndef sq(x):\n    return x * x\n```", p).startswith("def sq")
    assert NO_CODE == "no_code"
