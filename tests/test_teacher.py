"""Teacher contexts against a REAL local HTTP server (http.server in a thread) that answers
OpenAI chat/completions requests with canned teacher answers: parsing, retries, leakage rejection,
cache hits (zero requests on a second run), resume after a killed run, solve-mode rejection
sampling judged in the sandbox. Plus unit tests of the parser and the leakage score."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _student_teacher import write_dataset
from conftest import chat_server
from codistill.metrics import leakage as leak
from codistill.problems.schema import CallTests, Problem
from codistill.store import read_jsonl, write_jsonl
from codistill.teacher.parse import ValidationRules, extract_code, parse_answer, split_sections
from codistill.teacher.templates import MODES, load_template, render_context
from codistill.teacher.teach import TRAIN_KEYS, TeachConfig, teach

# --------------------------------------------------------------------------- canned answers

SOLUTION = """def running_max(xs):
    best = None
    out = []
    for x in xs:
        if best is None or x > best:
            best = x
        out.append(best)
    return out
"""

GOOD = """## Intent
Return, for every position of a list, the largest value seen so far.

## Steps
1. Keep the best value seen so far, starting with nothing.
2. Walk through the list; when the current value is larger, it becomes the best.
3. Record the best after each element and return the records.

## Formulas
out[i] = max(xs[0..i])

## Edge cases
An empty list gives an empty result; negative numbers work because the first value always starts the run.

## Built-ins
None
"""

MISSING = """## Intent
Return the running maximum of the list.

## Steps
1. Loop and keep the best value.
"""

LEAKING = f"""## Intent
Running maximum.

## Steps
Just write this:
```python
{SOLUTION}```

## Formulas
None

## Edge cases
Empty input returns an empty list.

## Built-ins
None
"""

WRONG_CODE = """## Reasoning
Add one to the number.

## Code
```python
def inc(n):
    return n + 2
```
"""

RIGHT_CODE = """## Reasoning
Add one to the number; nothing else is needed.

