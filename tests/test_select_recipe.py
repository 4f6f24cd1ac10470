"""The select stage as a recipe builds it (codistill.select.recipe): the settings the runner gives
it (the recipe's student, format and eval backend), its key, the select and elad stages inside the
runner's keyed step, the arms' training files and their teacher tokens."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from codistill.recipe import load_recipe
from codistill.select.config import SelectConfig
from codistill.select.recipe import needed, run_elad, run_select, select_dict, subset_rows
from codistill.store import read_jsonl, write_jsonl
from test_select_claer import teacher  # noqa: F401  (the canned teacher answering claer prompts)
from test_teacher import server  # noqa: F401  (its server)


def _like(rec, **extra):
    return SimpleNamespace(**{k: getattr(rec, k) for k in ("eval", "teach", "train", "data_dir", "serve")},
                           student_format=rec.student_format, **extra)


def test_the_settings_come_from_the_recipe():
    rec = load_recipe("paper-small")
    cfg = SelectConfig.model_validate(select_dict(rec, Path("run")))
    assert cfg.dataset == str(Path("run/data")) and cfg.model == "qwen2.5-coder-0.5b"
    assert cfg.backend == "llama-server" and cfg.backend_options == rec.eval.settings()["backend_options"] == {"n_parallel": 8, "ctx": 3072}
    assert cfg.batch_size == 32 and cfg.student_format().key() == rec.student_format().key()
    # a select: section wins; its own backend takes none of eval's options
    own = SelectConfig.model_validate(select_dict(_like(rec, select={"backend": "hf", "budget": 10, "k": 2}), Path("r")))
    assert own.backend == "hf" and own.backend_options == {} and own.budget == 10 and own.k == 2


def test_each_arm_kind_trains_on_its_file():
    recipe = SimpleNamespace(arms={"cd": SimpleNamespace(kind="trained"), "e": SimpleNamespace(kind="elad"),
                                   "r": SimpleNamespace(kind="elad-random"), "c": SimpleNamespace(kind="elad+claer")})
    run = Path("run")
    from codistill.recipe.stages import train_file

    assert train_file(recipe, run, "cd") == (str(run / "teach" / "train.jsonl"), "teach")
    assert train_file(recipe, run, "e") == (str(run / "elad" / "selected.jsonl"), "elad")
    assert train_file(recipe, run, "r") == (str(run / "elad" / "random.jsonl"), "elad")
    assert train_file(recipe, run, "c") == (str(run / "elad" / "claer" / "train.jsonl"), "elad")
    assert needed(SimpleNamespace(recipe=recipe, arms=["cd", "r"]))
    assert not needed(SimpleNamespace(recipe=recipe, arms=["cd"]))
    rows = [{"id": "a"}, {"id": "a#alt1"}, {"id": "b#s1"}, {"id": "c"}]
    assert subset_rows(rows, {"a", "b"}) == rows[:3]


def _keyed(calls):
    def keyed(name, key, folder, fn, output_hash):
        calls.append((name, key, folder, fn(), output_hash()))
        return calls[-1][-1]
    return keyed


def test_the_stages_run_inside_the_runners_keyed_step(tmp_path, monkeypatch):
    import codistill.select.run as stage

    rec = _like(load_recipe("paper-small"), select={"budget": 1},
                arms={"cd": SimpleNamespace(kind="trained"), "e": SimpleNamespace(kind="elad"),
                      "r": SimpleNamespace(kind="elad-random")})
    seen = []

    def fake_select(cfg, out):
        seen.append((cfg, Path(out)))
        for name, ids in (("selected", ["p1"]), ("random", ["p2"])):
            write_jsonl(Path(out) / name / "rows.jsonl", [{"id": i} for i in ids])
        m = {"complete": True, "counts": {"candidates": 3},
             "cost": {"student_samples": 12, "step_ablations": 5, "generated_tokens": 900, "seconds": 3.0},
             "subsets": {"selected": {"problems": 1, "ids": ["p1"]}, "random": {"problems": 1, "ids": ["p2"]}}}
        (Path(out) / "select_manifest.json").write_text(json.dumps(m))
        return m

    monkeypatch.setattr(stage, "select", fake_select)
    calls = []
    r = SimpleNamespace(recipe=rec, run=tmp_path, hashes={"data": "d1", "teach": "t1"}, keyed=_keyed(calls),
                        console=None, arms=["cd", "e", "r"])
    r.hashes["select"] = run_select(r)
    (name, key, folder, info, _), = calls
    assert name == "select" and folder == tmp_path / "select" and seen[0][1] == folder
    assert seen[0][0].dataset == str(tmp_path / "data") and seen[0][0].budget == 1
    assert info["student_samples"] == 12 and info["selected"] == 1
    r.hashes["data"] = "d2"
    run_select(r)
    assert calls[1][1] != key  # new data: a new key
    # the arms' files: the teach stage's rows of each subset, and the teacher tokens they cost
    write_jsonl(tmp_path / "teach" / "train.jsonl", [{"id": i} for i in ("p1", "p1#alt1", "p2", "p3")])
    write_jsonl(tmp_path / "teach" / "contexts.jsonl", [{"id": i, "tokens": {"prompt": 10, "completion": n}}
                                                       for i, n in (("p1", 5), ("p1#alt1", 6), ("p2", 7), ("p3", 8))])
    run_elad(r)
    name, key2, folder, info, _ = calls[-1]
    assert name == "elad" and info == {"selected": {"problems": 1, "train_rows": 2}, "random": {"problems": 1, "train_rows": 1}}
    assert [x["id"] for x in read_jsonl(tmp_path / "elad" / "selected.jsonl")] == ["p1", "p1#alt1"]
    cost = json.loads((tmp_path / "elad" / "cost.json").read_text())
    assert cost["selected"] == {"rows": 2, "prompt": 20, "completion": 11} and cost["random"]["completion"] == 7
    assert cost["selection"]["student_samples"] == 12
    r.hashes["teach"] = "t2"
    run_elad(r)
    assert calls[-1][1] != key2


def test_the_claer_arm_is_taught_on_the_selected_subset(tmp_path, teacher):
    """An elad+claer arm: the elad stage runs the claer teach on select/selected with the teach
    section's teacher, and its tokens are in cost.json."""
    from test_select_claer import _subset

    sel = tmp_path / "select"
    _subset(sel / "selected", ["cwrong", "cright"])
    write_jsonl(sel / "random" / "rows.jsonl", [])
    (sel / "select_manifest.json").write_text(json.dumps({"cost": {"student_samples": 4}, "subsets": {
        "selected": {"ids": ["cwrong", "cright"]}, "random": {"ids": []}}}))
    write_jsonl(tmp_path / "teach" / "train.jsonl", [{"id": "cwrong"}, {"id": "other"}])
    rec = _like(load_recipe("paper-small"), arms={"c": SimpleNamespace(kind="elad+claer")})
    rec.teach = {"mode": "explain", "teacher": {"base_url": teacher.url, "concurrency": 2, "max_retries": 1},
                 "sampling": {"seed": 100, "max_new_tokens": 200}}
    calls = []
    r = SimpleNamespace(recipe=rec, run=tmp_path, hashes={"select": "s1", "teach": "t1"}, keyed=_keyed(calls),
                        console=None, arms=["c"])
    run_elad(r)
    name, _, _, info, _ = calls[-1]
    assert info["claer"] == {"train_rows": 2, "valid": 2} and info["selected"]["train_rows"] == 1
    rows = {x["id"]: x for x in read_jsonl(tmp_path / "elad" / "claer" / "train.jsonl")}
    assert "2. If x is negative, return minus x." in rows["cwrong"]["context"]
    cost = json.loads((tmp_path / "elad" / "cost.json").read_text())
    assert cost["claer"]["completion"] > 0 and cost["claer"]["rows"] == 2
    assert any("### The student's steps" in p for p in teacher.prompts)


