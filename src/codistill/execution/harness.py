"""What runs inside the sandboxed child, after limits and privilege drop: the program and tests.

Results go as JSON lines to the result pipe (fd 3):
``{"ev":"loaded"}`` once the program's module body ran; ``{"ev":"case","i":i,...}`` per
call-based case; ``{"ev":"done","nonce":...}`` once all tests ran; or ``{"ev":"error",...}``.
The program can write to that pipe too: the worker accepts only these lines, in this order, and
times them itself (see :mod:`.worker`); nothing here is trusted for a verdict's timing.

Modes:
* ``call``  -- call ``fn_name(*args)`` per case and send the wire-encoded return value. The
  expected values are not in this process; the trusted parent compares.
* ``assert`` -- run a test program (asserts / ``check(candidate)``) against the program, with
  three hardenings against programs that try to pass without being right:
  - the test code gets a snapshot of the builtins taken *before* the program ran, and program
    globals that shadow a builtin are not passed on, so patching ``builtins.abs`` or defining a
    global ``abs`` does not change what the tests call;
  - every function the program defines (and the entry point, whatever it is) is wrapped so its
    return value must be of a plain built-in type (exact type check, recursively), so an object
    whose ``__eq__`` always answers True, or a ``float`` subclass, fails the test;
  - the tests must reach their end: the ``done`` line carries a per-job nonce, so
    ``sys.exit(0)``/``os._exit(0)`` before or during the tests is a failure, not a pass.
  These run in the untrusted process, so a program written to attack this harness (walking
  ``gc`` for the nonce, patching stdlib modules such as ``math.isclose``) can still forge an
  assert-mode pass. Call-based and stdio verdicts are decided outside and are not forgeable
  that way; prefer them (HumanEval+, MBPP+) for rejection sampling and reward-driven training.
* ``script`` -- run the program as ``__main__`` (stdin/stdout tests, or a plain run).
"""

from __future__ import annotations

import builtins
import json
import os
import sys
import traceback
import types

from codistill.execution.wire import NotPlainValue, decode, encode, json_writer, maybe_digest, stream_digest

_PROGRAM_MODULE = "__cd_solution__"


def _send(fd: int, msg: dict) -> None:
    _write(fd, (json.dumps(msg) + "\n").encode())


