"""Flags generated from the stage configs: --config / --set precedence, the aliases kept from
earlier command lines, a field added to a config is a flag, and --help stays cheap."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Literal

import pytest
import yaml
from pydantic import BaseModel, Field

from codistill import cli
from codistill.cli import build_parser, main, parse_config


def _help(verb: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    return capsys.readouterr().out


# ------------------------------------------------------------------------------ precedence


def test_eval_precedence_default_config_flag_set(tmp_path):
    from codistill.evaluation.config import EvalConfig

    defaults = EvalConfig(model="m")
    cfg = parse_config("eval", ["--out", "o", "--model", "m"])
    assert cfg.max_new_tokens == defaults.max_new_tokens and cfg.benchmarks == defaults.benchmarks
    f = tmp_path / "eval.yaml"
    f.write_text(yaml.safe_dump({"model": "from-file", "max_new_tokens": 100, "temperature": 0.5,
                                 "backend": "openai", "backend_options": {"base_url": "http://h/v1", "concurrency": 2}}))
    cfg = parse_config("eval", ["--out", "o", "--config", str(f)])
    assert (cfg.model, cfg.max_new_tokens, cfg.temperature) == ("from-file", 100, 0.5)
    # a flag beats the file; --set beats both; a KEY=VALUE option merges into the file's mapping
    cfg = parse_config("eval", ["--out", "o", "--config", str(f), "--max-new-tokens", "200", "--model", "flag",
                                "--set", "max_new_tokens=300", "--backend-option", "concurrency=8",
                                "--set", "backend_options.max_retries=1"])
    assert (cfg.model, cfg.max_new_tokens, cfg.temperature) == ("flag", 300, 0.5)
    assert cfg.backend_options == {"base_url": "http://h/v1", "concurrency": 8, "max_retries": 1}
    # only what was given is set (so a config's "was it given" rules see the truth)
    assert cfg.model_fields_set == {"model", "max_new_tokens", "temperature", "backend", "backend_options"}


def test_train_precedence_and_a_recipe_as_config(tmp_path):
    from codistill.training.config import TrainConfig

    cfg = parse_config("train", [])
    assert cfg.model_dump() == TrainConfig().model_dump()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "r", "train": {"model": "m", "max_steps": 10, "optim": {"lr": 1e-3},
                                                             "structure": {"encoder": "self"}}}))
    cfg = parse_config("train", ["--config", str(recipe)])  # a recipe: its train section
    assert (cfg.model, cfg.max_steps, cfg.optim.lr, cfg.structure.enabled) == ("m", 10, 1e-3, True)
    cfg = parse_config("train", ["--config", str(recipe), "--max-steps", "3", "--no-structure", "--out", "o",
                                 "--train-file", "t.jsonl", "--set", "optim.lr=5e-5", "--set", "lora.r=8", "--resume"])
    assert (cfg.max_steps, cfg.optim.lr, cfg.lora.r, cfg.structure.enabled, cfg.resume) == (3, 5e-5, 8, False, True)
    assert str(cfg.output_dir) == "o" and str(cfg.data.train_file) == "t.jsonl"
    plain = tmp_path / "train.json"
    plain.write_text(json.dumps({"model": "j", "batch_size": 2}))
    assert parse_config("train", ["--config", str(plain), "--batch-size", "5"]).batch_size == 5


def test_data_precedence_and_its_short_flags(tmp_path):
    f = tmp_path / "data.yaml"
    f.write_text(yaml.safe_dump({"out_dir": "file-out", "sources": [{"name": "codeio"}], "max_tokens": 100,
                                 "decontam": {"threshold": 0.7}}))
    cfg = parse_config("data", ["--config", str(f)])
    assert (cfg.out_dir, [s.name for s in cfg.sources], cfg.max_tokens, cfg.decontam.threshold) == (
        "file-out", ["codeio"], 100, 0.7)
    cfg = parse_config("data", ["--config", str(f), "--out", "o", "--source", "mbpp:train::80", "--source",
                                "codeio:300:120", "--no-verify", "--no-decontam", "--decontam-threshold", "0.4",
                                "--max-tokens", "50", "--set", "max_tokens=60"])
    assert cfg.out_dir == "o" and not cfg.verify and not cfg.decontam.enabled and cfg.decontam.threshold == 0.4
    assert [(s.name, s.limit, s.max_problems) for s in cfg.sources] == [("mbpp:train", None, 80), ("codeio", 300, 120)]
    assert cfg.max_tokens == 60


def test_every_old_flag_reaches_its_setting():
    t = parse_config("teach", ["--out", "o", "--dataset", "d", "--base-url", "http://t/v1", "--retries", "0",
                               "--timeout", "20", "--concurrency", "2", "--model", "tm", "--backend", "openai",
                               "--max-new-tokens", "99", "--temperature", "0.3", "--price-per-1k-prompt", "1.5",
                               "--max-attempts", "2", "--order-seed", "4", "--mode", "solve"])
    assert (t.out_dir, t.teacher.base_url, t.teacher.max_retries, t.teacher.timeout_s, t.teacher.concurrency) == (
        "o", "http://t/v1", 0, 20, 2)
    assert (t.teacher.model, t.sampling.max_new_tokens, t.sampling.temperature, t.teacher.price_per_1k_prompt) == (
        "tm", 99, 0.3, 1.5)
    assert (t.max_attempts, t.order_seed, t.mode) == (2, 4, "solve")
    e = parse_config("eval", ["--out", "o", "--model", "m", "--benchmark", "humaneval, mbpp", "--timeout", "5",
                              "--workers", "2", "--no-perplexity", "--no-token-nll", "--allow-short-budget",
                              "--prompt-mode", "completion", "--n-samples", "3", "--memory-mb", "100"])
    assert e.benchmarks == ["humaneval", "mbpp"] and e.judge_timeout_s == 5 and e.workers == 2
    assert not e.perplexity and not e.token_nll and e.allow_short_budget and e.prompt_mode == "completion"
    assert e.n_samples == 3
    j = parse_config("judge", ["--benchmark", "humaneval", "--samples", "s", "--out", "o", "--workers", "1",
                               "--memory-mb", "512", "--timeout", "2", "--suites", "base"])
    assert (j.sandbox.workers, j.sandbox.memory_mb, j.timeout_s, j.suites) == (1, 512, 2, ["base"])
    s = parse_config("serve-teacher", ["--n-parallel", "8", "--ctx", "2048", "--engine", "llama-cpp-python"])
    assert (s.n_parallel, s.ctx, s.engine, s.port) == (8, 2048, "llama-cpp-python", 8731)  # serve()'s defaults


def test_bad_values_are_one_line_errors(tmp_path, capsys):
    assert main(["eval", "--out", str(tmp_path / "e"), "--model", "m", "--set", "n_samples=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("codistill eval: invalid settings: n_samples = 0") and "Traceback" not in err
    assert main(["train", "--set", "optim.lrr=1"]) == 2
    assert "unknown setting optim.lrr" in capsys.readouterr().err
    assert main(["train", "--set", "lr"]) == 2
    assert "write KEY.PATH=VALUE, e.g. optim.lr=1e-4" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in capsys.readouterr().err


# ------------------------------------------------------------------------------ generated flags


class _Nested(BaseModel):
    depth: int = 1


def _with_new_fields():
    from codistill.evaluation.config import EvalConfig

    class WiderEval(EvalConfig):
        new_knob: int = Field(7, ge=1, description="a knob added after the CLI was written")
        new_switch: bool = Field(True, description="a switch added later")
        new_choice: Literal["a", "b"] = "a"
        new_list: list[str] = Field(default_factory=list)
        new_nested: _Nested = Field(default_factory=_Nested)

    return WiderEval


def test_a_field_added_to_a_config_is_a_flag(monkeypatch, capsys):
    wider = _with_new_fields()
    flags = cli.config_flags()
    monkeypatch.setattr(cli, "config_flags", lambda: {**flags, "eval": ConfigFlagsLike(flags["eval"], wider)})
    text = _help("eval", capsys)
    assert "--new-knob N" in text and "a knob added after the CLI was written (default: 7)" in text
    assert "--new-switch, --no-new-switch" in text and "--new-choice {a,b}" in text and "--new-list A,B,..." in text
    assert "--new-nested" not in text  # a nested model: --set
    cfg = parse_config("eval", ["--out", "o", "--model", "m", "--new-knob", "5", "--no-new-switch",
                                "--new-choice", "b", "--new-list", "x,y", "--set", "new_nested.depth=3"])
    assert (cfg.new_knob, cfg.new_switch, cfg.new_choice, cfg.new_list, cfg.new_nested.depth) == (5, False, "b",
                                                                                                 ["x", "y"], 3)
    assert parse_config("eval", ["--out", "o", "--model", "m"]).new_knob == 7  # the default, written once


def ConfigFlagsLike(spec, model):  # noqa: N802 - the verb's spec with another config class
    import dataclasses

    return dataclasses.replace(spec, model=model)


@pytest.mark.parametrize("verb", ["data", "teach", "train", "eval", "judge", "serve-teacher"])
def test_every_scalar_setting_has_a_flag(verb, capsys):
    """Generated from the config's fields at run time: nothing to keep in step by hand."""
    from codistill.cliargs import _kind

    model = cli.config_flags()[verb].load()
    text = _help(verb, capsys)
    assert "--config FILE" in text and "--set KEY.PATH=VALUE" in text
    for name, fi in model.model_fields.items():
        if _kind(fi.annotation) is not None:
            assert f"--{name.replace('_', '-')}" in text, name
        if fi.description and _kind(fi.annotation) is not None:
            assert fi.description.split()[0] in text


