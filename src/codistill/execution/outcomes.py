"""What a program *does* on a problem's test inputs, without comparing it with expected outputs.

:func:`program_outcome` runs a program in the sandbox on every test input of the problem (the
same runs, limits and timeouts as the judge) and returns one token per case:

* call-based suites (``fn_name(*args)``): ``=<digest>`` for a returned value (sha256 of its
  canonical wire form, :func:`codistill.execution.wire.digest`, so two programs share a token
  exactly when the judge's exact comparison finds their outputs equal; outputs under the
  sandbox's digest threshold have their finite floats rounded to :data:`FLOAT_DIGITS` decimals
  first, as EvalPlus compares floats with ``atol = 1e-6``; larger outputs come back digested by
  the child and are exact), after the child's oracle transform (``mbpp/not_none``);
  ``!<ExceptionType>`` for a call that raised; for the first case the program never answered:
  ``timeout``, ``memory``, ``output_limit``, ``syntax_error`` (the program did not compile) or
  ``error:<ExceptionType>`` (it failed while loading, or the entry point is missing), and the
  cases after it have no token (the run stopped there); ``exit`` when the program ended before
  its tests finished;
* stdin/stdout suites: per input ``=<digest>`` of the whitespace-separated tokens of stdout (the
  judge's comparison accepts equal token lists), or the run's status as above;
* assert suites (no per-input outputs to read): one token, ``pass``, ``fail`` (an assertion of the
  tests failed) or the status as above.

``signature`` is a short hash of all the tokens: two programs with the same signature behaved
identically on every test input (the code analogue of two equal final answers). This is the
outcome used by ``codistill select`` (:mod:`codistill.select`) to cluster sampled programs.
Untrusted code runs only in the sandbox, never in this process.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from codistill.execution.compare import child_transform
from codistill.execution.sandbox import MalformedResult, RunResult
from codistill.execution.wire import DIGEST_KEY, TAG, digest, is_digest
from codistill.problems.schema import AssertTests, CallTests, Problem, StdioTests

if TYPE_CHECKING:
    from codistill.execution.judge import Judge

__all__ = ["FLOAT_DIGITS", "program_outcome", "program_outcomes", "signature_of"]

FLOAT_DIGITS = 6  # decimals kept of a float before digesting (EvalPlus: atol 1e-6)
_SHORT = 16  # hex characters kept of a digest


def _rounded(enc: Any) -> Any:
    """An encoded value with its finite non-integral floats rounded to FLOAT_DIGITS decimals."""
    t = type(enc)
    if t is float:
        return round(enc, FLOAT_DIGITS)
    if t is list:
        return [_rounded(v) for v in enc]
    if t is dict:
        if enc.get(TAG) in ("float", "complex", "int", "bytes", "s256", "f64"):
            return enc
        return {k: _rounded(v) for k, v in enc.items()}
    return enc


def _value_token(enc: Any) -> str:
    if is_digest(enc):
        return "=" + str(enc[DIGEST_KEY])[:_SHORT]
    try:
        return "=" + digest(_rounded(enc))[:_SHORT]
    except Exception:  # noqa: BLE001 - a value the canonical form declines: hash its text
        return "=" + hashlib.sha256(json.dumps(enc, sort_keys=True).encode()).hexdigest()[:_SHORT]


def _status_token(res: RunResult) -> str:
    """The token of a run that stopped (or never started) before answering a case."""
    if res.status == "error":
        etype = (res.error or {}).get("etype")
        if etype:
            return f"error:{etype}"
        if res.raw.get("violation") or res.raw.get("malformed"):
            return "error:channel"
        return "exit" if not res.completed else "error"
    return res.status  # timeout | memory | output_limit | syntax_error | sandbox_error


def _call_tokens(judge: Judge, problem: Problem, s: CallTests, program: str) -> list[str]:
    limits, timeout = judge.call_limits(problem, s)
    res = judge.sandbox.run_call(program, s.fn_name, s.inputs, timeout=timeout, case_limits=limits,
                                 oracle=child_transform(s.oracle), allow_digest=True)
    tokens: list[str] = []
    for i in range(len(s.inputs)):
        try:
            m = res.case(i)
        except MalformedResult:
            tokens.append("error:unreadable")
            return tokens
        if m is None:
            tokens.append("timeout" if res.timeout_case == i else _status_token(res))
            return tokens
        if not m.get("ok"):
            tokens.append("!" + str(m.get("etype", "Error")))
            continue
        tokens.append(_value_token(m.get("out")))
    if not res.completed or res.status != "ok":
        tokens.append(_status_token(res))
    return tokens


def _stdio_tokens(judge: Judge, s: StdioTests, program: str) -> list[str]:
    tokens = []
    for stdin in s.inputs:
        res = judge.sandbox.run_python(program, stdin=stdin, timeout=s.timeout_s or judge.config.timeout_s)
        if res.status != "ok":
            tokens.append(_status_token(res))
        else:
            text = " ".join(res.stdout.split())
            tokens.append("=" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_SHORT])
    return tokens


def _assert_tokens(judge: Judge, problem: Problem, s: AssertTests, program: str) -> list[str]:
    res = judge.sandbox.run_assert(program, s.program, problem.entry_point, setup=s.setup, call=s.call,
                                   timeout=s.timeout_s or judge.config.timeout_s)
    if res.status == "ok" and res.completed:
        return ["pass"]
    err = res.error or {}
    if res.status == "error" and err.get("stage") == "test" and err.get("etype") == "AssertionError":
        return ["fail"]
    return [_status_token(res)]


def signature_of(cases: dict[str, list[str]]) -> str:
    """The short hash of a program's case tokens (suite order kept)."""
    return hashlib.sha256(json.dumps(cases, separators=(",", ":")).encode()).hexdigest()[:_SHORT]


