"""The report's cost part (codistill.report.cost): a recipe run built by hand, its manifests written by
the stages' own writers (teach's build_manifest, reverse's summarize, correct's and pairs' _manifest,
select's write_outputs, elad's _teacher_tokens, the trainer's config), and the sums checked against
values computed by hand."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import yaml

from codistill.report import cost as C
from codistill.report import write_report
from codistill.store import write_jsonl

TEACHER = "big-teacher"
BENCH = "humaneval"


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _rec(rid, prompt, completion, valid=True, cached=False, **extra) -> dict:
    return {"id": rid, "problem_id": rid, "valid": valid, "reason": None if valid else "leakage 0.9 > 0.5",
            "attempts": 1, "attempt_log": [{"attempt": 0, "cached": cached, "valid": valid}], "leakage": 0.1,
            "tokens": {"prompt": prompt, "completion": completion}, "seconds": 1.0, **extra}


def _teach(run: Path, folder: str, records: list[dict], mode: str = "explain", mode_options=None,
           summary=None) -> dict:
    """teach_manifest.json as teach() writes it (build_manifest, then mode_summary), and contexts.jsonl."""
    from codistill.teacher import TeachConfig
    from codistill.teacher.outputs import build_manifest

    cfg = TeachConfig(out_dir=str(run / folder), mode=mode, dataset="d", **({"mode_options": mode_options}
                                                                              if mode_options else {}))
    client = NS(calls=len(records), usage=lambda: {"prompt_tokens": 1, "completion_tokens": 1, "requests": 1,
                                                   "retries": 0})
    m = build_manifest(cfg, NS(source="t.txt", sha256="s"), [{"id": r["id"]} for r in records], records, [],
                       client, NS(hits=0), {}, len(records), len(records), 1.0, "k", run / folder / "none.json")
    if summary is not None:
        m["mode_summary"] = summary
    _dump(run / folder / "teach_manifest.json", m)
    write_jsonl(run / folder / "contexts.jsonl", records)
    return m


def _student_stage(module, out: Path, cfg, samples: int, teacher_tokens: list[tuple[int, int]], **kw) -> dict:
    """correct_manifest.json / pairs_manifest.json from the stage's own _manifest."""
    from codistill.formats import get_format

    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "attempts_log.jsonl", [{"problems": 2, "samples": samples, "prompt_tokens": 300,
                                               "completion_tokens": 900, "generate_s": 1.0, "judge_s": 0.5}])
    attempts = {"p1": {"samples": [{"passed": i == 0, "status": "pass" if i == 0 else "fail"}
                                   for i in range(samples)], "passed": 1}}
    records = [_rec(f"p1#s{i}", p, c) for i, (p, c) in enumerate(teacher_tokens)]
    args = dict(cfg=cfg, out=out, fmt=get_format("paper"), template=NS(source="t", sha256="s"), run_key="k",
                rows=[{"id": "p1"}], attempts=attempts, fixes=records, skipped=Counter(), records=records, errors={},
                student={"problems": 1, "samples": samples},
                teacher={"new": 1, "teacher_calls": 1, "cache_hits": 0, "usage": {}}, wall=1.0, **kw)
    m = module._manifest(**args)
    _dump(out / getattr(module, "MANIFEST", "correct_manifest.json"), m)
    return m


def _train(run: Path, arm: str, steps: int, batch: int, accum: int, world: int = 1, n_train: int = 10) -> None:
    from codistill.training.config import TrainConfig

    d = run / "arms" / arm / "train"
    _dump(d / "train_config.json", TrainConfig(model="student", data={"train_file": "x"}, batch_size=batch,
                                               grad_accum=accum).resolved())
    _dump(d / "train_summary.json", {"steps": steps, "total_steps": steps, "num_processes": world,
                                     "stopped_early": False, "data": {"train": n_train, "val": 0}})


