"""Progress that a person can follow in a terminal and in a log file (teach, train, eval).

``Progress("teach", total=120, unit="rows")`` is used as a context manager; ``advance()`` after
each finished item. It

* logs a plain line through :mod:`logging` (logger ``codistill.progress`` unless given) at the
  start, at most every ``every_s`` seconds (default 30) while it runs, and at the end, e.g.
  ``teach: 40/120 rows (33%), 0.52 rows/s, 1m17s elapsed, ETA 2m34s``, so that
  ``nohup codistill ... > log 2>&1`` shows where a stage is. A heartbeat thread writes the line
  even when no item finished in that time (a slow first teacher answer is not silence);
* shows a rich progress bar when its stream (stderr by default) is a terminal;
* when logging would drop the line (no handler configured, or INFO disabled) and no bar is shown,
  writes it to the stream itself (``echo=False`` turns that off: a caller that asked for no
  progress output).

The rate counts only the items finished since this object started (a resumed run's earlier
items are in ``done`` but not in the rate). With ``state=PATH`` every line is also written,
atomically, to that JSON file with the counts, the process (pid, host) and the time, so that
``codistill status RUN`` can say where a stage is and whether a process still works on it.
Cheap to import: rich is imported only for a bar.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["PROGRESS_FILE", "Progress", "format_duration", "format_rate"]

DEFAULT_EVERY_S = 30.0
PROGRESS_FILE = ".progress.json"  # a stage folder's progress state (Progress(state=...), codistill status)


def format_duration(seconds: float) -> str:
    """``45s``, ``2m34s``, ``1h02m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_rate(rate: float) -> str:
    if rate >= 100:
        return f"{rate:.0f}"
    if rate >= 10:
        return f"{rate:.1f}"
    if rate >= 0.1:
        return f"{rate:.2f}"
    return f"{rate:.3f}"


