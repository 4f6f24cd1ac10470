"""What keeps the pairs stage (and the correct stage, which shares its steps) inside the teacher's
context and the DPO arm's max_length, with a scripted student and a REAL local HTTP teacher:

* a long failed answer is cut to ``max_attempt_chars`` in the teacher's prompt (steps and code
  together), while the pair keeps the whole answer;
* a server that refuses a prompt for its size (llama.cpp without context shift: HTTP 400 "the
  request exceeds the available context size") makes that failure a recorded, permanent rejection:
  no retry, no teacher error, the stage completes, and a rerun does not ask again;
* a failed answer whose pair could not fit ``max_pair_tokens`` is skipped before any teacher call
  (``skipped_too_long``), and the next failure of its problem is taken;
* leaving the new settings at their defaults keeps the stage's key; a recipe sets
  ``max_pair_tokens`` from the DPO arm's ``train.data.max_length``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from _student_teacher import CannedTeacher, ScriptedStudent, marker, toy_problem, write_dataset
from conftest import json_server
from codistill.correct.failures import CUT_NOTE, OVER_CONTEXT, cut_parts, cut_text
from codistill.pairs import PairsConfig, incomplete_error, make_pairs
from codistill.store import read_jsonl

FORMAT = {"base": "paper", "prompt_mode": "completion"}
LLAMA_400 = {"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it",
                       "type": "exceed_context_size_error", "n_prompt_tokens": 5012, "n_ctx": 4096}}


def _answer(steps: list[str], code: str) -> str:
    return "### Reasoning\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1)) + \
        f"\n\n### Code\n```python\n{code}\n```"


def _fix(k: str, revision: str, code: str) -> str:
    return (f"## Check\nStep 1: correct\nStep {k}: wrong\n\n## First wrong step\n{k}\n\n## Revision\n{revision}\n\n"
            f"## Code\n```python\n{code}\n```\n")


LONG_STEPS = ["Read n."] + [f"Consider the case number {i} of n carefully and at length." for i in range(60)] + \
    ["Add two to n."]
LONG_CODE = "def inc(n):\n" + "".join(f"    x{i} = n  # a line the student wrote {i}\n" for i in range(40)) + \
    "    return n + 2"
STUDENT = {
    "inc": [_answer(LONG_STEPS, LONG_CODE), _answer(["Read n.", "Add two to n."], "def inc(n):\n    return n + 2")],
    "dbl": [_answer(["Read n.", "Square n."], "def dbl(n):\n    return n * n")],
}
TEACHER = {
    "inc": _fix("2", "2. Add one to n.", "def inc(n):\n    return n + 1"),
    "dbl": _fix("2", "2. Double n.", "def dbl(n):\n    return n * 2"),
}
PROBLEMS = [toy_problem("inc", [[1], [5]], [2, 6], "n + 1"), toy_problem("dbl", [[2], [5]], [4, 10], "n * 2")]


class Scripted(ScriptedStudent):
    answers = STUDENT


class SizeLimitedTeacher(CannedTeacher):
    """The canned teacher, refusing with llama.cpp's HTTP 400 every prompt whose problem is in ``too_big``."""

    def __init__(self, *a):
        super().__init__(*a)
        self.too_big: set[str] = set()

    def answer(self, body: dict):
        prompt = body["messages"][-1]["content"]
        if marker(prompt) in self.too_big:
            with self.lock:
                self.prompts.append(prompt)
            return 400, LLAMA_400
        return super().answer(body)


@pytest.fixture()
def teacher():
    t = SizeLimitedTeacher(STUDENT, TEACHER)
    with json_server(t.route) as url:
        t.url = url
        yield t


def _cfg(tmp_path: Path, url: str, **kw) -> PairsConfig:
    base = {"dataset": write_dataset(tmp_path / "data", PROBLEMS), "student": {"model": "scripted", "format": FORMAT},
            "sampling": {"n": 1, "temperature": 0.0}, "judge_timeout_s": 10,
            "teacher": {"base_url": url, "model": "t", "concurrency": 2, "max_retries": 0, "timeout_s": 30},
            "max_attempts": 1}
    base.update(kw)
    return PairsConfig.model_validate(base)


def _shown(prompt: str) -> tuple[str, str]:
    """The student's steps and code as the teacher's prompt shows them."""
    steps = prompt.split("### The student's steps\n", 1)[1].split("\n\n### The student's code", 1)[0]
    code = prompt.split("### The student's code\n```python\n", 1)[1].split("\n```\n\n### The judge's report", 1)[0]
    return steps, code


