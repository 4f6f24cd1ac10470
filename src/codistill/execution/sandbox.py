"""The trusted side of the sandbox: a pool of isolated worker processes.

``Sandbox`` starts ``workers`` long-lived worker interpreters (see :mod:`.worker` for what each
does to isolate itself and the programs it runs) and hands them jobs over pipes. Model-written
code never runs in this process. Use it as a context manager::

    with Sandbox(SandboxConfig(workers=2)) as sb:
        res = sb.run_python("print(input()[::-1])", stdin="abc\\n")
        assert res.status == "ok" and res.stdout == "cba\\n"
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_SRC_DIR = str(Path(__file__).resolve().parents[2])  # the folder holding the codistill package

SAFE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


# What model-written programs and reference solutions import beyond the standard library (CodeI/O's
# 3,002 references: numpy 739, sympy 45, scipy 6, yaml 3, dateutil 2, six 2). None carries benchmark data.
DEFAULT_PACKAGES = ("numpy", "scipy", "sympy", "mpmath", "yaml", "dateutil", "six", "networkx", "sortedcontainers")


class SandboxConfig(BaseModel):
    """Limits for every program run in the sandbox."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, description="worker processes (default: CPU cores)")
    timeout_s: float = Field(10.0, gt=0, description="default wall-clock seconds per program")
    memory_mb: int = Field(4096, ge=64, description="address-space limit per program (RLIMIT_AS), MiB")
    fsize_mb: int = Field(64, ge=1, description="largest file a program may write (RLIMIT_FSIZE), MiB")
    nofile: int = Field(128, ge=16, description="open file descriptors per program (RLIMIT_NOFILE)")
    nproc: int = Field(32, ge=1, description="processes per sandbox uid (RLIMIT_NPROC; root mode)")
    tmpfs_mb: int = Field(512, ge=16, description="size of each worker's private /tmp (tmpfs), MiB")
    isolate_network: bool = Field(True, description="give workers their own empty network namespace")
    stdout_cap: int = Field(16 << 20, description="bytes of stdout kept for stdio tests")
    packages: list[str] = Field(
        list(DEFAULT_PACKAGES), description="third-party packages programs may import (bound read-only into the "
        "sandbox; those not installed are skipped); every other site-packages entry is hidden")
    expose: list[str] = Field([], description="extra host paths programs may read (read-only binds)")
    max_line_mb: int = Field(16, ge=1, description="largest result line (one case's output) a program may send, MiB")
    max_result_mb: int = Field(256, ge=1, description="result data per program, MiB (the judge holds at most this much "
                               "undecoded per running program, and decodes lines over 1 MiB one at a time; HumanEval/130's "
                               "reference sends ~110 MiB of float lists)")
    uid_base: int | None = Field(
        None, description="worker i runs programs as uid/gid uid_base + i (root mode); default: "
        "derived from this process's pid so that concurrent sandboxes do not share uids")


LAZY_BYTES = 1 << 20  # result lines longer than this are decoded only when read (RunResult.case)


class MalformedResult(ValueError):
    """Bytes from the untrusted child that do not decode to what the harness writes."""


@dataclass
class RunResult:
    """Outcome of one sandboxed run, before any comparison with expected values."""

    status: str  # ok | timeout | memory | output_limit | syntax_error | error | sandbox_error
    lines: list[dict] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    time_s: float = 0.0
    error: dict | None = None
    completed: bool = False  # the harness reached its end (nonce checked)
    raw: dict = field(default_factory=dict, repr=False)
    case_times: dict[int, float] = field(default_factory=dict)  # per case, on the worker's clock
    timeout_case: int | None = None  # the case whose time limit ran out, if one did
    _cases: dict[int, dict] | None = field(default=None, repr=False, compare=False)

    def case(self, i: int) -> dict | None:
        """Result line of call-based case ``i`` (decoded now if it is large); None if absent.

        Raises MalformedResult when the program's bytes are not a line the harness writes."""
        if self._cases is None:  # index once: a suite reads every case (HumanEval+ has up to ~1,000)
            self._cases = {}
            for line in self.lines:
                if line.get("ev") == "case":
                    self._cases.setdefault(line.get("i"), line)
        m = self._cases.get(i)
        if m is None or "_raw" not in m:
            return m
        return _decode_line(m["_raw"], "case", i)

    def case_bytes(self, i: int) -> bytes | None:
        """The undecoded line of case ``i`` as the program sent it (None if it was decoded on
        arrival or is absent): a judge may compare it with the line the harness writes for the
        expected value before decoding anything."""
        if self._cases is None:
            self.case(-1)
        m = self._cases.get(i)
        return m.get("_raw") if m is not None else None