def _eval(run: Path, arm: str, passed: list[bool], folder: str = "eval", model: str = "student", **res) -> None:
    d = run / "arms" / arm / folder
    gen = res.pop("generation", {"new_tokens": 100, "samples": len(passed),
                                 "this_call": {"new_tokens": 100, "usage": {"prompt_tokens": 50, "completion_tokens": 100,
                                                                            "requests": 2, "retries": 0}}})
    _dump(d / "results.json", {"config": {"model": model, "benchmarks": [BENCH], **res.pop("config", {})},
                               "benchmarks": {BENCH: {"pass@k": {"pass@1": sum(passed) / len(passed)},
                                                      "tasks": len(passed)}},
                               "generation": gen, **res})
    write_jsonl(d / "tasks.jsonl", [{"benchmark": BENCH, "task_id": f"t{i}", "passed": p, "n": 1, "c": int(p)}
                                    for i, p in enumerate(passed)])


ARMS = {"base": {"base": True}, "cd": {"base": False},  # an old recipe.yaml: no kind (trained)
        "lema": {"kind": "cd+lema"}, "elad": {"kind": "elad"}, "erand": {"kind": "elad-random"},
        "claer": {"kind": "elad+claer"}, "hsft": {"kind": "hsft"}, "hdpo": {"kind": "hsft+dpo", "start": "hsft"},
        "cdpo": {"kind": "cd+dpo", "start": "cd"}, "reer": {"kind": "reer"},
        "pipe": {"kind": "pipeline", "reasoner": "teacher", "coder": "arm:cd"},
        "teacher": {"kind": "base", "base": True, "eval": {"model": TEACHER}}}