class Progress:
    """Done/total, rate and ETA of one stage; see the module docstring.

    Args:
        label: the stage's name, first word of every line.
        total: items to do (including ``done``).
        unit: what an item is (``rows``, ``steps``, ``prompts``, ``samples``).
        done: items already done when this starts (resume).
        every_s: seconds between lines while running (at least).
        every_n: also write a line after this many items since the last line.
        logger: where lines go (default ``logging.getLogger("codistill.progress")``).
        stream: the terminal for the bar / the fallback lines (default ``sys.stderr``).
        bar: True/False forces the rich bar on/off; None: on when ``stream`` is a terminal.
        echo: write lines to ``stream`` when logging would drop them and no bar is shown.
        heartbeat: a background thread writes due lines even when nothing advances.
        describe: called when a line is written; its text is appended (counters that change
            between advances, e.g. teacher calls and cache hits).
        clock: a monotonic clock (tests pass a fake one).
        state: a JSON file rewritten with every line (see the module docstring; conventionally
            ``<stage folder>/.progress.json``, which ``codistill status`` looks for).
    """

    def __init__(self, label: str, total: int, *, unit: str = "rows", done: int = 0,
                 every_s: float = DEFAULT_EVERY_S, every_n: int | None = None,
                 logger: logging.Logger | None = None, stream: TextIO | None = None,
                 bar: bool | None = None, echo: bool = True, heartbeat: bool = True,
                 describe: Callable[[], str] | None = None, clock: Callable[[], float] = time.monotonic,
                 state=None):
        self.label, self.total, self.unit = label, int(total), unit
        self.done = self.start_done = int(done)
        self.every_s, self.every_n = float(every_s), every_n
        self.logger = logger or logging.getLogger("codistill.progress")
        self.stream = stream
        self.echo = echo
        self.clock = clock
        self.info = ""
        self.describe = describe
        self.state = state
        self.lines: list[str] = []  # every line written, for callers and tests
        self._want_bar = bar
        self._bar = self._task = None
        self._heartbeat = heartbeat
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._t0 = self._last_t = 0.0
        self._last_n = self.done
        self._started = self._closed = False

    # -------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> Progress:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)

    def start(self) -> Progress:
        with self._lock:
            if self._started:
                return self
            self._started = True
            self._t0 = self._last_t = self.clock()
            if self._bar_wanted():
                self._start_bar()
            self._emit(self.line(start=True))
        if self._heartbeat and self.every_s > 0:
            self._thread = threading.Thread(target=self._beat, name=f"progress-{self.label}", daemon=True)
            self._thread.start()
        return self

    def close(self, ok: bool = True) -> None:
        with self._lock:
            if self._closed or not self._started:
                self._closed = True
                return
            self._closed = True
            self._stop.set()
            if self._bar is not None:
                self._bar.stop()
            self._emit(self.line(final=True, ok=ok), final=True, ok=ok)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)

    # -------------------------------------------------------------------------- updates
    def advance(self, n: int = 1, info: str | None = None) -> None:
        """``n`` more items finished; ``info``: a short status appended to lines (loss, tok/s)."""
        with self._lock:
            if not self._started:
                self.start()
            self.done += n
            if info is not None:
                self.info = info
            if self._bar is not None:
                self._bar.update(self._task, completed=self.done, info=self.info)
            self._maybe_emit()

    def set_info(self, info: str) -> None:
        with self._lock:
            self.info = info
            if self._bar is not None:
                self._bar.update(self._task, info=info)

    def tick(self) -> None:
        """Write a line if one is due (the heartbeat thread calls this)."""
        with self._lock:
            if self._started and not self._closed:
                self._maybe_emit()

    # -------------------------------------------------------------------------- text
    @property
    def elapsed(self) -> float:
        return max(0.0, self.clock() - self._t0) if self._started else 0.0

    @property
    def rate(self) -> float | None:
        """Items per second since start, or None before the first one."""
        n, el = self.done - self.start_done, self.elapsed
        return n / el if n > 0 and el > 0 else None

    def line(self, final: bool = False, ok: bool = True, start: bool = False) -> str:
        el, rate = self.elapsed, self.rate
        parts = [f"{self.label}: {self.done}/{self.total} {self.unit}"
                 + (f" ({100 * self.done // self.total}%)" if self.total > 0 and not final else "")]
        if final:
            if rate is not None:
                parts.append(f"{format_rate(rate)} {self.unit}/s")
            parts.append(f"{'done' if ok and self.done >= self.total else 'stopped'} in {format_duration(el)}")
        elif start:
            parts.append("starting")
        else:
            parts.append(f"{format_rate(rate)} {self.unit}/s" if rate is not None else f"- {self.unit}/s")
            parts.append(f"{format_duration(el)} elapsed")
            left = max(0, self.total - self.done)
            parts.append(f"ETA {format_duration(left / rate)}" if rate else "ETA ?")
        if self.info:
            parts.append(self.info)
        if self.describe is not None:
            try:
                extra = self.describe()
            except Exception as e:  # noqa: BLE001 - a progress line must never stop the stage
                extra = f"({type(e).__name__} in describe)"
            if extra:
                parts.append(extra)
        return ", ".join(parts)

    # -------------------------------------------------------------------------- internals
    def _maybe_emit(self) -> None:
        now = self.clock()
        due = now - self._last_t >= self.every_s
        if self.every_n and self.done - self._last_n >= self.every_n:
            due = True
        if due:
            self._emit(self.line())

    def _emit(self, text: str, final: bool = False, ok: bool = True) -> None:
        self._last_t, self._last_n = self.clock(), self.done
        self.lines.append(text)
        if self.state is not None:
            self._write_state(text, final, ok)
        lg = self.logger
        if lg.isEnabledFor(logging.INFO) and lg.hasHandlers():
            lg.info(text)
        elif self.echo and self._bar is None:
            stream = self.stream or sys.stderr
            try:
                stream.write(text + "\n")
                stream.flush()
            except (OSError, ValueError):  # a closed stream must not stop the stage
                pass

    def _write_state(self, text: str, final: bool, ok: bool) -> None:
        import os
        import socket
        from datetime import datetime, timezone

        from codistill.store import atomic_write_json

        rate = self.rate
        left = max(0, self.total - self.done)
        state = {"label": self.label, "unit": self.unit, "done": self.done, "total": self.total,
                 "rate_per_s": rate, "elapsed_s": round(self.elapsed, 1),
                 "eta_s": round(left / rate, 1) if rate and not final else None, "line": text,
                 "state": ("done" if ok and self.done >= self.total else "stopped") if final else "running",
                 "pid": os.getpid(), "host": socket.gethostname(),
                 "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            atomic_write_json(self.state, state)
        except OSError:  # progress must never stop the stage
            pass

    def _bar_wanted(self) -> bool:
        if self._want_bar is not None:
            return self._want_bar
        stream = self.stream or sys.stderr
        try:
            return bool(stream.isatty())
        except (AttributeError, ValueError):
            return False

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        console = Console(file=self.stream, emoji=False) if self.stream is not None else Console(stderr=True, emoji=False)
        self._bar = RichProgress(TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 console=console, transient=False)
        self._task = self._bar.add_task(self.label, total=self.total, completed=self.done, info=self.info)
        self._bar.start()

    def _beat(self) -> None:
        while not self._stop.wait(min(5.0, self.every_s)):
            self.tick()
