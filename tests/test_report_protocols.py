"""``codistill report``: each arm is compared with the baseline judged under the arm's own protocol.

A recipe run fabricated in tmp_path with known per-task pass/fail vectors: ``base`` judged in the
run's format (``arms/base/eval``, protocol ``paper``) and under the standard protocol
(``arms/base/eval@standard``), a trained arm ``cd`` (format), a ``teacher`` judged under the
standard protocol only (``arms/teacher/eval@standard``: the arm ``teacher@standard``) and an arm
judged in a format the base never was (``code-only``: no same-protocol baseline, a note).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from codistill.report import write_report

N = {"humaneval": 30, "mbpp": 20}
TASKS = {"humaneval": [f"HumanEval/{i}" for i in range(N["humaneval"])],
         "mbpp": [f"Mbpp/{11 + i}" for i in range(N["mbpp"])]}
# arm dir, eval folder -> (protocol name, per-task pass rule on the task's index)
EVALS = {
    ("base", "eval"): ("paper", lambda i: i % 3 == 0),
    ("base", "eval@standard"): ("standard", lambda i: i % 2 == 0),
    ("cd", "eval"): ("paper", lambda i: i % 3 == 0 or i % 5 == 1),
    ("teacher", "eval@standard"): ("standard", lambda i: i % 5 != 0),
    ("codeonly", "eval"): ("code-only", lambda i: i % 4 == 0),
}


def _vector(arm: str, folder: str, bench: str) -> list[bool]:
    rule = EVALS[(arm, folder)][1]
    return [bool(rule(i)) for i in range(N[bench])]


def _make_eval(d: Path, protocol: str | None, rule) -> None:
    d.mkdir(parents=True, exist_ok=True)
    rows, summaries = [], {}
    for bench, ids in TASKS.items():
        ok = [bool(rule(i)) for i in range(len(ids))]
        rows += [{"benchmark": bench, "task_id": t, "passed": p, "status": "pass" if p else "fail", "n": 1,
                  "c": int(p), "pass@1": float(p)} for t, p in zip(ids, ok)]
        summaries[bench] = {"benchmark": bench, "tasks": len(ids), "samples": len(ids), "passed": sum(ok),
                            "pass@k": {"pass@1": sum(ok) / len(ok)}, "cap_hit_rate": 0.0, "no_code_rate": 0.0}
    results = {"benchmarks": summaries,
               "config": {"model": "m", "n_samples": 1, "temperature": 0.0, "max_new_tokens": 512, "seed": 0}}
    if protocol is not None:
        results["protocol"] = {"name": protocol, "format": None if protocol == "standard" else {"name": protocol},
                               "description": f"{protocol} protocol", "check": {"overrides": []}}
    (d / "results.json").write_text(json.dumps(results))
    (d / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_run(root: Path, evals=EVALS, protocols: bool = True) -> Path:
    run = root / "proto_run"
    for (arm, folder), (protocol, rule) in evals.items():
        _make_eval(run / "arms" / arm / folder, protocol if protocols else None, rule)
    (run / "recipe.yaml").write_text("name: proto_run\nformat: paper\nprimary_protocol: format\n")
    (run / "run_manifest.json").write_text(json.dumps({"stages": {}}))
    return run


def _mcnemar_by_hand(base: list[bool], arm: list[bool]) -> tuple[int, int, float]:
    b = sum(1 for x, y in zip(base, arm) if y and not x)
    c = sum(1 for x, y in zip(base, arm) if x and not y)
    n = b + c
    p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n)
    return b, c, p


def _holm_by_hand(ps: list[float]) -> list[float]:
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out


@pytest.fixture
def reported(tmp_path):
    run = make_run(tmp_path)
    rep = write_report([run], out=tmp_path / "out", plots=False, n_boot=500)
    return tmp_path / "out", rep


def _row(rep: dict, arm: str, bench: str) -> dict:
    (row,) = [r for r in rep["significance"] if r["arm"] == arm and r["benchmark"] == bench]
    return row


def test_each_arm_uses_the_same_protocol_baseline(reported):
    _, rep = reported
    assert rep["baseline"] == "base" and rep["arms"][0] == "base"
    assert {r["arm"]: r["baseline"] for r in rep["significance"]} == {
        "base@standard": "base",  # the same model under two protocols: against the primary baseline
        "cd": "base", "teacher@standard": "base@standard", "codeonly": "base"}
    for bench in N:
        # the teacher (standard) against base@standard, by hand from the vectors
        base_std, teacher = _vector("base", "eval@standard", bench), _vector("teacher", "eval@standard", bench)
        row = _row(rep, "teacher@standard", bench)
        assert (row["b"], row["c"], row["p_value"]) == pytest.approx(_mcnemar_by_hand(base_std, teacher))
        assert row["delta"] == pytest.approx(sum(teacher) / N[bench] - sum(base_std) / N[bench])
        assert row["baseline_pass@1"] == pytest.approx(sum(base_std) / N[bench])
        assert row["n_common"] == N[bench]
        # ... which is not what the format baseline would have given
        base_fmt = _vector("base", "eval", bench)
        assert row["delta"] != pytest.approx(sum(teacher) / N[bench] - sum(base_fmt) / N[bench])
        # the trained arm (format) against base
        cd = _vector("cd", "eval", bench)
        row = _row(rep, "cd", bench)
        assert (row["b"], row["c"], row["p_value"]) == pytest.approx(_mcnemar_by_hand(base_fmt, cd))
        assert row["delta"] == pytest.approx(sum(cd) / N[bench] - sum(base_fmt) / N[bench])
    # Holm stays over every comparison in the table
    ps = [r["p_value"] for r in rep["significance"]]
    assert len(ps) == 8
    assert [r["p_holm"] for r in rep["significance"]] == pytest.approx(_holm_by_hand(ps))


def test_scipy_agrees_on_the_teacher_row(reported):
    stats = pytest.importorskip("scipy.stats")
    _, rep = reported
    row = _row(rep, "teacher@standard", "humaneval")
    assert row["p_value"] == pytest.approx(stats.binomtest(row["b"], row["b"] + row["c"], 0.5).pvalue)


def test_no_same_protocol_baseline_is_noted(reported):
    _, rep = reported
    notes = [n for n in rep["significance_notes"] if n.startswith("codeonly")]
    assert len(notes) == 1
    assert "code-only protocol" in notes[0] and "compared with base" in notes[0] and "mixes" in notes[0]
    assert not any(n.startswith(("teacher", "cd")) for n in rep["significance_notes"])


def test_report_text_names_each_rows_baseline(reported):
    out, rep = reported
    md = (out / "report.md").read_text()
    assert "Baselines: **base** (protocol `paper`), **base@standard** (protocol `standard`); each arm is compared" in md
    assert "Baseline: **base**." not in md
    assert "## Paired significance against the same-protocol baselines (base, base@standard)" in md
    assert "| arm | baseline | benchmark | tasks compared | baseline pass@1 |" in md
    assert "| teacher@standard | base@standard | humaneval |" in md and "| cd | base | humaneval |" in md
    assert "base@standard vs base (`standard` vs `paper`: the same model" in md
    assert "codeonly vs base (`code-only` vs `paper`: Δ mixes" in md
    html = (out / "report.html").read_text()
    assert "<th>baseline</th>" in html and "<td>teacher@standard</td><td>base@standard</td>" in html

    from rich.console import Console

    from codistill.report import print_report

    console = Console(record=True, width=220, emoji=False)
    print_report(rep, console=console)
    text = console.export_text()
    assert "paired vs the baseline judged under the same protocol (base, base@standard)" in text
    line = next(x for x in text.splitlines() if x.strip().startswith("teacher@standard") and "humaneval" in x)
    assert line.split()[1] == "base@standard"


def test_single_protocol_run_reads_as_before(tmp_path):
    """Evals without a protocol record (runs before it): one baseline, no baseline column, no note."""
    evals = {k: v for k, v in EVALS.items() if k[1] == "eval" and k[0] != "codeonly"}
    run = make_run(tmp_path, evals, protocols=False)
    rep = write_report([run], out=tmp_path / "out", plots=False, n_boot=200)
    assert {r["baseline"] for r in rep["significance"]} == {"base"} and rep["significance_notes"] == []
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Baseline: **base**." in md and "## Paired significance against the baseline (base)" in md
    assert "| arm | benchmark | tasks compared | base pass@1 |" in md and "Rows across two protocols" not in md


def test_standard_primary_baseline(tmp_path):
    """--baseline base@standard: format arms still get base, standard arms base@standard."""
    run = make_run(tmp_path)
    rep = write_report([run], out=tmp_path / "out", baseline="base@standard", plots=False, n_boot=200)
    assert rep["baseline"] == "base@standard"
    got = {r["arm"]: r["baseline"] for r in rep["significance"]}
    assert got == {"base": "base@standard", "cd": "base", "teacher@standard": "base@standard",
                   "codeonly": "base@standard"}


def test_only_the_recipes_own_format_is_the_primary_protocol(reported):
    _, rep = reported
    primary = {arm: p["primary"] for arm, p in rep["protocols"].items()}
    # the recipe declares format paper as primary: code-only is another protocol, not the primary one
    assert primary == {"base": True, "base@standard": False, "cd": True, "teacher@standard": False,
                       "codeonly": False}


def test_loop_rate_of_an_eval_judged_before_it_existed_is_read_from_its_samples(tmp_path):
    """results.json without loop_rate (cd of paper-small was judged by older code): the report counts
    the looping answers of <bench>/samples.jsonl; an eval without samples shows none."""
    from test_formats import LONG, LOOP

    run = make_run(tmp_path)
    he = run / "arms" / "cd" / "eval" / "humaneval"
    he.mkdir()
    he.joinpath("samples.jsonl").write_text("".join(
        json.dumps({"task_id": t, "completion_raw": LOOP if i < 3 else LONG}) + "\n"
        for i, t in enumerate(TASKS["humaneval"][:12])))
    rep = write_report([run], out=tmp_path / "out", plots=False, n_boot=200)
    assert rep["answers"]["cd"]["humaneval"]["loop_rate"] == pytest.approx(3 / 12)
    assert rep["answers"]["cd"]["mbpp"]["loop_rate"] is None and rep["answers"]["base"]["humaneval"]["loop_rate"] is None
    md = (tmp_path / "out" / "report.md").read_text()
    # samples without hit_cap: "ended with no code" needs the cap, so it is not counted (–)
    assert "| cd | paper (primary) | 512 | humaneval | 0.0 | 0.0 | – | 25.0 |" in md


def test_answers_that_ended_with_no_code_are_counted_apart_from_cap_and_loop(tmp_path):
    """Of 12 answers: 3 loop (cut by a stop, not at the cap), 2 end early with no code, 1 hits the cap
    with no code, 6 hold code: ended with no code = 2/12, read from samples when results.json lacks it."""
    from test_formats import LONG, LOOP

    run = make_run(tmp_path)
    he = run / "arms" / "cd" / "eval" / "humaneval"
    he.mkdir()
    reasoning = LONG.split("### Code")[0]
    kinds = [(LOOP, False, False)] * 3 + [(reasoning, False, False)] * 2 + [(reasoning, True, False)] + \
        [(LONG, False, True)] * 6
    he.joinpath("samples.jsonl").write_text("".join(
        json.dumps({"task_id": t, "completion_raw": a, "hit_cap": cap, "has_code": code}) + "\n"
        for t, (a, cap, code) in zip(TASKS["humaneval"][:12], kinds)))
    rep = write_report([run], out=tmp_path / "out", plots=False, n_boot=200)
    r = rep["answers"]["cd"]["humaneval"]
    assert r["ended_no_code_rate"] == pytest.approx(2 / 12) and r["loop_rate"] == pytest.approx(3 / 12)


def test_the_report_says_why_answers_without_code_ended_where_the_eval_recorded_it(tmp_path):
    run = make_run(tmp_path)
    res_path = run / "arms" / "cd" / "eval" / "results.json"
    res = json.loads(res_path.read_text())
    res["benchmarks"]["humaneval"].update({"finish_known": 40, "no_code_finish": {"eos": 3, "stop": 9}})
    res_path.write_text(json.dumps(res))
    rep = write_report([run], out=tmp_path / "out", plots=False, n_boot=200)
    assert rep["answers"]["cd"]["humaneval"]["no_code_finish"] == {"eos": 3, "stop": 9}
    assert "finish_known" not in rep["answers"]["cd"]["mbpp"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert ("cd, humaneval: end of sequence 3, a later section's header (stop string) 9 "
            "(40 answers say why they ended)") in md


def test_the_report_names_each_format_evals_stop_rule(tmp_path):
    run = make_run(tmp_path)
    res_path = run / "arms" / "cd" / "eval" / "results.json"
    res = json.loads(res_path.read_text())
    res["stop_rule"] = {"rule": 2, "stops": ["\n```\n\n### Tests"], "superseded": 7, "superseded_this_call": 7}
    res_path.write_text(json.dumps(res))
    rep = write_report([run], out=tmp_path / "out", plots=False, n_boot=200)
    assert rep["protocols"]["cd"]["stop_rule"]["superseded"] == 7
    md = (tmp_path / "out" / "report.md").read_text()
    assert "- cd: rule 2, 7 answer(s) made under rule 1 asked again" in md
    formats = [a for a, p in rep["protocols"].items() if p["name"] not in (None, "standard") and a != "cd"]
    assert formats and all(f"- {a}: rule 1 (made before rule 2" in md for a in formats)
