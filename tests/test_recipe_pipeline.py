"""Reasoner→Coder arms in recipes: checked at load, run after the arm whose adapter they use,
keyed by that adapter's content (retraining it re-judges them), refused before it is trained."""

from __future__ import annotations

import json

import pytest
import yaml

from test_recipe import _recipe, _stamps, ml  # noqa: F401
from test_teacher import server  # noqa: F401


def _with_pipelines(path, arms):
    raw = yaml.safe_load(path.read_text())
    raw["arms"] = arms
    path.write_text(yaml.safe_dump(raw))
    return path


def test_pipeline_arms_are_checked_at_load(tmp_path):
    from codistill.recipe import load_recipe

    path = _recipe(tmp_path, tmp_path, "http://127.0.0.1:9/v1")
    _with_pipelines(path, {"base": {"base": True}, "rc": {"kind": "pipeline", "reasoner": "arm:cd"}})
    with pytest.raises(ValueError, match="uses arm:cd, which is not a trained arm of this recipe"):
        load_recipe(path)
    _with_pipelines(path, {"a_rc": {"kind": "pipeline", "reasoner": "arm:cd"}, "cd": {}})  # yaml sorts keys
    with pytest.raises(ValueError, match="list 'cd' before 'a_rc'"):
        load_recipe(path)
    _with_pipelines(path, {"cd": {}, "rc": {"kind": "pipeline", "reasoner": "arm:cd", "coder": "arm:cd", "plans": 3}})
    rec = load_recipe(path)
    assert rec.arms["rc"].kind == "pipeline" and rec.protocols("rc") == ["format"]
    assert rec.arms["rc"].arm_refs() == ["cd", "cd"] and not rec.arms["rc"].trains()
    # the arms run without --arms
    raw = yaml.safe_load(path.read_text())
    raw["default_arms"] = ["cd", "nope"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"unknown arm\(s\) \['nope'\]"):
        load_recipe(path)
    from codistill.recipe.runner import _Runner

    raw["default_arms"] = ["cd"]
    path.write_text(yaml.safe_dump(raw))
    assert _Runner(load_recipe(path), tmp_path / "r", None, None, None).arms == ["cd"]
    assert _Runner(load_recipe(path), tmp_path / "r", None, None, ["rc"]).arms == ["rc"]


def test_pipeline_arms_run_keyed_by_the_adapter_they_use(ml, tmp_path, tiny_llama_dir, server):  # noqa: F811
    from codistill.recipe import load_recipe, run_recipe

    path = _recipe(tmp_path, tiny_llama_dir, server.url)
    _with_pipelines(path, {
        "cd": {"train": {"structure": {"enabled": False}}},
        "rc_student": {"kind": "pipeline", "reasoner": "student", "plans": 2},
        "rc_cd": {"kind": "pipeline", "reasoner": "arm:cd", "coder": "student"},
    })
    raw = yaml.safe_load(path.read_text())
    raw["eval"].update({"reasoner_max_new_tokens": 6, "prompt_mode": "chat"})
    raw["report"] = {"baseline": "rc_student@standard"}
    path.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"

    # the cd arm is not trained yet: its pipeline is refused with the command to run
    with pytest.raises(ValueError, match=r"uses arm:cd, which is not trained yet.*--arms cd,rc_cd"):
        run_recipe(load_recipe(path), out_dir=run, arms=["rc_cd"])

    run_recipe(load_recipe(path), out_dir=run)
    st = _stamps(run)
    # a pipeline whose Coder is not a trained arm is judged under the standard protocol (here not primary)
    assert all(st[k][0] == "complete" for k in ("train:cd", "eval:rc_student@standard", "eval:rc_cd@standard"))
    res = json.loads((run / "arms" / "rc_cd" / "eval@standard" / "results.json").read_text())
    assert res["config"]["strategy"] == "reasoner-coder" and res["config"]["adapter"] is None
    assert res["config"]["reasoner"] == f"{tiny_llama_dir}+{run / 'arms' / 'cd' / 'train' / 'adapter'}"
    assert res["pipeline"]["reasoner_prompt"].startswith("format ")
    two = json.loads((run / "arms" / "rc_student" / "eval@standard" / "results.json").read_text())
    assert two["config"]["n_samples"] == 2 and two["benchmarks"]["humaneval"]["plans"]["n_plans"] == 4
    rep = json.loads((run / "report.json").read_text())
    assert {r["arm"] for r in rep["pipelines"] if r["reasoner"]} == {"rc_student@standard", "rc_cd@standard"}
    assert [r["reasoner"] for r in rep["pipelines"] if r["arm"] == "cd"] == [None]  # a direct row, for the cost

    # again: all skipped; cd retrained: its pipeline is judged again, the student's is not
    run_recipe(load_recipe(path), out_dir=run)
    assert {k: v for k, v in _stamps(run).items() if k != "report"} == {k: v for k, v in st.items() if k != "report"}
    raw = yaml.safe_load(path.read_text())
    raw["arms"]["cd"]["train"]["optim"] = {"lr": 1e-3}
    path.write_text(yaml.safe_dump(raw))
    run_recipe(load_recipe(path), out_dir=run)
    third = _stamps(run)
    assert {k for k in third if k != "report" and third[k] != st.get(k)} == {"train:cd", "eval:cd", "eval:rc_cd@standard"}
