"""codistill.progress: plain progress lines a log file can show, on a fake clock."""

from __future__ import annotations

import io
import logging

import pytest

from codistill.progress import Progress, format_duration, format_rate


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def quiet_logger():
    """A logger with no handler anywhere: lines fall back to the stream."""
    lg = logging.getLogger("codistill.test_progress.quiet")
    lg.propagate = False
    lg.handlers.clear()
    return lg


@pytest.fixture
def captured():
    """A logger whose INFO records are kept."""
    lg = logging.getLogger("codistill.test_progress.captured")
    lg.propagate = False
    lg.setLevel(logging.INFO)
    records: list[str] = []

    class H(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    h = H()
    lg.addHandler(h)
    yield lg, records
    lg.removeHandler(h)


def test_formats():
    assert format_duration(0) == "0s"
    assert format_duration(59.4) == "59s"
    assert format_duration(154) == "2m34s"
    assert format_duration(3600 + 2 * 60 + 5) == "1h02m"
    assert format_rate(0.52) == "0.52"
    assert format_rate(0.0333) == "0.033"
    assert format_rate(12.34) == "12.3"
    assert format_rate(1234.5) == "1234"


def test_lines_at_start_every_interval_and_end(captured):
    lg, records = captured
    clock = Clock()
    with Progress("teach", 120, unit="rows", logger=lg, stream=io.StringIO(), heartbeat=False, clock=clock) as p:
        assert records == ["teach: 0/120 rows (0%), starting"]
        for _ in range(40):  # 0.52 rows/s: one row every 1/0.52 s
            clock.t += 1 / 0.52
            p.advance()
        # 40 rows took 76.9 s: lines after 30 s and 60 s, none more often than every 30 s
        assert len(records) == 3
        assert records[-1].startswith("teach: 32/120 rows (26%), 0.52 rows/s, 1m02s elapsed, ETA 2m49s")
        clock.t += 14  # the last line came at 61.5 s (row 32); now 90.9 s
        p.tick()
        assert len(records) == 3  # not due yet
        clock.t += 1
        p.tick()  # due: a heartbeat line, though no row finished since
        assert len(records) == 4
        assert records[-1] == "teach: 40/120 rows (33%), 0.44 rows/s, 1m32s elapsed, ETA 3m04s"
    assert records[-1] == "teach: 40/120 rows, 0.44 rows/s, stopped in 1m32s"


def test_rate_and_eta_text_and_final_line(captured):
    lg, records = captured
    clock = Clock()
    p = Progress("train", 10, unit="steps", logger=lg, heartbeat=False, clock=clock, every_s=30).start()
    clock.t += 45
    p.advance(3, info="loss 1.2345")
    assert records[-1] == "train: 3/10 steps (30%), 0.067 steps/s, 45s elapsed, ETA 1m45s, loss 1.2345"
    clock.t += 105
    p.advance(7)  # info stays until replaced
    p.close()
    assert records[-1] == "train: 10/10 steps, 0.067 steps/s, done in 2m30s, loss 1.2345"
    assert p.lines == records


def test_resume_counts_only_new_items_in_the_rate(captured):
    lg, records = captured
    clock = Clock()
    with Progress("generate", 100, unit="prompts", done=60, logger=lg, heartbeat=False, clock=clock) as p:
        assert records[0] == "generate: 60/100 prompts (60%), starting"
        clock.t += 40
        p.advance(20)
        assert records[-1] == "generate: 80/100 prompts (80%), 0.50 prompts/s, 40s elapsed, ETA 40s"


def test_nothing_done_yet_has_unknown_eta(captured):
    lg, records = captured
    clock = Clock()
    p = Progress("teach", 6, logger=lg, heartbeat=False, clock=clock).start()
    clock.t += 31
    p.tick()
    assert records[-1] == "teach: 0/6 rows (0%), - rows/s, 31s elapsed, ETA ?"


def test_every_n_adds_lines_and_describe_is_fresh(captured):
    lg, records = captured
    clock = Clock()
    calls = {"n": 0}

    def describe():
        return f"teacher calls {calls['n']}"

    with Progress("teach", 20, logger=lg, heartbeat=False, clock=clock, every_n=5, describe=describe) as p:
        for _ in range(10):
            clock.t += 1
            calls["n"] += 2
            p.advance()
    assert len(records) == 1 + 2 + 1  # start, after 5 and 10 rows, end
    assert records[1].endswith("teacher calls 10")
    assert records[-1] == "teach: 10/20 rows, 1.00 rows/s, stopped in 10s, teacher calls 20"


def test_exception_marks_the_end_line_stopped(captured):
    lg, records = captured
    clock = Clock()
    with pytest.raises(RuntimeError):
        with Progress("judge", 4, unit="samples", logger=lg, heartbeat=False, clock=clock) as p:
            clock.t += 2
            p.advance(4)
            raise RuntimeError("boom")
    assert records[-1] == "judge: 4/4 samples, 2.00 samples/s, stopped in 2s"


def test_non_tty_stream_gets_plain_lines_and_no_bar(quiet_logger):
    stream = io.StringIO()  # not a terminal: no rich bar, no escape codes
    clock = Clock()
    with Progress("eval", 3, unit="prompts", logger=quiet_logger, stream=stream, heartbeat=False, clock=clock) as p:
        assert p._bar is None
        for _ in range(3):
            clock.t += 31
            p.advance()
    text = stream.getvalue()
    assert "\x1b" not in text
    assert text.splitlines() == [
        "eval: 0/3 prompts (0%), starting",
        "eval: 1/3 prompts (33%), 0.032 prompts/s, 31s elapsed, ETA 1m02s",
        "eval: 2/3 prompts (66%), 0.032 prompts/s, 1m02s elapsed, ETA 31s",
        "eval: 3/3 prompts (100%), 0.032 prompts/s, 1m33s elapsed, ETA 0s",
        "eval: 3/3 prompts, 0.032 prompts/s, done in 1m33s",
    ]


def test_logged_lines_are_not_echoed_and_echo_false_is_silent(captured, quiet_logger):
    lg, records = captured
    stream = io.StringIO()
    with Progress("x", 1, logger=lg, stream=stream, heartbeat=False) as p:
        p.advance()
    assert len(records) == 2 and stream.getvalue() == ""
    with Progress("x", 1, logger=quiet_logger, stream=stream, heartbeat=False, echo=False) as p:
        p.advance()
    assert stream.getvalue() == ""


def test_tty_stream_shows_a_rich_bar_and_still_logs(captured):
    lg, records = captured

    class FakeTTY(io.StringIO):
        def isatty(self):
            return True

    stream = FakeTTY()
    with Progress("train", 2, unit="steps", logger=lg, stream=stream, heartbeat=False) as p:
        assert p._bar is not None
        p.advance(2, info="loss 0.5")
    assert "train" in stream.getvalue()  # the bar drew
    assert records[0].startswith("train: 0/2 steps") and records[-1].startswith("train: 2/2 steps")


def test_heartbeat_thread_writes_when_nothing_advances(captured):
    import time

    lg, records = captured
    with Progress("teach", 5, logger=lg, every_s=0.05):
        time.sleep(0.4)  # the heartbeat wakes every min(5 s, every_s)
    assert len(records) >= 3  # start, at least one heartbeat line, end
    assert any("elapsed" in r for r in records[1:-1])