def test_cut_parts_keeps_what_fits_and_shares_the_rest():
    assert cut_text("abc", 3) == "abc" and cut_text("abcd", 3) == "abc" + CUT_NOTE
    assert cut_parts(["a" * 10, "b" * 20], 30) == ["a" * 10, "b" * 20]  # together they fit: as they are
    assert cut_parts(["a" * 10, "b" * 50], 30) == ["a" * 10, "b" * 20 + CUT_NOTE]  # the short one kept whole
    assert cut_parts(["a" * 40, "b" * 50], 30) == ["a" * 15 + CUT_NOTE, "b" * 15 + CUT_NOTE]


def test_a_long_answer_is_cut_in_the_teachers_prompt_and_whole_in_the_pair(tmp_path, teacher):
    out = tmp_path / "pairs"
    m = make_pairs(_cfg(tmp_path, teacher.url, ids=["inc"], max_attempt_chars=600), out, generator=Scripted())
    assert incomplete_error(m) is None and m["counts"]["pairs"] == 1
    (prompt,) = teacher.prompts
    steps, code = _shown(prompt)
    assert steps.endswith(CUT_NOTE) and code.endswith(CUT_NOTE)
    assert len(steps) + len(code) == 600 + 2 * len(CUT_NOTE)
    assert steps.startswith("Step 1: Read n.\nStep 2: Consider") and code.startswith("def inc(n):\n    x0 = n")
    assert "Add two to n." not in prompt  # the 62nd step is past the cut
    (pair,) = read_jsonl(out / "pairs.jsonl")
    assert pair["rejected"] == STUDENT["inc"][0]  # the pair keeps the whole answer

    # the default (6000 characters) shows a short answer whole, as before the setting existed
    m = make_pairs(_cfg(tmp_path, teacher.url, ids=["dbl"]), tmp_path / "pairs2", generator=Scripted())
    assert m["counts"]["pairs"] == 1 and CUT_NOTE not in teacher.prompts[-1]
    assert "Step 2: Square n." in teacher.prompts[-1]


def test_a_prompt_the_server_refuses_for_its_size_is_a_recorded_rejection(tmp_path, teacher):
    teacher.too_big.add("inc")
    out = tmp_path / "pairs"
    cfg = _cfg(tmp_path, teacher.url, teacher={"base_url": teacher.url, "model": "t", "concurrency": 2,
                                              "max_retries": 3, "timeout_s": 30}, max_attempts=2)
    m = make_pairs(cfg, out, generator=Scripted())
    assert incomplete_error(m) is None and m["complete"]  # not a teacher error: the stage completes
    c = m["counts"]
    assert c["teacher_errors"] == 0 and c["remaining"] == 0 and c["over_teacher_context"] == 1
    assert c["pairs"] == 1 and c["dropped_by_reason"] == {OVER_CONTEXT: 1}
    assert sum("[[inc]]" in p for p in teacher.prompts) == 1  # neither the HTTP retries nor max_attempts ask again
    rec = next(r for r in read_jsonl(out / "corrections.jsonl") if r["id"] == "inc#s0")
    assert not rec["valid"] and rec["reason"].startswith(OVER_CONTEXT) and "HTTP 400" in rec["reason"]
    assert rec["tokens"] == {"prompt": 0, "completion": 0} and rec["first_error"] is None

    # a rerun keeps the rejection: the teacher is not asked again (the refusal is not cached, the record is kept)
    asked = len(teacher.prompts)
    m2 = make_pairs(cfg, out, generator=Scripted())
    assert len(teacher.prompts) == asked and m2["this_run"]["teacher_calls"] == 0
    assert m2["complete"] and m2["counts"]["over_teacher_context"] == 1 and m2["counts"]["pairs"] == 1


class WordTokenizer:
    """One token per whitespace-separated word (and an eos id): enough to count."""

    eos_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [1] * len(text.split())}


def test_an_answer_whose_pair_cannot_fit_max_pair_tokens_costs_no_teacher_call(tmp_path, teacher):
    tok = WordTokenizer()
    short = len(("[[inc]] Write inc(n).").split()) + len(STUDENT["inc"][1].split())
    assert short < 100 < len(STUDENT["inc"][0].split())
    out = tmp_path / "pairs"
    cfg = _cfg(tmp_path, teacher.url, ids=["inc"], sampling={"n": 2, "temperature": 0.0}, max_pair_tokens=100)
    m = make_pairs(cfg, out, generator=Scripted(), tokenizer=tok)
    c = m["counts"]
    assert c["skipped_too_long"] == 1 and c["failures_not_asked"] == {"skipped_too_long": 1}
    assert c["failures"] == 1 and c["pairs"] == 1 and m["complete"]
    (prompt,) = teacher.prompts  # only the second sample, which fits, was shown to the teacher
    assert "Consider the case" not in prompt and "Step 2: Add two to n." in prompt
    assert [p["id"] for p in read_jsonl(out / "pairs.jsonl")] == ["inc#s1"]

    # a limit both answers exceed: no teacher call at all
    m = make_pairs(_cfg(tmp_path, teacher.url, ids=["inc"], sampling={"n": 2, "temperature": 0.0},
                        max_pair_tokens=short - 1), tmp_path / "pairs2", generator=Scripted(), tokenizer=tok)
    assert m["counts"]["skipped_too_long"] == 2 and m["counts"]["failures"] == 0 and len(teacher.prompts) == 1
    assert m["complete"] and m["cost"]["teacher"]["total_tokens"] == 0


