"""The sandbox worker: a long-lived, isolated process that runs one untrusted program per fork.

Started by :class:`codistill.execution.sandbox.Sandbox` as a fresh interpreter (``python -I``)
with a scrubbed environment. At start it imports everything the harness needs, then isolates
itself: its own network, mount and PID namespaces (it is PID 1 of the latter), and an allow-list
view of the filesystem (:mod:`.fsview`) into which it pivots. It then serves jobs read as JSON
lines on stdin, answering one JSON header line plus the program's result lines per job on
stdout. For every program it forks a child (1-2 ms, instead of ~135 ms for a new interpreter) that:

1. starts a new session (its own process group) and, where mounts are available, its own mount
   namespace with a fresh tmpfs on ``/tmp``, ``/var/tmp`` and ``/dev/shm`` (nothing carries over
   from one program to the next);
2. gets stdin/stdout/stderr as anonymous memory files (``memfd``) created by the worker, which
   reads them back through its own descriptors after the run (never by path), and the result
   pipe as fd 3; every other descriptor is closed;
3. sets rlimits (address space, CPU seconds, file size, open files, processes, no core dumps);
4. when the worker runs as root: drops to a per-worker unprivileged uid/gid;
5. reports "set up" on a private pipe it then closes, and runs the program and the tests.

The worker is the only judge of time and framing (:mod:`.framing`): it timestamps every result
line when it reads it (at most 1 ms after it arrives), checks each call-based case against its
limit on that clock (the program's own clocks are never consulted), accepts only the lines the
harness writes in the order it writes them, and caps their size. This module imports only the
stdlib (and codistill's own stdlib-only modules).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import select
import signal
import sys
import time

from codistill.execution import fsview
from codistill.execution.framing import Reader

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1

SANDBOX_UID_DEFAULT = 61000  # worker runs its children as this uid/gid unless told otherwise (root mode)
EXCERPT = 2000

_PREIMPORT = (
    "math re heapq collections itertools functools string bisect typing random hashlib "
    "statistics fractions decimal operator copy array datetime json traceback base64 types"
).split()


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> bool:
    return _libc().unshare(flags) == 0


# --------------------------------------------------------------------------------------------
# Isolation of the worker itself
# --------------------------------------------------------------------------------------------
def isolate(cfg: dict) -> dict:
    """Give the worker its own network and mount namespaces where the OS allows.

    Returns a description of what was achieved; the parent reports it (``Sandbox.isolation``).
    """
    info = {"root": os.geteuid() == 0, "network": False, "mounts": False, "uid_drop": False}
    flags = CLONE_NEWNS | (CLONE_NEWNET if cfg.get("isolate_network", True) else 0)
    if info["root"]:
        ok = _unshare(flags)
    else:
        # Unprivileged user namespaces let a normal user have private net + mounts too.
        ok = _unshare(CLONE_NEWUSER | flags)
    if ok:
        info["network"] = bool(flags & CLONE_NEWNET)
        try:
            fsview.mount("none", "/", None, fsview.MS_REC | fsview.MS_PRIVATE)
            info["mounts"] = True
        except OSError:
            pass
    return info


def _can_run_as(uid: int, dirs: list[str]) -> bool:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            for p in dirs:
                if os.path.isdir(p):
                    os.listdir(p)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# --------------------------------------------------------------------------------------------
# The child: scratch space, limits, privileges, then the untrusted program
# --------------------------------------------------------------------------------------------
def _apply_limits(lim: dict) -> None:
    mb = 1 << 20

    def setl(res, value):
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            soft, hard = resource.getrlimit(res)
            resource.setrlimit(res, (min(value, hard) if hard != resource.RLIM_INFINITY else value, hard))

    setl(resource.RLIMIT_AS, int(lim["memory_mb"]) * mb)
    setl(resource.RLIMIT_CPU, int(lim["cpu_s"]))
    setl(resource.RLIMIT_FSIZE, int(lim["fsize_mb"]) * mb)
    setl(resource.RLIMIT_NOFILE, int(lim["nofile"]))
    setl(resource.RLIMIT_CORE, 0)
    if lim.get("nproc"):
        setl(resource.RLIMIT_NPROC, int(lim["nproc"]))


_OWN: tuple[int, list[str]] = (-1, [])


def _own_modules() -> list[str]:
    """codistill's modules in sys.modules; listed once in the worker (a child that walks
    sys.modules writes to, and so copies, a page per module name)."""
    global _OWN
    if _OWN[0] != len(sys.modules):
        _OWN = (len(sys.modules), [m for m in sys.modules if m.split(".")[0] == "codistill"])
    return _OWN[1]


def _child_main(job: dict, fds: dict, uid: int | None, workdir: str | None, tmpfs_mb: int) -> None:
    """Runs in the forked child. Never returns: always ends with os._exit.

    Until the program starts, failures are codistill's: reported on the setup pipe (fd 4), which
    is closed before the program runs, so the program cannot claim to be an infrastructure fault.
    """
    try:
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        if workdir is None:
            fsview.fresh_scratch(tmpfs_mb)
            workdir = "/tmp"
        os.chdir(workdir)
        devnull = os.open(os.devnull, os.O_RDWR)
        # Move every source out of the way first, so that no dup2 below overwrites another source.
        order = [fds["stdin"], fds["stdout"], fds["stderr"], fds["result"], fds["setup"]]
        high = [fcntl.fcntl(devnull if fd is None else fd, fcntl.F_DUPFD, 1000 + k) for k, fd in enumerate(order)]
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        os.closerange(5, 65536)
        if uid is not None and workdir != "/tmp":
            os.chown(workdir, uid, uid)
        _apply_limits(job["limits"])
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        os.environ.clear()
        os.environ.update(job.get("env") or {})
        os.environ["HOME"] = workdir
        os.environ["TMPDIR"] = workdir
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        from codistill.execution import harness

        for name in _own_modules():
            del sys.modules[name]  # the program gets no handle on codistill by import (its files are not in view)
        os.write(4, b"OK")
        os.close(4)
    except BaseException as e:  # noqa: BLE001 - codistill's own failure, before the program
        try:
            os.write(4, f"ERR {type(e).__name__}: {e}".encode()[:2000])
        finally:
            os._exit(70)
    try:
        harness.run(job, 3)
    except BaseException:  # noqa: BLE001 - the program's doing; the verdict shows it
        pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        os._exit(0)


# --------------------------------------------------------------------------------------------
# The worker loop
# --------------------------------------------------------------------------------------------
def _become_pid_namespace_init() -> bool:
    """Make the worker PID 1 of a new PID namespace (fork once; the outer process only waits).

    Then ``kill(-1, SIGKILL)`` from the worker reaches every process a program left behind --
    also those that left its process group with ``setsid()`` -- and nothing outside. If the
    outer process dies, PR_SET_PDEATHSIG kills the worker, and with it the whole namespace.
    """
    if not _unshare(CLONE_NEWPID):
        return False
    pid = os.fork()
    if pid != 0:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _, status = os.waitpid(pid, 0)
        os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)
    _libc().prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    return os.getpid() == 1


def _kill_all(pid: int, uid: int | None, pid_ns: bool = False) -> None:
    """Kill everything a program left behind.

    As PID 1 of its own namespace the worker sends one ``kill(-1, SIGKILL)`` (every process in
    the namespace but itself) and reaps. Otherwise: the program's process group, then in root
    mode every process of the sandbox uid (a helper forked as that uid calls ``kill(-1)``).
    """
    if pid_ns:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while True:
            try:
                if os.waitpid(-1, 0)[0] == 0:
                    break
            except ChildProcessError:
                break
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if uid is None:
        return
    helper = os.fork()
    if helper == 0:
        try:
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)  # every process this uid may signal, i.e. its own
        finally:
            os._exit(0)
    os.waitpid(helper, 0)


def _read_fd(fd: int, limit: int) -> str:
    """The first ``limit`` bytes of a memory file the program wrote, read through our own fd."""
    try:
        data = os.pread(fd, limit + 1, 0)
    except OSError:
        return ""
    text = data[:limit].decode("utf-8", "replace")
    return text + ("…[truncated]" if len(data) > limit else "")


def _memfd(name: str, content: bytes | None = None) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    if content:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    return fd


_PAUSE = 0.001  # seconds: the worker reads small result lines at most this often (see run_one)
_PIPE_BYTES = 1 << 20


def run_one(job: dict, uid: int | None, workdir: str | None, tmpfs_mb: int, pid_ns: bool = False) -> tuple[dict, bytes]:
    """Fork a child for one program, enforce time limits, collect its result lines."""
    stdin = job.get("stdin")
    fds = {"stdin": _memfd("stdin", stdin.encode("utf-8")) if stdin is not None else None,
           "stdout": _memfd("stdout") if job.get("capture_stdout") else None,
           "stderr": _memfd("stderr")}
    rfd, fds["result"] = os.pipe()
    try:
        fcntl.fcntl(rfd, 1031, _PIPE_BYTES)  # F_SETPIPE_SZ: the child may run this far ahead of a pause
    except OSError:
        pass
    sfd, fds["setup"] = os.pipe()
    _own_modules()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        os.close(sfd)
        _child_main(job, fds, uid, workdir, tmpfs_mb)
    os.close(fds["result"])
    os.close(fds["setup"])

    deadline = t0 + float(job["timeout_s"])
    reader = Reader(job, t0)
    # Watch the child itself too: a background process it left holding the pipe must not
    # keep the run alive after the program has finished.
    pidfd = os.pidfd_open(pid)
    child_done = False
    while reader.reason is None:
        now = time.monotonic()
        limit_at = deadline if reader.case_deadline is None else min(deadline, reader.case_deadline)
        if limit_at - now <= 0:
            # A line may have come during a pause (below): read it, stamped when the limit ran
            # out, before calling the case (or the run) out of time.
            chunk = os.read(rfd, 1 << 16) if rfd in select.select([rfd], [], [], 0)[0] else b""
            if chunk:
                reader.feed(chunk, limit_at)
                continue
            if reader.case_deadline is not None and reader.case_deadline <= deadline:
                reader._stop("timeout", timeout_case=reader.next_case, case_time=round(now - reader.last, 4))
            else:
                reader._stop("timeout")
            break
        ready, _, _ = select.select([rfd, pidfd], [], [], 0 if child_done else limit_at - now)
        if rfd in ready:
            chunk = os.read(rfd, 1 << 16)
            if not chunk:
                break  # every holder of the pipe is gone
            now = time.monotonic()
            reader.feed(chunk, now)
            if len(chunk) < 4096 and chunk.endswith(b"\n") and not child_done and reader.reason is None:
                # Between cases with small results: wake at most every _PAUSE s, not once per line
                # (a context switch per case, with the child, costs more than the case on a busy
                # machine). The pipe keeps what comes meanwhile; the pause ends when the child
                # exits or a limit runs out; lines are stamped at most _PAUSE late.
                limit_at = deadline if reader.case_deadline is None else min(deadline, reader.case_deadline)
                if min(_PAUSE, limit_at - now) > 0 and pidfd in select.select([pidfd], [], [], min(_PAUSE, limit_at - now))[0]:
                    child_done = True
        elif child_done:
            break  # child exited and the pipe is drained
        elif pidfd in ready:
            child_done = True
    os.close(pidfd)
    elapsed = time.monotonic() - t0
    if reader.reason:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    _kill_all(pid, uid, pid_ns)
    os.close(rfd)
    setup = b""
    while chunk := os.read(sfd, 4096):  # no writer is left: the child closed it or is dead
        setup += chunk
    os.close(sfd)
    payload = reader.payload()
    limit = reader.reason if reader.reason in ("timeout", "output_limit") else None
    result = {
        "id": job.get("id"),
        "payload_bytes": len(payload),
        "events": reader.events,
        "time_s": round(elapsed, 4),
        "limit": limit,
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "stderr": _read_fd(fds["stderr"], EXCERPT),
    }
    if reader.reason == "protocol":
        result["violation"] = reader.detail.get("what", "")
    elif reader.reason == "output_limit":
        result["limit_what"] = reader.detail.get("what", "")
    for k in ("timeout_case", "case_time"):
        if k in reader.detail:
            result[k] = reader.detail[k]
    if not setup.startswith(b"OK"):
        result["sandbox_error"] = setup[4:].decode("utf-8", "replace") if setup.startswith(b"ERR ") else \
            f"the sandboxed child died while being set up (status {status})"
        result["payload_bytes"], payload = 0, b""
    if fds["stdout"] is not None:
        result["stdout"] = _read_fd(fds["stdout"], int(job.get("stdout_cap", 16 << 20)))
    for fd in (fds["stdin"], fds["stdout"], fds["stderr"]):
        if fd is not None:
            os.close(fd)
    return result, payload


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)  # symlink-safe (fd-based) on Linux


def _die_with(parent: int) -> None:
    """End this worker when the process that started it dies (even by SIGKILL)."""
    _libc().prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:  # it died before we asked
        os._exit(1)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    _die_with(int(cfg.get("parent", os.getppid())))
    index = int(cfg.get("index", 0))
    # Import everything the children need while the host filesystem is still in view.
    for name in _PREIMPORT:
        try:
            __import__(name)
        except ImportError:
            pass
    from codistill.execution import harness  # noqa: F401  (warm for the children)

    libc = fsview._libc()
    libc.mount, libc.unshare  # noqa: B018 - looked up once here, not in every child
    view = fsview.plan(list(cfg.get("packages", [])), list(cfg.get("expose", [])))
    info = isolate(cfg)
    info["pid_ns"] = _become_pid_namespace_init()
    info["fs_view"] = "host"
    info["proc"] = "host"
    info["scratch"] = "per-worker directory"
    degraded = []
    if info["mounts"]:
        why = fsview.probe(view)
        if why is None:
            done = fsview.build(view, "/tmp", pid_ns=info["pid_ns"])
            info["fs_view"] = "allow-list"
            info["proc"] = done["proc"]
            info["scratch"] = "fresh tmpfs per program"
        else:
            degraded.append(f"allow-list filesystem view failed ({why}): programs see the host's files")
    else:
        degraded.append("no mount namespace: programs see the host's files and share a scratch directory")
    info["packages"] = [os.path.basename(p) for p in view["packages"]]
    info["packages_missing"] = view["missing_packages"]  # asked for, not installed: not importable either
    if info["root"]:
        uid = int(cfg.get("uid", SANDBOX_UID_DEFAULT))
        info["uid_drop"] = _can_run_as(uid, view["py_dirs"])
        if not info["uid_drop"]:
            degraded.append("the interpreter is not readable by an unprivileged uid: programs run as root")
    else:
        degraded.append("not root: programs run as this user (no uid drop, no per-sandbox process limit)")
    if not info["pid_ns"]:
        degraded.append("no PID namespace: host processes are visible, setsid() escapees are killed by uid only")
    if not info["network"]:
        degraded.append("no network namespace: programs can reach the network")
    info["degraded"] = degraded
    uid = int(cfg.get("uid", SANDBOX_UID_DEFAULT)) if info["uid_drop"] else None
    info["uid"] = uid
    scratch = None
    if info["scratch"] != "fresh tmpfs per program":
        import tempfile

        scratch = tempfile.mkdtemp(prefix=f"codistill-worker{index}-")
        os.chmod(scratch, 0o711)
    tmpfs_mb = int(cfg.get("tmpfs_mb", 512))

    out = sys.stdout.buffer
    out.write((json.dumps({"ready": True, "isolation": info, "pid": os.getpid()}) + "\n").encode())
    out.flush()
    seq = 0
    for raw in sys.stdin.buffer:
        if not raw.strip():
            continue
        job = json.loads(raw)
        seq += 1
        workdir = None
        try:
            if scratch is not None:
                workdir = os.path.join(scratch, f"job{seq}")
                os.makedirs(workdir, mode=0o700)
            res, payload = run_one(job, uid, workdir, tmpfs_mb, bool(info.get("pid_ns")))
        except Exception as e:  # noqa: BLE001
            res, payload = {"id": job.get("id"), "payload_bytes": 0, "sandbox_error": f"{type(e).__name__}: {e}"}, b""
        if workdir is not None:
            _rmtree(workdir)
        # A JSON header line, then exactly payload_bytes of raw result lines from the child.
        out.write((json.dumps(res) + "\n").encode())
        out.write(payload)
        out.flush()
    if scratch is not None:
        _rmtree(scratch)


if __name__ == "__main__":
    main()