def program_outcome(judge: Judge, problem: Problem, program: str) -> dict:
    """``{"signature", "cases": {suite: [token, ...]}, "kind"}`` of ``program`` on ``problem``'s
    test inputs (see the module docstring). ``kind``: ``ok`` (every case gave an output or passed),
    ``timeout`` (a case ran out of time), ``syntax_error``, or ``crash`` (anything else).

    Suites limited by ``judge.config.suites`` are the only ones run; expected outputs are never
    read, but call-based suites without stored outputs need the reference's times for their
    per-case limits (computed once and cached, as for judging)."""
    suites = [s for s in problem.tests if not judge.config.suites or s.name in judge.config.suites]
    cases: dict[str, list[str]] = {}
    for s in suites:
        if isinstance(s, CallTests):
            cases[s.name] = _call_tokens(judge, problem, s, program)
        elif isinstance(s, StdioTests):
            cases[s.name] = _stdio_tokens(judge, s, program)
        elif isinstance(s, AssertTests):
            cases[s.name] = _assert_tokens(judge, problem, s, program)
        else:
            raise TypeError(f"unknown suite type {type(s).__name__}")
    flat = [t for ts in cases.values() for t in ts]
    if all(t.startswith("=") or t == "pass" for t in flat):
        kind = "ok"
    elif "timeout" in flat:
        kind = "timeout"
    elif "syntax_error" in flat:
        kind = "syntax_error"
    else:
        kind = "crash"
    return {"signature": signature_of(cases), "cases": cases, "kind": kind}


def program_outcomes(judge: Judge, items: list[tuple[Problem, str]]) -> list[dict]:
    """:func:`program_outcome` of each ``(problem, program)``, on the sandbox's workers in
    parallel, in order. A failure of codistill itself on one item (not the program's) becomes
    that item's outcome ``{"kind": "sandbox_error", ...}`` with its own signature."""
    needed = {p.id: p for p, _ in items if p.solutions}  # reference times for the per-case limits
    judge.prepare(needed.values())

    def one(item):
        p, program = item
        try:
            return program_outcome(judge, p, program)
        except Exception as e:  # noqa: BLE001 - codistill's failure, named as such
            cases = {"_": [f"sandbox_error:{type(e).__name__}"]}
            return {"signature": signature_of(cases), "cases": cases, "kind": "sandbox_error", "error": str(e)[:300]}

    return judge.sandbox.map(one, items)
