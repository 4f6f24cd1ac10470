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
    uid_base: int | None = Field(
        None, description="worker i runs programs as uid/gid uid_base + i (root mode); default: "
        "derived from this process's pid so that concurrent sandboxes do not share uids")


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


class SandboxError(RuntimeError):
    pass


def _parse_lines(payload: bytes) -> list[dict]:
    """Result lines written by the untrusted child: parse, skip anything that is not a JSON object."""
    out = []
    for raw in payload.split(b"\n"):
        if not raw:
            continue
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if isinstance(msg, dict):
            out.append(msg)
    return out


class _Worker:
    def __init__(self, index: int, cfg: SandboxConfig):
        self.index = index
        base = cfg.uid_base if cfg.uid_base is not None else 200_000 + (os.getpid() % 100_000) * 64
        self.uid = base + index
        wcfg = {"index": index, "uid": self.uid, "tmpfs_mb": cfg.tmpfs_mb, "isolate_network": cfg.isolate_network}
        boot = (
            "import sys, json; sys.path[:0] = json.loads(sys.argv[2]); "
            "from codistill.execution.worker import main; main()"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", boot, json.dumps(wcfg), json.dumps([_SRC_DIR])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(SAFE_ENV),
            cwd="/",
            start_new_session=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise SandboxError(f"sandbox worker {index} failed to start (exit {self.proc.poll()})")
        hello = json.loads(line)
        self.isolation = hello.get("isolation", {})

    def call(self, job: dict) -> dict:
        data = (json.dumps(job) + "\n").encode()
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SandboxError(f"sandbox worker {self.index} died (exit {self.proc.poll()})")
        header = json.loads(line)
        n = int(header.pop("payload_bytes", 0))
        payload = self.proc.stdout.read(n) if n else b""
        if len(payload) != n:
            raise SandboxError(f"sandbox worker {self.index} died mid-answer")
        header["lines"] = _parse_lines(payload)
        return header

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001
            self.proc.kill()
            self.proc.wait()


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
        allow_digest: bool | list[int] = False,
    ) -> RunResult:
        """Call ``fn_name(*args)`` for each args list; returns the wire-encoded outputs in lines.

        ``allow_digest``: large float-free outputs come back as a sha256 of their canonical form
        (see :func:`codistill.execution.wire.maybe_digest`) instead of the value itself — for
        every case (True) or for the listed case indices.
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
    """Turn a worker's raw answer into a RunResult with a run-level status."""
    lines = raw.get("lines", [])
    res = RunResult(status="ok", lines=lines, stdout=raw.get("stdout", ""), stderr=raw.get("stderr", ""),
                    time_s=raw.get("time_s", 0.0), raw=raw)
    res.completed = any(m.get("ev") == "done" and m.get("nonce") == nonce for m in lines)
    errors = [m for m in lines if m.get("ev") == "error"]
    if raw.get("sandbox_error") or any(m.get("ev") == "sandbox_error" for m in lines):
        res.status = "sandbox_error"
        res.error = {"msg": raw.get("sandbox_error") or next(m for m in lines if m.get("ev") == "sandbox_error")["msg"]}
    elif raw.get("limit") == "timeout":
        res.status = "timeout"
    elif raw.get("limit") == "output_limit":
        res.status = "output_limit"
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
    if res.status == "ok" and any(m.get("ev") == "case" and m.get("etype") == "MemoryError" for m in lines):
        res.status = "memory"
    return res
