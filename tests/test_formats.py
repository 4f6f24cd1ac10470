"""One protocol from training to judging: the student format, the adapter's record, the guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codistill.formats import (
    FORMAT_FILE,
    ProtocolError,
    StudentFormat,
    check_adapter,
    get_format,
    length_stats,
)

STATEMENT = 'def add(a, b):\n    """Return a + b.\n    >>> add(1, 2)\n    3\n    """\n'
RECORD = {"id": "t1", "prompt": STATEMENT, "context": "Add the two numbers.\nUse +.",
          "code": "def add(a, b):\n    return a + b", "tests": "assert add(1, 2) == 3"}


def test_packaged_formats_and_their_stops():
    paper = get_format("paper")
    assert paper.prompt_mode == "chat" and paper.prompt_template == "{prompt}"
    # generation may end where the tests begin, once the code section is closed (stop rule 2)
    assert paper.stop_strings() == ["\n```\n\n### Tests"]
    assert get_format("paper-no-tests").stop_strings() == []
    assert get_format(None) == paper
    evalplus = get_format({"base": "paper", "prompt_template": "evalplus", "name": "x"})
    assert evalplus.prompt_template.startswith("Please provide a self-contained Python script")
    assert evalplus.sections == paper.sections and evalplus.name == "x"
    assert paper.same_as(get_format({"base": "paper", "name": "renamed"}))  # the name is a label
    assert not paper.same_as(get_format("paper-no-tests"))


def test_bad_formats_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown format 'papr'.*paper, paper-no-tests"):
        get_format("papr")
    with pytest.raises(ValueError, match="exactly one section with \\{code\\}"):
        StudentFormat(sections=["### R\n{context}"])
    with pytest.raises(ValueError, match="neither a packaged template"):
        StudentFormat(prompt_template="no placeholder here")
    f = tmp_path / "tpl.txt"
    f.write_text("Solve:\n{prompt}\n")
    assert StudentFormat(prompt_template=str(f)).prompt_template == "Solve:\n{prompt}\n"  # stored as text


def test_prompt_ids_at_eval_are_the_training_prompt_ids(smollm2_tok, tiny_llama_dir):
    """The packaged SmolLM2 tokenizer: the prompt a trained arm sees when it is judged (the format's
    text, tokenized by the hf backend as a raw completion prompt, as run_eval does) is token for
    token the prompt it was trained on (build_example's input_ids before the first label)."""
    from codistill.backends import make_generator
    from codistill.training.config import DataConfig
    from codistill.training.data import IGNORE_INDEX, build_example, student_format

    assert smollm2_tok.chat_template  # the chat path is the one under test
    for spec in ("paper", {"base": "paper", "prompt_template": "evalplus", "system_prompt": "Be brief."}):
        fmt = get_format(spec)
        dcfg = DataConfig(**fmt.data_fields(), format_name=fmt.name, max_length=1024)
        assert student_format(smollm2_tok, dcfg).same_as(fmt)
        ex, why = build_example(RECORD, smollm2_tok, dcfg)
        assert ex is not None, why
        n_prompt = next(i for i, x in enumerate(ex.labels) if x != IGNORE_INDEX)
        gen = make_generator("hf", model=str(tiny_llama_dir), prompt_mode="completion", num_threads=1)
        try:
            eval_ids = gen.encode_prompt(fmt.render_prompt(gen.tokenizer, STATEMENT)[0])
        finally:
            gen.close()
        assert eval_ids == ex.input_ids[:n_prompt]
        assert smollm2_tok.decode(eval_ids).rstrip().endswith("assistant")  # the generation prompt is in it


def test_format_record_counts_targets_up_to_where_generation_stops(smollm2_tok):
    from codistill.training.config import DataConfig
    from codistill.training.data import IGNORE_INDEX, build_example, format_record, render_target

    fmt = get_format("paper")
    dcfg = DataConfig(**fmt.data_fields(), format_name="paper", max_length=1024)
    rec = format_record([RECORD, {**RECORD, "id": "t2", "code": ""}], smollm2_tok, dcfg)
    assert rec["examples"] == 1 and rec["format"]["name"] == "paper"
    ex, _ = build_example(RECORD, smollm2_tok, dcfg)
    assert rec["target_tokens"]["max"] == sum(x != IGNORE_INDEX for x in ex.labels)  # whole target + eos
    text, span = render_target({k: RECORD[k] for k in ("context", "code", "tests")}, dcfg)
    until_code = text[:text.index("### Tests")].rstrip()
    assert until_code.endswith("return a + b\n```")
    assert rec["generation_tokens"]["max"] == len(smollm2_tok(until_code, add_special_tokens=False)["input_ids"])
    assert rec["generation_tokens"]["max"] < rec["target_tokens"]["max"]
    assert length_stats([5, 1, 3, 100]) == {"n": 4, "mean": 27.2, "p50": 3, "p90": 100, "p99": 100, "max": 100}


def _adapter(tmp_path: Path, fmt: str = "paper", p99: int = 700) -> Path:
    d = tmp_path / "adapter"
    d.mkdir()
    (d / FORMAT_FILE).write_text(json.dumps({
        "format": get_format(fmt).model_dump(),
        "generation_tokens": {"n": 100, "p50": 400, "p90": 600, "p99": p99, "max": 900}}))
    return d


def test_guard_refuses_another_format_and_a_short_budget(tmp_path):
    adapter = _adapter(tmp_path)
    paper = get_format("paper")
    with pytest.raises(ProtocolError, match="trained in format 'paper'.*standard zero-shot protocol"):
        check_adapter(adapter, None, 1024, 32)
    with pytest.raises(ProtocolError, match="trained in format 'paper'.*format 'paper-no-tests'"):
        check_adapter(adapter, get_format("paper-no-tests"), 1024, 32)
    with pytest.raises(ProtocolError, match="max_new_tokens=512 .* = 700 tokens .*= 732.*--max-new-tokens"):
        check_adapter(adapter, paper, 512, 32)
    ok = check_adapter(adapter, paper, 732, 32)
    assert ok["required_budget"] == 732 and ok["overrides"] == []
    forced = check_adapter(adapter, None, 100, 32, allow_format_mismatch=True, allow_short_budget=True)
    assert forced["overrides"] == ["allow_format_mismatch", "allow_short_budget"]
    assert "unknown" in check_adapter(tmp_path, paper, 10, 32)["note"]  # a folder without the record


def test_eval_refuses_before_loading_anything(tmp_path):
    """run_eval checks the protocol first: the model named here does not even exist."""
    from codistill.evaluation.run import EvalConfig, run_eval

    adapter = _adapter(tmp_path)
    base = dict(model=str(tmp_path / "no-such-model"), adapter=str(adapter), benchmarks=["humaneval"], limit=1)
    with pytest.raises(ProtocolError, match="standard zero-shot"):
        run_eval(EvalConfig(**base), tmp_path / "out1")
    with pytest.raises(ProtocolError, match="max_new_tokens=512"):
        run_eval(EvalConfig(**base, format="adapter"), tmp_path / "out2")
    assert not (tmp_path / "out1" / "generations.jsonl").exists()
    with pytest.raises(ValueError, match="unknown format"):
        EvalConfig(**base, format="nope")


def test_answer_rates_and_has_code():
    from codistill.evaluation.run import answer_rates, has_code

    assert has_code("### Reasoning\nadd\n\n### Code\n```python\ndef add(a, b):\n    return a + b\n```", "add", "chat")
    assert not has_code("### Reasoning\nFirst we think about the problem and then", "add", "chat")
    assert not has_code("```python\ndef other():\n    pass\n```", "add", "chat")
    samples = [{"hit_cap": True, "has_code": False}, {"hit_cap": False, "has_code": True},
               {"hit_cap": None, "has_code": True}, {"hit_cap": False, "has_code": True}]
    r = answer_rates(samples)
    assert r["cap_hit_rate"] == pytest.approx(1 / 3) and r["no_code_rate"] == 0.25 and r["answers"] == 4
    assert r["loop_rate"] == 0.0  # no text: nothing loops


# the shape of a real greedy loop (cd on HumanEval/0): two lines over and over, cut mid-line by the cap
LOOP = ("### Reasoning\n### Intent\n### Intent is to check if there are any two numbers closer than the threshold.\n"
        + "### Intent is to be used in a search algorithm to find the closest pair of numbers in a list.\n"
          "### Intent is to be used in a data structure to store and retrieve the closest pair of numbers in a list.\n" * 12
        + "### Intent is to be used in a search algorithm to find the clos")
LONG = ("### Reasoning\n" + "".join(f"{i}. Step {i}: compare element {i} with element {i + 1} and keep the smaller "
                                      f"gap in `best` (gap {i * 7 % 13}).\n" for i in range(1, 40))
        + "### Code\n```python\ndef f(xs):\n    return min(b - a for a, b in zip(xs, xs[1:]))\n```")


def test_a_looping_answer_is_told_from_a_long_one():
    from codistill.evaluation.judging import answer_rates, ends_in_a_loop

    assert ends_in_a_loop(LOOP) and not ends_in_a_loop(LONG)
    assert ends_in_a_loop(LOOP[:-17])  # whatever phase the cap cut it at
    # a short run of one character is formatting, not a loop; a long one is
    assert not ends_in_a_loop("def f():\n    return [[[1]]]" + ")" * 20)
    assert ends_in_a_loop("x = 1\n" + "a" * 300)
    # a period longer than max_period is not searched
    import random

    rng = random.Random(0)
    block = "".join(rng.choice("abcdefgh ") for _ in range(300))  # aperiodic itself
    assert ends_in_a_loop(block * 3) and not ends_in_a_loop(block * 3, max_period=200)
    rates = answer_rates([{"completion_raw": LOOP, "hit_cap": True, "has_code": False},
                          {"completion_raw": LONG, "hit_cap": False, "has_code": True}])
    assert rates["loop_rate"] == 0.5 and rates["cap_hit_rate"] == 0.5 and rates["ended_no_code_rate"] == 0.0
    # no code: cut by the cap (1), cut by a loop stop (2: not at the cap, ends in a loop), stopped early (3, 4)
    reasoning = LONG.split("### Code")[0]
    rates = answer_rates([{"completion_raw": reasoning + "x" * 10, "hit_cap": True, "has_code": False},
                          {"completion_raw": LOOP, "hit_cap": False, "has_code": False},
                          {"completion_raw": reasoning, "hit_cap": False, "has_code": False},
                          {"completion_raw": "", "hit_cap": False, "has_code": False},
                          {"completion_raw": LONG, "hit_cap": False, "has_code": True}])
    assert rates["no_code_rate"] == 0.8 and rates["ended_no_code_rate"] == 0.4
    assert answer_rates([{"completion_raw": "", "has_code": False}])["ended_no_code_rate"] is None
    assert "finish_known" not in rates  # no answer said why it ended


def test_why_answers_without_code_ended_is_counted_where_the_backend_said():
    from codistill.evaluation.judging import answer_rates

    reasoning = LONG.split("### Code")[0]
    rates = answer_rates([{"completion_raw": reasoning, "hit_cap": False, "has_code": False, "finish_reason": "stop"},
                          {"completion_raw": reasoning, "hit_cap": False, "has_code": False, "finish_reason": "stop"},
                          {"completion_raw": reasoning, "hit_cap": False, "has_code": False, "finish_reason": "eos"},
                          {"completion_raw": LOOP, "hit_cap": False, "has_code": False, "finish_reason": "loop"},
                          {"completion_raw": LONG, "hit_cap": False, "has_code": True, "finish_reason": "eos"},
                          {"completion_raw": reasoning, "hit_cap": False, "has_code": False}])  # generated before
    assert rates["finish_known"] == 5
    assert rates["no_code_finish"] == {"eos": 1, "loop": 1, "stop": 2}
    assert rates["ended_no_code_rate"] == pytest.approx(4 / 6)  # unchanged: the reasons only split it


def test_recipe_declares_the_format_once(tmp_path):
    from codistill.recipe import Recipe, _check_sections, _eval_dict, _train_dict

    raw = {"name": "x", "data": {"sources": [{"name": "mbpp:train"}]}, "teach": {"mode": "explain"},
           "train": {"model": "m"}, "arms": {"base": {"base": True}, "cd": {}}, "format": "paper-no-tests"}
    r = Recipe.model_validate(raw)
    assert r.protocols("base") == ["standard", "format"] and r.protocols("cd") == ["format"]
    t = _train_dict(r, r.arms["cd"], tmp_path, "train.jsonl")
    assert t["data"]["target_sections"] == get_format("paper-no-tests").sections
    assert t["data"]["format_name"] == "paper-no-tests"
    assert _eval_dict(r, r.arms["cd"], "a", "format")["format"]["name"] == "paper-no-tests"
    assert _eval_dict(r, r.arms["base"], None, "standard")["format"] == "standard"
    bad = Recipe.model_validate({**raw, "train": {"model": "m", "data": {"prompt_mode": "completion"}}})
    with pytest.raises(ValueError, match="train.data sets prompt_mode: the student format is declared once"):
        _check_sections(bad, "r.yaml")
    bad = Recipe.model_validate({**raw, "eval": {"format": "paper"}})
    with pytest.raises(ValueError, match="eval.format: the student format is declared once"):
        _check_sections(bad, "r.yaml")
