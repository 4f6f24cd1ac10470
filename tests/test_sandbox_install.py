"""The sandbox works wherever codistill, the interpreter and the venv are installed (issue 13).

The worker covers /tmp, /var/tmp and /dev/shm with fresh tmpfs for each program and hides the rest
of the host; a package or venv living in one of those folders must still work. Each test starts
workers from a copy of the package placed there, in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import codistill

SRC = Path(codistill.__file__).resolve().parent

PROBE = textwrap.dedent("""
    import json, sys
    import codistill
    from codistill.execution.sandbox import Sandbox, SandboxConfig
    with Sandbox(SandboxConfig(workers=1)) as sb:
        r = sb.run_python("import os, numpy\\nopen('/tmp/x', 'w').write('1')\\nprint(input()[::-1], os.listdir('/tmp'))",
                          stdin="abc\\n")
        print(json.dumps({"package": codistill.__file__, "prefix": sys.prefix, "status": r.status,
                          "stdout": r.stdout, "isolation": sb.isolation, "error": r.error}))
""")


def _copy_package(dest: Path) -> Path:
    src_root = dest / "src"
    shutil.copytree(SRC, src_root / "codistill", ignore=shutil.ignore_patterns("__pycache__"))
    return src_root


def _probe(python: str, src_root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(src_root)
    out = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env, cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("base", ["/tmp", "/dev/shm", "/var/tmp"])
def test_sandbox_runs_from_a_package_copy_under_a_covered_folder(base):
    if not os.path.isdir(base) or not os.access(base, os.W_OK):
        pytest.skip(f"{base} is not writable here")
    with tempfile.TemporaryDirectory(dir=base, prefix="cd-install-") as d:
        src_root = _copy_package(Path(d))
        res = _probe(sys.executable, src_root)
        assert res["package"].startswith(d), res  # the copy, not the checkout, was used
        assert res["status"] == "ok" and res["stdout"].strip() == "cba ['x']", res
        if os.geteuid() == 0:
            assert res["isolation"]["fs_view"] == "allow-list" and res["isolation"]["degraded"] == [], res


def test_sandbox_runs_from_a_venv_under_tmp():
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="cd-venv-") as d:
        venv = Path(d) / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                       check=True, timeout=120)
        src_root = _copy_package(Path(d))
        res = _probe(str(venv / "bin" / "python"), src_root)
        assert res["prefix"] == str(venv) and res["package"].startswith(d), res
        assert res["status"] == "ok" and res["stdout"].strip() == "cba ['x']", res


def test_a_worker_that_cannot_start_says_why(tmp_path, monkeypatch):
    from codistill.execution import sandbox as sandbox_mod

    broken = tmp_path / "broken"
    (broken / "codistill").mkdir(parents=True)
    (broken / "codistill" / "__init__.py").write_text("raise ImportError('codistill-broken-on-purpose')\n")
    monkeypatch.setattr(sandbox_mod, "_SRC_DIR", str(broken))
    with pytest.raises(sandbox_mod.SandboxError) as info:
        sandbox_mod.Sandbox(sandbox_mod.SandboxConfig(workers=1)).start()
    msg = str(info.value)
    assert "failed to start" in msg and "codistill-broken-on-purpose" in msg and "ImportError" in msg
