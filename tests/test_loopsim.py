"""`codistill loops`: an eval's answers cut where a loop stop would have cut them, judged again."""

from __future__ import annotations

import json

import pytest

from codistill.evaluation.extract import build_program
from codistill.loops import loop_stop_point
from codistill.problems.loaders import load_benchmark
from codistill.store import write_jsonl

LOOP = "I think we should check it again. " * 12


@pytest.fixture
def judged_eval(tmp_path):
    """A hand-made judged eval of HumanEval/0-2 in chat mode: 0 answers with its code then loops, 1
    loops first and writes its (correct) code after the loop, 2 writes wrong code and never loops."""
    probs = load_benchmark("humaneval", limit=3)
    fence = "```python\n{}\n```\n"
    answers = [("Here it is.\n" + fence.format(probs[0].solutions[0]) + LOOP, True),
               (LOOP + fence.format(probs[1].solutions[0]), True),
               (fence.format(probs[2].solutions[0].replace("return number % 1.0", "return None")), False)]
    out = tmp_path / "eval"
    (out / "humaneval").mkdir(parents=True)
    verdicts = [{"task_id": p.id, "sample_index": 0, "completion_raw": raw, "n_tokens": len(raw) // 4, "passed": ok,
                 "solution": build_program(raw, p.code_prefix, p.entry_point, "chat")}
                for p, (raw, ok) in zip(probs, answers)]
    write_jsonl(out / "humaneval" / "verdicts.jsonl", verdicts)
    (out / "config.json").write_text(json.dumps({"temperature": 0.0, "limit": 3, "judge_timeout_s": 5.0}))
    (out / "results.json").write_text(json.dumps({"benchmarks": {"humaneval": {}}, "prompt_mode": "chat",
                                                  "protocol": {"format": None}}))
    return out, answers


def test_the_stop_is_simulated_and_the_changed_programs_judged(judged_eval):
    from codistill.evaluation.loopsim import simulate_loop_stop

    out, answers = judged_eval
    rep = simulate_loop_stop(out, workers=1)
    b = rep["benchmarks"]["humaneval"]
    assert b["answers"] == 3 and b["stopped"] == 2  # answers 0 and 1 end in / hold a loop
    # 0: cut after its code (same program, still passes); 1: cut before its code (no code: fails)
    assert b["program_changed"] == 1 and b["pass_to_fail"] == 1 and b["fail_to_pass"] == 0
    assert b["flipped"] == [{"task_id": "HumanEval/1", "sample_index": 0, "passed_full": True}]
    assert b["pass_full"] == pytest.approx(2 / 3) and b["pass_stopped"] == pytest.approx(1 / 3)
    saved = sum(len(a) // 4 * (1 - loop_stop_point(a) / len(a)) for a, _ in answers[:2])
    assert b["tokens_saved"] == round(saved) and b["tokens_full"] == sum(len(a) // 4 for a, _ in answers)
    assert json.loads((out / "loop_stop.json").read_text()) == rep


def test_an_eval_already_stopped_or_unjudged_is_refused(judged_eval, tmp_path):
    from codistill.evaluation.loopsim import simulate_loop_stop

    out, _ = judged_eval
    with pytest.raises(FileNotFoundError, match="no judged eval"):
        simulate_loop_stop(tmp_path / "nothing")
    (out / "config.json").write_text(json.dumps({"stop_on_loop": True}))
    with pytest.raises(ValueError, match="already cut"):
        simulate_loop_stop(out)
