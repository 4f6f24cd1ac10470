"""The correct stage as a recipe builds it (codistill.correct.recipe): the settings the runner gives
it (the recipe's student, format, eval backend and teacher), its key, the stage run inside the
runner's keyed step, and the training file of each arm kind."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from codistill.correct.config import CorrectConfig
from codistill.correct.recipe import correct_dict, needed, run_correct
from codistill.recipe import load_recipe


def test_the_settings_come_from_the_recipe():
    rec = load_recipe("paper-small")
    d, serve = correct_dict(rec, Path("run"))
    cfg = CorrectConfig.model_validate(d)
    assert serve and cfg.teacher.model == rec.serve.model  # the teach stage's teacher, served for the stage
    assert cfg.dataset == str(Path("run/data")) and cfg.context_data == str(Path("run/teach/train.jsonl"))
    assert cfg.cache_dir == str(Path("run/cache/teach"))  # the teacher cache shared with teach
    st = cfg.student
    assert st.model == "qwen2.5-coder-0.5b" and st.backend == "llama-server" and st.batch_size == 32
    assert st.backend_options == rec.eval.settings()["backend_options"] and st.format == rec.student_format().model_dump()
    # a correct: section wins over what the runner derives
    rec2 = SimpleNamespace(**{k: getattr(rec, k) for k in ("eval", "teach", "train", "data_dir", "serve")},
                           student_format=rec.student_format,
                           correct={"student": {"backend": "hf", "backend_options": {}}, "mix_ratio": 0.5,
                                    "teacher": {"base_url": "http://127.0.0.1:9/v1"}})
    d2, serve2 = correct_dict(rec2, Path("run"))
    c2 = CorrectConfig.model_validate(d2)
    assert not serve2 and c2.teacher.base_url == "http://127.0.0.1:9/v1" and c2.mix_ratio == 0.5
    assert c2.student.backend == "hf" and c2.student.model == "qwen2.5-coder-0.5b"


def test_each_arm_kind_trains_on_its_file():
    recipe = SimpleNamespace(arms={"cd": SimpleNamespace(kind="trained"), "lema": SimpleNamespace(kind="cd+lema"),
                                   "only": SimpleNamespace(kind="cd+corrected-only")})
    run = Path("run")
    from codistill.recipe.stages import train_file

    assert train_file(recipe, run, "cd") == (str(run / "teach" / "train.jsonl"), "teach")
    assert train_file(recipe, run, "lema") == (str(run / "correct" / "train_cd_lema.jsonl"), "correct")
    assert train_file(recipe, run, "only") == (str(run / "correct" / "train_cd_corrected_only.jsonl"), "correct")
    assert needed(SimpleNamespace(recipe=recipe, arms=["cd", "only"]))
    assert not needed(SimpleNamespace(recipe=recipe, arms=["cd"]))


def test_the_stage_runs_inside_the_runners_keyed_step(tmp_path, monkeypatch):
    import codistill.correct.stage as stage
    from codistill.store import write_jsonl

    rec = load_recipe("paper-small")
    rec = SimpleNamespace(**{k: getattr(rec, k) for k in ("eval", "teach", "train", "data_dir", "serve")},
                          student_format=rec.student_format, correct={"teacher": {"base_url": "http://t/v1"}})
    seen = []

    def fake_correct(cfg, out):
        seen.append((cfg, Path(out)))
        for name in ("train_cd_lema.jsonl", "train_cd_corrected_only.jsonl"):
            write_jsonl(Path(out) / name, [{"id": name}])
        return {"complete": True, "counts": {"problems": 3, "failures": 2, "kept": 1, "dropped": 1},
                "cost": {"teacher": {"total_tokens": 42}}, "mix": None}

    monkeypatch.setattr(stage, "correct", fake_correct)
    calls = []

    def keyed(name, key, folder, fn, output_hash, compat=None):
        calls.append((name, key, folder, fn(), output_hash(), compat))
        return calls[-1][-2]

    r = SimpleNamespace(recipe=rec, run=tmp_path, hashes={"data": "d1", "teach": "t1"}, keyed=keyed, console=None)
    out = run_correct(r)
    (name, key, folder, info, ohash, compat), = calls
    assert name == "correct" and folder == tmp_path / "correct" and out == ohash
    assert info == {"problems": 3, "failures": 2, "kept": 1, "dropped": 1, "teacher_tokens": 42, "mix": None}
    assert seen[0][1] == tmp_path / "correct" and seen[0][0].context_data == str(tmp_path / "teach" / "train.jsonl")
    r.hashes["teach"] = "t2"  # new context rows: a new key
    run_correct(r)
    assert calls[1][1] != key and calls[1][5] != compat
    # another layout of the training rows: a new key, the same compat key (the folder, its attempts and
    # corrections are kept; the stage re-writes the rows)
    import codistill.correct.rows as rows

    monkeypatch.setattr(rows, "ROWS_VERSION", rows.ROWS_VERSION + 1)
    run_correct(r)
    assert calls[2][1] != calls[1][1] and calls[2][5] == calls[1][5]


def test_a_recipe_with_correction_arms(tmp_path):
    """Once codistill.recipe registers the stage (a `correct:` section, the arm kinds, the stage):
    the arms train on their mixed sets, keyed by the correct stage's output."""
    import pytest
    import yaml

    from codistill.recipe import spec as recipe_spec

    if "cd+lema" not in recipe_spec.ARM_KINDS:
        pytest.skip("codistill.recipe does not register the correct stage (yet)")
    from codistill.recipe.stages import stage_names, train_config

    raw = yaml.safe_load(Path(recipe_spec.__file__).parent.parent.joinpath("recipes", "paper-small.yaml").read_text())
    raw.pop("default_arms", None)  # the arms are replaced below
    for k in ("references", "pairs"):  # they name arms of the packaged recipe
        raw["report"].pop(k, None)
    raw["arms"] = {"base": {"base": True}, "cd": {"train": {"structure": {"enabled": False}}},
                   "lema": {"kind": "cd+lema", "train": {"structure": {"enabled": False}}},
                   "only": {"kind": "cd+corrected-only", "train": {"structure": {"enabled": False}}}}
    raw["correct"] = {"mix_ratio": 0.5, "sampling": {"n": 2}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    rec = load_recipe(str(path))
    names = stage_names()
    assert names.index("teach") < names.index("correct") < names.index("train")
    run = tmp_path / "run"
    lema, k1 = train_config(rec, run, "lema", "correct-hash")
    only, _ = train_config(rec, run, "only", "correct-hash")
    cd, _ = train_config(rec, run, "cd", "teach-hash")
    assert str(lema.data.train_file) == str(run / "correct" / "train_cd_lema.jsonl")
    assert str(only.data.train_file) == str(run / "correct" / "train_cd_corrected_only.jsonl")
    assert str(cd.data.train_file) == str(run / "teach" / "train.jsonl")
    assert k1 != train_config(rec, run, "lema", "other")[1]
    cfg = CorrectConfig.model_validate(correct_dict(rec, run)[0])
    assert cfg.mix_ratio == 0.5 and cfg.sampling.n == 2 and cfg.student.model == "qwen2.5-coder-0.5b"
    assert needed(SimpleNamespace(recipe=rec, arms=["base", "lema"])) and not needed(SimpleNamespace(recipe=rec, arms=["cd"]))
    raw["correct"] = {"mix_ratio": -1}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="mix_ratio"):
        load_recipe(str(path))
