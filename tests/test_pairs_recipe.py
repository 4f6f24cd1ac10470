"""SuperCorrect's recipe pieces (codistill.pairs.recipe): the hsft stage's settings (the teach
section's, mode hierarchical), a DPO arm's pairs settings (the start arm's student in the run's
format, the eval backend, the teach teacher), the check of ``start``, each kind's training file and
train overrides, and the pairs stage run inside the runner's keyed step with the start adapter in
its key."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from codistill.pairs.config import PairsConfig
from codistill.pairs.recipe import (
    hsft_dict,
    needs_hsft,
    pairs_dict,
    run_pairs,
    start_problem,
    train_data_hash,
    train_overrides,
)
from codistill.recipe import load_recipe
from codistill.teacher import TeachConfig


def arm(kind: str, start: str | None = None):
    return SimpleNamespace(kind=kind, start=start, arm_refs=lambda: [start] if start else [])


ARMS = {"base": arm("base"), "cd": arm("trained"), "hsft": arm("hsft"), "hsft_dpo": arm("hsft+dpo", "hsft"),
        "cd_dpo": arm("cd+dpo", "cd"), "bad": arm("hsft+dpo", "cd")}


def recipe_with(**extra):
    rec = load_recipe("paper-small")
    return SimpleNamespace(**{k: getattr(rec, k) for k in ("eval", "teach", "train", "data_dir", "serve")},
                           student_format=rec.student_format, arms=ARMS, **extra)


def test_hsft_is_the_teach_stage_in_hierarchical_mode():
    rec = recipe_with(hsft={"max_attempts": 5})
    d, serve = hsft_dict(rec, Path("run"))
    cfg = TeachConfig.model_validate(d)
    assert serve and cfg.mode == "hierarchical" and cfg.out_dir == str(Path("run/hsft"))
    assert cfg.dataset == str(Path("run/data")) and cfg.cache_dir == str(Path("run/cache/teach"))
    assert cfg.max_attempts == 5  # the recipe's hsft: section on top
    assert needs_hsft(SimpleNamespace(recipe=rec, arms=["hsft"]))
    assert needs_hsft(SimpleNamespace(recipe=rec, arms=["hsft_dpo"]))  # its start arm is an hsft arm
    assert not needs_hsft(SimpleNamespace(recipe=rec, arms=["cd", "cd_dpo"]))


def test_a_dpo_arms_pairs_come_from_its_start_arms_student():
    rec = recipe_with(pairs={"failures_per_problem": 2})
    d, serve = pairs_dict(rec, Path("run"), "cd_dpo")
    cfg = PairsConfig.model_validate(d)
    st = cfg.student
    assert st.model == "qwen2.5-coder-0.5b" and st.adapter == str(Path("run/arms/cd/train/adapter"))
    assert st.format == rec.student_format().model_dump() and st.backend == "llama-server"
    assert serve and cfg.teacher.model == rec.serve.model and cfg.cache_dir == str(Path("run/cache/teach"))
    assert cfg.failures_per_problem == 2 and cfg.dataset == str(Path("run/data"))
    assert start_problem(rec, "hsft_dpo") is None and start_problem(rec, "cd_dpo") is None
    with pytest.raises(ValueError, match="must start from an arm of kind 'hsft'; 'cd' is of kind 'trained'"):
        pairs_dict(rec, Path("run"), "bad")


def test_each_kind_trains_on_its_file_with_its_overrides():
    from codistill.recipe.settings import _train_dict
    from codistill.training.config import TrainConfig
    from codistill.training.objectives import objective_name

    from codistill.recipe.stages import train_file

    rec = recipe_with()
    run = Path("run")
    assert train_file(rec, run, "cd") == (str(run / "teach" / "train.jsonl"), "teach")
    assert train_overrides(rec, run, "cd") == {}
    assert train_file(rec, run, "hsft") == (str(run / "hsft" / "train.jsonl"), "hsft")
    assert train_file(rec, run, "hsft_dpo") == (str(run / "arms" / "hsft_dpo" / "pairs" / "pairs.jsonl"),
                                                "pairs:hsft_dpo")
    over = train_overrides(rec, run, "hsft_dpo")
    assert over == {"dpo": {}, "init_adapter": str(run / "arms" / "hsft" / "train" / "adapter")}
    spec = SimpleNamespace(train={"dpo": {"beta": 0.3}})  # the arm's own overrides win over the defaults
    from codistill.overrides import deep_merge

    d = _train_dict(rec, SimpleNamespace(train=deep_merge(over, spec.train)), run / "arms" / "hsft_dpo" / "train",
                    train_file(rec, run, "hsft_dpo")[0])
    cfg = TrainConfig.model_validate(d)
    assert objective_name(cfg) == "dpo" and cfg.dpo.beta == 0.3 and cfg.init_adapter == Path(over["init_adapter"])
    assert cfg.data.format_name == rec.student_format().name


def test_the_pairs_stage_runs_inside_the_runners_keyed_step(tmp_path, monkeypatch):
    import codistill.pairs.stage as stage
    from codistill.store import write_jsonl

    rec = recipe_with(pairs={"teacher": {"base_url": "http://t/v1"}})
    seen = []

    def fake_make_pairs(cfg, out):
        seen.append((cfg, Path(out)))
        write_jsonl(Path(out) / "pairs.jsonl", [{"id": "p"}])
        return {"complete": True, "counts": {"problems": 3, "failures": 2, "pairs": 1, "dropped": 1},
                "cost": {"teacher": {"total_tokens": 42}}}

    monkeypatch.setattr(stage, "make_pairs", fake_make_pairs)
    calls = []

    def keyed(name, key, folder, fn, output_hash):
        calls.append((name, key, folder, fn(), output_hash()))
        return calls[-1][-1]

    r = SimpleNamespace(recipe=rec, run=tmp_path, hashes={"data": "d1"}, keyed=keyed, console=None,
                        arm_hashes={"cd": {"adapter": "a1"}, "cd_dpo": {}}, manifest=None)
    out = run_pairs(r, "cd_dpo")
    (name, key, folder, info, ohash), = calls
    assert name == "pairs:cd_dpo" and folder == tmp_path / "arms" / "cd_dpo" / "pairs" and out == ohash
    assert info == {"problems": 3, "failures": 2, "pairs": 1, "dropped": 1, "teacher_tokens": 42}
    assert seen[0][0].student.adapter == str(tmp_path / "arms" / "cd" / "train" / "adapter")
    assert r.arm_hashes["cd_dpo"]["pairs"] == out
    first_data = train_data_hash(r, "cd_dpo")
    r.arm_hashes["cd"]["adapter"] = "a2"  # the start arm retrained: new pairs key, new training key
    run_pairs(r, "cd_dpo")
    assert calls[1][1] != key and train_data_hash(r, "cd_dpo") != first_data
    assert run_pairs(r, "cd") is None  # not a DPO arm: nothing to do
