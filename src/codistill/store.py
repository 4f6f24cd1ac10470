"""Files that survive interruption: atomic writes, append-only JSONL, content hashes.

A killed process never leaves a half-written file behind: whole files are written to a
temporary sibling and renamed; JSONL appends are one ``write`` of a complete line followed by
``flush`` + ``fsync``. A kill in the middle of an append can still leave a partial last line in
codistill's *own* append-only files: their readers pass ``resumable=True`` to skip it (with a
warning) and :class:`JsonlAppender` truncates it before the next append, so a resumed stage simply
continues. Every other JSONL file (samples, problems, rows: inputs) is read strictly: a malformed
line, the last one included, is an error naming the file and line.

:class:`RunDirLock` keeps two processes of one stage out of one run directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write a whole JSONL file atomically; returns the number of rows."""
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_jsonl(path: str | os.PathLike, resumable: bool = False) -> Iterator[dict]:
    """Yield the records (JSON objects, one per line) of a JSONL (optionally .gz) file.

    A malformed line or one that is not a JSON object is a ``ValueError`` naming the file and
    line. ``resumable=True`` is for codistill's own append-only files: there a last line without
    its newline is an append interrupted by a kill; it is skipped with a warning (the next
    :class:`JsonlAppender` on the file truncates it) instead of failing.
    """
    path = Path(path)
    if path.suffix == ".gz":
        import gzip

        opener = gzip.open(path, "rt", encoding="utf-8")
    else:
        opener = open(path, encoding="utf-8")
    with opener as f:
        lines = f.read().split("\n")
    last = len(lines) - 1  # the text after the final newline: "" unless the file ends mid-line
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if i == last and resumable:
                warnings.warn(f"{path}: skipping an incomplete last line (interrupted write?)")
                return
            where = " (the last line, without its newline: a write cut short?)" if i == last else ""
            raise ValueError(f"{path}:{i + 1}: not valid JSON ({e.msg}){where}. Fix or remove that line.") from e
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{i + 1}: expected a JSON object ({{...}}) on every line, got "
                             f"{_json_kind(rec)}. Fix or remove that line.")
        yield rec


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


class JsonlAppender:
    """Append records one complete line at a time (flush + fsync), safe to resume.

    If the file ends in a partial line (a previous run was killed mid-write) it is truncated
    back to the last complete line before appending.
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                keep = data.rfind(b"\n") + 1
                with open(self.path, "r+b") as f:
                    f.truncate(keep)
        self._f = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        if self._fsync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RunDirBusyError(RuntimeError):
    """Another process holds a run directory's lock (see :class:`RunDirLock`)."""


class RunDirLock:
    """An advisory lock on a run directory for one stage (``with RunDirLock(folder, "eval"):``).

    Two ``eval`` (or ``teach``) processes on one directory would each generate (ask the teacher
    for) the same items and append them twice. The lock is ``flock`` on ``folder/.<stage>.lock``,
    held until the ``with`` block ends or the process dies (a crash never leaves a stale lock).
    The file names the holder (pid, host, start time) for the second process's error message.
    ``filelock`` would do the same, but it is not a dependency of codistill's core.
    """

    def __init__(self, folder: str | os.PathLike, stage: str):
        self.folder = Path(folder)
        self.stage = stage
        self.path = self.folder / f".{stage}.lock"
        self._f = None

    def __enter__(self) -> "RunDirLock":
        import fcntl
        import socket
        import time

        self.folder.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "pid ?"
            f.close()
            raise RunDirBusyError(
                f"another {self.stage} run ({holder}) is using {self.folder}: wait for it to finish or stop "
                f"it, then run this command again (it resumes where that run stopped), or give another "
                f"output directory") from None
        f.seek(0)
        f.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}")
        f.flush()
        self._f = f
        return self

    def __exit__(self, *exc) -> None:
        if self._f is not None:
            self._f.close()  # releases the lock
            self._f = None


def replace_dir(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Put the finished folder ``src`` in the place of ``dest`` (a sibling of it): an old ``dest``
    is renamed aside first and removed after, so ``dest`` is at every moment either the old folder
    or the new one, never half of each; what a crash can leave is a ``.old-*`` sibling."""
    import shutil

    src, dest = Path(src), Path(dest)
    old = dest.with_name(f".old-{dest.name}-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.rename(dest, old)
    os.rename(src, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def package_versions(*dists: str) -> dict[str, str]:
    """Python's version and those of the named installed distributions (missing ones left out),
    for the provenance records of every stage."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for dist in dists:
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out
