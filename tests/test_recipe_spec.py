"""The recipe's typed parts: sections made from the stage configs, arms by kind, the registered
stages, and stage keys that stay those of run directories made before."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import Field

from codistill.recipe import load_recipe


def _write(tmp_path: Path, **sections) -> Path:
    recipe = {"name": "spec",
              "data": {"sources": [{"name": "mbpp:train", "limit": 4, "max_problems": 3}], "tokenizer": "whitespace",
                       "decontam": {"enabled": False}, "verify": False},
              "teach": {"mode": "explain", "teacher": {"base_url": "http://127.0.0.1:9/v1"}},
              "eval": {"benchmarks": ["humaneval"], "limit": 2},
              "arms": {"base": {"base": True}, "cd": {}}}
    recipe.update(sections)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_sections_are_typed_from_the_stage_configs(tmp_path):
    from codistill.evaluation.config import EvalConfig
    from codistill.recipe import EvalSection, TrainSection
    from codistill.training.config import TrainConfig

    r = load_recipe(_write(tmp_path, train={"max_steps": 2, "optim": {"lr": 1e-3}}))
    assert isinstance(r.train, TrainSection) and isinstance(r.eval, EvalSection)
    # settings read like the config's; what was not written is the config's default (written once, there)
    assert r.train.max_steps == 2 and r.train.optim.lr == 1e-3 and r.train.model == TrainConfig().model
    assert r.eval.max_new_tokens == EvalConfig(model="m").max_new_tokens
    # only what was written is dumped: arms merge onto it, and the stage keys are those of these settings
    assert r.train.settings() == {"max_steps": 2, "optim": {"lr": 1e-3}}
    assert r.model_dump()["eval"] == {"benchmarks": ["humaneval"], "limit": 2}
    assert r.teach.teacher.base_url == "http://127.0.0.1:9/v1" and r.arms["cd"].train.settings() == {}
    assert r.train["max_steps"] == 2 and r.train.get("num_threads") is None and "optim" in r.train


def test_a_setting_added_to_a_stage_config_is_a_recipe_setting():
    from codistill.evaluation.config import EvalConfig
    from codistill.recipe.spec import section_model

    class WiderEval(EvalConfig):
        new_knob: int = Field(7, ge=1, description="added later")

    section = section_model(WiderEval)
    assert section.model_validate({"new_knob": 3}).settings() == {"new_knob": 3}
    assert section().new_knob == 7
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        section.model_validate({"new_knob": 0})


def test_a_bad_section_is_refused_at_load_naming_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"section train, arms\.cd\.train: optim\.lr = 'fast': Input should be a "
                                         r"valid number"):
        load_recipe(_write(tmp_path, train={"optim": {"lr": "fast"}}))
    # the shared train section of a recipe without trained arms is checked too
    with pytest.raises(ValueError, match=r"section train: unknown setting batch; allowed: model"):
        load_recipe(_write(tmp_path, train={"batch": 2}, arms={"base": {"base": True}}))
    with pytest.raises(ValueError, match=r"section serve: n_parallel = 0"):
        load_recipe(_write(tmp_path, serve={"n_parallel": 0}))
    with pytest.raises(ValueError, match=r"section report: unknown setting baselin; allowed: baseline"):
        load_recipe(_write(tmp_path, report={"baselin": "base"}))
    with pytest.raises(ValueError, match=r"report\.references/pairs name unknown arm\(s\) \['random50'\]"):
        load_recipe(_write(tmp_path, report={"pairs": [["cd", "random50"]]}))
    with pytest.raises(ValueError, match=r"section arms\.cd\.eval: max_new_tokens = 0"):
        load_recipe(_write(tmp_path, arms={"cd": {"eval": {"max_new_tokens": 0}}}))


def test_arms_have_kinds(tmp_path):
    from codistill.recipe import ARM_KINDS, BaseArm, TrainedArm

    r = load_recipe(_write(tmp_path, arms={"base": {"base": True}, "b2": {"kind": "base"}, "cd": {},
                                           "cd2": {"kind": "trained", "train": {"max_steps": 1}}}))
    assert [type(a) for a in r.arms.values()] == [BaseArm, BaseArm, TrainedArm, TrainedArm]
    assert r.arms["b2"].base and not r.arms["cd"].base and r.arms["cd"].trains() and not r.arms["base"].trains()
    assert r.protocols("base") == ["standard", "format"] and r.protocols("cd") == ["format"]
    assert set(ARM_KINDS) == {"base", "trained", "pipeline", "cd+lema", "cd+corrected-only", "elad", "elad-random",
                              "elad+claer", "hsft", "hsft+dpo", "cd+dpo", "reer"}
    with pytest.raises(ValueError, match="arms.x: unknown arm kind; the kinds are base, trained, pipeline"):
        load_recipe(_write(tmp_path, arms={"x": {"kind": "dpo"}}))
    with pytest.raises(ValueError, match=r"arms\.x\.base"):
        load_recipe(_write(tmp_path, arms={"x": {"kind": "trained", "base": True}}))


def test_stages_are_registered_in_order():
    from codistill.recipe import STAGES
    from codistill.recipe.stages import stage_names, stages

    assert STAGES == stage_names() == ("data", "teach", "hsft", "reer", "select", "elad", "correct", "pairs", "train",
                                             "eval", "report")
    assert [s.name for s in stages("run")] == ["data", "teach", "hsft", "reer", "select", "elad", "correct",
                                                "budget"]
    assert [s.name for s in stages("arm")] == ["pairs", "train", "eval"] and [s.name for s in stages("end")] == ["report"]


def test_a_registered_stage_runs_with_no_edit_of_the_runner(tmp_path, monkeypatch):
    from codistill.recipe import stages as registry
    from codistill.recipe.manifest import _file_hash, _hash
    from codistill.recipe.runner import run_recipe

    monkeypatch.setattr(registry, "_REGISTRY", list(registry._REGISTRY))
    seen = []

    def toy(r):
        folder = r.run / "toy"

        def go():
            folder.mkdir(exist_ok=True)
            (folder / "out.txt").write_text(r.hashes["data"])
            seen.append(r.hashes["data"])
            return {"ok": True}

        return r.keyed("toy", _hash(["toy", r.hashes["data"]]), folder, go, lambda: _file_hash(folder / "out.txt"))

    registry.register(registry.Stage("toy", "run", toy), before="teach")
    assert registry.stage_names()[:3] == ("data", "toy", "teach")
    run = tmp_path / "run"
    out = run_recipe(load_recipe(_write(tmp_path)), out_dir=run, only=["data", "toy"])
    st = out["manifest"]["stages"]
    assert st["data"]["status"] == "complete" and st["toy"]["status"] == "complete" and "teach" not in st
    assert (run / "toy" / "out.txt").read_text() == st["data"]["output_hash"] == seen[0]
    run_recipe(load_recipe(_write(tmp_path)), out_dir=run, only=["data", "toy"])  # complete: skipped
    assert len(seen) == 1


# Keys of the packaged paper-small recipe as the runner made them before the recipe was typed
# (runs/paper-small/run_manifest.json has the data and teach ones): a run directory made then is
# recognised as complete now. Upstream output hashes are stand-ins ("D", "T", "A").
# eval keys: max_new_tokens 1920 since the budget guard refused 1024 after paper-small's teach stage;
# eval:cd's changed on 2026-12-02, when the declared loop-stop rule set stop_on_loop on cd (it was
# 5b094d84... without it); the complete evals (base, base@standard, teacher) keep theirs.
# The format evals' keys changed again with stop rule 2 (codistill.formats.STOP_RULE), so that the
# runner runs them again in the same folder (their compat key is unchanged) and they ask again what
# rule 1 cut short: eval:base@format was cf864291..., eval:cd@format 3dbe0fba...; runs/paper-small's
# manifest has the new eval:base key. The standard-protocol evals keep theirs.
PAPER_SMALL_KEYS = {
    "data": "dd7c960f6595db860db2a7c751e45afe87509cbddc317344fdb395ec53eb3c02",
    "teach": "ceb82c51f912395ead1a19ef630674423760ecf6238e7e5b6802841784f4aff4",
    "train:cd": "9c26b357eb046cc6f3ff12e1f9aa983e4f2ba1ab6643869ab6bbada0841850f8",
    "train:cd_sa": "f50e885f61d0aa1ce97b64d7d3aadaa0a35fd23f1e0ac5f52322906b533806b1",
    "eval:base@format": "53b4aa44c580b7787a32ecbf633731f6396292173d9e1379e90042bfffa65b62",
    "eval:base@standard": "2094363e9d04187380d0f7954c84414f53ae2bb56bb9197d64464aa237e54bf1",
    "eval:cd@format": "5b40d9aec38e77d4ee425417c126aa60ef806cb8d9814f1e8a3050defcd3dd68",
    "eval:teacher@standard": "d73b6338e1c76dec2fbd0575147da8c9715259dd84b0c9cebdb25ce5173f7f6e",
}


def test_stage_keys_of_a_packaged_recipe_are_those_of_earlier_runs():
    from codistill.recipe.stages import data_config, eval_config, teach_config, train_config

    r = load_recipe("paper-small")
    run = Path("/tmp/keys/run")  # paths are outside every key
    keys = {"data": data_config(r, run)[1], "teach": teach_config(r, run, "D")[1]}
    for arm in ("cd", "cd_sa"):
        keys[f"train:{arm}"] = train_config(r, run, arm, "T")[1]
    for arm, protocol in (("base", "format"), ("base", "standard"), ("cd", "format"), ("teacher", "standard")):
        keys[f"eval:{arm}@{protocol}"] = eval_config(r, run, arm, protocol, "A" if arm == "cd" else None)[1]
    assert keys == PAPER_SMALL_KEYS
