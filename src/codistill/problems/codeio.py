"""CodeI/O problems (reasoning-gym's ``codeio.jsonl.gz`` and ``codeio-hq.jsonl.gz``).

Each record has a ``task_description``, an ``input_output_spec``, a reference ``code_sample``
defining ``main_solution(**kwargs)``, and an ``input_generator`` defining
``generate_inputs(rng: Random) -> dict`` (``generate_input`` in codeio-hq). Neither file carries test cases: they are made here by
running the generator (``n`` times from ``Random(seed)``, a fresh generator per problem) and then
the reference solution on each generated input.

That is dataset code, so it runs in codistill's sandbox (:mod:`codistill.execution.sandbox`),
one sandboxed program per problem, never in this process. In the sandbox a small wrapper:

* calls the generator, turns the kwargs dict into positional arguments in the order of
  ``main_solution``'s parameters (found here with :mod:`ast`),
* deep-copies the arguments before each reference call (so a solution that mutates its input does
  not change the recorded input) and calls the reference twice,
* returns ``[[args, output, output_again], ...]``, which the sandbox wire-encodes; a problem whose
  two runs differ (e.g. Monte Carlo references using unseeded ``random``) is dropped as
  ``nondeterministic reference``.

Problems whose generator or reference fails (exception, timeout, non-plain output, kwargs that do
not fit the signature) are dropped and counted in :class:`LoadStats`. Results are cached under
``cache_dir("codeio")`` keyed by sha256 of (data file hash, seed, n, wrapper version, wire.py
hash), so a second load does not run anything; a ``limit`` only processes as many records as it needs.

Files: located inside the installed ``reasoning_gym`` package without importing it.
``codeio-hq.jsonl.gz`` is one JSON array despite its name.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from codistill.paths import cache_dir
from codistill.problems._common import LoadStats, log, package_file, parse_quietly, read_records
from codistill.problems.schema import CallTests, Problem
from codistill.store import atomic_write_text, sha256_file, sha256_json

CODEIO_LICENSE = "Apache-2.0 (reasoning-gym; CodeI/O)"
CODEIO_FILES = {"codeio": "data/codeio.jsonl.gz", "codeio-hq": "data/codeio-hq.jsonl.gz"}
WRAPPER_VERSION = 3
MAX_ENCODED_BYTES = 1 << 20  # drop problems whose cases are larger than this (JSON)

_WRAPPER_FN = "__codistill_codeio_cases"
_WRAPPER = f'''

def {_WRAPPER_FN}(seed, n, params):
    import copy as _copy
    from random import Random as _Random
    gen = globals().get("generate_inputs") or globals().get("generate_input")
    if gen is None:
        raise NameError("no input generator: neither generate_inputs nor generate_input is defined")
    rng = _Random(seed)
    cases = []
    for _ in range(n):
        kwargs = gen(rng)
        if type(kwargs) is not dict:
            raise TypeError("generate_inputs returned %s, not a dict" % type(kwargs).__name__)
        extra = [k for k in kwargs if k not in params]
        if extra:
            raise TypeError("kwargs mismatch: generator keys %r not parameters of main_solution" % extra)
        present = [p in kwargs for p in params]
        if False in present and True in present[present.index(False):]:
            raise TypeError("kwargs mismatch: a parameter before a given one is missing")
        args = [kwargs[p] for p in params if p in kwargs]
        keep = _copy.deepcopy(args)
        out1 = main_solution(*_copy.deepcopy(args))
        out2 = main_solution(*_copy.deepcopy(args))
        cases.append([keep, out1, out2])
    return cases
'''


def main_solution_params(code: str) -> list[str] | None:
    """Positional parameter names of ``main_solution`` (None if absent or if it takes *args/**kw
    or keyword-only parameters, which positional calls cannot express)."""
    try:
        tree = parse_quietly(code)
    except SyntaxError:
        return None
    fns = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "main_solution"]
    if not fns:
        return None
    a = fns[-1].args
    if a.vararg or a.kwarg or a.kwonlyargs:
        return None
    return [p.arg for p in a.posonlyargs + a.args]


def codeio_prompt(rec: dict, params: list[str]) -> str:
    """Statement + I/O spec, and the function the answer must define."""
    return (
        f"{rec['task_description'].strip()}\n\n{rec['input_output_spec'].strip()}\n\n"
        f"Write a Python function `main_solution({', '.join(params)})` that returns the output."
    )


def load_codeio(
    data_dir=None,
    limit: int | None = None,
    *,
    hq: bool = False,
    n: int = 5,
    seed: int = 0,
    timeout: float = 10.0,
    sandbox=None,
    refresh: bool = False,
    path: str | Path | None = None,
    stats: LoadStats | None = None,
) -> list[Problem]:
    """CodeI/O problems with tests built in the sandbox (see module docstring).

    ``hq`` picks ``codeio-hq.jsonl.gz``; ``path`` overrides the file. ``sandbox`` is a started
    :class:`codistill.execution.sandbox.Sandbox` to reuse (one with 2 workers is made otherwise,
    only if something is not cached). ``refresh`` recomputes cached results. ``data_dir`` is
    unused (the data ships inside reasoning-gym) and accepted for a uniform signature.
    """
    name = "codeio-hq" if hq else "codeio"
    file = Path(path) if path else package_file("reasoning_gym", "reasoning-gym==0.1.25", CODEIO_FILES[name])
    stats = stats or LoadStats(name)
    records = read_records(file)
    from codistill.execution import wire

    # The wire encoding decides how outputs are stored: a change to it invalidates the cache.
    key = sha256_json({"file": sha256_file(file), "seed": seed, "n": n, "v": WRAPPER_VERSION,
                       "wire": sha256_file(wire.__file__)})
    cache_path = cache_dir("codeio") / f"{name}-{key[:32]}.json"
    cache: dict[str, Any] = {} if refresh else _read_cache(cache_path)

    out: list[Problem] = []
    own_sandbox = None
    fresh = 0  # results computed since the cache was last written
    try:
        i = 0
        while i < len(records) and (limit is None or len(out) < limit):
            # The next chunk: the records still needed (plus two spare, some fail), or 64.
            size = 64 if limit is None else max(1, limit - len(out)) + 2
            chunk = list(range(i, min(len(records), i + size)))
            i = chunk[-1] + 1
            todo = [j for j in chunk if str(j) not in cache]
            if todo:
                if sandbox is None and own_sandbox is None:
                    from codistill.execution.sandbox import Sandbox, SandboxConfig

                    own_sandbox = Sandbox(SandboxConfig(workers=2, timeout_s=timeout)).start()
                sb = sandbox or own_sandbox

                def build(j: int, sb=sb) -> None:
                    nonlocal fresh
                    cache[str(j)] = _build_cases(sb, records[j], n, seed, timeout)
                    fresh += 1

                sb.map(build, todo)
                _write_cache(cache_path, cache)
                fresh = 0
            for j in chunk:
                if limit is not None and len(out) >= limit:
                    break
                stats.read += 1
                stats.cached += j not in todo
                pid = f"{name}/{j}"
                res = cache[str(j)]
                if not res.get("ok"):
                    stats.skip(res.get("reason", "failed"), pid)
                    continue
                out.append(_problem(name, pid, records[j], res, n, seed, file))
    finally:
        if fresh:  # interrupted mid-chunk: keep what was computed
            _write_cache(cache_path, cache)
        if own_sandbox is not None:
            own_sandbox.close()
    stats.loaded = len(out)
    if stats.skipped:
        log.info(stats.summary())
    return out


def _problem(name: str, pid: str, rec: dict, res: dict, n: int, seed: int, file: Path) -> Problem:
    params = res["params"]
    cases = res["cases"]
    tests = CallTests(
        name="base",
        fn_name="main_solution",
        inputs=[c[0] for c in cases],
        outputs=[c[1] for c in cases],
    )
    meta = {
        "task_description": rec["task_description"],
        "input_output_spec": rec["input_output_spec"],
        "input_generator": rec["input_generator"],
        "params": params,
        "seed": seed,
        "n": n,
        "path": str(file),
    }
    for k in ("clarity", "practice", "educational", "safety", "unique_inputs", "unique_outputs"):
        if k in rec:
            meta[k] = rec[k]
    diff = rec.get("difficulty")
    return Problem(
        id=pid,
        source=name,
        prompt=codeio_prompt(rec, params),
        entry_point="main_solution",
        solutions=[rec["code_sample"]],
        tests=[tests],
        difficulty=None if diff is None else str(diff),
        license=CODEIO_LICENSE,
        meta=meta,
    )


def _build_cases(sb, rec: dict, n: int, seed: int, timeout: float) -> dict:
    """Run one record's generator + reference in the sandbox; a JSON-able result for the cache."""
    params = main_solution_params(rec.get("code_sample", ""))
    if params is None:
        return {"ok": False, "reason": "no positional main_solution"}
    program = (
        "from random import Random\n\n" + rec["code_sample"] + "\n\n" + rec["input_generator"] + "\n" + _WRAPPER
    )
    r = sb.run_call(program, _WRAPPER_FN, [[seed, n, params]], timeout=timeout)
    if r.status != "ok":
        reason = r.status
        if r.status in ("error", "syntax_error") and r.error:
            reason = f"{r.status}: {r.error.get('etype', '')}".rstrip(": ")
        return {"ok": False, "reason": reason}
    try:
        case = r.case(0)
    except ValueError:  # MalformedResult: the reference's own output did not decode
        case = None
    if case is None:
        return {"ok": False, "reason": "no result"}
    if not case.get("ok"):
        msg = case.get("msg", "")
        if "kwargs mismatch" in msg:
            return {"ok": False, "reason": "kwargs mismatch"}
        if "nondeterministic" in msg:
            return {"ok": False, "reason": "nondeterministic reference"}
        if case.get("etype") == "NotPlainValue":
            return {"ok": False, "reason": "non-plain output"}
        return {"ok": False, "reason": f"exception: {case.get('etype', '?')}"}
    cases = case["out"]
    # Both reference runs came back wire-encoded: equal encodings mean equal plain values.
    if any(json.dumps(c[1], sort_keys=True) != json.dumps(c[2], sort_keys=True) for c in cases):
        return {"ok": False, "reason": "nondeterministic reference"}
    cases = [[c[0], c[1]] for c in cases]
    if len(json.dumps(cases)) > MAX_ENCODED_BYTES:
        return {"ok": False, "reason": "cases too large"}
    return {"ok": True, "params": params, "cases": cases}


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data.get("results", {}) if data.get("version") == WRAPPER_VERSION else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable CodeI/O cache %s (%s)", path, e)
        return {}


def _write_cache(path: Path, results: dict) -> None:
    atomic_write_text(path, json.dumps({"version": WRAPPER_VERSION, "results": results}))
