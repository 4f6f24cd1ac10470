"""The sandbox worker: a long-lived, isolated process that runs one untrusted program per fork.

Started by :class:`codistill.execution.sandbox.Sandbox` as a fresh interpreter (``python -I``)
with a scrubbed environment. At start it isolates itself (see :func:`isolate`), then serves jobs
read as JSON lines on stdin, answering one JSON line per job on stdout. For every program it
forks a child (1-2 ms, instead of ~135 ms for a new interpreter) that:

1. starts a new session (its own process group),
2. moves into a fresh working directory on a private, size-limited tmpfs,
3. closes every inherited file descriptor except its result pipe, points stdin/stdout/stderr
   at files in that directory (or /dev/null),
4. sets rlimits (address space, CPU seconds, file size, open files, processes, no core dumps),
5. when the worker runs as root: drops to a per-worker unprivileged uid/gid (so RLIMIT_NPROC is
   enforced, host files owned by root cannot be changed, other processes cannot be signalled),
6. runs the program and the tests, streaming one JSON line per test case to the result pipe.

The worker never sees expected outputs for call-based and stdio tests: it returns what the
program produced, and the trusted parent compares. This module imports only the stdlib.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import sys
import time

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_NOSUID = 2
MS_NODEV = 4

SANDBOX_UID_DEFAULT = 61000  # worker runs its children as this uid/gid unless told otherwise (root mode)
MAX_RESULT_BYTES = 256 << 20
EXCERPT = 2000

_PREIMPORT = (
    "math re heapq collections itertools functools string bisect typing random hashlib "
    "statistics fractions decimal operator copy array datetime json"
).split()


# --------------------------------------------------------------------------------------------
# Isolation of the worker itself
# --------------------------------------------------------------------------------------------
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> bool:
    return _libc().unshare(flags) == 0


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> bool:
    libc = _libc()
    res = libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    return res == 0


def isolate(cfg: dict) -> dict:
    """Give the worker its own network and mount namespaces where the OS allows.

    Returns a description of what was achieved; the parent reports it (``Sandbox.isolation``).
    """
    info = {"root": os.geteuid() == 0, "network": False, "mounts": False, "uid_drop": False}
    flags = CLONE_NEWNS | (CLONE_NEWNET if cfg.get("isolate_network", True) else 0)
    ok = False
    if info["root"]:
        ok = _unshare(flags)
    else:
        # Unprivileged user namespaces let a normal user have private net + mounts too.
        ok = _unshare(CLONE_NEWUSER | flags)
    if ok:
        info["network"] = bool(flags & CLONE_NEWNET)
        if _mount("none", "/", None, MS_REC | MS_PRIVATE, None):
            size = int(cfg.get("tmpfs_mb", 512))
            good = True
            for target in ("/tmp", "/var/tmp", "/dev/shm"):
                if os.path.isdir(target):
                    good &= _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size}m,mode=1777")
            info["mounts"] = good
    info["uid_drop"] = False
    if info["root"]:
        if info["mounts"]:
            _expose_interpreter()
        uid = int(cfg.get("uid", SANDBOX_UID_DEFAULT))
        info["uid_drop"] = _can_run_as(uid)
        if not info["uid_drop"]:
            info["uid_drop_problem"] = "the interpreter is not readable by an unprivileged uid"
    return info


def _needed_paths() -> list[str]:
    paths = {sys.prefix, sys.exec_prefix, sys.base_prefix, *sys.path}
    return sorted(os.path.realpath(p) for p in paths if p and os.path.exists(p))


def _expose_interpreter() -> None:
    """Let an unprivileged uid reach the interpreter when an ancestor (e.g. /root, mode 700) bars it.

    In the worker's private mount namespace only: the barring directory is covered by a small
    tmpfs (mode 755) into which just the needed child entries are bind-mounted back. The rest
    of that directory (e.g. the rest of /root) stays out of the sandbox's sight.
    """
    blocked: dict[str, set[str]] = {}
    for p in _needed_paths():
        cur = "/"
        for part in [x for x in p.split("/") if x]:
            if not (os.stat(cur).st_mode & 0o001):
                blocked.setdefault(cur, set()).add(part)
                break
            cur = os.path.join(cur, part)
    for j, (top, children) in enumerate(sorted(blocked.items())):
        stash = f"/tmp/.codistill-host{j}"
        os.makedirs(stash, exist_ok=True)
        os.chmod(stash, 0o700)
        if not _mount(top, stash, None, MS_BIND | MS_REC, None):
            continue
        if not _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755"):
            continue
        for child in children:
            src, dst = os.path.join(stash, child), os.path.join(top, child)
            if os.path.isdir(src):
                os.makedirs(dst, exist_ok=True)
            else:
                open(dst, "a").close()
            _mount(src, dst, None, MS_BIND | MS_REC, None)


def _can_run_as(uid: int) -> bool:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            for p in _needed_paths():
                if os.path.isdir(p):
                    os.listdir(p)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# --------------------------------------------------------------------------------------------
# The child: limits, privileges, then the untrusted program
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


def _child_main(job: dict, wfd: int, workdir: str, uid: int | None) -> None:
    """Runs in the forked child. Never returns: always ends with os._exit."""
    try:
        os.setsid()
        os.chdir(workdir)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        stdin_path = job.get("_stdin_path") or os.devnull
        out_path = os.path.join(workdir, "stdout") if job.get("capture_stdout") else os.devnull
        fd_in = os.open(stdin_path, os.O_RDONLY)
        fd_out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        fd_err = os.open(os.path.join(workdir, "stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd_in, 0)
        os.dup2(fd_out, 1)
        os.dup2(fd_err, 2)
        # Keep only stdio and the result pipe (moved to fd 3).
        os.dup2(wfd, 3)
        os.closerange(4, 65536)
        for fd in (fd_in, fd_out, fd_err, wfd):
            if fd > 3:
                pass  # closed by closerange above
        if uid is not None:
            os.chown(workdir, uid, uid)
            for name in ("stdout", "stderr"):
                p = os.path.join(workdir, name)
                if os.path.exists(p):
                    os.chown(p, uid, uid)
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

        harness.run(job, 3)
    except BaseException as e:  # noqa: BLE001 - report anything, then leave
        try:
            os.write(3, (json.dumps({"ev": "sandbox_error", "msg": f"{type(e).__name__}: {e}"}) + "\n").encode())
        except Exception:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
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
    _libc().prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
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


def _read_excerpt(path: str, limit: int = EXCERPT) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return ""
    text = data[:limit].decode("utf-8", "replace")
    return text + ("…[truncated]" if len(data) > limit else "")


def run_one(job: dict, scratch: str, uid: int | None, seq: int, pid_ns: bool = False) -> dict:
    """Fork a child for one program, enforce time limits, collect its result lines."""
    workdir = os.path.join(scratch, f"job{seq}")
    os.makedirs(workdir, mode=0o700)
    if job.get("stdin") is not None:
        path = os.path.join(workdir, "stdin")
        with open(path, "w", encoding="utf-8") as f:
            f.write(job["stdin"])
        job["_stdin_path"] = path
        if uid is not None:
            os.chown(path, uid, uid)
    rfd, wfd = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _child_main(job, wfd, workdir, uid)
    os.close(wfd)

    timeout = float(job["timeout_s"])
    case_limits = job.get("case_limits")  # per case seconds (EvalPlus style), optional
    deadline = t0 + timeout
    case_deadline = None
    buf = bytearray()
    line_start = scan_from = 0
    reason = None
    n_cases = 0
    # Watch the child itself too: a background process it left holding the pipe must not
    # keep the run alive after the program has finished.
    pidfd = os.pidfd_open(pid)
    child_done = False
    while True:
        now = time.monotonic()
        limit_at = deadline if case_deadline is None else min(deadline, case_deadline)
        wait = limit_at - now
        if wait <= 0:
            reason = "timeout"
            break
        ready, _, _ = select.select([rfd, pidfd], [], [], 0 if child_done else wait)
        if rfd in ready:
            chunk = os.read(rfd, 1 << 16)
            if not chunk:
                break  # every holder of the pipe is gone
        elif child_done:
            break  # child exited and the pipe is drained
        else:
            if pidfd in ready:
                child_done = True
            continue
        buf += chunk
        if len(buf) > MAX_RESULT_BYTES:
            reason = "output_limit"
            break
        # Lines are forwarded to the trusted parent unparsed; only their kind is looked at here
        # (the harness writes '{"ev": "<kind>", ...', json.dumps keeps key order).
        while (nl := buf.find(b"\n", scan_from)) >= 0:
            line = bytes(buf[line_start:nl])
            line_start = scan_from = nl + 1
            if case_limits and line.startswith(b'{"ev": "called"'):
                case_deadline = None  # the call returned a large output; encoding it is bounded by the task timeout
            elif case_limits and (line.startswith(b'{"ev": "case"') or line.startswith(b'{"ev": "loaded"')):
                if line.startswith(b'{"ev": "case"'):
                    n_cases += 1
                if n_cases < len(case_limits):
                    # Backstop only: the case's own limit is checked by the judge on the call
                    # time the child reports; this bound also covers encoding the output.
                    case_deadline = time.monotonic() + 2 * float(case_limits[n_cases]) + 1.0
                else:
                    case_deadline = None
        scan_from = len(buf)
    os.close(pidfd)
    elapsed = time.monotonic() - t0
    if reason:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    _kill_all(pid, uid, pid_ns)
    os.close(rfd)
    payload = bytes(buf[:line_start])  # complete lines only
    result = {
        "id": job.get("id"),
        "payload_bytes": len(payload),
        "time_s": round(elapsed, 4),
        "limit": reason,
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "stderr": _read_excerpt(os.path.join(workdir, "stderr")),
    }
    if job.get("capture_stdout"):
        cap = int(job.get("stdout_cap", 16 << 20))
        out = _read_excerpt(os.path.join(workdir, "stdout"), cap)
        result["stdout"] = out
    _rmtree(workdir)
    return result, payload


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    index = int(cfg.get("index", 0))
    info = isolate(cfg)
    info["pid_ns"] = _become_pid_namespace_init()
    uid = int(cfg.get("uid", SANDBOX_UID_DEFAULT)) if info["uid_drop"] else None
    info["uid"] = uid
    scratch = os.path.join("/tmp", f"codistill-worker{index}-{os.getpid()}")
    os.makedirs(scratch, mode=0o711, exist_ok=True)
    for name in _PREIMPORT:
        try:
            __import__(name)
        except ImportError:
            pass
    from codistill.execution import harness  # noqa: F401  (warm for the children)

    out = sys.stdout.buffer
    out.write((json.dumps({"ready": True, "isolation": info, "pid": os.getpid()}) + "\n").encode())
    out.flush()
    seq = 0
    for raw in sys.stdin.buffer:
        if not raw.strip():
            continue
        job = json.loads(raw)
        seq += 1
        try:
            res, payload = run_one(job, scratch, uid, seq, bool(info.get("pid_ns")))
        except Exception as e:  # noqa: BLE001
            res, payload = {"id": job.get("id"), "payload_bytes": 0, "sandbox_error": f"{type(e).__name__}: {e}"}, b""
        # A JSON header line, then exactly payload_bytes of raw result lines from the child.
        out.write((json.dumps(res) + "\n").encode())
        out.write(payload)
        out.flush()
    _rmtree(scratch)


if __name__ == "__main__":
    main()