class SandboxError(RuntimeError):
    pass


def _decode_line(raw: bytes, kind: str, i: int | None) -> dict:
    """Decode one result line and check it says what the worker framed it as. Every failure --
    bad UTF-8, bad or too deeply nested JSON, a non-object, disagreeing keys -- is MalformedResult."""
    try:
        msg = json.loads(raw)
    except Exception as e:  # noqa: BLE001 - ValueError, RecursionError, MemoryError: all the program's
        raise MalformedResult(f"unreadable result line ({type(e).__name__})") from None
    if type(msg) is not dict or msg.get("ev") != kind or (kind == "case" and msg.get("i") != i):
        raise MalformedResult("a result line that does not match its frame")
    return msg


def _parse_lines(payload: bytes, events: list) -> list[dict]:
    """The child's result lines, as framed (kind, case index) by the worker. Case lines that say
    they carry an output (and any large case line) stay raw until read (RunResult.case); the
    others are decoded now. Raises MalformedResult."""
    raws = payload.split(b"\n")
    if raws and raws[-1] == b"":
        raws.pop()
    if len(raws) != len(events):
        raise MalformedResult("result lines and their frames disagree")
    out = []
    for raw, (kind, i, _dt) in zip(raws, events):
        if kind == "case" and (len(raw) > LAZY_BYTES or raw.startswith(_OK_PREFIX % i)):
            out.append({"ev": "case", "i": i, "_raw": raw})
        else:
            out.append(_decode_line(raw, kind, i))
    return out


_OK_PREFIX = b'{"ev": "case", "i": %d, "ok": true, "out": '  # how the harness starts a case's output line


def case_line(i: int, enc: Any, dumps: Callable[[Any], str] = json.dumps) -> bytes:
    """The line the harness writes for case ``i`` when the output's encoding is ``enc``
    (``dumps``: json.dumps or a :func:`codistill.execution.wire.json_writer`)."""
    return _OK_PREFIX % i + dumps(enc).encode() + b"}"


def _worker_stderr(f) -> str:
    try:
        f.seek(0)
        text = f.read()[-4000:].decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        return ""
    return text


class _Worker:
    def __init__(self, index: int, cfg: SandboxConfig):
        import tempfile

        self.index = index
        base = cfg.uid_base if cfg.uid_base is not None else 200_000 + (os.getpid() % 100_000) * 64
        self.uid = base + index
        wcfg = {"index": index, "uid": self.uid, "tmpfs_mb": cfg.tmpfs_mb, "isolate_network": cfg.isolate_network,
                "parent": os.getpid(), "packages": cfg.packages, "expose": cfg.expose}
        boot = (
            "import sys, json; sys.path[:0] = json.loads(sys.argv[2]); "
            "from codistill.execution.worker import main; main()"
        )
        self.stderr = tempfile.TemporaryFile(prefix="codistill-worker-stderr-")
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", boot, json.dumps(wcfg), json.dumps([_SRC_DIR])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=dict(SAFE_ENV),
            cwd="/",
            start_new_session=True,
        )
        line = self.proc.stdout.readline()
        try:
            hello = json.loads(line) if line else None
        except ValueError:
            hello = None
        if not hello or not hello.get("ready"):
            self.proc.kill()
            code = self.proc.wait()
            why = _worker_stderr(self.stderr) or "(it wrote nothing on stderr)"
            raise SandboxError(
                f"sandbox worker {index} failed to start (exit {code}). Its stderr:\n{why}\n"
                f"The worker is `{sys.executable} -I` importing codistill from {_SRC_DIR}; check that this "
                "interpreter can import codistill.execution.worker there (e.g. run that command by hand), and "
                "that the process may create namespaces (see README: the sandbox).")
        self.isolation = hello.get("isolation", {})

    def call(self, job: dict) -> dict:
        data = (json.dumps(job) + "\n").encode()
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SandboxError(f"sandbox worker {self.index} died (exit {self.proc.poll()}): "
                               f"{_worker_stderr(self.stderr)[-500:]}")
        header = json.loads(line)
        n = int(header.pop("payload_bytes", 0))
        payload = self.proc.stdout.read(n) if n else b""
        if len(payload) != n:
            raise SandboxError(f"sandbox worker {self.index} died mid-answer")
        try:
            header["lines"] = _parse_lines(payload, header.get("events", []))
        except MalformedResult as e:
            header["lines"], header["malformed"] = [], str(e)
        return header

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


