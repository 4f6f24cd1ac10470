"""``codistill status``: a run's stages read from its files; a stage recorded as running is live
only while a process holds its lock or its progress file's pid lives; progress files written by
Progress(state=...)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from codistill.progress import PROGRESS_FILE, Progress
from codistill.recipe.status import run_status
from codistill.store import RunDirLock


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_writes_its_state_with_every_line(tmp_path):
    clock = FakeClock()
    state = tmp_path / PROGRESS_FILE
    with Progress("teach", 10, unit="rows", done=2, every_n=2, clock=clock, heartbeat=False, echo=False,
                  state=state) as prog:
        first = json.loads(state.read_text())
        assert (first["done"], first["total"], first["state"], first["rate_per_s"]) == (2, 10, "running", None)
        clock.t += 4
        prog.advance(2)
        mid = json.loads(state.read_text())
        assert mid["done"] == 4 and mid["rate_per_s"] == pytest.approx(0.5)  # 2 new rows in 4 s
        assert mid["eta_s"] == pytest.approx(12.0) and mid["pid"] > 0 and mid["line"].startswith("teach: 4/10 rows")
    assert json.loads(state.read_text())["state"] == "stopped"  # closed before its total
    with Progress("x", 1, clock=clock, heartbeat=False, echo=False, state=state) as prog:
        prog.advance()
    assert json.loads(state.read_text())["state"] == "done"


def _run(tmp_path, stages: dict) -> object:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run_manifest.json").write_text(json.dumps({"name": "r", "stages": stages}))
    return run


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_status_tells_live_interrupted_failed_and_complete_stages(tmp_path):
    import socket

    run = _run(tmp_path, {
        "data": {"status": "complete", "wall_s_total": 60.0, "finished": "2026-12-01T10:00:00+00:00",
                 "started": "2026-12-01T09:59:00+00:00"},
        "eval:base": {"status": "running", "started": "2026-12-01T11:00:00+00:00"},
        "train:cd": {"status": "running", "started": "2026-12-01T10:30:00+00:00"},
        "eval:cd@standard": {"status": "failed", "error": "RuntimeError: boom", "started": "2026-12-01T12:00:00+00:00",
                             "folder": "elsewhere/cd"},
    })
    train = run / "arms" / "cd" / "train"
    train.mkdir(parents=True)
    (train / PROGRESS_FILE).write_text(json.dumps({
        "label": "train", "unit": "steps", "done": 30, "total": 92, "rate_per_s": 0.01, "eta_s": 6200.0,
        "state": "running", "pid": _dead_pid(), "host": socket.gethostname(), "updated": "2026-12-01T11:00:00+00:00"}))
    with RunDirLock(run / "arms" / "base" / "eval", "eval"):
        st = {s["name"]: s for s in run_status(run)["stages"]}
        assert st["eval:base"]["status"] == "running" and st["eval:base"]["live"].startswith("pid ")
    after = {s["name"]: s for s in run_status(run)["stages"]}
    assert after["eval:base"]["status"] == "interrupted" and after["eval:base"]["live"] is None  # the lock was let go
    assert st["train:cd"]["status"] == "interrupted"  # its progress file's process is gone
    assert st["train:cd"]["progress"]["done"] == 30 and st["train:cd"]["folder"] == "arms/cd/train"
    assert st["eval:cd@standard"]["status"] == "failed" and st["eval:cd@standard"]["error"] == "RuntimeError: boom"
    assert st["eval:cd@standard"]["folder"] == "elsewhere/cd"  # the folder the runner recorded
    assert st["data"]["status"] == "complete" and st["data"]["wall_s"] == 60.0
    assert [s["name"] for s in run_status(run)["stages"]] == ["data", "train:cd", "eval:base", "eval:cd@standard"]


def test_a_live_progress_pid_keeps_a_stage_running_and_the_cli_prints_it(tmp_path):
    import os
    import socket

    run = _run(tmp_path, {"teach": {"status": "running", "started": "2026-12-01T11:00:00+00:00"}})
    (run / "teach").mkdir()
    (run / "teach" / PROGRESS_FILE).write_text(json.dumps({
        "label": "teach", "unit": "rows", "done": 40, "total": 120, "rate_per_s": 0.5, "eta_s": 160.0,
        "state": "running", "pid": os.getpid(), "host": socket.gethostname(), "updated": "2026-12-01T11:10:00+00:00"}))
    [teach] = run_status(run)["stages"]
    assert teach["status"] == "running" and teach["live"] == f"pid {os.getpid()} on {socket.gethostname()}"
    out = subprocess.run([sys.executable, "-m", "codistill", "status", str(run)], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "teach: 40/120 rows, 0.50 rows/s, ETA 2m40s" in out.stdout
    js = subprocess.run([sys.executable, "-m", "codistill", "status", str(run), "--json"], capture_output=True, text=True)
    assert json.loads(js.stdout)["stages"][0]["progress"]["done"] == 40


def test_a_folder_that_is_not_a_run_is_refused_with_what_to_give(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a `codistill run` directory.*--out"):
        run_status(tmp_path)
    out = subprocess.run([sys.executable, "-m", "codistill", "status", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode != 0 and "run_manifest.json" in out.stderr
