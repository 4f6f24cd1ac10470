"""``teach.fallback_mode``: one mode per row. Rows with a reference go through ``mode`` (explain),
rows without one (LeetCode) through the fallback (solve: rejection sampling judged in the sandbox),
against a real local HTTP teacher with canned answers; resume and the shared cache ask nothing
again; a config without the setting keeps its key; paper-medium declares it."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from _student_teacher import write_dataset
from conftest import chat_server
from codistill.problems.schema import CallTests, Problem
from codistill.store import read_jsonl, write_jsonl
from codistill.teacher.teach import TRAIN_KEYS, TeachConfig, teach

SOLUTION = """def running_max(xs):
    best, out = None, []
    for x in xs:
        best = x if best is None or x > best else best
        out.append(best)
    return out
"""

EXPLAIN = """## Intent
Return, for every position of a list, the largest value seen so far.

## Steps
1. Keep the best value seen so far, starting with nothing.
2. Walk the list; a larger value becomes the best; record the best after each element.

## Formulas
out[i] = max(xs[0..i])

## Edge cases
An empty list gives an empty result.

## Built-ins
None
"""

WRONG = "## Reasoning\nAdd one to the number.\n\n## Code\n```python\ndef inc(n):\n    return n + 2\n```\n"
RIGHT = ("## Reasoning\nAdd one to the number; nothing else is needed.\n\n"
         "## Code\n```python\ndef inc(n):\n    return n + 1\n```\n")

# problem marker -> answers by attempt (the last repeats)
SCRIPT = {"ref": [EXPLAIN], "lcinc": [WRONG, RIGHT], "lcnever": [WRONG]}


class Teacher:
    """Answers by the ``[[marker]]`` in the prompt and the attempt (seed - 100); records which
    template asked (solve's prompt shows no reference)."""

    def __init__(self):
        self.requests: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def answer(self, body: dict):
        prompt = body["messages"][-1]["content"]
        marker = re.search(r"\[\[(\w+)\]\]", prompt).group(1)
        attempt = int(body.get("seed") or 0) - 100
        with self.lock:
            self.requests.append((marker, attempt))
        answers = SCRIPT[marker]
        text = answers[min(attempt, len(answers) - 1)]
        return 200, {"id": "x", "object": "chat.completion", "model": body.get("model"),
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}}


@pytest.fixture()
def server():
    with chat_server(Teacher()) as t:
        yield t


def _problems() -> list[Problem]:
    ref = Problem(id="ref", source="toy", prompt="[[ref]] Write running_max(xs): the running maximum of a list.",
                  entry_point="running_max", solutions=[SOLUTION],
                  tests=[CallTests(fn_name="running_max", inputs=[[[1, 3, 2]], [[]]], outputs=[[1, 3, 3], []])])
    inc = Problem(id="lc/inc", source="leetcode", prompt="[[lcinc]] Write inc(n) that returns n + 1.",
                  entry_point="inc", tests=[CallTests(fn_name="inc", inputs=[[1], [5]], outputs=[2, 6])])
    never = Problem(id="lc/never", source="leetcode", prompt="[[lcnever]] Write inc(n) that returns n + 1.",
                    entry_point="inc", tests=[CallTests(fn_name="inc", inputs=[[1]], outputs=[2])])
    return [ref, inc, never]


_dataset = write_dataset  # a `codistill data` folder (tests/_student_teacher.py)