class Sandbox:
    """A pool of isolated workers; thread-safe ``run``; ``map`` runs jobs in parallel."""

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig()
        self._workers: list[_Worker] = []
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self.isolation: dict = {}

    # lifecycle ----------------------------------------------------------------------------
    def start(self) -> "Sandbox":
        if self._workers:
            return self
        for i in range(self.config.workers):
            w = _Worker(i, self.config)
            self._workers.append(w)
            self._idle.put(w)
        self.isolation = self._workers[0].isolation
        for problem in self.isolation.get("degraded", []):
            logging.getLogger(__name__).warning("sandbox isolation degraded: %s", problem)
        return self

    @property
    def uids(self) -> list[int]:
        """The unprivileged uids programs run as (root mode), one per worker."""
        return [w.uid for w in self._workers]

    def close(self) -> None:
        for w in self._workers:
            w.close()
        self._workers.clear()
        self._idle = queue.Queue()

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # jobs ---------------------------------------------------------------------------------
    def _job(self, mode: str, program: str, timeout_s: float | None, **extra: Any) -> dict:
        cfg = self.config
        timeout = float(timeout_s or cfg.timeout_s)
        job = {
            "mode": mode,
            "program": program,
            "timeout_s": timeout,
            "nonce": secrets.token_hex(16),
            "env": dict(SAFE_ENV),
            "limits": {
                "memory_mb": cfg.memory_mb,
                "cpu_s": math.ceil(timeout) + 1,
                "fsize_mb": cfg.fsize_mb,
                "nofile": cfg.nofile,
                "nproc": cfg.nproc,
            },
            "stdout_cap": cfg.stdout_cap,
            "max_line_bytes": cfg.max_line_mb << 20,
            "max_result_bytes": cfg.max_result_mb << 20,
        }
        job.update(extra)
        return job

    def run_job(self, job: dict) -> RunResult:
        if not self._workers:
            self.start()
        w = self._idle.get()
        try:
            try:
                raw = w.call(job)
            except (SandboxError, OSError, ValueError) as e:
                raw = {"lines": [], "sandbox_error": str(e)}
                self._replace(w)
                w = None
        finally:
            if w is not None:
                self._idle.put(w)
        return classify(raw, job["nonce"])

    def _replace(self, dead: _Worker) -> None:
        with self._lock:
            try:
                dead.proc.kill()
            except Exception:  # noqa: BLE001
                pass
            fresh = _Worker(dead.index, self.config)
            self._workers[self._workers.index(dead)] = fresh
            self._idle.put(fresh)

    def run_python(self, program: str, stdin: str = "", timeout: float | None = None) -> RunResult:
        """Run a program as ``__main__`` with the given stdin; capture stdout and stderr."""
        return self.run_job(self._job("script", program, timeout, stdin=stdin, capture_stdout=True))

    def run_call(
        self,
        program: str,
        fn_name: str,
        inputs: list,
        timeout: float | None = None,
        case_limits: list[float] | None = None,
        oracle: str | None = None,
        allow_digest: bool | list[int] | str = False,
    ) -> RunResult:
        """Call ``fn_name(*args)`` for each args list; returns the wire-encoded outputs in lines.

        ``allow_digest``: large outputs (without NaN, inf, complex) come back as a sha256 of their
        canonical form (see :func:`codistill.execution.wire.maybe_digest`) instead of the value
        itself — for every case (True), for the listed case indices, or ``"reference"``: only
        until EvalPlus's float tolerance switches on (a reference solution's run, where the
        expected outputs are not known yet).
        """
        return self.run_job(
            self._job("call", program, timeout, fn_name=fn_name, inputs=inputs, case_limits=case_limits, oracle=oracle,
                      allow_digest=allow_digest)
        )

    def run_assert(
        self, program: str, test_program: str, entry_point: str | None, setup: str = "",
        call: str | None = None, timeout: float | None = None,
    ) -> RunResult:
        return self.run_job(
            self._job("assert", program, timeout, test_program=test_program, entry_point=entry_point, setup=setup, call=call)
        )

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], on_done: Callable[[Any], None] | None = None) -> list:
        """Apply ``fn`` (which calls ``run_*``) to items with one thread per worker, in order."""
        from concurrent.futures import ThreadPoolExecutor

        items = list(items)
        if not self._workers:
            self.start()
        with ThreadPoolExecutor(max_workers=len(self._workers)) as ex:
            futures = [ex.submit(fn, it) for it in items]
            results = []
            for fut in futures:
                res = fut.result()
                if on_done is not None:
                    on_done(res)
                results.append(res)
        return results