def test_a_recipe_with_elad_arms(tmp_path):
    """Once codistill.recipe registers the stages (a `select:` section, the arm kinds, the stages):
    the arms train on their files, keyed by the elad stage's output."""
    import yaml

    from codistill.recipe import spec as recipe_spec

    if "elad" not in recipe_spec.ARM_KINDS:
        pytest.skip("codistill.recipe does not register the select stage (yet)")
    from codistill.recipe.stages import stage_names, train_config

    raw = yaml.safe_load(Path(recipe_spec.__file__).parent.parent.joinpath("recipes", "paper-small.yaml").read_text())
    raw.pop("default_arms", None)  # the arms are replaced below
    for k in ("references", "pairs"):  # they name arms of the packaged recipe
        raw["report"].pop(k, None)
    raw["arms"] = {"base": {"base": True}, "cd": {"train": {"structure": {"enabled": False}}},
                   "elad50": {"kind": "elad", "train": {"structure": {"enabled": False}}},
                   "random50": {"kind": "elad-random", "train": {"structure": {"enabled": False}}}}
    raw["select"] = {"budget": 0.5, "k": 2}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    rec = load_recipe(str(path))
    names = stage_names()
    assert names.index("teach") < names.index("select") < names.index("elad") < names.index("train")
    run = tmp_path / "run"
    e, k1 = train_config(rec, run, "elad50", "elad-hash")
    rnd, _ = train_config(rec, run, "random50", "elad-hash")
    assert str(e.data.train_file) == str(run / "elad" / "selected.jsonl")
    assert str(rnd.data.train_file) == str(run / "elad" / "random.jsonl")
    assert k1 != train_config(rec, run, "elad50", "other")[1]
    cfg = SelectConfig.model_validate(select_dict(rec, run))
    assert cfg.budget == 0.5 and cfg.k == 2 and cfg.model == "qwen2.5-coder-0.5b"
    raw["select"] = {"budget": 2.5}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="budget"):
        load_recipe(str(path))
