"""The teacher's response cache: raw answers by key in ``<cache_dir>/responses.jsonl``.

A key is the sha256 of (teacher model, template text hash, the attempt's sampling params, row id +
content hash, attempt number, and ``extra_body`` when one is set) — see
:meth:`codistill.teacher.runner.ProblemRunner.key`; the parser is not part of it, so a changed
parser re-parses cached answers without asking the teacher again. Empty answers are never cached.
"""

from __future__ import annotations

import threading
from pathlib import Path

from codistill.store import JsonlAppender, read_jsonl

__all__ = ["ResponseCache"]


class ResponseCache:
    """Teacher answers by key, in an append-only JSONL file (thread-safe)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "responses.jsonl"
        self._d: dict[str, dict] = {}
        if self.path.exists():
            for r in read_jsonl(self.path, resumable=True):
                if (r.get("text") or "").strip():  # empty answers (outage symptoms) written by old versions
                    self._d[r["key"]] = r
        self._app: JsonlAppender | None = None
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: str) -> dict | None:
        with self._lock:
            r = self._d.get(key)
            if r is not None:
                self.hits += 1
            return r

    def put(self, rec: dict) -> None:
        with self._lock:
            if self._app is None:
                self._app = JsonlAppender(self.path)
            self._app.append(rec)
            self._d[rec["key"]] = rec

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