_SIGNAL_STATUS = {
    int(signal.SIGXFSZ): "output_limit",
    int(signal.SIGXCPU): "timeout",
    int(signal.SIGKILL): "memory",  # not sent by us (ours is reported as 'timeout'): the OOM killer
}


def classify(raw: dict, nonce: str) -> RunResult:
    """Turn a worker's raw answer into a RunResult with a run-level status.

    Only the worker's own header can make a run a ``sandbox_error`` (codistill's failure); anything
    the program wrote is read as the program's: a line it forged, reordered or garbled is an
    ``error``."""
    lines = raw.get("lines", [])
    res = RunResult(status="ok", lines=lines, stdout=raw.get("stdout", ""), stderr=raw.get("stderr", ""),
                    time_s=raw.get("time_s", 0.0), raw=raw)
    decoded = [m for m in lines if "_raw" not in m]  # undecoded lines are case outputs
    res.completed = any(m.get("ev") == "done" and m.get("nonce") == nonce for m in decoded)
    res.case_times = {i: dt for kind, i, dt in raw.get("events", []) if kind == "case"}
    res.timeout_case = raw.get("timeout_case")
    errors = [m for m in decoded if m.get("ev") == "error"]
    if raw.get("sandbox_error"):
        res.status = "sandbox_error"
        res.error = {"msg": raw["sandbox_error"]}
    elif raw.get("limit") == "timeout":
        res.status = "timeout"
    elif raw.get("limit") == "output_limit":
        res.status = "output_limit"
        res.error = {"msg": raw.get("limit_what", "")}
    elif raw.get("violation") or raw.get("malformed"):
        res.status = "error"
        res.error = {"msg": "the program wrote to codistill's result channel: "
                     + (raw.get("violation") or raw.get("malformed"))}
    elif errors:
        err = errors[0]
        res.error = err
        if err.get("stage") == "compile" and err.get("etype") in ("SyntaxError", "IndentationError", "TabError", "ValueError"):
            res.status = "syntax_error"
        elif err.get("etype") == "MemoryError":
            res.status = "memory"
        else:
            res.status = "error"
    elif raw.get("signal") is not None:
        res.status = _SIGNAL_STATUS.get(raw["signal"], "error")
        res.error = {"msg": f"killed by signal {raw['signal']}"}
    elif not res.completed:
        res.status = "error"
        res.error = {"msg": "the program ended before its tests finished (exit before tests?)",
                     "exit_code": raw.get("exit_code")}
    if res.status == "ok" and any(m.get("ev") == "case" and m.get("etype") == "MemoryError" for m in decoded):
        res.status = "memory"
    return res
