"""How many CPU threads a stage uses: the cores this process may run on, fewer only when asked or
when the machine is busy with other work *now*.

:func:`default_threads` is the one place codistill decides this, for the llama.cpp servers (teacher
and student), the in-process llama.cpp and transformers backends, and torch training:

1. an explicit request wins exactly (a ``threads=`` / ``num_threads`` setting, else the
   ``CODISTILL_THREADS`` environment variable; for torch also ``OMP_NUM_THREADS``);
2. otherwise start from :func:`usable_cores`: the CPUs of this process's affinity mask
   (``os.sched_getaffinity``), capped by a cgroup CPU quota when one is set;
3. and take away the cores that other processes keep busy at this moment: :func:`busy_cores`
   reads ``/proc/stat`` twice, ``interval`` seconds apart (0.5 s), for those CPUs, and subtracts
   the CPU time this process itself used meanwhile. A core counts as taken when others use at
   least half of it. At least 1 thread.

Why not the load average, as before: the 1-minute average still counts the previous stage of our
own run (or the ``pip install`` before it), so an idle 2-core machine got 1 thread and the demo
used 1.14 of its 2 cores. Why lower at all: llama.cpp's threads meet at a barrier after every
layer and torch's OpenMP threads at every operation, so one thread descheduled by another job
stalls the rest (measured on 2 shared cores under load ~7: 1 thread 11 tok/s, 2 threads 0.6 tok/s).

Standard library only and cheap to import; nothing here runs at import time.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["ENV_VAR", "TORCH_ENV", "busy_cores", "cgroup_cpu_limit", "default_threads", "physical_cores", "read_cpu_times",
           "usable_cores"]

log = logging.getLogger(__name__)

ENV_VAR = "CODISTILL_THREADS"
TORCH_ENV = (ENV_VAR, "OMP_NUM_THREADS")  # for torch, an OMP_NUM_THREADS setting is a request too
SAMPLE_S = 0.5
TAKEN = 0.5  # a core counts as taken when other processes use at least this share of it

CpuTimes = dict  # cpu index (or -1 for the "cpu" total line) -> (busy jiffies, total jiffies)


def read_cpu_times(path: str | os.PathLike = "/proc/stat") -> CpuTimes:
    """``{cpu: (busy, total)}`` in jiffies from ``/proc/stat`` (``-1``: the all-CPU line); ``{}``
    when it cannot be read. Busy is user+nice+system+irq+softirq+steal (time stolen by the
    hypervisor is time our threads would wait for); idle+iowait is free. Guest time is already
    inside user/nice."""
    out: CpuTimes = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        name, *fields = line.split()
        try:
            v = [int(x) for x in fields[:8]] + [0] * max(0, 8 - len(fields))
        except ValueError:
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
        busy = user + nice + system + irq + softirq + steal
        key = -1 if name == "cpu" else int(name[3:]) if name[3:].isdigit() else None
        if key is not None:
            out[key] = (busy, busy + idle + iowait)
    return out


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None


def cgroup_cpu_limit(root: str | os.PathLike = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by a cgroup quota as seen from inside the container (v2 ``cpu.max`` or v1
    ``cpu/cpu.cfs_quota_us``), or None when there is none."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def usable_cores(cgroup_root: str | os.PathLike = "/sys/fs/cgroup") -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup quota (rounded up)."""
    cpus = _affinity()
    n = len(cpus) if cpus else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit(cgroup_root)
    if limit:
        n = min(n, max(1, math.ceil(limit - 1e-9)))
    return max(1, n)


def physical_cores(cpus: set[int] | None = None, sysfs: str | os.PathLike = "/sys/devices/system/cpu") -> int | None:
    """Distinct physical cores among ``cpus`` (default: the affinity mask), from the sysfs
    topology (hyper-threads of one core share ``thread_siblings_list``); None when unknown."""
    cpus = _affinity() if cpus is None else cpus
    if not cpus:
        return None
    cores = set()
    for c in cpus:
        try:
            cores.add((Path(sysfs) / f"cpu{c}" / "topology" / "thread_siblings_list").read_text().strip())
        except OSError:
            return None
    return len(cores) or None


def busy_cores(interval: float = SAMPLE_S, *, cpus: set[int] | None = None,
               read: Callable[[], CpuTimes] = read_cpu_times, sleep: Callable[[float], None] = time.sleep,
               own_cpu: Callable[[], float] = time.process_time,
               clock: Callable[[], float] = time.monotonic) -> float | None:
    """Cores' worth of CPU that *other* processes used over ``interval`` seconds, on the CPUs
    ``cpus`` (default: this process's affinity); None when ``/proc/stat`` is not available.

    Each CPU contributes its busy share of the interval; this process's own CPU time over the
    interval (all its threads) is subtracted, so our own work never lowers our thread count."""
    if cpus is None:
        cpus = _affinity()
    before, own0, t0 = read(), own_cpu(), clock()
    if not before:
        return None
    sleep(interval)
    after, own1, t1 = read(), own_cpu(), clock()
    keys = [c for c in (cpus if cpus is not None else before) if c >= 0 and c in before and c in after]
    busy = 0.0
    if keys:
        for c in keys:
            db, dt = after[c][0] - before[c][0], after[c][1] - before[c][1]
            if dt > 0:
                busy += min(1.0, max(0.0, db / dt))
    elif -1 in before and -1 in after:  # no per-CPU lines: the total line's share of our CPUs
        db, dt = after[-1][0] - before[-1][0], after[-1][1] - before[-1][1]
        busy = (max(0.0, db / dt) if dt > 0 else 0.0) * (len(cpus) if cpus else (os.cpu_count() or 1))
    else:
        return None
    own = max(0.0, own1 - own0) / max(t1 - t0, 1e-6)
    return max(0.0, busy - own)


def default_threads(requested: int | None = None, *, measure: bool = True, physical: bool = False,
                    cores: int | None = None, busy: Callable[[], float | None] | None = None,
                    env: dict | None = None, env_names: tuple[str, ...] = (ENV_VAR,),
                    what: str = "threads") -> int:
    """Threads to use now (see the module docstring). ``requested``: an explicit count, returned
    as is. ``measure=False``: do not sample the machine (e.g. when the other busy processes
    are our own siblings, as under DDP). ``physical=True``: at most one thread per physical core
    (torch's own default; a hyper-thread adds nothing to its matmuls). ``cores`` / ``busy`` /
    ``env`` are for tests."""
    if requested:
        return int(requested)
    env = os.environ if env is None else env
    for name in env_names:
        raw = (env.get(name) or "").strip()
        if raw:
            try:
                n = int(raw)
            except ValueError:
                n = 0
            if n >= 1:
                return n
            log.warning("ignoring %s=%r: expected a positive integer", name, raw)
    n = cores or usable_cores()
    if physical and not cores:
        n = min(n, physical_cores() or n)
    if not measure or n == 1:
        return n
    other = (busy or busy_cores)()
    if other is None:
        return n
    # free cores of the affinity mask; a cgroup quota below that caps the count, not the subtraction
    mask = cores or len(_affinity() or ()) or n
    taken = math.floor(other + (1 - TAKEN))
    threads = max(1, min(n, mask - taken))
    log.info("%s: %d (%d usable cores, %.2f busy with other processes)", what, threads, n, other)
    return threads
