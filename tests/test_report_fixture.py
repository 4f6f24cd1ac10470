"""``codistill report`` on a recorded recipe run (tests/fixtures/report_run): the output, byte for byte.

The run (two arms, the base also judged under the standard protocol, a training log, teacher
contexts, data and run manifests) is copied to a temporary folder and reported with plots off and a
fixed "generated" time, from relative paths so that no temporary path ends up in the output.
``report.json``, ``report.md`` and ``report.html`` must equal the files in
``tests/fixtures/report_run/expected/``.

After an intended change of the report, regenerate them with
``CODISTILL_REGEN_REPORT_FIXTURE=1 python -m pytest -q tests/test_report_fixture.py`` and review the diff.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest

from codistill.report import write_report

FIXTURE = Path(__file__).parent / "fixtures" / "report_run"
EXPECTED = FIXTURE / "expected"
FILES = ("report.json", "report.md", "report.html")
GENERATED = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def reported(tmp_path, monkeypatch):
    shutil.copytree(FIXTURE, tmp_path / "report_run", ignore=shutil.ignore_patterns("expected"))
    monkeypatch.chdir(tmp_path)
    rep = write_report(["report_run"], out="out", plots=False, generated=GENERATED)
    return tmp_path / "out", rep


def test_recorded_run_report_is_unchanged(reported):
    out, _ = reported
    if os.environ.get("CODISTILL_REGEN_REPORT_FIXTURE"):
        EXPECTED.mkdir(exist_ok=True)
        for name in FILES:
            shutil.copyfile(out / name, EXPECTED / name)
    for name in FILES:
        got, want = (out / name).read_bytes(), (EXPECTED / name).read_bytes()
        assert got == want, f"{name} differs from {EXPECTED / name}"


def test_recorded_run_report_content(reported):
    """What the recorded run must show, independently of the expected files."""
    out, rep = reported
    assert rep["generated"] == "2026-12-01 12:00 UTC"
    assert rep["arms"] == ["base", "base@standard", "cd"] and rep["baseline"] == "base"
    assert rep["benchmarks"] == ["humaneval", "mbpp"]
    assert rep["table1"]["cd"]["humaneval"]["pass@1"] == pytest.approx(5 / 6)
    assert rep["protocols"]["base"]["primary"] is True and rep["protocols"]["base@standard"]["primary"] is False
    assert rep["smoke"]["is_smoke"]  # a handful of tasks
    assert any("token cap" in w for w in rep["warnings"])
    assert rep["verdicts"]["base@standard"]["mbpp"]["other"] == 1
    assert rep["provenance"]["cd"]["train"]["last_step"] == 8
    assert rep["provenance"]["base@standard"]["stage_wall_s"] == {"eval:base@standard": 103.1}
    assert rep["fixed_before_run"]["report_run"][1] == "greedy decoding, max_new_tokens 1024"
    assert rep["runs"]["report_run"]["leakage_valid"]["n"] == 4
    assert json.loads((out / "report.json").read_text())["files"]["json"] == str(Path("out") / "report.json")


def test_source_date_epoch_sets_generated(tmp_path, monkeypatch):
    shutil.copytree(FIXTURE, tmp_path / "r", ignore=shutil.ignore_patterns("expected"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(GENERATED.timestamp())))
    rep = write_report([tmp_path / "r"], out=tmp_path / "o", plots=False, n_boot=200)
    assert rep["generated"] == "2026-12-01 12:00 UTC"
    assert "Generated 2026-12-01 12:00 UTC from" in (tmp_path / "o" / "report.md").read_text()


def test_an_arm_judged_with_a_loop_stop_is_named_in_the_warnings(tmp_path, monkeypatch):
    """Older results.json files do not hold stop_on_loop: they count as off, not as a difference."""
    shutil.copytree(FIXTURE, tmp_path / "r", ignore=shutil.ignore_patterns("expected"))
    monkeypatch.chdir(tmp_path)
    rep = write_report(["r"], out="o1", plots=False, generated=GENERATED)
    assert not any("stop_on_loop" in w for w in rep["warnings"])
    path = Path("r/arms/cd/eval/results.json")
    res = json.loads(path.read_text())
    res["config"]["stop_on_loop"] = True
    path.write_text(json.dumps(res))
    rep = write_report(["r"], out="o2", plots=False, generated=GENERATED)
    assert any("'stop_on_loop' differs between arms" in w and "true: cd" in w for w in rep["warnings"])
    assert rep["provenance"]["cd"]["config"]["stop_on_loop"] is True
    w = next(w for w in rep["warnings"] if "stop_on_loop" in w)
    assert "base: not measured (`codistill loops" in w
    # the base's loop_stop.json (what `codistill loops` writes): 0 flips names the verdicts as the same
    ls = {"eval_dir": "r/arms/base/eval", "greedy": True, "benchmarks": {
        "humaneval": {"answers": 4, "stopped": 1, "program_changed": 0, "pass_to_fail": 0, "fail_to_pass": 0},
        "mbpp": {"answers": 3, "stopped": 0, "program_changed": 0, "pass_to_fail": 0, "fail_to_pass": 0}}}
    Path("r/arms/base/eval/loop_stop.json").write_text(json.dumps(ls))
    w = next(w for w in write_report(["r"], out="o3", plots=False, generated=GENERATED)["warnings"]
             if "stop_on_loop" in w)
    assert "base: the stop would cut 1 of 7 answers and flip 0 verdicts, so its verdicts are those" in w
    ls["benchmarks"]["mbpp"]["pass_to_fail"] = 2
    Path("r/arms/base/eval/loop_stop.json").write_text(json.dumps(ls))
    w = next(w for w in write_report(["r"], out="o4", plots=False, generated=GENERATED)["warnings"]
             if "stop_on_loop" in w)
    assert "base: the stop would cut 1 of 7 answers and flip 2 verdicts" in w and "so its verdicts" not in w
