"""Files that survive interruption: atomic writes, append-only JSONL, content hashes.

A killed process never leaves a half-written file behind: whole files are written to a
temporary sibling and renamed; JSONL appends are one ``write`` of a complete line followed by
``flush`` + ``fsync``, and a reader skips a trailing partial line (with a warning) instead of
failing, so a resumed stage simply continues.
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


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the records of a JSONL (optionally .gz) file.

    A last line without its newline is an interrupted append: it is skipped with a warning. A
    malformed line elsewhere is an error naming the file and line.
    """
    path = Path(path)
    if path.suffix == ".gz":
        import gzip

        opener = gzip.open(path, "rt", encoding="utf-8")
    else:
        opener = open(path, encoding="utf-8")
    with opener as f:
        lines = f.read().split("\n")
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            if i == last:
                warnings.warn(f"{path}: skipping an incomplete last line (interrupted write?)")
                return
            raise ValueError(f"{path}:{i + 1}: not valid JSON ({e.msg}). Fix or remove that line.") from e


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
