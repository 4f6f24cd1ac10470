"""The worker's reading of a child's result lines: framing, timing, size limits.

The child (untrusted) writes JSON lines to the result pipe; the worker (trusted) feeds what it
reads to a :class:`Reader`, which accepts only the lines the harness writes, in the order it
writes them (``loaded``, ``case`` 0, 1, ..., then ``done`` or ``error``), stamps each with the
worker's clock when it is read, checks each call-based case against its time limit on that clock,
and caps line and total sizes. This module imports only the stdlib.
"""

from __future__ import annotations

import re

# A result line as the harness writes it: json.dumps of a dict whose first keys are ev (and i).
_EVENT = re.compile(rb'\{"ev": "(loaded|case|done|error)"(?:, "i": (\d{1,9}))?[,}]')
_KINDS = {k.encode(): k for k in ("loaded", "case", "done", "error")}


class Reader:
    """Frames, timestamps and checks the child's result lines as they arrive."""

    def __init__(self, job: dict, t0: float):
        self.limits = [float(t) for t in job.get("case_limits") or ()] or None
        self.max_line = int(job.get("max_line_bytes", 16 << 20))
        self.max_total = int(job.get("max_result_bytes", 64 << 20))
        self.buf = bytearray()
        self.line_start = 0
        self.scan_from = 0
        self.accepted_end = 0
        self.events: list[list] = []
        self.phase = "start"
        self.next_case = 0
        self.last = t0
        self.case_deadline: float | None = None
        self.reason: str | None = None
        self.detail: dict = {}

    def _stop(self, reason: str, **detail) -> None:
        self.reason = reason
        self.detail.update(detail)

    def feed(self, chunk: bytes, now: float) -> None:
        self.buf += chunk
        if len(self.buf) > self.max_total:
            return self._stop("output_limit", what=f"result data over {self.max_total} bytes")
        while self.reason is None and (nl := self.buf.find(b"\n", self.scan_from)) >= 0:
            start, self.line_start = self.line_start, nl + 1
            self.scan_from = nl + 1
            self._line(start, nl, now)
        if self.reason is None:
            self.scan_from = len(self.buf)
            if len(self.buf) - self.line_start > self.max_line:
                self._stop("output_limit", what=f"a result line over {self.max_line} bytes")

    def _line(self, start: int, end: int, now: float) -> None:
        """The line ``buf[start:end]`` (no pattern element matches a newline: a match ends in it)."""
        if end - start > self.max_line:
            return self._stop("output_limit", what=f"a result line over {self.max_line} bytes")
        m = _EVENT.match(self.buf, start)
        if m is None:
            return self._stop("protocol", what="a line the harness does not write")
        kind, i = m.groups()
        kind, i = _KINDS[kind], (int(i) if i is not None else None)
        dt = now - self.last
        if kind == "case":
            if self.phase != "cases" or i != self.next_case:
                return self._stop("protocol", what=f"case {i} out of order (expected {self.next_case})")
            if self.limits and i < len(self.limits) and dt > self.limits[i]:
                return self._stop("timeout", timeout_case=i, case_time=round(dt, 4))
            self.next_case += 1
        else:
            if kind == "loaded":
                if self.phase != "start":
                    return self._stop("protocol", what="a second 'loaded' line")
                self.phase = "cases"
            else:  # done | error
                if self.phase == "end":
                    return self._stop("protocol", what=f"a '{kind}' line after the end")
                self.phase = "end"
        self.events.append([kind, i, round(dt, 6)])
        self.last = now
        self.accepted_end = self.line_start
        self.case_deadline = None
        if self.limits and self.phase == "cases" and self.next_case < len(self.limits):
            self.case_deadline = now + self.limits[self.next_case]

    def payload(self) -> bytes:
        return bytes(self.buf[:self.accepted_end])
