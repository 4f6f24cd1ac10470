"""One problem schema for every benchmark and training source.

Tests come in three kinds that together cover HumanEval(+), MBPP(+), TACO/APPS, CodeContests,
LeetCode and CodeI/O:

* ``CallTests``   -- ``fn_name(*args)`` compared with an expected value (float tolerance
  ``atol``). Expected values are stored in codistill's *wire encoding* (see
  :mod:`codistill.execution.wire`) so tuples, sets, NaN and dicts with non-string keys survive
  JSON. ``outputs=None`` means "compute them by running the reference solution" (EvalPlus
  style; cached by data hash). The untrusted program never sees the expected values: it only
  returns outputs, and the comparison happens in a trusted process.
* ``StdioTests``  -- stdin text in, stdout text out (whitespace-normalised comparison).
* ``AssertTests`` -- a test program with asserts (HumanEval ``check``, MBPP ``test_list``).
  These run in the untrusted process, hardened (see the README's sandbox section).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallTests(_Base):
    kind: Literal["call"] = "call"
    name: str = Field("base", description="suite name, e.g. 'base' or 'plus' (EvalPlus)")
    fn_name: str = Field(..., description="function (or 'Class.method' for LeetCode) to call")
    inputs: list[list[Any]] = Field(..., description="positional arguments, one list per case")
    outputs: list[Any] | None = Field(
        None, description="expected values in wire encoding; None = run the reference solution"
    )
    atol: float = Field(0.0, description="absolute tolerance for float outputs (EvalPlus atol)")
    oracle: str | None = Field(
        None, description="special oracle by name (e.g. 'humaneval/find_zero'), see compare.py"
    )
    time_limits: list[float] | None = Field(
        None, description="per-case seconds, usually factor x reference time (EvalPlus style)"
    )


class StdioTests(_Base):
    kind: Literal["stdio"] = "stdio"
    name: str = "base"
    inputs: list[str]
    outputs: list[str] | None = None
    timeout_s: float | None = Field(None, description="seconds per case (default: the judge's timeout)")


class AssertTests(_Base):
    kind: Literal["assert"] = "assert"
    name: str = "base"
    program: str = Field(..., description="test code: asserts, or a check() definition")
    setup: str = Field("", description="code run before the tests (imports, test_setup_code)")
    call: str | None = Field(
        None, description="entry call, e.g. 'check' to run check(<entry point>) as HumanEval does"
    )
    timeout_s: float | None = Field(
        None, description="seconds for the whole test program (default: the judge's timeout; "
        "MBPP sets 10 because some references need ~3 s)")


TestSuite = Annotated[CallTests | StdioTests | AssertTests, Field(discriminator="kind")]


class Problem(_Base):
    id: str = Field(..., description="unique id, e.g. 'HumanEval/0' or 'Mbpp/2'")
    source: str = Field(..., description="loader name: humaneval, humaneval+, mbpp, codeio, ...")
    prompt: str = Field(..., description="what the model is shown (statement and/or signature)")
    entry_point: str | None = Field(None, description="function name for call/assert tests")
    io_style: Literal["function", "stdio"] = "function"
    code_prefix: str = Field(
        "",
        description="code prepended to a bare completion to make a program (HumanEval prompt)",
    )
    solutions: list[str] = Field(default_factory=list, description="reference programs")
    tests: list[TestSuite] = Field(default_factory=list)
    difficulty: str | None = None
    split: str | None = None
    license: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    def suite(self, name: str) -> TestSuite:
        for s in self.tests:
            if s.name == name:
                return s
        raise KeyError(f"{self.id} has no test suite {name!r}; it has {[s.name for s in self.tests]}")