def _cfg(tmp_path: Path, url: str, dataset: str, **kw) -> TeachConfig:
    base = dict(out_dir=str(tmp_path / "run"), dataset=dataset, mode="explain", fallback_mode="solve",
                teacher={"base_url": url, "concurrency": 2, "max_retries": 1, "timeout_s": 30},
                sampling={"seed": 100, "max_new_tokens": 200}, max_attempts=2, cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return TeachConfig.model_validate(base)


def test_rows_without_a_reference_are_taught_in_solve_mode(tmp_path, server):
    ds = _dataset(tmp_path / "data", _problems())
    m = teach(_cfg(tmp_path, server.url, ds))
    out = tmp_path / "run"
    recs = {r["id"]: r for r in read_jsonl(out / "contexts.jsonl")}
    assert {k: r["mode"] for k, r in recs.items()} == {"ref": "explain", "lc/inc": "solve", "lc/never": "solve"}

    assert recs["ref"]["valid"] and recs["ref"]["code"] == SOLUTION and recs["ref"]["leakage"] is not None
    inc = recs["lc/inc"]  # the first answer fails the tests, the retry passes: kept, the teacher's code
    assert inc["valid"] and inc["attempts"] == 2 and [a["judge"] for a in inc["attempt_log"]] == ["fail", "pass"]
    assert "return n + 1" in inc["code"] and inc["leakage"] is None
    never = recs["lc/never"]  # every answer fails: max_attempts calls, then a failure
    assert not never["valid"] and never["attempts"] == 2 and never["reason"] == "judge: fail"
    assert sorted(server.requests) == [("lcinc", 0), ("lcinc", 1), ("lcnever", 0), ("lcnever", 1), ("ref", 0)]

    train = {t["id"]: t for t in read_jsonl(out / "train.jsonl")}
    assert set(train) == {"ref", "lc/inc"} and all(tuple(t) == TRAIN_KEYS for t in train.values())
    assert train["ref"]["context"].startswith("### Intent") and train["ref"]["code"] == SOLUTION
    assert train["lc/inc"]["context"].startswith("### Reasoning") and "```" not in train["lc/inc"]["context"]
    assert train["lc/inc"]["code"] == inc["code"] and "assert inc(1) == 2" in train["lc/inc"]["tests"]

    c = m["counts"]
    assert c["valid"] == 2 and c["train_rows"] == 2 and c["invalid_by_reason"] == {"judge: fail": 1}
    assert c["by_mode"] == {"explain": {"rows": 1, "finished": 1, "valid": 1, "invalid": 0, "train_rows": 1},
                            "solve": {"rows": 2, "finished": 2, "valid": 1, "invalid": 1, "train_rows": 1}}
    assert set(m["templates"]) == {"explain", "solve"} and m["complete"]


def test_resume_and_the_cache_ask_nothing_again(tmp_path, server):
    ds = _dataset(tmp_path / "data", _problems())
    cfg = _cfg(tmp_path, server.url, ds)
    teach(cfg)
    n = len(server.requests)
    # the same run directory: every row is done
    m = teach(cfg)
    assert len(server.requests) == n and m["this_run"]["teacher_calls"] == 0 and m["this_run"]["new_contexts"] == 0
    # a row lost from contexts.jsonl (an interrupted run) is redone from the cache
    ctx = tmp_path / "run" / "contexts.jsonl"
    write_jsonl(ctx, [r for r in read_jsonl(ctx) if r["id"] != "lc/inc"])
    m = teach(cfg)
    assert len(server.requests) == n and m["this_run"]["new_contexts"] == 1 and m["this_run"]["cache_hits"] == 2
    assert m["counts"]["by_mode"]["solve"]["valid"] == 1
    # a plain solve run on the rows without a reference makes the same calls: answered by the cache
    lc = _dataset(tmp_path / "lc", _problems()[1:])
    m = teach(_cfg(tmp_path, server.url, lc, mode="solve", fallback_mode=None, out_dir=str(tmp_path / "solve")))
    assert len(server.requests) == n and m["this_run"]["teacher_calls"] == 0 and m["counts"]["valid"] == 1


def test_without_fallback_rows_without_a_reference_are_refused(tmp_path):
    ds = _dataset(tmp_path / "data", _problems())
    with pytest.raises(ValueError, match="fallback_mode='solve'"):
        teach(_cfg(tmp_path, "http://127.0.0.1:9/v1", ds, fallback_mode=None))


def test_the_key_is_unchanged_without_the_setting():
    base = {"out_dir": "o", "dataset": "d", "teacher": {"base_url": "http://a/v1", "model": "t"}}
    a = TeachConfig.model_validate(base)
    assert "fallback_mode" not in a.key()
    assert a.key() == TeachConfig.model_validate({**base, "fallback_mode": None}).key()
    with_fb = TeachConfig.model_validate({**base, "fallback_mode": "solve"})
    assert with_fb.key() != a.key() and with_fb.key()["fallback_mode"] == "solve"
    fb = with_fb.fallback_config()
    assert fb.mode == "solve" and fb.fallback_mode is None and a.fallback_config() is None


@pytest.mark.parametrize("settings, error", [
    ({"fallback_mode": "explain"}, "from its problem alone"),
    ({"fallback_mode": "nope"}, "unknown fallback_mode"),
    ({"mode": "solve", "fallback_mode": "solve"}, "shows the teacher the reference"),
])
def test_a_fallback_that_cannot_work_is_refused(settings, error):
    with pytest.raises(ValueError, match=error):
        TeachConfig.model_validate({"out_dir": "o", "dataset": "d", **settings})


def test_paper_medium_teaches_leetcode_in_solve_mode():
    from codistill.recipe import load_recipe
    from codistill.recipe.stages import data_config, teach_config

    r = load_recipe("paper-medium")  # every stage's settings are checked at load
    run = Path("/tmp/keys/run")
    cfg, _, _ = teach_config(r, run, "D")
    assert cfg.mode == "explain" and cfg.fallback_mode == "solve"
    sources = {s.name: s for s in data_config(r, run)[0].sources}
    assert set(sources) == {"codeio", "mbpp:train", "leetcode"}
    lc = sources["leetcode"]
    assert lc.allow_no_solution and lc.max_problems is not None and lc.max_problems <= 300
