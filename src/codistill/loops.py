"""Degenerate repetition ("the answer loops"): the detector, and where a loop stop cuts an answer.

A greedy decoder that falls into a loop writes the same block of text over and over until the token
cap: on 2 CPU cores a 0.5B student that loops on a third of its answers makes an eval ~10x longer
than one that stops. The *loop stop* (``stop_on_loop``, off by default) ends such an answer early.

**What a loop stop does, exactly.** The answer's text is checked at fixed character positions
``CHECK_EVERY, 2*CHECK_EVERY, ...``; at the first position ``m`` where the text so far *ends in a
loop* (:func:`ends_in_a_loop`), the answer becomes ``text[:m]``. So the stopped answer is a
function of the full answer alone: ``cut_at_loop(full)``, whatever the backend, the chunking of a
stream or the batch. With greedy decoding the model's text up to ``m`` is the same whether or not it
is stopped there, so the one thing a stop can change is what the model would have written *after*
``m`` (it may leave the loop and write code before the cap). :func:`loop_stop_point` applied to the
answers of an eval made without the stop says, answer by answer, where the stop would have cut and
so whether the extracted code would differ (``codistill loops EVAL_DIR``); decide on a validation
split whether a stop is worth it, never on the test sets.

Imports nothing heavy: backends call :class:`LoopWatch` on every streamed chunk.
"""

from __future__ import annotations

__all__ = ["CHECK_EVERY", "LoopWatch", "cut_at_loop", "ends_in_a_loop", "loop_stop_point"]

CHECK_EVERY = 64  # characters between two checks of a growing answer


def ends_in_a_loop(answer: str, min_repeats: int = 3, min_span: int = 200, max_period: int = 500) -> bool:
    """Whether an answer ends in a degenerate repetition: its last ``max(min_repeats * p, min_span)``
    characters repeat with some period ``p <= max_period`` (the same block of text over and over,
    whatever phase the cap cut it at). A greedy decoder that loops hits the token cap this way; a
    long answer that is merely long does not end periodic."""
    n = len(answer)
    for p in range(1, max_period + 1):
        span = max(min_repeats * p, min_span)
        if span > n:
            break
        tail = answer[n - span:]
        if tail[p:] == tail[:-p]:
            return True
    return False


def loop_stop_point(text: str, every: int = CHECK_EVERY, start: int = 0) -> int | None:
    """The first multiple ``m`` of ``every`` (``start < m <= len(text)``) at which ``text[:m]`` ends
    in a loop; None when there is none."""
    m = (start // every + 1) * every
    while m <= len(text):
        if ends_in_a_loop(text[:m]):
            return m
        m += every
    return None


def cut_at_loop(text: str, every: int = CHECK_EVERY) -> str:
    """``text`` as a loop stop leaves it: cut at :func:`loop_stop_point`, else unchanged."""
    m = loop_stop_point(text, every)
    return text if m is None else text[:m]


class LoopWatch:
    """Watches a growing answer; :meth:`feed` (the whole text so far) returns True once it has
    crossed a check position where it ends in a loop. Each position is checked once, so feeding
    chunk by chunk stops where :func:`loop_stop_point` of the full text says."""

    def __init__(self, every: int = CHECK_EVERY):
        self.every = every
        self.checked = 0  # the last position checked (a multiple of every)
        self.stop_at: int | None = None

    def feed(self, text: str) -> bool:
        if self.stop_at is None and len(text) >= self.checked + self.every:
            self.stop_at = loop_stop_point(text, self.every, start=self.checked)
            self.checked = len(text) - len(text) % self.every
        return self.stop_at is not None
