"""``codistill report`` on synthetic run directories with known pass/fail vectors."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from codistill.metrics.stats import mcnemar_exact, paired_bootstrap_ci, wilson_interval
from codistill.report import write_report
from codistill.report.build import SMOKE_TEXT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- synthetic runs
def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_eval(d: Path, benches: dict[str, dict[str, bool]], ppl: list[float] | None = None, model: str = "student",
              adapter: str | None = None, with_tasks: bool = True, **cfg) -> None:
    """An eval run dir as ``codistill eval`` writes it, from per-task pass/fail (one sample per task)."""
    d.mkdir(parents=True, exist_ok=True)
    rows, summaries = [], {}
    for bench, outcome in benches.items():
        brow = []
        for i, (tid, ok) in enumerate(outcome.items()):
            brow.append({"benchmark": bench, "task_id": tid, "program": "def f():\n    pass\n", "passed": ok,
                         "status": "pass" if ok else ("syntax_error" if i % 7 == 0 else "fail"), "failure": None, "n": 1, "c": int(ok),
                         "pass@1": float(ok), "syntax_match": 0.5 + 0.01 * (i % 10),
                         "dataflow_match": None if i % 5 == 0 else 0.4})
        rows += brow
        syn = [r["syntax_match"] for r in brow]
        dfl = [r["dataflow_match"] for r in brow if r["dataflow_match"] is not None]
        summaries[bench] = {"benchmark": bench.upper(), "samples": len(brow), "tasks": len(brow),
                            "passed": sum(outcome.values()), "status": {},
                            "pass@k": {"pass@1": sum(outcome.values()) / len(outcome)},
                            "syntax_match": sum(syn) / len(syn), "dataflow_match": sum(dfl) / len(dfl),
                            "n_dataflow_tasks": len(dfl)}
    if ppl:
        rows += [{"benchmark": "mbpp-questions", "task_id": f"Mbpp/{11 + i}", "question_ppl": v} for i, v in enumerate(ppl)]
    config = {"model": model, "adapter": adapter, "backend": "hf", "benchmarks": list(benches), "n_samples": 1,
              "temperature": 0.0, "top_p": 0.95, "max_new_tokens": 512, "seed": 0, "limit": None,
              "prompt_mode": "auto", "dtype": "float32"}
    config.update(cfg)
    results = {"benchmarks": summaries, "config": config,
               "versions": {"python": "3.11.2", "codistill": "0.1.0", "torch": "2.13.0"},
               "data_hashes": {b: f"{abs(hash(b)) % 10**12:012d}" + "ab" * 26 for b in benches},
               "prompt_mode": "completion",
               "generation": {"new_tokens": 12345, "seconds": 600.0, "tokens_per_s": 20.57, "usage": None},
               "timings_s": {"load_model_s": 3.1, "generate_s": 600.0, "judge_s": 41.2}}
    if ppl:
        finite = sorted(ppl)
        results["question_perplexity"] = {"n": len(finite), "mean": sum(finite) / len(finite),
                                          "median": finite[len(finite) // 2], "prefix_fraction": 0.1}
    (d / "results.json").write_text(json.dumps(results))
    if with_tasks:
        _jsonl(d / "tasks.jsonl", rows)


HE = [f"HumanEval/{i}" for i in range(40)]
MB = [f"Mbpp/{11 + i}" for i in range(35)]
PASS = {
    "base": {"humaneval": {t: i % 3 == 0 for i, t in enumerate(HE)}, "mbpp": {t: i % 4 == 0 for i, t in enumerate(MB)}},
    "cd": {"humaneval": {t: i % 3 == 0 or i % 4 == 1 for i, t in enumerate(HE)},
           "mbpp": {t: i % 4 in (0, 1) for i, t in enumerate(MB)}},
    # cd_sa: mbpp only on tasks 5..34 plus three tasks the others never saw
    "cd_sa": {"humaneval": {t: i % 2 == 0 for i, t in enumerate(HE)},
              "mbpp": {**{t: i % 3 != 0 for i, t in enumerate(MB) if i >= 5}, "Mbpp/900": True, "Mbpp/901": False,
                       "Mbpp/902": True}},
}


def _train_log(d: Path, structure: bool, steps: int = 60) -> None:
    rows = []
    for s in range(1, steps + 1):
        a = 1.0 - 0.5 * s / steps if structure else 1.0
        rows.append({"step": s, "epoch": round(s / steps, 4), "loss": 2.0 * math.exp(-s / 30) + 0.5,
                     "token_loss": 2.0 * math.exp(-s / 30) + (0.6 if structure else 0.5) + 0.05 * math.sin(s),
                     "structure_loss": (0.8 * math.exp(-s / 40) + 0.1) if structure else None,
                     "alpha": a, "beta": (1.0 - a) if structure else 0.0, "lr": 5e-5, "grad_norm": 1.0,
                     "tokens_per_s": 300.0, "step_s": 1.5, "peak_rss_gib": 3.2})
        if s % 20 == 0:
            rows.append({"split": "val", "step": s, "token_loss": 2.2 * math.exp(-s / 30) + 0.6,
                         "structure_loss": 0.9 * math.exp(-s / 40) + 0.15 if structure else None,
                         "loss": 1.0, "alpha": a, "beta": 1 - a if structure else 0.0})
    _jsonl(d / "train_log.jsonl", rows)
    (d / "train_config.json").write_text(json.dumps({"model": "student", "max_steps": steps, "epochs": 1.0,
                                                     "structure": {"enabled": structure}, "optim": {"lr": 5e-5},
                                                     "data": {"max_length": 1024},
                                                     "lora": {"r": 32}}))


def make_recipe_run(root: Path) -> Path:
    run = root / "exp1"
    for arm, benches in PASS.items():
        shift = {"base": 0.0, "cd": 0.25, "cd_sa": 0.1}[arm]
        ppl = [math.exp(1.5 + shift + 0.9 * math.sin(3.7 * i) * (i % 7) / 6) for i in range(35)]
        make_eval(run / "arms" / arm / "eval", benches, ppl=ppl, adapter=None if arm == "base" else f"runs/{arm}/adapter")
        if arm != "base":
            _train_log(run / "arms" / arm / "train", structure=arm == "cd_sa")
    # cd finished (its summary says how the rows became examples); cd_sa is still training
    (run / "arms" / "cd" / "train" / "train_summary.json").write_text(json.dumps({"steps": 60, "data": {
        "total": 200, "kept": 190, "truncated": 38, "dropped_too_long": 4, "dropped_empty_code": 6,
        "dropped_ids": ["x"], "train": 180, "val": 10}}))
    ctx = [{"id": f"p{i}", "leakage": (i % 17) / 34, "valid": i % 7 != 0} for i in range(60)]
    _jsonl(run / "teach" / "contexts.jsonl", ctx)
    (run / "teach" / "teach_manifest.json").write_text(json.dumps({
        "counts": {"rows": 60, "valid": 51, "invalid": 9, "invalid_by_reason": {"leakage": 4, "format": 5}},
        "config": {"leakage_threshold": 0.5},
        "leakage": {"final": {"count": 60, "mean": 0.23, "median": 0.21, "max": 0.47, "threshold": 0.5,
                              "above_threshold": 0, "histogram": {"0.0-0.1": 20, "0.1-0.2": 15}}}}))
    (run / "data").mkdir(parents=True)
    (run / "data" / "manifest.json").write_text(json.dumps({"counts": {"rows": 120, "problems": 100,
                                                                       "total": {"loaded": 130, "kept_problems": 100}}}))
    (run / "recipe.yaml").write_text("name: exp1\nstudent: qwen2.5-coder-0.5b\narms: [base, cd, cd_sa]\n"
                                     "eval:\n  backend: llama-server\n  base_url: http://127.0.0.1:8080/v1\n")
    (run / "run_manifest.json").write_text(json.dumps({
        "stages": {"data": {"status": "complete", "key": "a" * 64, "wall_s": 12.5, "started": "2025-01-01T00:00:00",
                            "finished": "2025-01-01T00:00:12"},
                   "teach": {"status": "complete", "key": "b" * 64, "wall_s": 3600.0},
                   "train:cd": {"status": "complete", "key": "c" * 64, "wall_s": 5400.0},
                   "train:cd_sa": {"status": "running", "key": "d" * 64, "wall_s": None},
                   "eval:base": {"status": "complete", "key": "e" * 64, "wall_s": 900.0}},
        "versions": {"codistill": "0.1.0"}}))
    return run


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    run = make_recipe_run(root)
    plain = root / "other_model"
    make_eval(plain, {"humaneval": {t: i % 5 != 0 for i, t in enumerate(HE)}}, model="qwen2.5-coder-1.5b")
    (plain / "arm.json").write_text(json.dumps({"name": "qwen-1.5b"}))
    out = root / "out"
    rep = write_report([run, plain], out=out, title="synthetic report")
    return {"root": root, "run": run, "plain": plain, "out": out, "rep": rep}


def _sig(rep: dict, arm: str, bench: str) -> dict:
    (row,) = [r for r in rep["significance"] if r["arm"] == arm and r["benchmark"] == bench]
    return row


# --------------------------------------------------------------------------- tests
def test_arms_and_table1_match_hand_fractions(demo):
    rep = demo["rep"]
    assert rep["arms"] == ["base", "cd", "cd_sa", "qwen-1.5b"] and rep["baseline"] == "base"
    assert rep["benchmarks"] == ["humaneval", "mbpp"]
    for arm, benches in PASS.items():
        for bench, outcome in benches.items():
            cell = rep["table1"][arm][bench]
            k, n = sum(outcome.values()), len(outcome)
            assert cell["pass@1"] == pytest.approx(k / n, abs=1e-12)
            assert cell["n_tasks"] == n and cell["k"] == k
            assert cell["ci"] == pytest.approx(list(wilson_interval(k, n)))
    assert rep["table1"]["base"]["humaneval"]["pass@1"] == pytest.approx(14 / 40)
    assert rep["table1"]["qwen-1.5b"]["humaneval"]["pass@1"] == pytest.approx(32 / 40)
    assert "mbpp" not in rep["table1"]["qwen-1.5b"]
    # Table 3 values come from results.json with the task counts from tasks.jsonl
    t3 = rep["table3"]["cd"]["humaneval"]
    assert t3["syntax_match"] == pytest.approx(sum(0.5 + 0.01 * (i % 10) for i in range(40)) / 40)
    assert t3["n_syntax"] == 40 and t3["n_dataflow"] == 32
    assert rep["perplexity"]["base"]["n"] == 35
    assert not rep["smoke"]["is_smoke"]
    # verdict breakdown: the first sample's judge status, counted per arm and benchmark
    for arm, benches in PASS.items():
        for bench, outcome in benches.items():
            oks = list(outcome.values())
            no_code = sum(1 for i, ok in enumerate(oks) if not ok and i % 7 == 0)
            assert rep["verdicts"][arm][bench] == {"pass": sum(oks), "fail": len(oks) - sum(oks) - no_code, "error": 0,
                                                   "timeout": 0, "syntax_error": no_code, "other": 0}
    assert no_code > 0


def test_significance_equals_stats_functions(demo):
    rep = demo["rep"]
    for arm in ("cd", "qwen-1.5b"):
        row = _sig(rep, arm, "humaneval")
        other = PASS[arm]["humaneval"] if arm in PASS else {t: i % 5 != 0 for i, t in enumerate(HE)}
        ids = sorted(HE)
        base = [PASS["base"]["humaneval"][t] for t in ids]
        mine = [other[t] for t in ids]
        mc = mcnemar_exact(base, mine)
        bs = paired_bootstrap_ci([float(x) for x in base], [float(x) for x in mine])
        assert (row["b"], row["c"], row["p_value"]) == (mc["b01"], mc["b10"], mc["p_value"])
        assert row["delta"] == pytest.approx(bs["diff"]) and row["ci"] == pytest.approx([bs["lo"], bs["hi"]])
        assert row["delta"] == pytest.approx(sum(mine) / 40 - sum(base) / 40)
        assert row["n_common"] == 40
    # cd on humaneval: wins where i%4==1 and not i%3==0; never loses
    row = _sig(rep, "cd", "humaneval")
    wins = sum(1 for i in range(40) if i % 4 == 1 and i % 3 != 0)
    assert (row["b"], row["c"]) == (wins, 0)
    assert row["p_value"] == pytest.approx(2 * 0.5**wins)
    # Holm: the smallest p is multiplied by the number of comparisons
    ps = [r["p_value"] for r in rep["significance"]]
    assert min(r["p_holm"] for r in rep["significance"]) == pytest.approx(min(1.0, len(ps) * min(ps)))


def test_intersection_of_task_ids(demo):
    row = _sig(demo["rep"], "cd_sa", "mbpp")
    common = sorted(set(PASS["base"]["mbpp"]) & set(PASS["cd_sa"]["mbpp"]))
    assert len(common) == 30
    assert (row["n_common"], row["n_baseline_only"], row["n_arm_only"]) == (30, 5, 3)
    base = [PASS["base"]["mbpp"][t] for t in common]
    arm = [PASS["cd_sa"]["mbpp"][t] for t in common]
    mc = mcnemar_exact(base, arm)
    assert (row["b"], row["c"], row["p_value"]) == (mc["b01"], mc["b10"], mc["p_value"])
    assert row["baseline_pass@1"] == pytest.approx(sum(base) / 30)
    assert row["arm_pass@1"] == pytest.approx(sum(arm) / 30)
    # Table 1 still reports each arm on all of its own tasks
    assert demo["rep"]["table1"]["cd_sa"]["mbpp"]["n_tasks"] == 33


def test_tiny_case_hand_binomial_p_and_smoke_banner(tmp_path):
    ids = [f"T/{i}" for i in range(8)]
    make_eval(tmp_path / "tiny_base", {"toy": {t: i < 3 for i, t in enumerate(ids)}})
    make_eval(tmp_path / "tiny_arm", {"toy": {t: True for t in ids}})
    rep = write_report([tmp_path / "tiny_base", tmp_path / "tiny_arm"], out=tmp_path / "o", baseline="tiny_base",
                       plots=False)
    (row,) = rep["significance"]
    assert (row["b"], row["c"]) == (5, 0)
    assert row["p_value"] == pytest.approx(2 * 0.5**5) == pytest.approx(0.0625)
    assert row["delta"] == pytest.approx(5 / 8)
    assert rep["smoke"]["is_smoke"] and any("only 8 task" in r for r in rep["smoke"]["reasons"])
    md = (tmp_path / "o" / "report.md").read_text()
    html = (tmp_path / "o" / "report.html").read_text()
    assert SMOKE_TEXT.upper() in md and SMOKE_TEXT in html
    # default baseline 'base' is absent: first arm, and the report says so
    rep2 = write_report([tmp_path / "tiny_arm", tmp_path / "tiny_base"], out=tmp_path / "o2", plots=False)
    assert rep2["baseline"] == "tiny_arm" and "first arm" in rep2["baseline_note"]
    assert "first arm" in (tmp_path / "o2" / "report.md").read_text()


def test_smoke_flag_in_run_manifest(tmp_path):
    run = tmp_path / "r"
    make_eval(run / "arms" / "base" / "eval", {"humaneval": {t: True for t in HE}})
    (run / "run_manifest.json").write_text(json.dumps({"smoke": True, "stages": {}}))
    rep = write_report([run], plots=False)
    assert rep["smoke"]["is_smoke"] and "run_manifest" in rep["smoke"]["reasons"][0]
    assert (run / "report.md").is_file()  # default out: the first run dir


def test_markdown_html_and_plots(demo):
    out = demo["out"]
    md = (out / "report.md").read_text()
    for text in ("Table 1", "Table 3", "| arm | humaneval | mbpp |", "McNemar", "cd_sa", "qwen-1.5b",
                 "35.0 [", "n=40", "Holm", "recipe.yaml", "train:cd"):
        assert text in md, text
    html = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html and "<script" not in html
    assert html.count("data:image/png;base64,") == 5
    assert "<details>" in html and "http://127.0.0.1:8080/v1" in html  # recipe text, escaped, not a link
    rep = demo["rep"]
    assert set(rep["plots"]) == {"pass_at_1", "loss", "alpha_beta", "leakage", "perplexity"}
    assert rep["skipped_plots"] == {}
    for p in rep["plots"].values():
        data = (out / p["path"]).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000
    # how the teach rows became training examples, for the arm whose training finished only
    assert "| cd | 200 | 190 | 38 (20.0%) | 4 / 6 | 180 / 10 | 1024 |" in md
    assert "| cd_sa | 60 |" not in md.split("shortened to max_length")[1].split("\n\n")[0]
    saved = json.loads((out / "report.json").read_text())
    assert saved["provenance"]["cd"]["train"]["examples"]["truncated"] == 38
    assert "examples" not in saved["provenance"]["cd_sa"]["train"]
    assert saved["table1"]["cd"]["humaneval"]["pass@1"] == rep["table1"]["cd"]["humaneval"]["pass@1"]
    assert saved["provenance"]["cd"]["stage_wall_s"] == {"train:cd": 5400.0}
    assert saved["runs"]["exp1"]["leakage_valid"]["n"] == sum(1 for i in range(60) if i % 7 != 0)


def test_duplicate_arm_names_are_a_clear_error(tmp_path):
    for parent in ("a", "b"):
        make_eval(tmp_path / parent / "evalrun", {"humaneval": {t: True for t in HE}})
    with pytest.raises(ValueError, match=r"duplicate arm names: 'evalrun'.*LABEL=RUN_DIR"):
        write_report([tmp_path / "a" / "evalrun", tmp_path / "b" / "evalrun"], out=tmp_path / "o", plots=False)
    rep = write_report([f"first={tmp_path / 'a' / 'evalrun'}", f"second={tmp_path / 'b' / 'evalrun'}"],
                       out=tmp_path / "o", baseline="first", plots=False)
    assert rep["arms"] == ["first", "second"]


def test_missing_optional_inputs_do_not_crash(tmp_path):
    run = tmp_path / "partial"
    make_eval(run / "arms" / "base" / "eval", {"mbpp": {t: i % 2 == 0 for i, t in enumerate(MB)}}, with_tasks=False)
    make_eval(run / "arms" / "cd" / "eval", {"mbpp": {t: True for t in MB}})
    (run / "arms" / "cd_sa" / "train").mkdir(parents=True)  # trained, not evaluated yet
    rep = write_report([run], out=tmp_path / "o")
    assert rep["arms"] == ["base", "cd"]
    assert rep["table1"]["base"]["mbpp"]["pass@1"] == pytest.approx(18 / 35)
    assert rep["table1"]["base"]["mbpp"]["source"] == "results.json"
    assert rep["significance"] == [] and "no per-task results" in rep["significance_notes"][0]
    md = (tmp_path / "o" / "report.md").read_text()
    assert "cd_sa: no evaluation results" in md and "run_manifest.json" in md and "contexts.jsonl" in md
    assert {"loss", "alpha_beta", "leakage", "perplexity"} <= set(rep["skipped_plots"])
    assert "Plots not drawn" in md
    # a recipe run with nothing in it yet
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "run_manifest.json").write_text("{}")
    rep = write_report([empty], plots=False)
    assert rep["arms"] == [] and "No evaluation results found." in (empty / "report.md").read_text()
    with pytest.raises(FileNotFoundError, match="neither a recipe run"):
        write_report([tmp_path / "o"], plots=False)


def test_cli_report(tmp_path, capsys):
    from codistill.cli import main

    ids = [f"T/{i}" for i in range(8)]
    make_eval(tmp_path / "base", {"toy": {t: i < 3 for i, t in enumerate(ids)}})
    make_eval(tmp_path / "arm", {"toy": {t: True for t in ids}})
    assert main(["report", str(tmp_path / "base"), str(tmp_path / "arm"), "--out", str(tmp_path / "o"),
                 "--title", "toy"]) == 0
    printed = capsys.readouterr().out
    assert SMOKE_TEXT in printed and "paired vs base" in printed and "0.062" in printed
    assert (tmp_path / "o" / "plots" / "pass_at_1.png").read_bytes()[:8] == PNG_MAGIC
    make_eval(tmp_path / "x" / "base", {"toy": {t: True for t in ids}})
    assert main(["report", str(tmp_path / "base"), str(tmp_path / "x" / "base")]) == 2
    assert "duplicate arm names" in capsys.readouterr().err


def test_import_does_not_load_matplotlib_or_numpy():
    code = ("import sys, codistill.report, codistill.report.build, codistill.cli; "
            "from codistill.report import write_report; "
            "bad = [m for m in ('matplotlib', 'numpy', 'scipy') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
