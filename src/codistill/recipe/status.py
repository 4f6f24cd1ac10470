"""``codistill status RUN``: where a recipe run stands, read from its files (nothing is loaded,
started or changed).

For every stage in ``run_manifest.json``: its status, wall time and when it finished; for a stage
that is not complete, how far it got and whether a process still works on it. How far: the stage
folder's ``.progress.json`` (:data:`codistill.progress.PROGRESS_FILE`), which every long stage
(teach, train, the eval's generation, select, correct) rewrites with each progress line. Whether a
process works on it: a stage lock in the folder held by a live process
(:class:`codistill.store.RunDirLock`), or the pid in ``.progress.json`` alive on this host. A
stage the manifest says is running with neither was interrupted; ``codistill run`` with the same
recipe and ``--out`` resumes it.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["run_status", "print_status"]


def stage_folder(run: Path, name: str, rec: dict) -> Path:
    """The folder of a manifest stage: recorded by the runner, else by the runner's naming."""
    if rec.get("folder"):
        return run / rec["folder"]
    kind, _, arm = name.partition(":")
    if not arm:
        return run / name
    arm, _, protocol = arm.partition("@")
    sub = {"eval": f"eval@{protocol}" if protocol else "eval"}.get(kind, kind)
    return run / "arms" / arm / sub


def _held_inodes() -> dict[int, int] | None:
    """inode -> pid of every lock held on this machine (Linux ``/proc/locks``), None where unreadable."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    held = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] in ("FLOCK", "POSIX", "OFDLCK") and parts[4].isdigit():
            held[int(parts[5].rsplit(":", 1)[-1])] = int(parts[4])
    return held


def _lock_holder(folder: Path) -> str | None:
    """The holder's text of a stage lock in ``folder`` that a live process holds, else None. Read
    only: taking the lock, even for a moment, could make a starting stage fail as busy."""
    held = _held_inodes()
    for path in sorted(folder.glob(".*.lock")) if folder.is_dir() else []:
        try:
            text, inode = path.read_text().strip(), path.stat().st_ino
        except OSError:
            continue
        if held is not None:
            if inode in held:
                return text.split(",")[0] or f"pid {held[inode]}"
            continue
        words = text.split()  # "pid N on HOST, started ...": no /proc/locks, so ask whether that pid lives
        if len(words) >= 4 and words[0] == "pid" and words[1].isdigit() and \
                _alive({"pid": int(words[1]), "host": words[3].rstrip(",")}):
            return text.split(",")[0]
    return None


def _alive(state: dict) -> bool:
    pid, host = state.get("pid"), state.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _read_state(folder: Path) -> dict | None:
    from codistill.progress import PROGRESS_FILE

    path = folder / PROGRESS_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _age(stamp: str | None, now: datetime) -> float | None:
    try:
        return (now - datetime.fromisoformat(stamp)).total_seconds() if stamp else None
    except (TypeError, ValueError):
        return None


def run_status(run: str | os.PathLike) -> dict:
    """``{"run", "name", "updated", "stages": [...]}``: one record per manifest stage with
    ``name, status, wall_s, finished, folder, progress, live, error`` (``status`` is the
    manifest's, or ``interrupted`` for a stage recorded as running that no process works on)."""
    run = Path(run)
    manifest = run / "run_manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{run}: no run_manifest.json, so this is not a `codistill run` directory; give the "
                                "--out folder of a recipe run (default runs/<recipe name>, e.g. runs/paper-small)")
    data = json.loads(manifest.read_text())
    now = datetime.now(timezone.utc)
    stages = []
    # in the order they started (a stage never started, e.g. the report, by when it finished)
    recs = sorted((data.get("stages") or {}).items(), key=lambda kv: kv[1].get("started") or kv[1].get("finished") or "~")
    for name, rec in recs:
        folder = stage_folder(run, name, rec)
        status = rec.get("status") or "?"
        row = {"name": name, "status": status, "wall_s": rec.get("wall_s_total") or rec.get("wall_s"),
               "finished": rec.get("finished"), "started": rec.get("started"),
               "folder": str(folder.relative_to(run)) if folder.is_relative_to(run) else str(folder),
               "progress": None, "live": None, "error": rec.get("error") if status != "complete" else None}
        if status != "complete":
            state = _read_state(folder)
            holder = _lock_holder(folder)
            live = holder or (f"pid {state['pid']} on {state['host']}" if state and _alive(state)
                              and state.get("state") == "running" else None)
            row["live"] = live
            if state is not None:
                row["progress"] = {k: state.get(k) for k in ("label", "unit", "done", "total", "rate_per_s",
                                                             "eta_s", "state", "updated")}
                row["progress"]["age_s"] = _age(state.get("updated"), now)
            if status == "running" and not live:
                row["status"] = "interrupted"
            elif status == "running":
                row["wall_s"] = _age(rec.get("started"), now)
        stages.append(row)
    return {"run": str(run), "name": data.get("name"), "updated": data.get("updated"), "stages": stages}


def _duration(s: float | None) -> str:
    from codistill.progress import format_duration

    return "–" if s is None else format_duration(s)


def _progress_text(p: dict | None) -> str:
    from codistill.progress import format_rate

    if not p:
        return ""
    done, total = p.get("done"), p.get("total")
    text = f"{p.get('label')}: {done}/{total} {p.get('unit')}"
    if p.get("rate_per_s"):
        text += f", {format_rate(p['rate_per_s'])} {p.get('unit')}/s"
    if p.get("eta_s") is not None and p.get("state") == "running":
        text += f", ETA {_duration(p['eta_s'])}"
    if p.get("age_s") is not None:
        text += f" (as of {_duration(p['age_s'])} ago)"
    return text


def print_status(status: dict, console=None) -> None:
    """A terminal table of :func:`run_status`, and what to do about an interrupted or failed stage."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console(emoji=False)
    colour = {"complete": "green", "running": "cyan", "interrupted": "yellow", "paused": "yellow", "failed": "red"}
    table = Table(title=f"{status['name'] or 'run'}: {status['run']}", title_justify="left")
    table.add_column("stage", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("wall", no_wrap=True)
    table.add_column("finished (UTC)", no_wrap=True)
    table.add_column("progress / process", overflow="fold")
    for s in status["stages"]:
        c = colour.get(s["status"], "white")
        detail = "; ".join(x for x in (_progress_text(s["progress"]), f"working: {s['live']}" if s["live"] else "",
                                       f"error: {s['error']}" if s["error"] else "") if x)
        table.add_row(s["name"], f"[{c}]{s['status']}[/]", _duration(s["wall_s"]),
                      (s["finished"] or "")[:16].replace("T", " "),
                      escape(detail))
    console.print(table)
    stuck = [s["name"] for s in status["stages"] if s["status"] in ("interrupted", "failed", "paused")]
    if stuck:
        console.print(f"Not complete and no process working on: {', '.join(stuck)}. `codistill run RECIPE --out "
                      f"{status['run']}` (the same recipe and arms) resumes them; a failed stage's error is above.")
