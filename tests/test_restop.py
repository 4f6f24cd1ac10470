"""Stop rule 2: a later section's header stops generation only once the code section is closed, and
an eval made under rule 1 asks again the answers rule 1 cut short (codistill.evaluation.restop)."""

from __future__ import annotations

import json
import threading

import pytest

from codistill.backends.base import truncate_at_stop
from codistill.evaluation.extract import extract_code
from codistill.formats import STOP_RULE, get_format
from conftest import json_server

SOLUTION = "def add(a, b):\n    return a + b"
REASONING = "### Reasoning\n### Intent\nAdd two numbers.\n\n### Steps\n1. Return a + b."
# a student that writes its tests before its code, then its code, then tests again
TESTS_FIRST = (REASONING + "\n\n### Tests\n```python\nassert add(1, 2) == 3\n```\n\n### Code\n```python\n"
               + SOLUTION + "\n```\n\n### Tests\n```python\nassert add(2, 2) == 4\n```")
IN_ORDER = REASONING + "\n\n### Code\n```python\n" + SOLUTION + "\n```\n\n### Tests\n```python\nassert add(1, 2) == 3\n```"


def test_the_tests_before_the_code_no_longer_end_the_answer():
    paper = get_format("paper")
    assert paper.stop_strings() == ["\n```\n\n### Tests"] and paper.stop_strings_rule1() == ["\n\n### Tests"]
    rule1 = truncate_at_stop(TESTS_FIRST, paper.stop_strings_rule1())
    rule2 = truncate_at_stop(TESTS_FIRST, paper.stop_strings())
    assert rule1 == REASONING and "def add" not in rule1  # rule 1: cut before the code
    assert rule2.endswith(SOLUTION) and "assert add(2, 2)" not in rule2  # rule 2: cut right after it
    assert extract_code(rule2, "add").strip() == SOLUTION
    # an answer in the trained order is cut where it was (its closing fence aside), with the same code
    assert truncate_at_stop(IN_ORDER, paper.stop_strings()) + "\n```" == truncate_at_stop(IN_ORDER, paper.stop_strings_rule1())
    assert get_format("paper-no-tests").stop_strings() == [] == get_format("code-only").stop_strings()


@pytest.mark.parametrize("row, stale", [
    ({"completion_raw": REASONING, "finish_reason": "stop", "n_tokens": 40}, True),  # a known rule-1 cut, no code
    ({"completion_raw": REASONING, "finish_reason": "stop_or_eos", "n_tokens": 40}, True),  # may have been one
    ({"completion_raw": REASONING, "n_tokens": 40}, True),  # not recorded, no code
    ({"completion_raw": REASONING, "finish_reason": "stop", "n_tokens": 40, "stop_rule": STOP_RULE}, False),
    ({"completion_raw": REASONING, "finish_reason": "eos", "n_tokens": 40}, False),  # the model ended it
    ({"completion_raw": REASONING, "finish_reason": "length", "n_tokens": 64}, False),  # the cap
    ({"completion_raw": REASONING, "n_tokens": 64}, False),  # the cap, not recorded
    ({"completion_raw": REASONING, "finish_reason": "loop", "n_tokens": 40}, False),
    ({"completion_raw": "### Reasoning\n" + "ab cd ef gh. " * 60, "n_tokens": 40}, False),  # ends in a loop
    ({"completion_raw": truncate_at_stop(IN_ORDER, ["\n\n### Tests"]), "finish_reason": "stop", "n_tokens": 40}, False),
    ({"completion_raw": "```python\ndef add(a, b): ...\n```\nThat is all.", "n_tokens": 40}, False),  # code, prose end
])
def test_which_answers_rule_1_cut_short(row, stale):
    from codistill.evaluation.restop import _stale

    assert _stale(row, get_format("paper"), max_new_tokens=64, stop_on_loop=True) is stale