def test_a_field_whose_flag_is_taken_keeps_set(monkeypatch):
    from codistill.evaluation.config import EvalConfig

    class Clash(EvalConfig):
        out: str = "x"  # `codistill eval --out` is the verb's own flag

    flags = cli.config_flags()
    monkeypatch.setattr(cli, "config_flags", lambda: {**flags, "eval": ConfigFlagsLike(flags["eval"], Clash)})
    cfg = parse_config("eval", ["--out", "run", "--model", "m", "--set", "out=y"])
    assert cfg.out == "y"


# ------------------------------------------------------------------------------ entry points


def test_help_imports_no_torch_and_python_m_works():
    code = ("import sys\nfrom codistill.cli import main\n"
            "for argv in ([], ['eval'], ['train'], ['data'], ['teach'], ['serve-teacher']):\n"
            "    try:\n        main([*argv, '--help'])\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    out = subprocess.run([sys.executable, "-m", "codistill", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("codistill ")
    for module, verb in (("codistill.serving", "serve-teacher"), ("codistill.data.prepare", "data")):
        out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True)
        assert out.stdout.startswith(f"usage: codistill {verb}")


def test_verbs_not_run_get_no_flags_built():
    p = build_parser([])
    assert "eval" in p.format_help()
    assert parse_config("serve", ["--port", "9000"]).port == 9000  # the short alias of serve-teacher
