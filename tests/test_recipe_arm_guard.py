"""`codistill run` with several arms: one arm's failure stops only that arm and the arms that use
its adapter (the report is still built, the call fails at the end naming it), and each trained arm's
own training targets are checked against its eval budget before it trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from test_teacher import server  # noqa: F401  (the canned OpenAI-compatible teacher fixture)

ARMS = {
    "base": {"base": True},
    "bad": {},
    "bad_dpo": {"kind": "cd+dpo", "start": "bad"},  # continues bad: skipped when bad fails
    "good": {},
    "rc_bad": {"kind": "pipeline", "reasoner": "arm:bad"},  # uses bad's adapter: skipped too
    "hs": {"kind": "hsft"},
    "hs_dpo": {"kind": "hsft+dpo", "start": "hs"},
}


def _write(tmp_path: Path, arms: dict = ARMS) -> Path:
    recipe = {
        "name": "guard",
        "data": {"sources": [{"name": "mbpp:train", "limit": 4, "max_problems": 3}], "tokenizer": "whitespace",
                 "decontam": {"enabled": False}, "verify": False},
        "teach": {"mode": "explain", "teacher": {"base_url": "http://127.0.0.1:9/v1", "max_retries": 0}},
        "eval": {"backend": "hf", "benchmarks": ["humaneval"], "limit": 2},
        "arms": arms,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


class _Toy:
    """Stand-ins for the registered stages (same names, scopes and order): each arm stage runs in
    ``r.keyed`` and writes a file; ``fail`` maps a manifest stage name to the error it raises."""

    def __init__(self, fail: dict[str, BaseException] | None = None):
        self.fail, self.ran = fail or {}, []

    def _keyed(self, r, name: str, folder: Path, *, before=None):
        def go():
            self.ran.append(name)
            if name in self.fail:
                raise self.fail[name]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "out").write_text(name)

        from codistill.recipe.manifest import _file_hash

        if before is not None:
            before()
        return r.keyed(name, name, folder, go, lambda: _file_hash(folder / "out"))

    def stages(self):
        from codistill.recipe.stages import Stage, _ref_hashes

        def run_stage(name, **kw):
            return Stage(name, "run", lambda r: self._keyed(r, name, r.run / name), **kw)

        def train(r, arm):
            r.arm_hashes[arm]["adapter"] = self._keyed(r, f"train:{arm}", r.run / "arms" / arm / "train")

        def pairs(r, arm):  # DPO arms only (the kinds whose stages list it)
            self._keyed(r, f"pairs:{arm}", r.run / "arms" / arm / "pairs", before=lambda: _ref_hashes(r, arm))

        def report(r):
            self.ran.append("report")
            (r.run / "report.md").write_text("toy")
            r.manifest.set("report", status="complete")
            return {"toy": True}

        def eval_(r, arm):
            self._keyed(r, f"eval:{arm}", r.run / "arms" / arm / "eval", before=lambda: _ref_hashes(r, arm))

        return [run_stage("data"), run_stage("teach"),
                run_stage("hsft", needed=lambda r: "hs" in r.arms, fatal=False),
                run_stage("select", needed=lambda r: "el" in r.arms, fatal=False),
                run_stage("elad", needed=lambda r: "el" in r.arms, fatal=False, needs=("select",)),
                run_stage("budget", selectable=False),
                Stage("pairs", "arm", pairs), Stage("train", "arm", train), Stage("eval", "arm", eval_),
                Stage("report", "end", report)]


@pytest.fixture()
def toy(monkeypatch):
    """Install toy stages (called again: fresh ones, the same run directory)."""
    from codistill.recipe import stages as registry

    def install(fail=None):
        t = _Toy(fail)
        monkeypatch.setattr(registry, "_REGISTRY", t.stages())
        return t

    return install


def _stages(run: Path) -> dict:
    return json.loads((run / "run_manifest.json").read_text())["stages"]


def test_a_failing_arm_stops_only_itself_and_the_arms_that_use_its_adapter(tmp_path, toy, capsys):
    from codistill.cli import main

    path = _write(tmp_path)
    t = toy({"train:bad": ValueError("bad's training file has no rows")})
    run = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run)]) == 2  # a ValueError's status, as for one arm before
    out, err = capsys.readouterr()
    # the later independent arms ran; the arms using bad's adapter did not start at all
    assert t.ran == ["data", "teach", "hsft", "budget", "eval:base", "train:bad", "train:good", "eval:good",
                     "train:hs", "eval:hs", "pairs:hs_dpo", "train:hs_dpo", "eval:hs_dpo", "report"]
    st = _stages(run)
    assert st["train:bad"]["status"] == "failed" and "no rows" in st["train:bad"]["error"]
    assert not any(k.endswith(("bad_dpo", "rc_bad")) for k in st)
    assert st["report"]["status"] == "complete" and (run / "report.md").is_file()
    flat = " ".join(out.split())
    assert "✗ arm bad at train:bad failed: ValueError: bad's training file has no rows" in flat
    assert "arm bad_dpo: skipped: it uses the adapter of arm bad, which failed at train:bad" in flat
    assert "arm rc_bad: skipped: it uses the adapter of arm bad, which failed at train:bad" in flat
    assert "run the same command again to resume" in flat
    assert err.strip().splitlines()[-1] == "codistill run: bad's training file has no rows"

    # fixed: the same command runs what failed or was skipped, and skips what is complete
    from codistill.recipe import load_recipe, run_recipe

    t = toy()
    assert run_recipe(load_recipe(path), out_dir=run)["failed"] == []
    assert t.ran == ["train:bad", "eval:bad", "pairs:bad_dpo", "train:bad_dpo", "eval:bad_dpo", "eval:rc_bad", "report"]


def test_several_failures_end_in_one_error_naming_each(tmp_path, toy, capsys):
    from codistill.cli import main
    from codistill.recipe import load_recipe, run_recipe
    from codistill.recipe.runner import ArmsFailed

    path = _write(tmp_path)
    toy({"train:bad": ValueError("too short"), "eval:good": ValueError("no benchmark")})
    run = tmp_path / "run"
    with pytest.raises(ArmsFailed) as e:
        run_recipe(load_recipe(path), out_dir=run)
    msg = str(e.value)
    assert msg.startswith("2 failed: arm bad at train:bad (ValueError: too short); arm good at eval:good "
                          "(ValueError: no benchmark). Skipped: bad_dpo (it uses the adapter of arm bad")
    assert "the report was rebuilt" in msg and e.value.exit_code == 2
    assert [(a, s) for a, s, _ in e.value.failures] == [("bad", "train:bad"), ("good", "eval:good")]
    assert _stages(run)["eval:good"]["status"] == "failed" and _stages(run)["train:good"]["status"] == "complete"
    # different statuses: 1; on the command line one line
    toy({"train:bad": ValueError("too short"), "eval:good": RuntimeError("server down")})
    assert main(["run", str(path), "--out", str(run)]) == 1
    assert capsys.readouterr().err.strip().startswith("codistill run: 2 failed: arm bad at train:bad")


def test_a_failing_run_stage_that_feeds_some_arms_stops_only_those(tmp_path, toy, capsys):
    from codistill.recipe import load_recipe, run_recipe

    path = _write(tmp_path)
    t = toy({"hsft": RuntimeError("the teacher is down")})
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="the teacher is down") as e:
        run_recipe(load_recipe(path), out_dir=run)
    assert "Skipped: hs (it trains on the output of run stage hsft" in e.value.__notes__[0]
    assert "train:good" in t.ran and not any(k.endswith(("hs", "hs_dpo")) for k in t.ran if ":" in k)
    assert _stages(run)["hsft"]["status"] == "failed"
    flat = " ".join(capsys.readouterr().out.split())
    assert "arm hs_dpo: skipped: it uses the adapter of arm hs, which was skipped" in flat
    # a run stage every arm needs still stops the run at once, with no report
    t = toy({"teach": RuntimeError("no rows")})
    with pytest.raises(RuntimeError, match="no rows"):
        run_recipe(load_recipe(path), out_dir=tmp_path / "run2")
    assert t.ran == ["data", "teach"] and not (tmp_path / "run2" / "report.md").exists()


def test_a_run_stage_reading_a_failed_one_is_skipped_with_its_arms(tmp_path, toy, capsys):
    from codistill.recipe import load_recipe, run_recipe

    path = _write(tmp_path, {"el": {"kind": "elad"}, "good": {}})
    t = toy({"select": RuntimeError("select left 3 problems unscored")})
    with pytest.raises(RuntimeError, match="unscored"):
        run_recipe(load_recipe(path), out_dir=tmp_path / "run")
    assert t.ran == ["data", "teach", "select", "budget", "train:good", "eval:good", "report"]
    flat = " ".join(capsys.readouterr().out.split())
    assert "run stage elad: skipped: it reads the output of run stage select" in flat
    assert "arm el: skipped: it trains on the output of run stage elad" in flat


def test_a_stage_that_fails_before_it_begins_is_marked_failed(tmp_path, toy):
    """An error raised while the stage is being set up (here: the adapter a pipeline arm uses is not
    trained) is the call's error, and the manifest entry the stage would have says so."""
    from codistill.recipe import load_recipe, run_recipe

    path = _write(tmp_path)
    toy()
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"uses arm:bad, which is not trained yet.*--arms bad,rc_bad"):
        run_recipe(load_recipe(path), out_dir=run, arms=["rc_bad", "base"])
    st = _stages(run)
    assert st["eval:rc_bad@standard"]["status"] == "failed" and "not trained yet" in st["eval:rc_bad@standard"]["error"]
    assert st["eval:base"]["status"] == st["report"]["status"] == "complete"