## Code
```python
def inc(n):
    return n + 1
```
"""

# pid -> answers by attempt (attempt = request seed - base seed); the last one repeats
SCRIPT = {
    "good": [GOOD],
    "retry": [MISSING, GOOD],
    "leak": [LEAKING],
    "flaky": [GOOD],  # its first request gets HTTP 503 (the client retries with backoff)
    "inc": [WRONG_CODE, WRONG_CODE, RIGHT_CODE],
}


class Canned:
    """Counts requests; answers from SCRIPT by the problem marker in the prompt and the seed.

    Outage symptoms: ``down`` (every request gets HTTP 503), problems marked ``down`` (always 503),
    ``empty`` (their first request gets a 200 with no text) and ``garbled`` (their first request
    gets a 200 whose body is not JSON)."""

    def __init__(self, delay: float = 0.0):
        self.requests: list[dict] = []
        self.delay = delay
        self.lock = threading.Lock()
        self.failed_once: set[str] = set()
        self.down = False

    def answer(self, body: dict) -> tuple[int, dict | bytes]:
        prompt = body["messages"][-1]["content"]
        m = re.search(r"\[\[(\w+)\]\]", prompt)
        pid = m.group(1) if m else "good"
        key = re.sub(r"\d+$", "", pid)
        with self.lock:
            self.requests.append({"pid": pid, "seed": body.get("seed")})
            if self.down or key == "down":
                return 503, {"error": {"message": "loading model"}}
            if key in ("flaky", "empty", "garbled") and pid not in self.failed_once:
                self.failed_once.add(pid)
                if key == "garbled":
                    return 200, b'{"choices": [{"message": {"content": "## Intent'  # cut short
                if key == "empty":
                    return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": ""}}],
                                 "usage": {"prompt_tokens": 3, "completion_tokens": 0}}
                return 503, {"error": {"message": "busy"}}
        if self.delay:
            time.sleep(self.delay)
        answers = SCRIPT.get(key, [GOOD])
        attempt = int(body.get("seed") or 0) - 100
        text = answers[min(max(attempt, 0), len(answers) - 1)]
        return 200, {
            "id": "x", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())},
        }


@pytest.fixture()
def server():
    with chat_server(Canned()) as canned:
        yield canned


# --------------------------------------------------------------------------- datasets


def _problem(pid: str, solution: str = SOLUTION) -> Problem:
    return Problem(id=pid, source="toy", prompt=f"[[{pid}]] Write running_max(xs): the running maximum of a list.",
                   entry_point="running_max", solutions=[solution], difficulty="easy",
                   tests=[CallTests(fn_name="running_max", inputs=[[[1, 3, 2]], [[]]], outputs=[[1, 3, 3], []])])


_dataset = write_dataset  # a `codistill data` folder (tests/_student_teacher.py)


def _cfg(tmp_path: Path, url: str, dataset: str, **kw) -> TeachConfig:
    base = dict(out_dir=str(tmp_path / "run"), dataset=dataset, mode="explain",
                teacher={"base_url": url, "concurrency": 3, "max_retries": 2, "timeout_s": 30},
                sampling={"seed": 100, "max_new_tokens": 200}, max_attempts=3, leakage_threshold=0.5)
    base.update(kw)
    return TeachConfig.model_validate(base)


# --------------------------------------------------------------------------- explain mode end to end


def test_explain_parsing_retries_leakage_and_outputs(tmp_path, server):
    ds = _dataset(tmp_path / "data", [_problem(p) for p in ("good", "retry", "leak", "flaky")])
    m = teach(_cfg(tmp_path, server.url, ds))
    out = tmp_path / "run"
    recs = {r["id"]: r for r in read_jsonl(out / "contexts.jsonl")}
    assert set(recs) == {"good", "retry", "leak", "flaky"}

    good = recs["good"]
    assert good["valid"] and good["attempts"] == 1 and good["reason"] is None
    assert set(good["sections"]) == {"intent", "steps", "formulas", "edge_cases", "builtins"}
    assert good["leakage"] < 0.2
    assert good["template_hash"] == load_template("explain").sha256 and good["teacher"] == "qwen2.5-coder-1.5b"
    assert good["tokens"]["completion"] > 0 and "seconds" in good and good["params"]["seed"] == 100

    retry = recs["retry"]
    assert retry["valid"] and retry["attempts"] == 2
    assert retry["attempt_log"][0]["reason"].startswith("missing section")

    leaked = recs["leak"]
    assert not leaked["valid"] and leaked["attempts"] == 3
    assert leaked["reason"].startswith("leakage") and leaked["leakage"] > 0.9

    assert recs["flaky"]["valid"]  # HTTP 503 retried by the client
    assert m["this_run"]["retries"] >= 1

    # requests: good 1 + retry 2 + leak 3 + flaky 1 (+1 failed 503)
    assert len(server.requests) == 8
    assert m["counts"]["valid"] == 3 and m["counts"]["invalid_by_reason"] == {"leakage": 1}
    assert m["counts"]["rejected_attempts_by_reason"]["leakage"] == 3
    assert m["leakage"]["final"]["count"] == 4 and m["leakage"]["final"]["above_threshold"] == 1
    assert m["this_run"]["teacher_calls"] == 7 and m["complete"]

    train = list(read_jsonl(out / "train.jsonl"))
    assert sorted(r["id"] for r in train) == ["flaky", "good", "retry"]
    for r in train:
        assert tuple(r) == TRAIN_KEYS
        assert r["code"] == SOLUTION and "assert running_max([1, 3, 2]) == [1, 3, 3]" in r["tests"]
        assert r["context"].startswith("### Intent\n") and "### Built-ins" not in r["context"]  # "None" left out
    datasets = pytest.importorskip("datasets")
    assert len(datasets.load_from_disk(str(out / "train_dataset"))) == 3


def test_second_run_makes_zero_requests_and_reparses_from_cache(tmp_path, server):
    ds = _dataset(tmp_path / "data", [_problem(p) for p in ("good", "retry", "leak")])
    cache = str(tmp_path / "shared-cache")
    teach(_cfg(tmp_path, server.url, ds, cache_dir=cache))
    n = len(server.requests)
    assert n == 6
    # same run dir: everything is done
    m = teach(_cfg(tmp_path, server.url, ds, cache_dir=cache))
    assert len(server.requests) == n and m["this_run"]["teacher_calls"] == 0 and m["this_run"]["new_contexts"] == 0
    # a fresh run dir sharing the cache: answers are re-parsed, the teacher is not asked
    m2 = teach(_cfg(tmp_path, server.url, ds, cache_dir=cache, out_dir=str(tmp_path / "run2")))
    assert len(server.requests) == n
    assert m2["this_run"]["teacher_calls"] == 0 and m2["this_run"]["cache_hits"] == 6
    assert m2["counts"]["valid"] == 2
    # a changed parser rule (not part of the cache key) re-parses cached answers for free: with the
    # leakage check off, the leaking answer is accepted at its first attempt
    m3 = teach(_cfg(tmp_path, server.url, ds, cache_dir=cache, out_dir=str(tmp_path / "run3"), leakage_threshold=None))
    assert len(server.requests) == n and m3["counts"]["valid"] == 3


def test_changed_template_is_a_cache_miss(tmp_path, server):
    ds = _dataset(tmp_path / "data", [_problem("good")])
    teach(_cfg(tmp_path, server.url, ds))
    own = tmp_path / "mine.txt"
    own.write_text(load_template("explain").text + "\nBe brief.\n")
    teach(_cfg(tmp_path, server.url, ds, template=str(own)))
    assert len(server.requests) == 2


@pytest.mark.filterwarnings("ignore:.*incomplete last line")
def test_resume_after_a_killed_run(tmp_path, server):
    server.delay = 0.3
    names = [f"good{i}" for i in range(8)]
    ds = _dataset(tmp_path / "data", [_problem(p) for p in names])
    cfg = _cfg(tmp_path, server.url, ds, teacher={"base_url": server.url, "concurrency": 2, "timeout_s": 30})
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(cfg.model_dump_json())
    ctx = tmp_path / "run" / "contexts.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "codistill.teacher.teach", "--config", str(cfg_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        t0 = time.time()
        while time.time() - t0 < 60:
            if ctx.exists() and len(ctx.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    # complete lines only: the kill can land in the middle of writing one (that row is not done)
    done_before = ctx.read_text().count("\n")
    assert 2 <= done_before < 8
    with open(ctx, "a") as f:  # as if killed in the middle of writing a line
        f.write('{"id": "good7", "half')
    first = len(server.requests)
    m = teach(cfg)
    second = len(server.requests) - first
    assert second <= 8 - done_before  # finished ones are not asked again (cached ones neither)
    recs = list(read_jsonl(ctx))
    assert {r["id"] for r in recs} == set(names)
    assert m["complete"] and m["counts"]["valid"] == 8
    assert sorted(r["id"] for r in read_jsonl(tmp_path / "run" / "train.jsonl")) == sorted(names)


def test_teacher_outage_leaves_problems_to_do(tmp_path):
    ds = _dataset(tmp_path / "data", [_problem("good")])
    # nothing listens on this port: the client gives up after its retries; the problem stays to do
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _cfg(tmp_path, f"http://127.0.0.1:{port}/v1", ds,
               teacher={"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 0, "timeout_s": 5})
    m = teach(cfg)
    assert not m["complete"] and list(m["teacher_errors"]) == ["good"] and m["counts"]["remaining"] == 1
    assert not (tmp_path / "run" / "contexts.jsonl").exists() or not (tmp_path / "run" / "contexts.jsonl").read_text()


# --------------------------------------------------------------------------- solve mode


def test_solve_mode_keeps_only_passing_code(tmp_path, server):
    p = Problem(id="inc", source="toy", prompt="[[inc]] Write inc(n) that returns n + 1.", entry_point="inc",
                tests=[CallTests(fn_name="inc", inputs=[[1], [5]], outputs=[2, 6])])
    never = Problem(id="inc_never", source="toy", prompt="[[leak]] Write inc(n) that returns n + 1.",
                    entry_point="inc", tests=[CallTests(fn_name="inc", inputs=[[1]], outputs=[2])])
    ds = _dataset(tmp_path / "data", [p, never])
    m = teach(_cfg(tmp_path, server.url, ds, mode="solve", max_attempts=3))
    recs = {r["id"]: r for r in read_jsonl(tmp_path / "run" / "contexts.jsonl")}
    r = recs["inc"]
    assert r["valid"] and r["attempts"] == 3
    assert [a.get("judge") for a in r["attempt_log"]] == ["fail", "fail", "pass"]
    assert "return n + 1" in r["code"] and "n + 2" not in r["code"]
    assert not recs["inc_never"]["valid"]  # its answers have no solve sections/code that passes
    train = list(read_jsonl(tmp_path / "run" / "train.jsonl"))
    assert [t["id"] for t in train] == ["inc"]
    assert train[0]["code"] == r["code"] and train[0]["context"].startswith("### Reasoning")
    assert m["counts"]["rejected_attempts_by_reason"].get("judge: fail") == 2


# --------------------------------------------------------------------------- parser


def test_parser_heading_styles():
    text = ("**Intent:** sums things\n\n1. Steps\n- loop over the items\n\nFormulas: s = a + b\n"
            "#### Edge cases\nempty list -> 0\n\n**Built-ins**\n`sum` adds an iterable up.\n"
            "The intent of this line is prose, not a heading.")
    s = split_sections(text, MODES["explain"].aliases)
    assert s["intent"] == "sums things" and s["formulas"] == "s = a + b"
    assert s["steps"] == "- loop over the items" and s["edge_cases"] == "empty list -> 0"
    assert s["builtins"].startswith("`sum` adds") and "prose" in s["builtins"]
    p = parse_answer("explain", text)
    assert p.valid, p.reason


def test_parser_rejections():
    assert parse_answer("explain", "").reason == "empty answer"
    assert parse_answer("explain", MISSING).reason == "missing section 'formulas'"
    short = GOOD.replace("Return, for every position of a list, the largest value seen so far.", "max")
    assert "too short" in parse_answer("explain", short).reason
    assert "too long" in parse_answer("explain", GOOD, ValidationRules(max_chars=50)).reason
    assert parse_answer("explain", GOOD, ValidationRules(required=["intent"])).valid


def test_solve_parser_and_code_extraction():
    p = parse_answer("solve", RIGHT_CODE)
    assert p.valid and p.code == "def inc(n):\n    return n + 1\n"
    assert extract_code("text\n```\nprint(1)\n```\nmore\n```python\nx = 2\n```") == "x = 2\n"
    assert extract_code("no code at all") is None
    bare = parse_answer("solve", "I will add one.\n```python\ndef inc(n):\n    return n + 1\n```")
    assert bare.valid and bare.sections["reasoning"] == "I will add one."


def test_hierarchical_parser():
    text = ("<Generalized>Scan once while keeping a running summary of the prefix.</Generalized>\n"
            "<Step>Start with no best value.<Key>The first element always becomes the best.</Key></Step>\n"
            "<Step>Update and record the best after each element.<Key>Record after the update.</Key></Step>")
    p = parse_answer("hierarchical", text)
    assert p.valid and p.notes["n_steps"] == 2
    assert p.sections["steps"].startswith("1. Start with no best value.\n   Key: The first element")
    ctx = render_context(p.sections, "hierarchical")
    assert ctx.startswith("### Generalized approach\n") and "### Steps\n1." in ctx
    no_key = text.replace("<Key>Record after the update.</Key>", "")
    assert parse_answer("hierarchical", no_key).reason == "a <Step> without <Key>"
    assert "only 1" in parse_answer("hierarchical", text.split("<Step>Update")[0]).reason


def test_hierarchical_parser_accepts_markdown_from_small_teachers():
    # what Qwen2.5-Coder-1.5B actually wrote: an unclosed <Generalized>, then markdown headings
    text = ("<Generalized>\nFactor the difference of squares and search the divisors.\n\n### Step\n"
            "1. **Try each divisor**:\n   - compute the cofactor\n2. Check parity of both factors.\n"
            "3. Return the pair or 'impossible'.\n\n### Key\n- (a-b)(a+b) = d turns a search into factoring.\n"
            "- Both factors must have the same parity.\n\nThis approach is efficient.")
    p = parse_answer("hierarchical", text)
    assert p.valid and p.notes == {"format": "markdown", "n_steps": 3, "n_keys": 2}
    assert p.sections["generalized"] == "Factor the difference of squares and search the divisors."
    assert p.sections["steps"].startswith("1. **Try each divisor**: compute the cofactor\n2. Check")
    assert p.sections["keys"].endswith("same parity.")  # the closing prose is not a key
    assert "### Key insights\n- (a-b)" in render_context(p.sections, "hierarchical")
    assert parse_answer("hierarchical", text.split("### Key")[0]).reason == "no key insights"


def test_templates():
    t = load_template("explain")
    prompt = t.render("Add {a} and {b}.", "def f(a, b):\n    return {a: b}\n")
    assert "Add {a} and {b}." in prompt and "return {a: b}" in prompt and "{problem}" not in prompt
    with pytest.raises(ValueError, match="use mode 'solve'"):
        t.render("x", None)
    with pytest.raises(ValueError):
        load_template("nope")
    assert "{entry_point}" not in load_template("solve").render("x", entry_point="inc")


# --------------------------------------------------------------------------- leakage


def test_leakage_paste_prose_partial():
    paste = leak.leakage("Here is the answer:\n```python\n" + SOLUTION + "```", SOLUTION)
    assert paste["score"] >= 0.95
    prose = leak.leakage(GOOD, SOLUTION)
    assert prose["score"] <= 0.1
    half = "\n".join(SOLUTION.splitlines()[:4])
    partial = leak.leakage(f"Begin with\n```python\n{half}\n```\nand finish it yourself.", SOLUTION)
    assert 0.2 < partial["score"] < 0.8
    # unfenced code lines count as code too
    assert leak.leakage_score("You can write:\n" + SOLUTION, SOLUTION) >= 0.9
    # n-grams the statement already shows are not leaks
    pub = leak.leakage("`def running_max(xs):`", SOLUTION, public="def running_max(xs):")
    assert pub["ngram"] == 0.0


def test_leakage_code_spans_and_summary():
    spans = leak.code_spans("Sort the list first.\n- `best = max(best, x)` each time\nreturn out\nIt is fast.")
    assert spans == ["best = max(best, x)", "return out"]
    s = leak.summarize([0.0, 0.1, 0.9, 1.0], threshold=0.5)
    assert s["count"] == 4 and s["above_threshold"] == 2 and s["median"] == 0.5 and s["zero"] == 1


# --------------------------------------------------------------------------- server helpers


def test_server_refuses_remote_and_picks_threads():
    from codistill.serving import _check_host, default_threads

    with pytest.raises(ValueError, match="no API key"):
        _check_host("0.0.0.0", allow_remote=False)
    _check_host("127.0.0.1", allow_remote=False)
    _check_host("localhost", allow_remote=False)
    assert default_threads() >= 1


@pytest.mark.slow
def test_real_xllamacpp_server_parallel_slots():
    pytest.importorskip("xllamacpp")
    from codistill.backends import SamplingParams, make_generator
    from codistill.serving import start_server

    try:
        srv = start_server(n_parallel=2, ctx=512, threads=1)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"teacher model not installed: {e}")
    with srv:
        g = make_generator("openai", base_url=srv.base_url, model="qwen2.5-coder-1.5b", concurrency=2)
        outs = g.generate(["Say hi.", "Say bye."], SamplingParams(max_new_tokens=4))
        assert len(outs) == 2 and all(o[0] for o in outs) and g.usage.completion_tokens > 0


def test_two_runs_on_one_directory_are_refused(tmp_path, server):
    from codistill.teacher.teach import _exclusive

    ds = _dataset(tmp_path / "data", [_problem("good")])
    (tmp_path / "run").mkdir()
    with _exclusive(tmp_path / "run" / ".teach.lock"):
        with pytest.raises(RuntimeError, match="another teach run"):
            teach(_cfg(tmp_path, server.url, ds))
    assert teach(_cfg(tmp_path, server.url, ds))["counts"]["valid"] == 1


def test_template_echo_is_rejected(tmp_path, server):
    from codistill.teacher.parse import template_echo

    tpl = load_template("hierarchical").text
    copied = "<Key>Starting from the first element, not from 0, keeps negative-only lists correct.</Key>"
    assert template_echo(copied, tpl) == "key starting from the first element not from"
    assert template_echo("Keep the running best; negative lists work too.", tpl) is None
    assert template_echo(copied, tpl, n=0) is None
    # end to end: an explain answer that repeats the template's instructions is retried
    echo = GOOD.replace("## Steps\n", "## Steps\nThe algorithm as a short numbered list of steps in plain words.\n")
    SCRIPT["echo"] = [echo, GOOD]
    try:
        ds = _dataset(tmp_path / "data", [_problem("echo")])
        teach(_cfg(tmp_path, server.url, ds))
    finally:
        del SCRIPT["echo"]
    rec = next(read_jsonl(tmp_path / "run" / "contexts.jsonl"))
    assert rec["valid"] and rec["attempts"] == 2
    assert rec["attempt_log"][0]["reason"].startswith("copies the template text")


# --------------------------------------------------------------------------- outages and failed rows


def _dead_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def _cache_texts(folder: Path) -> list[str]:
    path = folder / "responses.jsonl"
    return [r["text"] for r in read_jsonl(path)] if path.exists() else []


def test_empty_answer_is_not_cached_and_the_row_is_asked_again(tmp_path, server):
    ds = _dataset(tmp_path / "data", [_problem("good"), _problem("empty")])
    cfg = _cfg(tmp_path, server.url, ds)
    m = teach(cfg)
    assert not m["complete"] and list(m["teacher_errors"]) == ["empty"]
    assert "EmptyAnswerError" in m["teacher_errors"]["empty"]
    assert m["counts"]["remaining"] == 1 and m["counts"]["valid"] == 1
    cache = tmp_path / "run" / "cache"
    assert all(t.strip() for t in _cache_texts(cache)) and len(_cache_texts(cache)) == 1  # only good's answer
    # the outage is over: the next run asks only for the row left to do, and completes
    n = len(server.requests)
    m = teach(cfg)
    assert m["complete"] and m["counts"]["valid"] == 2 and not m["teacher_errors"]
    assert [r["pid"] for r in server.requests[n:]] == ["empty"]


def test_an_empty_answer_cached_by_an_old_version_is_ignored(tmp_path):
    from codistill.teacher.teach import ResponseCache

    (tmp_path / "c").mkdir()
    write_jsonl(tmp_path / "c" / "responses.jsonl", [{"key": "a", "text": "", "usage": {}},
                                                      {"key": "b", "text": "answer", "usage": {}}])
    cache = ResponseCache(tmp_path / "c")
    assert cache.get("a") is None and cache.get("b")["text"] == "answer"


def test_an_unparseable_200_is_retried_and_never_cached(tmp_path, server, caplog):
    ds = _dataset(tmp_path / "data", [_problem("garbled")])
    with caplog.at_level("WARNING", logger="codistill.backends.openai_http"):
        m = teach(_cfg(tmp_path, server.url, ds))
    assert m["complete"] and m["counts"]["valid"] == 1  # the client's retry got the real answer
    retry = [r.getMessage() for r in caplog.records if "attempt 1/3 failed" in r.getMessage()]
    assert retry and "not JSON" in retry[0] and "waiting" in retry[0] and "attempt 2/3" in retry[0]
    # with no retries left, the row is a teacher error, and nothing is cached
    ds2 = _dataset(tmp_path / "data2", [_problem("garbled2")])
    cfg = _cfg(tmp_path, server.url, ds2, out_dir=str(tmp_path / "run2"),
               teacher={"base_url": server.url, "max_retries": 0, "timeout_s": 30})
    m = teach(cfg)
    assert list(m["teacher_errors"]) == ["garbled2"] and "not JSON" in m["teacher_errors"]["garbled2"]
    assert _cache_texts(tmp_path / "run2" / "cache") == []
    assert teach(cfg)["complete"]


def _teach_cli(tmp_path, url, ds, *extra) -> list[str]:
    return ["teach", "--out", str(tmp_path / "run"), "--dataset", ds, "--base-url", url, "--retries", "0",
            "--timeout", "20", "--concurrency", "2", *extra]


def test_teach_command_exit_status_and_message(tmp_path, server, capsys):
    from codistill.cli import main

    ds = _dataset(tmp_path / "data", [_problem("good"), _problem("down")])
    # a server that answers one row and fails the other: partial (exit 3), named, how to resume
    assert main(_teach_cli(tmp_path, server.url, ds)) == 3
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    err = err.splitlines()[-1]
    assert err.startswith("codistill teach: teach is not complete: ")
    assert "1 of 2 rows got no answer from the teacher" in err and "down: HTTPBackendError" in err
    assert "HTTP 503" in err and "run the same `codistill teach` command again" in err
    m = json.loads((tmp_path / "run" / "teach_manifest.json").read_text())
    assert m["config"]["teacher"]["timeout_s"] == 20 and m["config"]["teacher"]["max_retries"] == 0
    assert not m["complete"] and m["counts"]["train_rows"] == 1
    # the server goes down: no row finished in this run (exit 1), and the message says what to check
    server.down = True
    assert main(_teach_cli(tmp_path, server.url, ds)) == 1
    err = capsys.readouterr().err
    assert "every teacher call of this run failed" in err and f"teacher server at {server.url}" in err
    # back up: the failed row is asked again (and only it) and the run completes (exit 0)
    server.down = False
    n = len(server.requests)
    orig = server.answer  # the "down" problem is answered like "good" from now on
    server.answer = lambda body: orig({**body, "messages": [{"content": body["messages"][-1]["content"].replace(
        "[[down]]", "[[good]]")}]})
    assert main(_teach_cli(tmp_path, server.url, ds)) == 0
    assert len(server.requests) == n + 1
    assert json.loads((tmp_path / "run" / "teach_manifest.json").read_text())["complete"]


def test_an_unreachable_teacher_stops_the_run_early(tmp_path, caplog):
    names = [f"good{i}" for i in range(30)]
    ds = _dataset(tmp_path / "data", [_problem(p) for p in names])
    url = _dead_url()
    cfg = _cfg(tmp_path, url, ds, teacher={"base_url": url, "max_retries": 0, "timeout_s": 5, "concurrency": 2})
    with caplog.at_level("WARNING"):
        m = teach(cfg)
    c = m["counts"]
    assert not m["complete"] and c["remaining"] == 30
    assert 8 <= c["teacher_errors"] < 30  # stopped asking after repeated failures; the rest stays to do
    from codistill.teacher.teach import incomplete_error

    err = incomplete_error(m, "it")
    assert err.exit_code == 1
    msg = str(err)
    assert "every teacher call of this run failed" in msg and "were not asked" in msg
    assert f"POST {url}/chat/completions failed after 1 attempts" in msg and "Check that an OpenAI-compatible" in msg
    assert any("the teacher looks unavailable" in r.getMessage() for r in caplog.records)


def test_a_busy_run_directory_is_one_clear_line(tmp_path, server, capsys):
    from codistill.cli import main
    from codistill.teacher.teach import _exclusive

    ds = _dataset(tmp_path / "data", [_problem("good")])
    (tmp_path / "run").mkdir()
    with _exclusive(tmp_path / "run" / ".teach.lock"):
        assert main(_teach_cli(tmp_path, server.url, ds)) == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.startswith("codistill teach: another teach run")
    assert f"another teach run (pid {os.getpid()} on " in err and str(tmp_path / "run") in err
    assert main(["--verbose", *_teach_cli(tmp_path, server.url, ds)]) == 0  # free again


def test_teach_config_errors_are_found_before_any_call(tmp_path, capsys):
    from codistill.cli import main

    with pytest.raises(ValueError, match="exactly one of dataset"):
        TeachConfig.model_validate({"out_dir": str(tmp_path)})
    assert main(["teach", "--out", str(tmp_path / "r"), "--benchmark", "humaneavl"]) == 2
    err = capsys.readouterr().err
    assert "benchmark = 'humaneavl'" in err and "valid names: humaneval" in err


def test_progress_lines_for_a_log_file(tmp_path, server, caplog):
    """teach logs rows done/total, rate and ETA as plain lines (codistill.progress): at the start,
    at least every 30 s, and at the end, so a plain log file shows where the stage is."""
    import logging

    ds = _dataset(tmp_path / "data", [_problem(p) for p in ("good", "retry", "leak")])
    with caplog.at_level(logging.INFO, logger="codistill.teacher.teach"):
        teach(_cfg(tmp_path, server.url, ds))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("teach: ")]
    assert lines[0].startswith("teach: 0/3 rows (0%), starting, teacher calls 0")
    assert lines[-1].startswith("teach: 3/3 rows, ") and " rows/s, done in " in lines[-1]
    assert "teacher calls" in lines[-1] and "cache hits" in lines[-1]


def test_an_interrupt_stops_asking_the_teacher(tmp_path, server, monkeypatch):
    """Ctrl-C while rows wait their turn: no queued row is asked after it (the executor would
    otherwise run every one of them before letting go), and the next run asks only what is left."""
    from codistill.teacher.runner import ProblemRunner

    ds = _dataset(tmp_path / "data", [_problem(f"good{i}") for i in range(8)])
    real_run, ran = ProblemRunner.run, []

    def run(self, row):
        ran.append(row["id"])
        if len(ran) == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C while this row was asked
        if len(ran) > 2:
            time.sleep(0.3)  # a teacher call takes time: the interrupt is seen while this one is in flight
        return real_run(self, row)

    monkeypatch.setattr(ProblemRunner, "run", run)
    with pytest.raises(KeyboardInterrupt):
        teach(_cfg(tmp_path, server.url, ds, teacher={"base_url": server.url, "concurrency": 1, "max_retries": 1}))
    assert len(ran) <= 3  # at most the row in flight; the rows still queued were never started
    monkeypatch.setattr(ProblemRunner, "run", real_run)
    m = teach(_cfg(tmp_path, server.url, ds, teacher={"base_url": server.url, "concurrency": 1, "max_retries": 1}))
    assert m["counts"]["rows"] == 8 and len(list(read_jsonl(tmp_path / "run" / "contexts.jsonl"))) == 8


def test_a_starved_caller_does_not_let_a_dead_teacher_be_asked_every_row():
    """Calls that fail at once while the calling thread is slow to read them (here its progress
    callback sleeps): the workers stop asking after the streak themselves, so only about
    STOP_AFTER_FAILED rows are asked, not all 40."""
    import logging
    import threading
    import time

    from codistill.teacher.pool import STOP_AFTER_FAILED, ask_rows

    asked, lock = [], threading.Lock()

    def run(row):
        with lock:
            asked.append(row["id"])
        raise ConnectionRefusedError("refused")

    errors: dict = {}
    ask_rows(run, [{"id": f"r{i}"} for i in range(40)], workers=2, record=lambda r, x: None, errors=errors,
             advance=lambda: time.sleep(0.05), log=logging.getLogger("test"))
    assert STOP_AFTER_FAILED <= len(asked) <= STOP_AFTER_FAILED + 2  # + the calls already in flight
    assert set(errors) == set(asked)  # every row asked is a recorded error; the others stay to do