@pytest.fixture
def run(tmp_path) -> Path:
    from codistill.correct import stage as correct_stage
    from codistill.pairs import stage as pairs_stage
    from codistill.correct.config import CorrectConfig
    from codistill.pairs.config import PairsConfig
    from codistill.select.config import SelectConfig
    from codistill.select.outputs import write_outputs
    from codistill.select.recipe import _teacher_tokens
    from codistill.teacher.reverse.summary import summarize

    run = tmp_path / "run"
    (run / "arms").mkdir(parents=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump({"name": "cost", "serve": {"model": TEACHER}, "arms": ARMS}))
    # teach: p1..p4 (p4 invalid: paid for all the same) = 150 + 200 + 230 + 100 = 680
    _teach(run, "teach", [_rec("p1", 100, 50), _rec("p2", 120, 80), _rec("p3", 200, 30), _rec("p4", 60, 40, valid=False)])
    # correct: teacher 300+100 + 250+50 = 700, student 4 samples
    _student_stage(correct_stage, run / "correct", CorrectConfig(dataset="d", student={"model": "m"}), 4,
                   [(300, 100), (250, 50)], outputs={"train_rows": 3, "files": {}, "mix": {}})
    # select: 4 candidates × (4 samples + 3 ablations + 1 baseline) = 32 generations; p1, p2 score highest
    pids = ["p1", "p2", "p3", "p4"]
    done = {p: {"inter_norm": s, "intra": 0.0, "entropy": s, "clusters": [1], "pass_rate": 0.5, "student": {},
                "cost": {"samples": 4, "ablations": 3, "baselines": 1, "generated_tokens": 100, "generate_s": 1.0,
                         "judge_s": 0.1}} for p, s in zip(pids, (0.9, 0.8, 0.1, 0.2))}
    sel = write_outputs(SelectConfig(dataset="d", model="m", budget=2), run / "select", pids,
                        {p: [{"id": p, "problem_id": p}] for p in pids},
                        {p: NS(model_dump=lambda p=p: {"id": p}) for p in pids},
                        done, "k", {})
    assert sel["cost"]["generations"] == 32 and sel["subsets"]["selected"]["ids"] == ["p1", "p2"]
    ctx = run / "teach" / "contexts.jsonl"
    _dump(run / "elad" / "cost.json", {"selection": sel["cost"],
                                       "selected": _teacher_tokens(ctx, set(sel["subsets"]["selected"]["ids"])),
                                       "random": _teacher_tokens(ctx, set(sel["subsets"]["random"]["ids"])),
                                       "claer": {"rows": 2, "prompt": 70, "completion": 35}})
    # hsft: 500 + 250 = 750
    _teach(run, "hsft", [_rec("p1", 500, 250)], mode="hierarchical")
    # reer: draft 100+60 (from the teach stage's cache) + rewrites 400+200, and an invalid row's draft 90+30
    rev = {"draft": "teacher", "ppl_before": 3.0, "ppl_after": 2.0, "delta_ppl": -1.0, "leakage_before": 0.1,
           "leakage_after": 0.2, "rounds": 2, "proposals": 4, "accepted": 1, "invalid_proposals": 0,
           "refused_leakage": 0, "scorer_passes": 5, "stop": "rounds",
           "teacher_tokens": {"prompt": 400, "completion": 200, "total": 600},
           "draft_teacher_tokens": {"prompt": 100, "completion": 60}}
    reer = [_rec("p1", 500, 260, cached=True, reverse=rev), _rec("p2", 90, 30, valid=False, reverse=None)]
    _teach(run, "reer", reer, mode="reverse", mode_options={"scorer": {"model": "student"}},
           summary={**summarize(reer, 0.5), "this_run": {"scorer_passes": 0}})
    # pairs of the two DPO arms: 40+10 and 80+20 teacher tokens, 6 and 8 student samples
    for arm, samples, tok in (("hdpo", 6, [(40, 10)]), ("cdpo", 8, [(80, 20)])):
        _student_stage(pairs_stage, run / "arms" / arm / "pairs", PairsConfig(dataset="d", student={"model": "m"}),
                       samples, tok, pairs=[{"first_wrong_step": 1}], dropped=Counter())
    # training: steps × batch × grad_accum × processes
    for arm, (steps, batch, accum, world) in {"cd": (10, 4, 2, 1), "lema": (12, 4, 1, 1), "elad": (5, 2, 1, 1),
                                              "erand": (5, 2, 1, 1), "claer": (6, 2, 1, 1), "hsft": (7, 4, 1, 2),
                                              "hdpo": (3, 2, 1, 1), "cdpo": (4, 2, 1, 1), "reer": (9, 4, 1, 1)}.items():
        _train(run, arm, steps, batch, accum, world)
    for arm in ARMS:
        if arm not in ("pipe", "teacher"):
            _eval(run, arm, [True, False])
    _eval(run, "cd", [True, True], folder="eval@standard")
    _eval(run, "pipe", [True, True, True, False], config={"strategy": "reasoner-coder", "reasoner": TEACHER},
          pipeline={"strategy": "reasoner-coder", "reasoner": TEACHER, "plans": 1, "codes_per_plan": 1,
                    "reasoner_usage": {"prompt_tokens": 1000, "completion_tokens": 500, "requests": 4, "retries": 0}})
    _eval(run, "teacher", [True, True], model=TEACHER, config={"strategy": "direct"},
          generation={"new_tokens": 800, "samples": 2, "this_call": {"new_tokens": 400, "usage": {
              "prompt_tokens": 200, "completion_tokens": 400, "requests": 1, "retries": 0}}})
    return run


def _rows(run: Path, tmp_path: Path) -> tuple[dict, dict]:
    rep = write_report([run], out=tmp_path / "out", plots=False, n_boot=50)
    return rep, {r["arm"]: r for r in rep["cost"]}


