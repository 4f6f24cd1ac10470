"""`codistill run`: a whole recipe on tiny pieces (canned teacher, tiny random student), resume and
re-run of only what a change touches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from test_teacher import server  # noqa: F401  (the canned OpenAI-compatible teacher fixture)


@pytest.fixture()
def ml():
    """Training needs torch and peft; the checks of recipes do not."""
    pytest.importorskip("torch")
    pytest.importorskip("peft")


def _recipe(tmp_path: Path, student: Path, teacher_url: str) -> Path:
    recipe = {
        "name": "tiny", "smoke": True,
        "data": {"sources": [{"name": "mbpp:train", "limit": 4, "max_problems": 3}], "tokenizer": "whitespace",
                 "decontam": {"enabled": False}},
        "teach": {"mode": "explain", "teacher": {"base_url": teacher_url, "concurrency": 2, "max_retries": 1},
                  "sampling": {"seed": 100, "max_new_tokens": 200}},
        "train": {"model": str(student), "max_steps": 2, "batch_size": 2, "num_threads": 1,
                  "data": {"max_length": 256}, "structure": {"encoder": "self"},
                  "logging": {"tensorboard": False, "progress": False}},
        # a smoke run: 8 new tokens, far under the training targets, on purpose (recorded)
        "eval": {"backend": "hf", "benchmarks": ["humaneval"], "limit": 2, "max_new_tokens": 8,
                 "prompt_mode": "completion", "perplexity": False, "token_nll": False,
                 "backend_options": {"num_threads": 1}, "allow_short_budget": True},
        "format": {"base": "paper", "prompt_mode": "completion"},  # the tiny tokenizer has no chat template
        "arms": {"base": {"base": True}, "cd": {"train": {"structure": {"enabled": False}}},
                 "cd_sa": {"train": {"structure": {"enabled": True}}}},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _stamps(run: Path) -> dict:
    m = json.loads((run / "run_manifest.json").read_text())
    return {k: (v.get("status"), v.get("finished")) for k, v in m["stages"].items()}


def test_recipe_runs_every_stage_then_skips_then_reruns_only_what_changed(ml, tmp_path, tiny_llama_dir, server, capsys):  # noqa: F811
    from codistill.recipe import load_recipe, run_recipe

    path = _recipe(tmp_path, tiny_llama_dir, server.url)
    run = tmp_path / "run"
    out = run_recipe(load_recipe(path), out_dir=run)
    stages = _stamps(run)
    assert {k for k, (s, _) in stages.items() if s == "complete"} >= {
        "data", "teach", "train:cd", "train:cd_sa", "eval:base", "eval:cd", "eval:cd_sa", "report"}
    assert (run / "arms" / "cd" / "train" / "adapter" / "adapter_config.json").is_file()
    assert "train:base" not in stages
    for arm in ("base", "cd", "cd_sa"):
        res = json.loads((run / "arms" / arm / "eval" / "results.json").read_text())
        assert res["benchmarks"]["humaneval"]["tasks"] == 2
        assert res["config"]["adapter"] == (None if arm == "base" else str(run / "arms" / arm / "train" / "adapter"))
    cd_log = [json.loads(x) for x in (run / "arms" / "cd" / "train" / "train_log.jsonl").read_text().splitlines()]
    sa_log = [json.loads(x) for x in (run / "arms" / "cd_sa" / "train" / "train_log.jsonl").read_text().splitlines()]
    assert all(r["structure_loss"] is None for r in cd_log) and all(r["structure_loss"] is not None for r in sa_log)
    assert (run / "report.md").is_file() and (run / "report.html").is_file() and (run / "recipe.yaml").is_file()
    assert out["manifest"]["smoke"] is True
    # codistill status reads the same: every stage complete, in its recorded folder; the long stages
    # left their final progress state there
    from codistill.recipe.status import run_status

    st = {s["name"]: s for s in run_status(run)["stages"]}
    assert all(s["status"] == "complete" for s in st.values())
    assert st["eval:cd"]["folder"] == "arms/cd/eval" and st["train:cd_sa"]["folder"] == "arms/cd_sa/train"
    for folder in ("teach", "arms/cd/train", "arms/base/eval"):
        assert json.loads((run / folder / ".progress.json").read_text())["state"] == "done", folder
    teacher_calls = len(server.requests)
    assert teacher_calls >= 3

    # the same recipe again: every stage is skipped (the report is always rebuilt)
    run_recipe(load_recipe(path), out_dir=run)
    again = _stamps(run)
    assert {k: v for k, v in again.items() if k != "report"} == {k: v for k, v in stages.items() if k != "report"}
    assert len(server.requests) == teacher_calls

    # change one arm's training: only that arm's train and eval run again; the old folder is kept aside
    raw = yaml.safe_load(path.read_text())
    raw["arms"]["cd_sa"]["train"]["optim"] = {"lr": 1e-3}
    path.write_text(yaml.safe_dump(raw))
    run_recipe(load_recipe(path), out_dir=run)
    third = _stamps(run)
    changed = {k for k in third if k != "report" and third[k] != stages.get(k)}
    assert changed == {"train:cd_sa", "eval:cd_sa"}
    assert len(server.requests) == teacher_calls
    assert sorted(p.name.rsplit("-", 1)[0] for p in (run / ".stale").iterdir()) == ["arms__cd_sa__eval",
                                                                                    "arms__cd_sa__train"]

    # more benchmarks for one arm: its eval runs again but keeps the generations it has
    gens = (run / "arms" / "base" / "eval" / "generations.jsonl").read_text().splitlines()
    run_recipe(load_recipe(path, sets=["eval.benchmarks=[humaneval, humaneval+]"]), out_dir=run, arms=["base"])
    res = json.loads((run / "arms" / "base" / "eval" / "results.json").read_text())
    assert set(res["benchmarks"]) == {"humaneval", "humaneval+"}
    assert (run / "arms" / "base" / "eval" / "generations.jsonl").read_text().splitlines() == gens
    assert len(list((run / ".stale").iterdir())) == 2

    # --only train (through the CLI): the arms' training runs, no eval is started, and the output
    # names the stages literally (rich would print "eval:cd: " as "eval💿 " with emoji codes on)
    from codistill.cli import main

    run2 = tmp_path / "run2"
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(run2), "--only", "data,teach,train"]) == 0
    printed = capsys.readouterr().out
    assert "eval:cd: left out by --only" in printed
    assert "report not rebuilt by this call" in printed and not (run2 / "report.md").exists()
    st = _stamps(run2)
    assert st["train:cd"][0] == "complete" and st["train:cd_sa"][0] == "complete"
    assert not any(k.startswith("eval:") for k in st)


def test_recipe_errors_name_the_section(tmp_path):
    from codistill.recipe import load_recipe

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"data": {"sources": [{"name": "codeio"}]}, "teach": {},
                                    "train": {"lora": {"rank": 8}}, "arms": {"cd": {}}}))
    with pytest.raises(ValueError, match=r"(?s)arms\.cd\.train.*rank"):
        load_recipe(path)
    path.write_text(yaml.safe_dump({"data": {"sources": []}, "teach": {}, "arms": {"base": {"base": True}}}))
    with pytest.raises(ValueError, match="section data"):
        load_recipe(path)
    path.write_text(yaml.safe_dump({"data": {"sources": [{"name": "codeio"}]}, "teach": {},
                                    "arms": {"bad/name": {"base": True}}}))
    with pytest.raises(ValueError, match="arm name"):
        load_recipe(path)
    with pytest.raises(FileNotFoundError, match="packaged recipes"):
        load_recipe("no-such-recipe")


@pytest.mark.parametrize("name", ["demo", "paper-small", "gpu-vllm"])
def test_packaged_recipes_are_valid(name):
    from codistill.recipe import load_recipe

    r = load_recipe(name)
    assert "base" in r.arms and any(not a.base for a in r.arms.values())


def test_set_overrides_and_their_errors():
    from codistill.recipe import apply_sets, load_recipe

    raw = {"train": {"model": "m", "optim": {"lr": 1.0}}}
    out = apply_sets(raw, ["train.optim.lr=5e-5", "train.num_threads=1", "eval.benchmarks=[humaneval, mbpp]"])
    assert out == {"train": {"model": "m", "optim": {"lr": 5e-5}, "num_threads": 1},
                   "eval": {"benchmarks": ["humaneval", "mbpp"]}}
    assert raw["train"]["optim"]["lr"] == 1.0  # the input is not changed
    with pytest.raises(ValueError, match="KEY.PATH=VALUE"):
        apply_sets(raw, ["train.lr"])
    with pytest.raises(ValueError, match="not a mapping"):
        apply_sets(raw, ["train.model.x=1"])
    r = load_recipe("paper-small", sets=["train.num_threads=1", "eval.benchmarks=[humaneval]"])
    assert r.train["num_threads"] == 1 and r.eval["benchmarks"] == ["humaneval"]


def _small_recipe(tmp_path: Path, teacher_url: str, **sections) -> Path:
    recipe = {
        "name": "small",
        "data": {"sources": [{"name": "mbpp:train", "limit": 4, "max_problems": 3}], "tokenizer": "whitespace",
                 "decontam": {"enabled": False}, "verify": False},
        "teach": {"mode": "explain", "teacher": {"base_url": teacher_url, "concurrency": 2, "max_retries": 0},
                  "sampling": {"seed": 100, "max_new_tokens": 200}},
        "eval": {"backend": "hf", "benchmarks": ["humaneval"], "limit": 2},
        "arms": {"base": {"base": True}, "cd": {}},
    }
    for k, v in sections.items():
        recipe[k] = {**recipe[k], **v}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_every_stage_is_checked_before_the_first_runs(tmp_path, capsys):
    from codistill.cli import main
    from codistill.recipe import Recipe, load_recipe, run_recipe

    path = _small_recipe(tmp_path, "http://127.0.0.1:9/v1",
                         eval={"benchmarks": ["humaneval", "humaneavl"], "backend_options": {"n_paralel": 4}},
                         arms={"cd": {"eval": {"backend": "vlm"}}, "cd_sa": {"eval": {"dtype": "float8"}}})
    with pytest.raises(ValueError) as e:
        load_recipe(path)
    msg = str(e.value)
    # the setting, the bad value and the allowed values, for the shared section and each arm's overrides
    assert "benchmarks = ['humaneval', 'humaneavl']: unknown benchmark 'humaneavl'; valid names: humaneval" in msg
    assert "section arms.base.eval, arms.cd_sa.eval: backend_options: unknown backend option 'n_paralel' " \
           "for backend 'hf'; allowed: " in msg and "num_threads" in msg
    assert "section arms.cd.eval: backend = 'vlm': unknown backend 'vlm'; choose one of hf, openai" in msg
    assert "section arms.cd_sa.eval: dtype = 'float8': choose float32, bfloat16 or float16" in msg
    # on the command line: one line, exit 2, and no stage ran
    run = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("codistill run: ") and "humaneavl" in err
    assert not run.exists()
    # a Recipe built in Python is checked too, before the run directory is made
    raw = yaml.safe_load(path.read_text())
    raw["eval"] = {"benchmarks": ["humaneval"], "backend": "openai"}  # no base_url; cd has an adapter
    raw["arms"] = {"base": {"base": True}, "cd": {}}
    with pytest.raises(ValueError) as e:
        run_recipe(Recipe.model_validate(raw), out_dir=run)
    assert "needs the backend option base_url" in str(e.value)
    assert "section arms.cd.eval: backend = 'openai': backend 'openai' cannot apply a LoRA adapter" in str(e.value)
    assert not run.exists()
    # other sections: an unknown data source and teacher backend, an unknown setting
    bad = _small_recipe(tmp_path, "http://127.0.0.1:9/v1", data={"sources": [{"name": "mbpp:trian"}]},
                        teach={"teacher": {"backend": "vllm"}, "max_attempt": 2})
    with pytest.raises(ValueError) as e:
        load_recipe(bad)
    msg = str(e.value)
    assert "section data: sources[0].name = 'mbpp:trian': unknown split" in msg
    assert "teacher.backend = 'vllm': Input should be 'openai' or 'llamacpp'" in msg
    assert "unknown setting max_attempt; allowed: " in msg and "max_attempts" in msg


def test_a_teach_stage_with_teacher_errors_is_not_complete(tmp_path, server, capsys):  # noqa: F811
    from codistill.cli import main

    path = _small_recipe(tmp_path, server.url)
    run = tmp_path / "run"
    server.down = True
    assert main(["run", str(path), "--out", str(run), "--only", "data,teach"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("codistill run: teach is not complete: 3 of 3 rows got no answer") and "HTTP 503" in err
    assert "run the same `codistill run` command again" in err
    stages = json.loads((run / "run_manifest.json").read_text())["stages"]
    assert stages["data"]["status"] == "complete" and stages["teach"]["status"] == "failed"
    # one row answers, two do not: still not complete (exit 3), the answered row is kept
    server.down = False
    orig = server.answer
    first = json.loads((run / "data" / "rows.jsonl").read_text().splitlines()[0])["prompt"][:60]
    server.answer = lambda body: (orig(body) if first in body["messages"][-1]["content"]
                                  else (503, {"error": {"message": "busy"}}))
    assert main(["run", str(path), "--out", str(run), "--only", "data,teach"]) == 3
    assert "2 of 3 rows got no answer" in capsys.readouterr().err
    assert json.loads((run / "run_manifest.json").read_text())["stages"]["teach"]["status"] == "failed"
    # the teacher is back: the next run asks only for the two rows left to do, and the stage completes
    server.answer = orig
    n = len(server.requests)
    assert main(["run", str(path), "--out", str(run), "--only", "data,teach"]) == 0
    assert len(server.requests) == n + 2
    stages = json.loads((run / "run_manifest.json").read_text())["stages"]
    assert stages["teach"]["status"] == "complete" and stages["teach"]["info"]["train_rows"] == 3


def test_a_budget_shorter_than_the_training_targets_stops_the_run_before_training(ml, tmp_path, tiny_llama_dir, server):  # noqa: F811
    """Without the explicit override, max_new_tokens=8 is refused right after the teach stage,
    naming the targets' 99th percentile, before any arm is trained or judged."""
    from codistill.formats import ProtocolError
    from codistill.recipe import load_recipe, run_recipe

    path = _recipe(tmp_path, tiny_llama_dir, server.url)
    raw = yaml.safe_load(path.read_text())
    del raw["eval"]["allow_short_budget"]
    path.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    with pytest.raises(ProtocolError, match=r"99th percentile of the training targets .* base: max_new_tokens=8 < \d+"):
        run_recipe(load_recipe(path), out_dir=run)
    assert (run / "teach" / "train.jsonl").is_file() and not (run / "arms").exists()
