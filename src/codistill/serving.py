"""Serve a GGUF model over an OpenAI-compatible HTTP API on loopback (llama.cpp): the packaged
teacher for the teach stage, and students for ``eval --backend llama-server``
(:mod:`codistill.backends.llama_server`). A module of its own so that backends do not import the
teacher stage.

``codistill serve-teacher`` -> :func:`serve`. Two engines:

* ``xllamacpp`` (default): llama.cpp's own C++ server (``llama-server``) embedded in this process
  from a prebuilt wheel (``pip install xllamacpp==2026.10.11549``, ~1 s). It has parallel slots
  with continuous batching (``n_parallel`` requests decode together), prompt caching, ``/health``,
  ``/v1/chat/completions``, ``/v1/completions`` and ``/metrics``.
* ``llama-cpp-python``: ``python -m llama_cpp.server`` in a child process. Source-only package
  (~6 min build with the flags in :data:`codistill.backends.llamacpp.INSTALL_COMMAND`); its server
  wraps one ``Llama`` object and answers requests one at a time (no parallel slots), so
  ``n_parallel`` is ignored there. Offered because it is the best-known server.

Threads. llama.cpp's worker threads meet at a spin barrier after every layer: when the machine is
busy with other jobs, a thread that is descheduled stalls all the others. Measured here on 2 shared
cores (load average ~7) for the 1.5B teacher: 2 threads 0.6 tok/s, 1 thread 11 tok/s. So the
default thread count is :func:`codistill.cpu.default_threads`: the cores this process may run on,
less those other processes keep busy at this moment (``/proc/stat`` sampled over 0.5 s, not the
load average, which still counts our own previous stage), at least 1; busy-polling is off
(``poll=0``). Pass ``threads=`` (or set ``CODISTILL_THREADS``) to override.

Only loopback addresses are served unless ``allow_remote=True``: the server has no API key.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = [
    "ENGINES",
    "TeacherServer",
    "default_threads",
    "ensure_server",
    "is_healthy",
    "serve",
    "start_server",
    "wait_healthy",
]

log = logging.getLogger(__name__)

ENGINES = ("xllamacpp", "llama-cpp-python")
XLLAMACPP_REQUIREMENT = "xllamacpp==2026.10.11549"
DEFAULT_PORT = 8731


def default_threads(requested: int | None = None) -> int:
    """llama.cpp threads: see :func:`codistill.cpu.default_threads`."""
    from codistill.cpu import default_threads as choose

    return choose(requested, what="llama.cpp threads")


def _check_host(host: str, allow_remote: bool) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not allow_remote:
        raise ValueError(f"refusing to serve the teacher on {host!r}: the server has no API key. "
                         "Use 127.0.0.1, or pass allow_remote=True if you really mean it.")


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def is_healthy(base_url: str, timeout: float = 2.0) -> bool:
    """True when ``{base_url}/health`` answers 200 (model loaded)."""
    url = base_url.rstrip("/")
    if url.endswith("/v1"):
        url = url[:-3]
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_healthy(base_url: str, timeout: float = 300.0, proc: subprocess.Popen | None = None) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if is_healthy(base_url):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited with code {proc.returncode} before it was ready")
        time.sleep(0.5)
    raise TimeoutError(f"llama.cpp server at {base_url} not healthy after {timeout:.0f} s")


def _model_path(model: str) -> Path:
    from codistill import models

    if model in models.MODELS:
        return models.gguf_path(model)
    path = Path(model).expanduser()
    if path.suffix != ".gguf" or not path.is_file():
        raise ValueError(f"teacher model must be a packaged name ({', '.join(models.MODELS)}) or a .gguf "
                         f"file, got {model!r}")
    return path


class TeacherServer:
    """A running llama.cpp server. ``base_url`` ends in ``/v1``; ``stop()`` (or ``with``) ends it."""

    def __init__(self, base_url: str, engine: str, model: str, n_parallel: int, ctx: int, threads: int,
                 handle=None, proc: subprocess.Popen | None = None, load_s: float = 0.0):
        self.base_url = base_url
        self.engine = engine
        self.model = model
        self.n_parallel = n_parallel
        self.ctx = ctx
        self.threads = threads
        self.load_s = load_s
        self._handle = handle
        self._proc = proc

    def info(self) -> dict:
        return {"base_url": self.base_url, "engine": self.engine, "model": self.model,
                "n_parallel": self.n_parallel, "ctx_per_slot": self.ctx, "threads": self.threads,
                "load_s": round(self.load_s, 2)}

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None
        self._handle = None  # xllamacpp stops its server when the object is released

    def __enter__(self) -> "TeacherServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(model: str = "qwen2.5-coder-1.5b", host: str = "127.0.0.1", port: int | None = None,
                 n_parallel: int = 4, ctx: int = 4096, threads: int | None = None,
                 engine: str = "xllamacpp", allow_remote: bool = False,
                 ready_timeout: float = 300.0, lora: list[str | Path] | None = None,
                 quiet: bool = False) -> TeacherServer:
    """Start a server and return once it is healthy. ``ctx`` is the context per slot (tokens);
    ``port=None`` picks a free one. ``lora``: GGUF LoRA adapters applied at scale 1 (see
    :mod:`codistill.backends.lora_gguf` for converting a PEFT adapter); xllamacpp engine only.
    ``quiet``: drop llama.cpp's own log lines (xllamacpp; failures still surface as HTTP errors)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if n_parallel < 1 or ctx < 256:
        raise ValueError("n_parallel must be >= 1 and ctx >= 256")
    _check_host(host, allow_remote)
    path = _model_path(model)
    port = port or _free_port(host)
    threads = default_threads(threads)
    base = f"http://{host}:{port}"
    t0 = time.monotonic()
    if engine == "xllamacpp":
        try:
            import xllamacpp as xlc
        except ImportError as e:
            raise ImportError(f"the xllamacpp engine needs `pip install {XLLAMACPP_REQUIREMENT}` "
                              "(prebuilt wheel), or use engine='llama-cpp-python'") from e
        p = xlc.CommonParams()
        p.model.path = str(path)
        if quiet:
            p.verbosity = -1  # llama.cpp prints a line when its verbosity <= this threshold
        if lora:
            p.lora_adapters = [xlc.CommonAdapterLoraInfo(str(Path(x).resolve()), 1.0) for x in lora]
        p.n_parallel = n_parallel
        p.n_ctx = ctx * n_parallel  # llama.cpp splits n_ctx over the slots
        p.hostnames = [host]
        p.port = port
        p.model_alias = {model} if isinstance(p.model_alias, set) else model
        for cp in (p.cpuparams, p.cpuparams_batch):
            cp.n_threads = threads
            cp.poll = 0  # no busy-waiting: see the module docstring
        p.endpoint_metrics = True
        handle = xlc.Server(p)
        wait_healthy(base, ready_timeout)
        srv = TeacherServer(base + "/v1", engine, model, n_parallel, ctx, threads, handle=handle,
                            load_s=time.monotonic() - t0)
    else:
        if lora:
            raise ValueError("LoRA adapters are supported with engine='xllamacpp' only")
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", host,
               "--port", str(port), "--n_ctx", str(ctx), "--n_threads", str(threads),
               "--model_alias", model]
        proc = subprocess.Popen(cmd)
        try:
            wait_healthy(base, ready_timeout, proc)
        except BaseException:
            proc.kill()
            raise
        srv = TeacherServer(base + "/v1", engine, model, 1, ctx, threads, proc=proc,
                            load_s=time.monotonic() - t0)
    log.info("llama.cpp server ready: %s", json.dumps(srv.info()))
    return srv