def test_cost_per_kind(run, tmp_path):
    rep, rows = _rows(run, tmp_path)
    teach, sel_samples = 680, 32

    def check(arm, kind, data, inference, samples, examples, scoring=0):
        r = rows[arm]
        assert (r["kind"], r["teacher_tokens_data"], r["teacher_tokens_inference"], r["student_samples"],
                r["training_examples"], r["student_scoring_passes"]) == (kind, data, inference, samples, examples,
                                                                          scoring), arm
        assert r["teacher_tokens"] == data + inference

    check("base", "base", 0, 0, 0, 0)
    check("cd", "trained", teach, 0, 0, 10 * 4 * 2)
    check("lema", "cd+lema", teach + 700, 0, 4, 12 * 4)
    check("elad", "elad", 150 + 200, 0, sel_samples, 5 * 2)  # the chosen problems' teach records only
    rnd = json.loads((run / "select" / "select_manifest.json").read_text())["subsets"]["random"]["ids"]
    by_id = {"p1": 150, "p2": 200, "p3": 230, "p4": 100}
    check("erand", "elad-random", sum(by_id[p] for p in rnd), 0, 0, 5 * 2)
    check("claer", "elad+claer", 70 + 35, 0, sel_samples, 6 * 2)
    check("hsft", "hsft", 750, 0, 0, 7 * 4 * 2)
    check("hdpo", "hsft+dpo", 750 + 50, 0, 6, 7 * 4 * 2 + 3 * 2)
    check("cdpo", "cd+dpo", teach + 100, 0, 8, 80 + 4 * 2)
    check("reer", "reer", 500 + 260 + 90 + 30, 0, 0, 9 * 4, scoring=5)
    check("pipe", "pipeline", teach, 1500, 0, 80)  # the teacher as Reasoner + arm:cd's training
    check("teacher", "base", 0, 600, 0, 0)
    assert rows["teacher"]["lower_bound"] == ["teacher_tokens_inference"]  # the last eval call made 400 of 800
    assert rows["cd@standard"]["recipe_arm"] == "cd" and rows["cd@standard"]["protocol"] == "standard"
    assert rows["cd@standard"]["teacher_tokens_data"] == teach and rows["cd@standard"]["pass@1"] == {BENCH: 1.0}
    assert rows["cd"]["pass@1_per_mtok"][BENCH] == pytest.approx(0.5 / (teach / 1e6))
    assert rows["pipe"]["pass@1_per_mtok"][BENCH] == pytest.approx(0.75 / ((teach + 1500) / 1e6))
    assert rows["base"]["pass@1_per_mtok"][BENCH] is None  # no teacher tokens
    assert rows["cd"]["training_set"] == 10
    assert not any(r["notes"] for r in rows.values()), {a: r["notes"] for a, r in rows.items() if r["notes"]}
    reer_src = " ".join(rows["reer"]["sources"])
    assert "drafts 280 and rewrites 600" in reer_src and "1 draft answer(s) served by the teach stage's cache" in reer_src
    assert any(s.startswith("start arm hsft: ") for s in rows["hdpo"]["sources"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Cost per arm" in md and "cd+lema" in md and "1,380" in md  # lema's 680 + 700
    assert json.loads((tmp_path / "out" / "report.json").read_text())["cost"][0]["arm"] == "base"


def test_missing_manifests_give_a_dash_and_a_note(run, tmp_path):
    for rel in ("correct/correct_manifest.json", "arms/cdpo/pairs/pairs_manifest.json",
                "arms/elad/train/train_summary.json"):
        (run / rel).unlink()
    tm = json.loads((run / "hsft" / "teach_manifest.json").read_text())
    del tm["tokens"]  # a manifest written before token accounting
    _dump(run / "hsft" / "teach_manifest.json", tm)
    res = json.loads((run / "arms" / "pipe" / "eval" / "results.json").read_text())
    res["pipeline"]["reasoner_usage"] = None  # a Reasoner backend that counts no usage
    _dump(run / "arms" / "pipe" / "eval" / "results.json", res)
    rep, rows = _rows(run, tmp_path)
    assert rows["pipe"]["teacher_tokens_inference"] is None and rows["pipe"]["teacher_tokens_data"] == 680
    assert any("Reasoner but results.json has no pipeline.reasoner_usage" in n for n in rows["pipe"]["notes"])
    assert rows["lema"]["teacher_tokens_data"] is None and rows["lema"]["student_samples"] is None
    assert any("correct/correct_manifest.json missing" in n for n in rows["lema"]["notes"])
    assert rows["lema"]["pass@1_per_mtok"][BENCH] is None and rows["lema"]["training_examples"] == 48
    assert rows["cdpo"]["teacher_tokens_data"] is None and rows["cdpo"]["training_examples"] == 88
    assert rows["elad"]["training_examples"] is None and rows["elad"]["teacher_tokens_data"] == 350
    assert any("has no tokens" in n for n in rows["hdpo"]["notes"])  # its start arm's manifest
    assert rows["cd"]["teacher_tokens_data"] == 680  # the others are unaffected
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Not priced (shown as –)" in md
    assert "lema: teacher tokens (data) unknown: correct/correct_manifest.json missing" in md
    from rich.console import Console

    from codistill.report.terminal import print_report

    console = Console(record=True, width=250)
    print_report(rep, console)
    assert "cost per arm: teacher tokens" in console.export_text()


def test_unknown_arm_and_kind(run, tmp_path):
    rec = yaml.safe_load((run / "recipe.yaml").read_text())
    del rec["arms"]["erand"]
    rec["arms"]["claer"]["kind"] = "future-kind"
    (run / "recipe.yaml").write_text(yaml.safe_dump(rec))
    _, rows = _rows(run, tmp_path)
    assert rows["erand"]["kind"] is None and rows["erand"]["teacher_tokens_data"] is None
    assert any("not in the run's recipe.yaml" in n for n in rows["erand"]["notes"])
    assert any("does not price arms of kind 'future-kind'" in n for n in rows["claer"]["notes"])


def test_reer_student_draft_counts_plans(tmp_path):
    run = tmp_path / "r"
    (run / "arms").mkdir(parents=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump({"arms": {"reer": {"kind": "reer"}}}))
    _teach(run, "reer", [_rec("p1", 0, 0), _rec("p2", 0, 0)], mode="reverse",
           mode_options={"scorer": {"model": "s"}, "draft": "student"}, summary={"totals": {"scorer_passes": 3}})
    _eval(run, "reer", [True])
    _, rows = _rows(run, tmp_path)
    assert rows["reer"]["student_samples"] == 2 and rows["reer"]["student_scoring_passes"] == 3


def test_nothing_priced_adds_no_key(tmp_path):
    run = tmp_path / "r"
    (run / "arms").mkdir(parents=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump({"arms": {"base": {"base": True}, "cd": {}}}))
    _dump(run / "teach" / "teach_manifest.json", {"counts": {"rows": 1}})  # no tokens recorded
    _eval(run, "base", [True])
    _eval(run, "cd", [False])
    rep = write_report([run], out=tmp_path / "o", plots=False, n_boot=50)
    assert "cost" not in rep and "Cost per arm" not in (tmp_path / "o" / "report.md").read_text()


def test_paths_are_the_writers():
    from codistill.pairs.stage import MANIFEST, PAIRS_FILE
    from codistill.recipe.spec import ARM_KINDS, DpoArm
    from codistill.select.recipe import ELAD_KINDS

    assert C.PAIRS.endswith("/pairs/" + MANIFEST) and DpoArm.train_source[0].endswith("/pairs/" + PAIRS_FILE)
    assert set(C._ELAD_SUBSET) == set(ELAD_KINDS)
    assert C._TRAINED == {k for k, cls in ARM_KINDS.items() if "train" in cls.stages}, \
        "a new trained arm kind: price it in codistill.report.cost"
    assert set(ARM_KINDS) - C._TRAINED == {"base", "pipeline"}
