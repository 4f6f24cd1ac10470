"""codistill data: token budget, reference verification in the sandbox, decontamination against
HumanEval, augmentation with alternative solutions, manifest, idempotent re-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codistill.data.decontam import DecontamConfig, EvalIndex, code_ngrams, word_ngrams
from codistill.data.prepare import PrepareConfig, _parse_source, prepare_dataset, render_tests
from codistill.problems.schema import AssertTests, CallTests, Problem, StdioTests
from codistill.store import read_jsonl

HUMANEVAL_0_STATEMENT = (
    "Check if in given list of numbers, are any two numbers closer to each other than given threshold."
)
HUMANEVAL_0_CODE = """def has_close_elements(numbers, threshold):
    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2:
                distance = abs(elem - elem2)
                if distance < threshold:
                    return True

    return False
"""


def _taco_file(tmp_path: Path) -> Path:
    """A TACO-format file: good, two-solution, broken-reference, copied-from-HumanEval, too-long problems."""
    recs = [
        {  # kept, two distinct correct solutions -> one alternative row
            "problem_id": "sum2",
            "question": "Read two integers a and b from one line and print their sum.",
            "solutions": json.dumps(["a, b = map(int, input().split())\nprint(a + b)\n",
                                     "print(sum(int(x) for x in input().split()))\n"]),
            "input_output": json.dumps({"inputs": ["1 2\n", "10 -3\n"], "outputs": ["3\n", "7\n"]}),
            "difficulty": "EASY",
        },
        {  # reference fails its own tests -> removed by verification
            "problem_id": "broken",
            "question": "Read an integer n and print n squared.",
            "solutions": json.dumps(["n = int(input())\nprint(n * 3)\n"]),
            "input_output": json.dumps({"inputs": ["2\n", "5\n"], "outputs": ["4\n", "25\n"]}),
            "difficulty": "EASY",
        },
        {  # copied from HumanEval/0 -> removed by decontamination
            "problem_id": "copied",
            "question": HUMANEVAL_0_STATEMENT + " Return True or False.",
            "solutions": json.dumps([HUMANEVAL_0_CODE]),
            "starter_code": "def has_close_elements(numbers, threshold):\n",
            "input_output": json.dumps({"fn_name": "has_close_elements",
                                        "inputs": [[[1.0, 2.0, 3.0], 0.5], [[1.0, 1.2], 0.3]],
                                        "outputs": [[False], [True]]}),
            "difficulty": "EASY",
        },
        {  # a different call-based problem -> kept
            "problem_id": "evens",
            "question": "Given a list of integers, return how many of them are even.",
            "solutions": json.dumps(["def count_even(xs):\n    return sum(1 for x in xs if x % 2 == 0)\n"]),
            "starter_code": "def count_even(xs):\n",
            "input_output": json.dumps({"fn_name": "count_even", "inputs": [[[1, 2, 4]], [[]]],
                                        "outputs": [[2], [0]]}),
            "difficulty": "MEDIUM",
        },
        {  # over the token budget
            "problem_id": "long",
            "question": "Print the word hello. " + "This statement is padded with many words. " * 60,
            "solutions": json.dumps(["print('hello')\n"]),
            "input_output": json.dumps({"inputs": [""], "outputs": ["hello\n"]}),
            "difficulty": "EASY",
        },
    ]
    path = tmp_path / "taco_mini.json"
    path.write_text(json.dumps(recs))
    return path


def _config(tmp_path: Path, **kw) -> PrepareConfig:
    base = dict(
        out_dir=str(tmp_path / "data"),
        sources=[{"name": "taco", "kwargs": {"path": str(_taco_file(tmp_path))}}],
        tokenizer="whitespace",
        max_tokens=200,
        alternatives=1,
        sandbox_workers=2,
        decontam={"benchmarks": ["humaneval"]},
    )
    base.update(kw)
    return PrepareConfig.model_validate(base)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prep")
    cfg = _config(tmp)
    return cfg, prepare_dataset(cfg)


def test_stages_remove_the_right_problems(prepared):
    cfg, m = prepared
    out = Path(cfg.out_dir)
    removed = {r["id"]: r for r in read_jsonl(out / "removed.jsonl")}
    assert removed["taco/broken"]["stage"] == "reference_failed"
    assert removed["taco/long"]["stage"] == "token_budget"
    dec = removed["taco/copied"]
    assert dec["stage"] == "decontam"
    assert dec["matched_eval_id"] == "humaneval:HumanEval/0"
    assert dec["score"] >= 0.5 and dec["check"] in ("statement", "solution")
    rows = list(read_jsonl(out / "rows.jsonl"))
    ids = [r["id"] for r in rows]
    assert ids == ["taco/sum2", "taco/sum2#alt1", "taco/evens"]
    c = m["counts"]["by_source"]["taco"]
    assert c["loaded"] == 5 and c["removed_token_budget"] == 1 and c["removed_decontam"] == 1
    assert c["removed_reference_failed"] == 1 and c["kept_problems"] == 2 and c["alternative_rows"] == 1
    assert m["removed"]["decontam"]["ids"] == ["taco/copied"]


def test_rows_have_the_contract_and_readable_tests(prepared):
    cfg, _ = prepared
    rows = {r["id"]: r for r in read_jsonl(Path(cfg.out_dir) / "rows.jsonl")}
    for r in rows.values():
        assert {"id", "prompt", "code", "tests", "difficulty", "source", "entry_point"} <= set(r)
    assert "assert count_even([1, 2, 4]) == 2" in rows["taco/evens"]["tests"]
    assert "# input\n1 2\n# expected output\n3" in rows["taco/sum2"]["tests"]
    assert rows["taco/sum2"]["code"] != rows["taco/sum2#alt1"]["code"]
    problems = [json.loads(x) for x in (Path(cfg.out_dir) / "problems.jsonl").read_text().splitlines()]
    assert {p["id"] for p in problems} == {"taco/sum2", "taco/evens"}


def test_outputs_written_with_datasets_and_manifest(prepared):
    cfg, m = prepared
    out = Path(cfg.out_dir)
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_from_disk(str(out / "dataset"))
    assert len(ds) == 3 and "tests" in ds.column_names
    assert (out / "rows.parquet").exists()
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and man["config"]["max_tokens"] == 200
    assert len(man["hashes"]["rows.jsonl"]) == 64


def test_rerun_with_same_config_does_nothing(prepared):
    cfg, m = prepared
    before = (Path(cfg.out_dir) / "rows.jsonl").stat().st_mtime_ns
    again = prepare_dataset(cfg)
    assert again.get("skipped") is True
    assert (Path(cfg.out_dir) / "rows.jsonl").stat().st_mtime_ns == before


def test_verification_resumes_from_verify_log(prepared):
    cfg, _ = prepared
    # a changed config re-runs the stages, but verdicts come from verify.jsonl (no sandbox needed)
    cfg2 = cfg.model_copy(update={"alternatives": 0, "sandbox_workers": 1})
    import codistill.execution.judge as judge_mod

    class Boom:
        def __init__(self, *a, **k):
            raise AssertionError("the sandbox must not be started: all verdicts are cached")

    orig = judge_mod.Judge
    judge_mod.Judge = Boom
    try:
        m = prepare_dataset(cfg2)
    finally:
        judge_mod.Judge = orig
    assert m["counts"]["rows"] == 2


def test_token_budget_counts_statement_solution_and_tests(tmp_path):
    cfg = _config(tmp_path, max_tokens=20, verify=False, decontam={"enabled": False}, alternatives=0)
    m = prepare_dataset(cfg)
    removed = {r["id"] for r in read_jsonl(Path(cfg.out_dir) / "removed.jsonl")}
    # with 20 whitespace tokens only the tiny sum problem's short solution fits
    assert "taco/long" in removed and "taco/evens" in removed
    rows = list(read_jsonl(Path(cfg.out_dir) / "rows.jsonl"))
    assert all(len((r["prompt"] + "\n" + r["code"] + "\n" + r["tests"]).split()) <= 20 for r in rows)
    assert m["counts"]["total"]["removed_token_budget"] >= 2


def test_decontam_index_scores():
    idx = EvalIndex(DecontamConfig(statement_n=4, solution_n=5))
    idx.add_problems([Problem(id="E/1", source="x", prompt="Return the sum of two integers a and b.",
                              solutions=["def add(a, b):\n    return a + b\n"])], prefix="ev:")
    m = idx.match("Return the sum of two integers a and b, please.", [])
    assert m is not None and m.eval_id == "ev:E/1" and m.kind == "statement" and m.score == 1.0
    m2 = idx.match("Something unrelated about graphs and trees entirely.",
                   ["def add(a, b):\n    # comment\n    return a + b\n"])
    assert m2 is not None and m2.kind == "solution" and m2.score == 1.0
    assert idx.match("Count the vowels in a string of text.", ["def f(s):\n    return sum(c in 'aeiou' for c in s)\n"]) is None
    assert word_ngrams("a b", 4) == {("a", "b")}
    assert code_ngrams("", 3) == set()


def test_render_tests_kinds():
    p = Problem(id="p", source="x", prompt="", entry_point="f", tests=[
        AssertTests(program="assert f(1) == 2", setup="import math"),
        CallTests(fn_name="Solution.go", inputs=[[[1, 2]], ["a"]], outputs=[3, "b"]),
        StdioTests(inputs=["1\n"], outputs=["2\n"]),
    ])
    text = render_tests(p)
    assert "import math\nassert f(1) == 2" in text
    assert "assert Solution().go([1, 2]) == 3" in text
    assert "assert Solution().go('a') == 'b'" in text
    assert "# input\n1\n# expected output\n2" in text


def test_parse_source_flag():
    assert _parse_source("codeio:300:120", None) == {"name": "codeio", "limit": 300, "max_problems": 120}
    assert _parse_source("mbpp:train::80", None) == {"name": "mbpp:train", "max_problems": 80}
    assert _parse_source("leetcode", None)["allow_no_solution"] is True
    with pytest.raises(SystemExit):
        _parse_source("taco", None)


def test_config_is_validated():
    with pytest.raises(ValueError):
        PrepareConfig.model_validate({"out_dir": "x", "sources": []})
    with pytest.raises(ValueError):
        PrepareConfig.model_validate({"out_dir": "x", "sources": [{"name": "mbpp"}], "max_tokens": 0})


def test_problems_without_a_reference_kept_for_solve_mode(tmp_path, monkeypatch):
    """allow_no_solution: kept unverified (nothing to run), counted per source and said so in the
    manifest; the token budget and decontamination still apply; tests that need a reference's
    outputs leave no judge (no_oracle); without allow_no_solution they are dropped."""
    import codistill.problems.loaders as loaders

    def call(fn, outputs=(2,)):
        return [CallTests(fn_name=fn, inputs=[[1]], outputs=list(outputs))]

    problems = [
        Problem(id="lc/inc", source="leetcode", prompt="Return n plus one.", entry_point="inc", tests=call("inc")),
        Problem(id="lc/long", source="leetcode", prompt="Return n plus one. " + "Padding words here. " * 80,
                entry_point="inc", tests=call("inc")),
        Problem(id="lc/copied", source="leetcode", prompt=HUMANEVAL_0_STATEMENT, entry_point="has_close_elements",
                tests=call("has_close_elements", [False])),
        Problem(id="lc/no_oracle", source="leetcode", prompt="Return n doubled, as the reference does.",
                entry_point="dbl", tests=[CallTests(fn_name="dbl", inputs=[[1]], outputs=None)]),
        Problem(id="lc/with_ref", source="leetcode", prompt="Return n minus one.", entry_point="dec",
                solutions=["def dec(n):\n    return n - 1\n"],
                tests=[CallTests(fn_name="dec", inputs=[[1]], outputs=[0])]),
    ]
    real = loaders.load_benchmark  # the eval sets of decontamination come through it too
    monkeypatch.setattr(loaders, "load_benchmark", lambda name, **kw: [p.model_copy() for p in problems]
                        if name == "leetcode" else real(name, **kw))
    source = {"name": "leetcode", "allow_no_solution": True}
    m = prepare_dataset(_config(tmp_path, sources=[source], sandbox_workers=1))
    out = Path(tmp_path / "data")
    removed = {r["id"]: r["stage"] for r in read_jsonl(out / "removed.jsonl")}
    assert removed == {"lc/long": "token_budget", "lc/copied": "decontam", "lc/no_oracle": "no_oracle"}
    rows = {r["id"]: r for r in read_jsonl(out / "rows.jsonl")}
    assert set(rows) == {"lc/inc", "lc/with_ref"} and rows["lc/inc"]["code"] == ""
    assert "assert inc(1) == 2" in rows["lc/inc"]["tests"]
    c = m["counts"]["by_source"]["leetcode"]
    assert c["no_reference_kept_for_solve"] == 1 and c["kept_problems"] == 2
    assert m["unverified"]["by_source"] == {"leetcode": 1} and "solve mode" in m["unverified"]["why"]

    m2 = prepare_dataset(_config(tmp_path, out_dir=str(tmp_path / "strict"), sources=[{"name": "leetcode"}],
                                 sandbox_workers=1))
    assert m2["counts"]["by_source"]["leetcode"]["removed_no_solution"] == 4 and "unverified" not in m2