def ensure_server(base_url: str | None = None, **kw) -> tuple[str, TeacherServer | None]:
    """Reuse a healthy server at ``base_url`` or start one (``kw`` go to :func:`start_server`).
    Returns ``(base_url, server or None if reused)``."""
    if base_url and is_healthy(base_url):
        return base_url, None
    if base_url:
        from urllib.parse import urlparse

        u = urlparse(base_url)
        kw.setdefault("host", u.hostname or "127.0.0.1")
        kw.setdefault("port", u.port)
    srv = start_server(**kw)
    return srv.base_url, srv


def serve(model: str = "qwen2.5-coder-1.5b", host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          n_parallel: int = 4, ctx: int = 4096, threads: int | None = None, engine: str = "xllamacpp",
          allow_remote: bool = False) -> None:
    """Run the teacher server in the foreground until SIGINT/SIGTERM (``codistill serve-teacher``)."""
    srv = start_server(model=model, host=host, port=port, n_parallel=n_parallel, ctx=ctx,
                       threads=threads, engine=engine, allow_remote=allow_remote)
    print(json.dumps({"serving": srv.info()}), flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        srv.stop()


if __name__ == "__main__":  # python -m codistill.serving: the `codistill serve-teacher` verb
    from codistill.cli import main

    sys.exit(main(["serve-teacher", *sys.argv[1:]]))