def test_the_new_settings_left_unset_keep_the_key():
    from codistill.correct.config import CorrectConfig

    base = {"dataset": "d", "student": {"model": "m"}}
    key = PairsConfig.model_validate(base).key()
    assert "max_attempt_chars" not in key and "max_pair_tokens" not in key
    assert PairsConfig.model_validate({**base, "max_attempt_chars": 6000, "max_pair_tokens": None}).key() == key
    assert PairsConfig.model_validate({**base, "max_pair_tokens": 1024}).key()["max_pair_tokens"] == 1024
    assert PairsConfig.model_validate({**base, "max_attempt_chars": 3000}).key()["max_attempt_chars"] == 3000
    assert CorrectConfig.model_validate(base).key()["max_attempt_chars"] == 6000  # the correct stage's as it was


def test_a_recipe_sets_max_pair_tokens_from_the_dpo_arms_max_length():
    from codistill.pairs.recipe import pairs_dict
    from codistill.recipe import load_recipe

    rec = load_recipe("paper-small")

    def recipe(pairs=None, **arm_train):
        arms = {"cd": SimpleNamespace(kind="trained", start=None),
                "cd_dpo": SimpleNamespace(kind="cd+dpo", start="cd", train=arm_train or None)}
        return SimpleNamespace(eval=rec.eval, teach=rec.teach, train=rec.train, data_dir=rec.data_dir,
                               serve=rec.serve, student_format=rec.student_format, arms=arms, pairs=pairs)

    assert pairs_dict(recipe(), Path("run"), "cd_dpo")[0]["max_pair_tokens"] == rec.train.data.max_length == 1024
    assert pairs_dict(recipe(data={"max_length": 768}), Path("run"), "cd_dpo")[0]["max_pair_tokens"] == 768
    assert pairs_dict(recipe({"max_pair_tokens": 900}), Path("run"), "cd_dpo")[0]["max_pair_tokens"] == 900
    assert pairs_dict(recipe({"max_pair_tokens": None}), Path("run"), "cd_dpo")[0]["max_pair_tokens"] is None


def test_the_http_client_tells_a_context_size_refusal_from_other_errors():
    from codistill.backends import ContextSizeError
    from codistill.backends.base import SamplingParams
    from codistill.backends.openai_http import HTTPBackendError, OpenAIGenerator, context_size_refusal

    assert context_size_refusal(400, str(LLAMA_400))
    assert context_size_refusal(400, "This model's maximum context length is 4096 tokens. However, you requested 5000")
    assert context_size_refusal(400, '{"error": {"code": "context_length_exceeded"}}')
    assert not context_size_refusal(400, '{"error": {"message": "invalid temperature"}}')
    assert not context_size_refusal(200, str(LLAMA_400))

    calls = []

    def answer(path, body):
        calls.append(body)
        return (400, LLAMA_400) if "big" in body["messages"][-1]["content"] else (400, {"error": "bad request"})

    with json_server(answer) as url:
        gen = OpenAIGenerator(url, "t", api_key_env=None, max_retries=3, backoff=0.01)
        try:
            with pytest.raises(ContextSizeError, match="exceeds the available context size"):
                gen.generate(["a big prompt"], SamplingParams())
            assert len(calls) == 1  # not retried
            with pytest.raises(HTTPBackendError) as e:
                gen.generate(["a small prompt"], SamplingParams())
            assert not isinstance(e.value, ContextSizeError)
        finally:
            gen.close()


def test_in_process_llama_cpp_maps_its_context_error():
    from codistill.backends import ContextSizeError
    from codistill.backends.base import SamplingParams
    from codistill.backends.llamacpp import LlamaCppGenerator

    class Llm:
        def create_chat_completion(self, **kw):
            raise ValueError("Requested tokens (5000) exceed context window of 4096")

    gen = LlamaCppGenerator.__new__(LlamaCppGenerator)
    gen.__dict__.update(llm=Llm(), prompt_mode="chat", system_prompt=None)
    with pytest.raises(ContextSizeError, match="exceed context window"):
        gen._complete("p", SamplingParams(), None)
