"""codistill.cpu: thread counts from the usable cores and the load of other processes *now*.

No test depends on the machine's real load: /proc/stat readers, clocks and samplers are fakes.
"""

from __future__ import annotations

import pytest

from codistill import cpu


def stat_text(per_cpu: list[tuple[int, int]]) -> str:
    """A /proc/stat with per-CPU (busy user jiffies, idle jiffies)."""
    lines = [f"cpu  {sum(b for b, _ in per_cpu)} 0 0 {sum(i for _, i in per_cpu)} 0 0 0 0 0 0"]
    lines += [f"cpu{k} {b} 0 0 {i} 0 0 0 0 0 0" for k, (b, i) in enumerate(per_cpu)]
    return "\n".join(lines + ["intr 1 2 3", "ctxt 5", "procs_running 1"]) + "\n"


class FakeProc:
    """Two reads of /proc/stat; each CPU's busy and idle jiffies advance by the given amounts."""

    def __init__(self, busy_share: list[float], jiffies: int = 100):
        self.reads = 0
        self.busy_share = busy_share
        self.jiffies = jiffies

    def __call__(self) -> dict:
        self.reads += 1
        k = self.reads - 1
        per_cpu = [(int(k * s * self.jiffies) + 1000, int(k * (1 - s) * self.jiffies) + 9000) for s in self.busy_share]
        return {i: (b, b + idle) for i, (b, idle) in enumerate(per_cpu)} | {
            -1: (sum(b for b, _ in per_cpu), sum(b + i for b, i in per_cpu))}


def sampler(busy_share: list[float], own_cpu_s: float = 0.0, cpus: set[int] | None = None):
    """busy_cores() over a fake /proc/stat, fake sleep/clock and a fake own CPU time."""
    own = iter([0.0, own_cpu_s])
    clock = iter([0.0, 0.5])
    return cpu.busy_cores(0.5, cpus=cpus if cpus is not None else set(range(len(busy_share))),
                          read=FakeProc(busy_share), sleep=lambda s: None, own_cpu=lambda: next(own),
                          clock=lambda: next(clock))


def test_read_cpu_times_parses_proc_stat(tmp_path):
    p = tmp_path / "stat"
    p.write_text("cpu  10 1 2 100 3 4 5 6 7 8\ncpu0 6 1 1 50 1 2 2 3 7 8\ncpu1 4 0 1 50 2 2 3 3 0 0\nintr 9\n")
    t = cpu.read_cpu_times(p)
    # busy = user+nice+system+irq+softirq+steal; total adds idle+iowait (guest is inside user)
    assert t[-1] == (10 + 1 + 2 + 4 + 5 + 6, 28 + 100 + 3)
    assert t[0] == (6 + 1 + 1 + 2 + 2 + 3, 15 + 50 + 1)
    assert set(t) == {-1, 0, 1}
    assert cpu.read_cpu_times(tmp_path / "missing") == {}


def test_busy_cores_idle_machine_is_zero():
    assert sampler([0.0, 0.0]) == pytest.approx(0.0)


def test_busy_cores_counts_other_processes():
    assert sampler([1.0, 0.0]) == pytest.approx(1.0)
    assert sampler([0.5, 0.25]) == pytest.approx(0.75)


def test_busy_cores_subtracts_our_own_cpu_time():
    # one core fully busy, and it was us (0.5 CPU-s over the 0.5 s interval): nobody else is busy
    assert sampler([1.0, 0.0], own_cpu_s=0.5) == pytest.approx(0.0)


def test_busy_cores_only_counts_cpus_we_may_use():
    # CPU 1 is busy but outside our affinity mask
    assert sampler([0.0, 1.0, 0.0], cpus={0, 2}) == pytest.approx(0.0)


def test_busy_cores_without_proc_stat_is_unknown():
    assert cpu.busy_cores(0.5, read=dict, sleep=lambda s: None) is None


def test_idle_machine_gets_every_core():
    assert cpu.default_threads(cores=2, busy=lambda: sampler([0.02, 0.0]), env={}) == 2
    assert cpu.default_threads(cores=8, busy=lambda: 0.3, env={}) == 8


def test_busy_machine_gets_fewer_threads_but_at_least_one():
    assert cpu.default_threads(cores=2, busy=lambda: sampler([1.0, 0.0]), env={}) == 1
    assert cpu.default_threads(cores=8, busy=lambda: 2.6, env={}) == 5   # a core counts at >= half busy
    assert cpu.default_threads(cores=2, busy=lambda: 7.0, env={}) == 1


def test_explicit_request_is_exact():
    never = lambda: pytest.fail("an explicit request must not sample the machine")  # noqa: E731
    assert cpu.default_threads(3, cores=2, busy=never, env={}) == 3
    assert cpu.default_threads(1, cores=16, busy=never, env={}) == 1
    assert cpu.default_threads(cores=2, busy=never, env={cpu.ENV_VAR: "5"}) == 5
    assert cpu.default_threads(4, cores=2, busy=never, env={cpu.ENV_VAR: "5"}) == 4  # the argument wins
    # torch callers also take OMP_NUM_THREADS as a request
    assert cpu.default_threads(cores=2, busy=never, env={"OMP_NUM_THREADS": "1"}, env_names=cpu.TORCH_ENV) == 1
    # a bad value is ignored (with a warning), not fatal
    assert cpu.default_threads(cores=2, busy=lambda: 0.0, env={cpu.ENV_VAR: "lots"}) == 2


def test_measure_false_and_unknown_load_use_every_core():
    never = lambda: pytest.fail("measure=False must not sample")  # noqa: E731
    assert cpu.default_threads(cores=4, busy=never, measure=False, env={}) == 4
    assert cpu.default_threads(cores=4, busy=lambda: None, env={}) == 4


def test_usable_cores_and_cgroup_quota(tmp_path):
    assert 1 <= cpu.usable_cores(tmp_path) <= (len(cpu._affinity() or ()) or 10**6)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu.cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu.cgroup_cpu_limit(tmp_path) == 1.5
    assert cpu.usable_cores(tmp_path) <= 2
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu.cgroup_cpu_limit(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    assert cpu.cgroup_cpu_limit(v1) == 1.0
    assert cpu.usable_cores(v1) == 1


def test_physical_cores_from_sysfs(tmp_path):
    for c, siblings in {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"}.items():
        d = tmp_path / f"cpu{c}" / "topology"
        d.mkdir(parents=True)
        (d / "thread_siblings_list").write_text(siblings + "\n")
    assert cpu.physical_cores({0, 1, 2, 3}, tmp_path) == 2
    assert cpu.physical_cores({0, 1}, tmp_path) == 2
    assert cpu.physical_cores({0, 2}, tmp_path) == 1
    assert cpu.physical_cores({7}, tmp_path) is None


def test_callers_use_the_helper(monkeypatch):
    """The teacher/student llama.cpp servers take their default from codistill.cpu."""
    from codistill import serving as server

    monkeypatch.setenv(cpu.ENV_VAR, "3")
    assert server.default_threads() == 3
    assert server.default_threads(2) == 2


def test_import_is_cheap():
    import subprocess
    import sys

    code = ("import sys, codistill.cpu, codistill.progress; "
            "print(sorted(m for m in ('torch', 'transformers', 'rich', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