def _write(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _safe(fn, default: str) -> str:
    try:
        out = fn()
        return out if type(out) is str else default
    except BaseException:  # noqa: BLE001 - the program's exception may lie in __str__, __name__, ...
        return default


def _err(e: BaseException, limit: int = 1500) -> dict:
    """Describe an exception the program raised; never raises, whatever the exception does."""
    etype = _safe(lambda: str.__str__(type.__dict__["__name__"].__get__(type(e))), "Exception")
    msg = _safe(lambda: str(e)[:500], "<unprintable exception>")
    tb = _safe(lambda: "".join(traceback.format_exception(type(e), e, e.__traceback__))[-limit:], "")
    return {"etype": etype, "msg": msg, "tb": tb}


_PASSTHROUGH: set | None = None


def _passthrough_types() -> set:
    """Stdlib types passed to assert tests as they are (exact type match only): their methods
    are stdlib code a program cannot override (several are not even subclassable)."""
    global _PASSTHROUGH
    if _PASSTHROUGH is None:
        import datetime
        import decimal
        import fractions
        import re

        _PASSTHROUGH = {re.Match, re.Pattern, range, slice, type(Ellipsis), datetime.date, datetime.datetime,
                        datetime.time, datetime.timedelta, decimal.Decimal, fractions.Fraction}
    return _PASSTHROUGH


def _plain_copy(x):
    """What the assert tests receive for a return value of the program's functions.

    Plain values: a fresh copy (see :mod:`.wire`). Iterators of builtins/itertools (generator,
    map, filter, zip, ...): consumed, each item copied, handed back as an iterator over the
    copies. A few stdlib types (``re.Match`` for MBPP's regex tasks, ``range``, ``Fraction``,
    ...) as they are. Anything else raises NotPlainValue.
    """
    t = type(x)
    if t in _passthrough_types():
        return x
    if hasattr(t, "__next__") and getattr(t, "__module__", "") in ("builtins", "itertools"):
        return iter([_plain_copy(v) for v in x])
    return decode(encode(x))


def _guard(fn):
    def guarded(*args, **kwargs):
        return _plain_copy(fn(*args, **kwargs))

    guarded.__name__ = getattr(fn, "__name__", "candidate")
    guarded.__qualname__ = guarded.__name__
    guarded.__doc__ = getattr(fn, "__doc__", None)
    return guarded


def _load(program: str, fd: int, as_main: bool = False) -> dict | None:
    ns: dict = {"__name__": "__main__" if as_main else _PROGRAM_MODULE, "__builtins__": builtins}
    try:
        code = compile(program, "<solution>", "exec")
    except (SyntaxError, ValueError) as e:
        _send(fd, {"ev": "error", "stage": "compile", **_err(e)})
        return None
    try:
        exec(code, ns)
    except SystemExit as e:
        if as_main and e.code in (0, None):
            return ns  # a script that ends with sys.exit(0) finished normally
        _send(fd, {"ev": "error", "stage": "load", **_err(e)})
        return None
    except BaseException as e:  # noqa: BLE001 - the program did not load
        _send(fd, {"ev": "error", "stage": "load", **_err(e)})
        return None
    return ns


def _resolve(ns: dict, fn_name: str):
    """``name`` or ``Class.method`` (LeetCode style: a fresh ``Class()`` per call)."""
    if "." in fn_name:
        cls_name, meth = fn_name.split(".", 1)
        cls = ns[cls_name]
        return lambda *a: getattr(cls(), meth)(*a)
    return ns[fn_name]


_SIZED = (list, tuple, str, bytes, dict, set, frozenset)

_ORACLE_TRANSFORMS = {
    # EvalPlus MBPP tasks whose outputs are not serialisable (re.Match): compare "not None".
    "mbpp/not_none": lambda out: out if type(out) is bool else (out is not None),
}


def _tolerance_switch(out) -> bool:
    """Whether EvalPlus turns its float tolerance on at this output (``is_floats``); numpy values
    count too (they encode as lists of Python floats)."""
    if isinstance(out, float) or getattr(type(out), "__module__", "") == "numpy":
        return True
    return type(out) in (list, tuple) and bool(out) and all(isinstance(v, float) for v in out)


def run_call(job: dict, fd: int) -> None:
    ns = _load(job["program"], fd)
    if ns is None:
        return
    try:
        fn = _resolve(ns, job["fn_name"])
    except Exception as e:  # noqa: BLE001
        _send(fd, {"ev": "error", "stage": "entry_point", **_err(e)})
        return
    transform = _ORACLE_TRANSFORMS.get(job.get("oracle") or "")
    allow = job.get("allow_digest")
    reference = allow == "reference"  # digest only while EvalPlus compares exactly (see judge.digest_cases)
    # None: every case may be digested (all of them, or until the tolerance switch)
    digest_cases = None if allow is True or reference else set(allow or ())
    tolerant = False
    dumps = json_writer()
    _send(fd, {"ev": "loaded"})
    for i, raw in enumerate(job["inputs"]):
        args = decode(raw)
        try:
            out = fn(*args)
            if transform is not None:
                out = transform(out)
            enc = None
            if reference:
                tolerant = tolerant or _tolerance_switch(out)
            allow_digest = (digest_cases is None and not tolerant) or (digest_cases is not None and i in digest_cases)
            if allow_digest and type(out) in _SIZED and len(out) > 10_000:
                # large: hash it as it is walked (the encoded tree + JSON text of e.g. 1.66M
                # tuples would not fit the sandbox's address space); None if it holds floats
                enc = stream_digest(out)
            if enc is None:
                enc = encode(out)
                if allow_digest:
                    enc = maybe_digest(enc)
        except NotPlainValue as e:
            _send(fd, {"ev": "case", "i": i, "ok": False, "etype": "NotPlainValue", "msg": str(e)[:300]})
            continue
        except BaseException as e:  # noqa: BLE001
            _send(fd, {"ev": "case", "i": i, "ok": False, **_err(e, 600)})
            continue
        # what _send writes for {"ev": "case", "i": i, "ok": True, "out": enc}, without the dict
        _write(fd, b'{"ev": "case", "i": %d, "ok": true, "out": %s}\n' % (i, dumps(enc).encode()))
    _send(fd, {"ev": "done", "nonce": job["nonce"]})


def run_assert(job: dict, fd: int) -> None:
    pristine = dict(builtins.__dict__)  # snapshot before any untrusted code runs
    nonce = job.pop("nonce")
    ns = _load(job["program"], fd)
    if ns is None:
        return
    entry = job.get("entry_point")
    test_ns: dict = {"__name__": "__cd_tests__", "__builtins__": pristine}
    for name, obj in ns.items():
        if name.startswith("__") or (name in pristine and name != entry):
            continue  # globals shadowing builtins are not handed to the tests (the entry point is)
        if isinstance(obj, types.FunctionType) or name == entry:
            test_ns[name] = _guard(obj) if callable(obj) else obj
        else:
            test_ns[name] = obj
    _send(fd, {"ev": "loaded"})
    stage = "setup"
    try:
        if job.get("setup"):
            exec(compile(job["setup"], "<test-setup>", "exec"), test_ns)
        stage = "test"
        exec(compile(job["test_program"], "<tests>", "exec"), test_ns)
        if job.get("call"):
            if entry not in ns:
                raise NameError(f"entry point {entry!r} is not defined by the program")
            test_ns[job["call"]](_guard(ns[entry]))
    except BaseException as e:  # noqa: BLE001 - SystemExit inside the tests is a failure too
        _send(fd, {"ev": "error", "stage": stage, **_err(e)})
        return
    _send(fd, {"ev": "done", "nonce": nonce})


def run_script(job: dict, fd: int) -> None:
    ns = _load(job["program"], fd, as_main=True)
    if ns is None:
        return
    try:
        sys.stdout.flush()
    except BaseException:  # noqa: BLE001
        pass
    _send(fd, {"ev": "done", "nonce": job["nonce"]})


def run(job: dict, fd: int) -> None:
    mode = job["mode"]
    if mode == "call":
        run_call(job, fd)
    elif mode == "assert":
        run_assert(job, fd)
    elif mode == "script":
        run_script(job, fd)
    else:
        _send(fd, {"ev": "error", "stage": "harness", "etype": "ValueError", "msg": f"unknown mode {mode!r}"})