class _Student:
    """Answers every completion prompt with the answer of the task whose function it names: the
    tests first, then the reference solution; or, with ``rule1``, that answer as rule 1 cut it."""

    def __init__(self, problems):
        self.by_name = {p.entry_point: p.solutions[0] for p in problems}
        self.rule1 = True
        self.asked: list[str] = []
        self.lock = threading.Lock()

    def answer(self, path: str, body: dict):
        assert path == "/v1/completions", path
        name = next(n for n in self.by_name if f"def {n}(" in body["prompt"])
        text = TESTS_FIRST.replace("def add(a, b):\n    return a + b", self.by_name[name].strip())
        if name == "has_close_elements":  # this one writes its code first: rule 1 cut it after its code
            text = IN_ORDER.replace("def add(a, b):\n    return a + b", self.by_name[name].strip())
        if self.rule1:
            text = truncate_at_stop(text, get_format("paper").stop_strings_rule1())
        with self.lock:
            self.asked.append(name)
        return 200, {"choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 20}}


def test_an_eval_made_under_rule_1_asks_again_what_it_cut_short(tmp_path, tiny_llama_dir):
    from codistill.evaluation.config import EvalConfig
    from codistill.evaluation.run import run_eval
    from codistill.problems.loaders import load_benchmark

    problems = load_benchmark("humaneval", limit=3)
    student = _Student(problems)
    out = tmp_path / "eval"
    with json_server(student.answer) as url:
        cfg = EvalConfig(model=str(tiny_llama_dir), backend="openai", backend_options={"base_url": url, "max_retries": 0},
                         benchmarks=["humaneval"], limit=3, format="paper", max_new_tokens=512, batch_size=2,
                         perplexity=False, token_nll=False)
        first = run_eval(cfg, out, progress=False)
        assert first["benchmarks"]["humaneval"]["pass@k"]["pass@1"] == pytest.approx(1 / 3)  # only the code-first one
        # as an eval made before rule 2: its rows do not say which rule they were made under
        gens = out / "generations.jsonl"
        rows = [json.loads(x) for x in gens.read_text().splitlines()]
        assert all(r["stop_rule"] == STOP_RULE and r["finish_reason"] == "stop_or_eos" for r in rows)
        gens.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "stop_rule"}) + "\n" for r in rows))
        student.rule1, student.asked = False, []
        again = run_eval(cfg, out, progress=False)
    assert sorted(student.asked) == sorted(p.entry_point for p in problems if p.entry_point != "has_close_elements")
    assert again["stop_rule"] == {"rule": STOP_RULE, "stops": ["\n```\n\n### Tests"], "superseded": 2,
                                  "superseded_this_call": 2}
    assert again["benchmarks"]["humaneval"]["pass@k"]["pass@1"] == 1.0
    old = [json.loads(x) for x in (out / "generations.superseded.jsonl").read_text().splitlines()]
    assert sorted(r["task_id"] for r in old) == ["HumanEval/1", "HumanEval/2"]
    assert all(r["completion_raw"] == REASONING for r in old)  # kept, as they were
    rows = [json.loads(x) for x in gens.read_text().splitlines()]
    assert len(rows) == 3 and sum("stop_rule" in r for r in rows) == 2
    # a third call asks nothing: the kept rule-1 row ended with its closed code section
    with json_server(student.answer) as url:
        student.asked = []
        third = run_eval(cfg.model_copy(update={"backend_options": {"base_url": url, "max_retries": 0}}), out,
                         progress=False)
    assert student.asked == [] and third["stop_rule"]["superseded_this_call"] == 0
    assert third["stop_rule"]["superseded"] == 2


def test_the_stop_rule_reruns_a_recipe_eval_but_keeps_its_folder():
    from codistill.evaluation.config import EvalConfig

    fmt = EvalConfig(model="m", format="paper")
    std = EvalConfig(model="m")
    assert fmt.key()["stop_rule"] == STOP_RULE and "stop_rule" not in fmt.compat_key()
    assert "stop_rule" not in std.key()  # the standard protocol has no stop rule: its evals keep their keys