def test_an_interrupt_stops_every_arm_at_once(tmp_path, toy):
    from codistill.recipe import load_recipe, run_recipe

    path = _write(tmp_path)
    t = toy({"train:bad": KeyboardInterrupt()})
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_recipe(load_recipe(path), out_dir=run)
    assert t.ran[-1] == "train:bad" and "train:good" not in t.ran
    assert _stages(run)["train:bad"]["status"] == "interrupted" and "report" not in _stages(run)


# ------------------------------------------------------------------------------------------ the budget


@pytest.fixture()
def ml():
    pytest.importorskip("torch")
    pytest.importorskip("peft")


def test_an_arm_whose_own_targets_need_more_than_its_budget_is_refused_before_it_trains(
        ml, tmp_path, tiny_llama_dir, server, monkeypatch, capsys):  # noqa: F811
    """The pooled guard passes (here: taken out, as a pooled 99th percentile of a few hundred rows
    lets a long-tailed arm through); the arm's own check refuses it before its first step, naming the
    arm and both numbers, and the other arm trains, is judged and is reported."""
    from codistill.formats import ProtocolError
    from codistill.recipe import load_recipe, run_recipe
    from codistill.recipe import stages as registry

    recipe = {
        "name": "tiny", "smoke": True,
        "data": {"sources": [{"name": "mbpp:train", "limit": 4, "max_problems": 3}], "tokenizer": "whitespace",
                 "decontam": {"enabled": False}},
        "teach": {"mode": "explain", "teacher": {"base_url": server.url, "concurrency": 2, "max_retries": 1},
                  "sampling": {"seed": 100, "max_new_tokens": 200}},
        "train": {"model": str(tiny_llama_dir), "max_steps": 1, "batch_size": 2, "num_threads": 1,
                  "data": {"max_length": 256}, "structure": {"enabled": False},
                  "logging": {"tensorboard": False, "progress": False}},
        "eval": {"backend": "hf", "benchmarks": ["humaneval"], "limit": 1, "max_new_tokens": 8,
                 "prompt_mode": "completion", "perplexity": False, "token_nll": False,
                 "backend_options": {"num_threads": 1}, "allow_short_budget": True},
        "format": {"base": "paper", "prompt_mode": "completion"},
        "arms": {"tight": {"eval": {"allow_short_budget": False}}, "cd": {}},  # tight first: cd runs after it
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    rec = load_recipe(path)
    monkeypatch.setattr(registry, "_REGISTRY", [s for s in registry._REGISTRY if s.name != "budget"])
    run = tmp_path / "run"
    with pytest.raises(ProtocolError) as e:
        run_recipe(rec, out_dir=run)
    msg = str(e.value)
    assert msg.startswith("arm 'tight' not trained: its eval budget is shorter than what it would be trained to "
                          "write in format 'paper'")
    from codistill.formats import required_budget
    from codistill.recipe.budget import arm_format_record
    from codistill.recipe.stages import train_config

    st = arm_format_record(train_config(rec, run, "tight", None)[0])["generation_tokens"]
    need = required_budget(st, 32)
    assert f"= {st['p99']} tokens" in msg and f"eval tight: max_new_tokens=8 < {need}" in msg
    assert f"Raise eval.max_new_tokens (--set eval.max_new_tokens={need}), or set " \
           "arms.tight.eval.allow_short_budget: true" in msg
    stages = _stages(run)
    assert stages["train:tight"]["status"] == "failed" and "ProtocolError" in stages["train:tight"]["error"]
    assert not (run / "arms" / "tight" / "train" / "checkpoints").exists()
    assert not (run / "arms" / "tight" / "train" / "adapter").exists() and "eval:tight" not in stages
    assert stages["train:cd"]["status"] == stages["eval:cd"]["status"] == stages["report"]["status"] == "complete"
    # the record cd's trainer stored is the one the guard computes for it
    stored = json.loads((run / "arms" / "cd" / "train" / "adapter" / "codistill_format.json").read_text())
    assert stored == arm_format_record(train_config(rec, run, "cd", None)[0])
    assert "✗ arm tight at train:tight failed: ProtocolError: arm 'tight' not trained" in " ".join(
        capsys.readouterr().out.split())
