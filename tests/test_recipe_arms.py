"""The paradigm arms in one recipe: SuperCorrect (hsft, hsft+dpo, cd+dpo) and REER (reer) are
registered kinds with their stages, training files and keys; a DPO arm must start from the kind
its own kind continues."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


def _write(tmp_path, arms, **extra):
    from codistill.recipe.spec import __file__ as spec_file

    raw = yaml.safe_load(Path(spec_file).parent.parent.joinpath("recipes", "paper-small.yaml").read_text())
    raw.pop("default_arms", None)
    for k in ("references", "pairs"):  # they name arms of the packaged recipe
        raw["report"].pop(k, None)
    raw["arms"] = arms
    raw.update(extra)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


ARMS = {"base": {"base": True}, "cd": {}, "hsft": {"kind": "hsft"},
        "hsft_dpo": {"kind": "hsft+dpo", "start": "hsft", "train": {"dpo": {"beta": 0.2}}},
        "cd_dpo": {"kind": "cd+dpo", "start": "cd"}, "reer": {"kind": "reer"}}


def test_paradigm_arms_train_on_their_own_files(tmp_path):
    from codistill.recipe import load_recipe
    from codistill.recipe.stages import train_config
    from codistill.teacher import TeachConfig
    from codistill.teacher.reverse.recipe import reer_dict
    from codistill.training.objectives import objective_name

    rec = load_recipe(_write(tmp_path, ARMS, reer={"max_rounds": 1, "proposals": 3}))
    run = tmp_path / "run"
    files = {a: str(train_config(rec, run, a, "h")[0].data.train_file) for a in ("cd", "hsft", "hsft_dpo", "reer")}
    assert files == {"cd": str(run / "teach/train.jsonl"), "hsft": str(run / "hsft/train.jsonl"),
                     "hsft_dpo": str(run / "arms/hsft_dpo/pairs/pairs.jsonl"), "reer": str(run / "reer/train.jsonl")}
    dpo, _ = train_config(rec, run, "hsft_dpo", "h")
    assert objective_name(dpo) == "dpo" and dpo.dpo.beta == 0.2
    assert str(dpo.init_adapter) == str(run / "arms/hsft/train/adapter")
    cd, cd_key = train_config(rec, run, "cd", "h")
    reer, reer_key = train_config(rec, run, "reer", "h")
    assert cd.key() == reer.key() and cd_key == reer_key  # same settings: only the file's hash tells them apart
    assert train_config(rec, run, "reer", "other")[1] != cd_key
    # the reer stage: teach in mode reverse, scored by the run's student in the run's format
    cfg = TeachConfig.model_validate(reer_dict(rec, run)[0])
    assert cfg.mode == "reverse" and cfg.out_dir == str(run / "reer") and cfg.cache_dir == str(run / "cache/teach")
    opts = cfg.mode_options
    assert opts["scorer"]["model"] == "qwen2.5-coder-0.5b" and opts["format"]["name"] == "paper"
    assert opts["max_rounds"] == 1 and opts["proposals"] == 3


def test_a_dpo_arm_must_start_from_the_kind_it_continues(tmp_path):
    from codistill.recipe import load_recipe

    with pytest.raises(ValueError, match="must start from an arm of kind 'hsft'; 'cd' is of kind 'trained'"):
        load_recipe(_write(tmp_path, {"cd": {}, "x": {"kind": "hsft+dpo", "start": "cd"}}))
    with pytest.raises(ValueError, match="uses arm:nope"):
        load_recipe(_write(tmp_path, {"cd": {}, "x": {"kind": "cd+dpo", "start": "nope"}}))
    with pytest.raises(ValueError, match=r"reer.*max_rounds"):
        load_recipe(_write(tmp_path, ARMS, reer={"max_rounds": 0}))
