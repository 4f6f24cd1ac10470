"""Asking the teacher for many rows at once: the loop the teach, correct and pairs stages share.

``runner.run(row)`` for every row, ``workers`` at a time; each answer is handed to ``record`` in
the calling thread as it completes (so appends to a JSONL file need no lock). A row whose call
failed goes to ``errors`` and stays to do; after ``max(STOP_AFTER_FAILED, 2 × workers)`` such
rows in a row the teacher looks down and the rows not yet started are not asked. On Ctrl-C or a
kill nothing more is asked: the calls in flight finish (into the response cache), the queued rows
are cancelled (a plain ``with ThreadPoolExecutor`` would run every one of them before letting go).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

__all__ = ["STOP_AFTER_FAILED", "ask_rows"]

STOP_AFTER_FAILED = 8  # rows failed in a row (at least; twice the rows in flight when that is more)


class _NotAsked(Exception):
    """A row a worker did not ask: the teacher had already failed ``stop_after`` rows in a row."""


def ask_rows(run: Callable[[dict], Any], rows: list[dict], workers: int, record: Callable[[dict, Any], None],
             errors: dict[str, str], advance: Callable[[], None], log: logging.Logger, what: str = "rows",
             name: str = "teach") -> None:
    """See the module docstring. ``advance()``: one row done (answered or failed), for progress."""
    stop_after = max(STOP_AFTER_FAILED, 2 * workers)
    streak = 0
    # The workers keep the streak too, in the order calls end, and ask nothing once it is reached:
    # cancelling from this thread alone comes too late when it is starved of CPU while the calls
    # fail at once (a refused connection), and every queued row would be asked and fail.
    failed_in_a_row, lock = [0], threading.Lock()

    def guarded(row: dict):
        with lock:
            if failed_in_a_row[0] >= stop_after:
                raise _NotAsked
        try:
            rec = run(row)
        except Exception:
            with lock:
                failed_in_a_row[0] += 1
            raise
        with lock:
            failed_in_a_row[0] = 0
        return rec

    with ThreadPoolExecutor(workers, thread_name_prefix=name) as ex:
        futs = {ex.submit(guarded, r): r for r in rows}
        try:
            for fut in as_completed(futs):
                row = futs[fut]
                if fut.cancelled() or isinstance(fut.exception(), _NotAsked):
                    continue
                try:
                    rec = fut.result()
                except Exception as e:  # noqa: BLE001 - a teacher outage must not lose finished work
                    errors[row["id"]] = f"{type(e).__name__}: {e}"[:300]
                    log.warning("teacher error on %s: %s", row["id"], errors[row["id"]])
                    advance()
                    streak += 1
                    if streak == stop_after:
                        n = sum(1 for f in futs if f.cancel() or (f.done() and not f.cancelled()
                                                                  and isinstance(f.exception(), _NotAsked)))
                        log.error("the last %d %s all failed: the teacher looks unavailable; %d %s not asked (they "
                                  "stay to do)", streak, what, n, what)
                    continue
                streak = 0
                record(row, rec)
                advance()
        except BaseException:
            ex.shutdown(wait=False, cancel_futures=True)
            raise
