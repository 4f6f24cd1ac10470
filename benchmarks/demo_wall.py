"""Wall time and core use of ``codistill demo`` (issue 13: goal ≤ 600 s on a 2-core CPU).

Runs ``python -m codistill demo --no-progress --out <fresh temporary folder>`` as a child process
with the interpreter that runs this script, and measures:

- ``wall_s``: the demo's wall time;
- ``child_cpu_s``: CPU seconds of the demo and every process it waited for (llama.cpp servers,
  sandbox workers, training), from ``getrusage(RUSAGE_CHILDREN)``;
- ``avg_cores_demo``: ``child_cpu_s / wall_s``, the cores the demo kept busy on average;
- ``avg_cores_machine``: busy cores of the whole machine over the same time, from /proc/stat
  (tells whether something else shared the machine: ``machine − demo`` is other work);
- ``cores``: the cores this process may run on.

A cold model cache makes the first demo convert the student and assemble the teacher; pass
``--cold`` to point ``CODISTILL_CACHE_DIR`` at an empty folder and measure that case (what a
fresh clone on a fresh machine does). The demo's own exit status is ``demo_exit``; the script
exits with it. Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user/nice
    return total - idle, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cold", action="store_true", help="empty CODISTILL_CACHE_DIR for the run")
    ap.add_argument("--log", help="also keep the demo's output in this file")
    args = ap.parse_args()

    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="codistill-demo-bench-") as tmp:
        env = dict(os.environ)
        if args.cold:
            env["CODISTILL_CACHE_DIR"] = os.path.join(tmp, "cache")
        out = os.path.join(tmp, "run")
        log = open(args.log, "w") if args.log else subprocess.DEVNULL
        busy0, total0 = _cpu_times()
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "codistill", "demo", "--no-progress", "--out", out],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        wall = time.monotonic() - t0
        busy1, total1 = _cpu_times()
        if log is not subprocess.DEVNULL:
            log.close()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu = usage.ru_utime + usage.ru_stime
        report_written = os.path.exists(os.path.join(out, "report.html"))

    machine_share = (busy1 - busy0) / max(1, total1 - total0)
    print(json.dumps({
        "benchmark": "demo_wall",
        "demo_exit": proc.returncode,
        "report_written": report_written,
        "wall_s": round(wall, 1),
        "goal_wall_s": 600,
        "child_cpu_s": round(child_cpu, 1),
        "avg_cores_demo": round(child_cpu / wall, 2),
        "avg_cores_machine": round(machine_share * (os.cpu_count() or cores), 2),
        "cores": cores,
        "cold_cache": args.cold,
        "python": sys.executable,
    }))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
