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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

__all__ = ["STOP_AFTER_FAILED", "ask_rows"]

STOP_AFTER_FAILED = 8  # rows failed in a row (at least; twice the rows in flight when that is more)


def ask_rows(run: Callable[[dict], Any], rows: list[dict], workers: int, record: Callable[[dict, Any], None],
             errors: dict[str, str], advance: Callable[[], None], log: logging.Logger, what: str = "rows",
             name: str = "teach") -> None:
    """See the module docstring. ``advance()``: one row done (answered or failed), for progress."""
    stop_after = max(STOP_AFTER_FAILED, 2 * workers)
    streak = 0
    with ThreadPoolExecutor(workers, thread_name_prefix=name) as ex:
        futs = {ex.submit(run, r): r for r in rows}
        try:
            for fut in as_completed(futs):
                row = futs[fut]
                if fut.cancelled():
                    continue
                try:
                    rec = fut.result()
                except Exception as e:  # noqa: BLE001 - a teacher outage must not lose finished work
                    errors[row["id"]] = f"{type(e).__name__}: {e}"[:300]
                    log.warning("teacher error on %s: %s", row["id"], errors[row["id"]])
                    advance()
                    streak += 1
                    if streak == stop_after:
                        n = sum(f.cancel() for f in futs)
                        log.error("the last %d %s all failed: the teacher looks unavailable; %d %s not asked (they "
                                  "stay to do)", streak, what, n, what)
                    continue
                streak = 0
                record(row, rec)
                advance()
        except BaseException:
            ex.shutdown(wait=False, cancel_futures=True)
            raise
