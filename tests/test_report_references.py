"""``codistill report``: comparisons beyond the baseline (:mod:`codistill.report.references`).

A recipe run fabricated in tmp_path with known per-task pass/fail vectors, shaped like
paper-small's: Reasoner→Coder pipelines are compared with the direct arm that has their Coder
under their protocol (the teacher arm for a teacher Coder, cd for ``coder: arm:cd``; a student
Coder keeps base@standard); every trained arm also with the reference arm ``cd``; the named pairs
of ``report.pairs``; Holm over every row.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from codistill.report import write_report

N = 40
BENCH = "humaneval+"
STUDENT, TEACHER = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"
ADAPTER = "{run}/arms/{arm}/train/adapter"
GREEDY, SAMPLED = {"temperature": 0.0, "n_samples": 1}, {"temperature": 0.8, "n_samples": 5}

# (arm, eval folder) -> (protocol, the eval's config, per-task pass rule on the task's index)
EVALS = {
    ("base", "eval"): ("paper", {"model": STUDENT}, lambda i: i % 3 == 0),
    ("base", "eval@standard"): ("standard", {"model": STUDENT}, lambda i: i % 2 == 0),
    ("cd", "eval"): ("paper", {"model": STUDENT, "adapter": "cd"}, lambda i: i % 3 == 0 or i % 5 == 1),
    ("cd_sa", "eval"): ("paper", {"model": STUDENT, "adapter": "cd_sa"}, lambda i: i % 3 == 0 or i % 7 == 1),
    ("teacher", "eval@standard"): ("standard", {"model": TEACHER}, lambda i: i % 5 != 0),
    ("rc_student_teacher", "eval@standard"): ("standard", {"model": TEACHER, "strategy": "reasoner-coder"},
                                              lambda i: i % 5 != 0 or i % 4 == 0),
    ("rc_teacher_student", "eval@standard"): ("standard", {"model": STUDENT, "strategy": "reasoner-coder"},
                                              lambda i: i % 2 == 0 or i % 9 == 1),
    ("rc_cd_cd", "eval"): ("paper", {"model": STUDENT, "adapter": "cd", "strategy": "reasoner-coder"},
                           lambda i: i % 3 == 0 or i % 4 == 1),
    ("sweep_direct5", "eval@standard"): ("standard", {"model": STUDENT, **SAMPLED}, lambda i: i % 4 != 3),
    ("sweep_1x5", "eval@standard"): ("standard", {"model": STUDENT, "strategy": "reasoner-coder", **SAMPLED},
                                     lambda i: i % 4 != 3 or i % 6 == 3),
    ("elad50", "eval"): ("paper", {"model": STUDENT, "adapter": "elad50"}, lambda i: i % 4 == 0 or i % 3 == 0),
    ("random50", "eval"): ("paper", {"model": STUDENT, "adapter": "random50"}, lambda i: i % 4 == 0),
    ("lema", "eval"): ("paper", {"model": STUDENT, "adapter": "lema"}, lambda i: i % 2 == 1),
    ("lema", "eval@standard"): ("standard", {"model": STUDENT, "adapter": "lema"}, lambda i: i % 3 == 1),
    ("corrected_only", "eval"): ("paper", {"model": STUDENT, "adapter": "corrected_only"}, lambda i: i % 6 < 3),
}
ARMS = {
    "base": {"kind": "base", "base": True}, "cd": {"kind": "trained"}, "cd_sa": {"kind": "trained"},
    "teacher": {"kind": "base", "base": True, "protocols": ["standard"], "eval": {"model": TEACHER}},
    "rc_student_teacher": {"kind": "pipeline", "reasoner": "student", "coder": "teacher"},
    "rc_teacher_student": {"kind": "pipeline", "reasoner": "teacher", "coder": "student"},
    "rc_cd_cd": {"kind": "pipeline", "reasoner": "arm:cd", "coder": "arm:cd"},
    "sweep_direct5": {"kind": "base", "base": True, "protocols": ["standard"]},
    "sweep_1x5": {"kind": "pipeline", "reasoner": "student", "coder": "student", "plans": 1, "codes_per_plan": 5},
    "elad50": {"kind": "elad"}, "random50": {"kind": "elad-random"}, "lema": {"kind": "cd+lema"},
    "corrected_only": {"kind": "cd+corrected-only"},
}
PAIRS = [["elad50", "random50"], ["lema", "corrected_only"]]


def _vector(arm: str, folder: str) -> list[bool]:
    return [bool(EVALS[(arm, folder)][2](i)) for i in range(N)]


def make_run(root: Path, evals=EVALS, report: dict | None = None, arms=ARMS) -> Path:
    run = root / "ref_run"
    for (arm, folder), (protocol, cfg, rule) in evals.items():
        d = run / "arms" / arm / folder
        d.mkdir(parents=True, exist_ok=True)
        ok = [bool(rule(i)) for i in range(N)]
        cfg = {**GREEDY, "max_new_tokens": 512, **cfg}
        if cfg.get("adapter"):
            cfg["adapter"] = ADAPTER.format(run=run, arm=cfg["adapter"])
        rows = [{"benchmark": BENCH, "task_id": f"HumanEval/{i}", "passed": p, "status": "pass" if p else "fail",
                 "n": 1, "c": int(p), "pass@1": float(p)} for i, p in enumerate(ok)]
        results = {"benchmarks": {BENCH: {"benchmark": BENCH, "tasks": N, "pass@k": {"pass@1": sum(ok) / N}}},
                   "config": cfg, "protocol": {"name": protocol, "description": f"{protocol} protocol",
                                               "check": {"overrides": []}}}
        (d / "results.json").write_text(json.dumps(results))
        (d / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {"name": "ref_run", "format": "paper", "primary_protocol": "format", "arms": arms,
              "report": {"baseline": "base", **({"pairs": PAIRS} if report is None else report)}}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    (run / "run_manifest.json").write_text(json.dumps({"stages": {}}))
    return run


from test_report_protocols import _holm_by_hand, _mcnemar_by_hand  # noqa: E402 - the same hand computations


@pytest.fixture
def reported(tmp_path):
    rep = write_report([make_run(tmp_path)], out=tmp_path / "out", plots=False, n_boot=300)
    return tmp_path / "out", rep


def _pairs(rep: dict) -> set[tuple[str, str, str]]:
    return {(r["arm"], r["baseline"], r["against"]) for r in rep["significance"]}


def test_who_is_compared_with_whom(reported):
    _, rep = reported
    assert _pairs(rep) == {
        # the baseline family, as before
        ("base@standard", "base", "baseline"), ("cd", "base", "baseline"), ("cd_sa", "base", "baseline"),
        ("teacher@standard", "base@standard", "baseline"), ("sweep_direct5@standard", "base@standard", "baseline"),
        ("elad50", "base", "baseline"), ("random50", "base", "baseline"), ("lema", "base", "baseline"),
        ("lema@standard", "base@standard", "baseline"), ("corrected_only", "base", "baseline"),
        # pipelines: the direct arm with their Coder under their protocol; the student's is the baseline's
        ("rc_student_teacher@standard", "teacher@standard", "coder"), ("rc_cd_cd", "cd", "coder"),
        ("rc_teacher_student@standard", "base@standard", "baseline"),
        ("sweep_1x5@standard", "base@standard", "baseline"),
        # every trained arm against cd, under the protocol cd was judged under
        ("cd_sa", "cd", "reference"), ("elad50", "cd", "reference"), ("random50", "cd", "reference"),
        ("lema", "cd", "reference"), ("corrected_only", "cd", "reference"),
        # the named pairs
        ("elad50", "random50", "pair"), ("lema", "corrected_only", "pair"),
    }
    # no pipeline keeps a row against the student baseline it no longer uses
    assert not any(r["arm"].startswith("rc_student_teacher") and r["baseline"].startswith("base")
                   for r in rep["significance"])


def test_rows_are_the_stats_of_the_vectors_and_holm_is_per_family(reported):
    _, rep = reported
    rows = {(r["arm"], r["baseline"]): r for r in rep["significance"]}
    for arm, ref, af, rf in (("cd_sa", "cd", "eval", "eval"), ("elad50", "random50", "eval", "eval"),
                             ("lema", "corrected_only", "eval", "eval"),
                             ("rc_student_teacher@standard", "teacher@standard", "eval@standard", "eval@standard")):
        a, r = _vector(arm.split("@")[0], af), _vector(ref.split("@")[0], rf)
        row = rows[(arm, ref)]
        assert (row["b"], row["c"], row["p_value"]) == pytest.approx(_mcnemar_by_hand(r, a))
        assert row["delta"] == pytest.approx((sum(a) - sum(r)) / N) and row["n_common"] == N
        assert row["arm_pass@1"] == pytest.approx(sum(a) / N) and row["baseline_pass@1"] == pytest.approx(sum(r) / N)
    assert len(rep["significance"]) == 21
    # Holm within each family: against the baseline or the Coder's direct arm; against cd; the pairs
    for fam in ({"baseline", "coder"}, {"reference"}, {"pair"}):
        rows = [r for r in rep["significance"] if r["against"] in fam]
        assert rows
        assert [r["p_holm"] for r in rows] == pytest.approx(_holm_by_hand([r["p_value"] for r in rows]))


def test_a_missing_same_protocol_reference_is_noted(reported):
    _, rep = reported
    notes = rep["significance_notes"]
    assert any(n == "lema@standard vs cd: cd was not judged under the standard protocol; not compared" for n in notes)
    assert any(n == "pair lema@standard vs corrected_only: corrected_only was not judged under the standard "
               "protocol; not compared" for n in notes)


def test_report_text_marks_the_rows(reported):
    out, rep = reported
    md = (out / "report.md").read_text()
    assert ("## Paired significance against the same-protocol baselines (base, base@standard), the pipelines' "
            "Coders, the reference arm (cd) and named pairs") in md
    assert "| rc_student_teacher@standard | teacher@standard (same Coder) | humaneval+ |" in md
    assert "| elad50 | cd (reference) | humaneval+ |" in md and "| elad50 | random50 (pair) | humaneval+ |" in md
    assert "| elad50 | base | humaneval+ |" in md
    assert ("Also, marked in the baseline column: (same Coder) each Reasoner→Coder pipeline against the direct "
            "arm") in md
    assert "(elad50 vs random50, lema vs corrected_only; recipe `report.pairs`)" in md
    n = {k: sum(1 for r in rep["significance"] if r["against"] in k) for k in ("baseline coder", "reference", "pair")}
    assert (f"Holm p adjusts within each family of this table: against the baseline or the Coder's direct arm "
            f"({n['baseline coder']} comparisons); against a reference arm ({n['reference']} comparisons); the named "
            f"pairs ({n['pair']} comparisons).") in md

    from rich.console import Console

    from codistill.report import print_report

    console = Console(record=True, width=260, emoji=False)
    print_report(rep, console=console)
    text = console.export_text()
    line = next(x for x in text.splitlines() if x.strip().startswith("elad50") and "(pair)" in x)
    assert "random50 (pair)" in line


def test_references_default_and_override(tmp_path):
    # a recipe without an arm cd: no reference rows (and no note)
    evals = {k: v for k, v in EVALS.items() if k[0] in ("base", "elad50", "random50")}
    arms = {k: v for k, v in ARMS.items() if k in ("base", "elad50", "random50")}
    rep = write_report([make_run(tmp_path / "a", evals, report={}, arms=arms)], out=tmp_path / "oa", plots=False,
                       n_boot=50)
    assert {r["against"] for r in rep["significance"]} == {"baseline"} and rep["significance_notes"] == []
    md = (tmp_path / "oa" / "report.md").read_text()
    assert "## Paired significance against the baseline (base)\n" in md and "(reference)" not in md
    # report.references: [] turns cd off; the named pairs stay
    rep = write_report([make_run(tmp_path / "b", report={"references": [], "pairs": PAIRS})], out=tmp_path / "ob",
                       plots=False, n_boot=50)
    assert not any(r["against"] == "reference" for r in rep["significance"])
    assert ("elad50", "random50", "pair") in _pairs(rep)
    # another reference, named in the recipe or given to write_report
    run = make_run(tmp_path / "c", report={"references": ["random50"]})
    rep = write_report([run], out=tmp_path / "oc", plots=False, n_boot=50)
    refs = {(a, b) for a, b, k in _pairs(rep) if k == "reference"}
    assert ("elad50", "random50") in refs and ("cd", "random50") in refs and ("random50", "random50") not in refs
    rep = write_report([run], out=tmp_path / "od", plots=False, n_boot=50, references=["cd"], pairs=[])
    assert {b for _, b, k in _pairs(rep) if k == "reference"} == {"cd"}
    assert not any(k == "pair" for _, _, k in _pairs(rep))


def test_unevaluated_pair_and_reference_are_notes(tmp_path):
    evals = {k: v for k, v in EVALS.items() if k[0] not in ("cd", "random50", "rc_cd_cd")}
    rep = write_report([make_run(tmp_path, evals)], out=tmp_path / "out", plots=False, n_boot=50)
    notes = rep["significance_notes"]
    assert "reference arm cd: no evaluation; no arm is compared with it" in notes
    assert "pair elad50 vs random50: no evaluation of random50; not compared" in notes
    assert not any(r["against"] == "reference" for r in rep["significance"])


def test_a_pipeline_without_its_coders_direct_arm_keeps_its_baseline_with_a_note(tmp_path):
    evals = {k: v for k, v in EVALS.items() if k[0] != "teacher"}
    rep = write_report([make_run(tmp_path, evals)], out=tmp_path / "out", plots=False, n_boot=50)
    assert ("rc_student_teacher@standard", "base@standard", "baseline") in _pairs(rep)
    (note,) = [n for n in rep["significance_notes"] if n.startswith("rc_student_teacher")]
    assert f"no direct arm answered with its Coder ({TEACHER}) under the standard protocol" in note
    assert "compared with base@standard" in note


def test_a_sampled_pipeline_prefers_the_direct_arm_sampled_alike(tmp_path):
    evals = {k: v for k, v in EVALS.items() if k[0] in ("base", "teacher", "rc_student_teacher")}
    evals[("teacher5", "eval@standard")] = ("standard", {"model": TEACHER, **SAMPLED}, lambda i: i % 3 != 0)
    evals[("rc_teacher5", "eval@standard")] = ("standard", {"model": TEACHER, "strategy": "reasoner-coder",
                                                            **SAMPLED}, lambda i: i % 6 != 0)
    arms = {**ARMS, "teacher5": {"kind": "base", "base": True, "protocols": ["standard"]},
            "rc_teacher5": {"kind": "pipeline", "reasoner": "student", "coder": "teacher", "plans": 5}}
    rep = write_report([make_run(tmp_path, evals, arms=arms)], out=tmp_path / "out", plots=False, n_boot=50)
    coder = {(a, b) for a, b, k in _pairs(rep) if k == "coder"}
    assert coder == {("rc_student_teacher@standard", "teacher@standard"), ("rc_teacher5@standard", "teacher5@standard")}


def test_eval_runs_outside_a_recipe(tmp_path):
    """Plain eval directories: pairs and references by arm name, given to write_report."""
    run = make_run(tmp_path)
    dirs = [f"{arm}={run / 'arms' / arm / 'eval'}" for arm in ("base", "cd", "elad50", "random50")]
    rep = write_report(dirs, out=tmp_path / "out", plots=False, n_boot=50, references=["cd"],
                       pairs=[["elad50", "random50"]])
    assert _pairs(rep) == {("cd", "base", "baseline"), ("elad50", "base", "baseline"),
                           ("random50", "base", "baseline"), ("elad50", "cd", "reference"),
                           ("random50", "cd", "reference"), ("elad50", "random50", "pair")}
    rep = write_report(dirs, out=tmp_path / "out2", plots=False, n_boot=50)
    assert {r["against"] for r in rep["significance"]} == {"baseline"}
