"""Token usage of an interrupted and resumed eval: each generation batch writes its models' usage
to ``generation_log.jsonl``, results.json sums it over every call, so a pipeline whose Reasoner
(and Coder) is a served teacher reports the same teacher tokens after a resume as without one --
and the report's cost part prices them exactly (no lower bound).

The teacher is a canned OpenAI-compatible server (``tests/conftest.py``'s ``json_server``) that
counts the tokens it serves and can be told to fail a Coder request (an interruption)."""

from __future__ import annotations

import json
import threading

import pytest
import yaml

from conftest import json_server

TEACHER = "teacher-m"
PLAN = "## Intent\nSolve it.\n\n## Steps\n1. Think.\n\n## Formulas\nNone\n\n## Edge cases\nNone\n\n## Built-ins\nNone"


class _Teacher:
    """Answers Reasoner and Coder prompts (told apart by their templates) with usage that depends
    only on the request, so two runs asking the same questions are billed the same."""

    def __init__(self):
        self.fail_coder_after: int | None = None  # Coder requests answered before a 400
        self.coder_requests = 0
        self.served = {"reasoner": 0, "coder": 0}
        self.lock = threading.Lock()

    def answer(self, path: str, body: dict):
        assert path == "/v1/chat/completions", path
        prompt = body["messages"][-1]["content"]
        role = "reasoner" if "write a plan" in prompt else "coder"
        with self.lock:
            if role == "coder":
                self.coder_requests += 1
                if self.fail_coder_after is not None and self.coder_requests > self.fail_coder_after:
                    return 400, {"error": {"message": "interrupted (test)"}}
            n = int(body.get("n") or 1)
            texts = [f"{PLAN}\nplan {i}" if role == "reasoner" else f"```python\ndef f():\n    return {i}\n```"
                     for i in range(n)]
            usage = {"prompt_tokens": len(prompt) // 7, "completion_tokens": sum(len(t) // 3 for t in texts)}
            self.served[role] += usage["prompt_tokens"] + usage["completion_tokens"]
        return 200, {"choices": [{"index": i, "message": {"role": "assistant", "content": t}}
                                 for i, t in enumerate(texts)], "usage": usage}


def _cfg(url: str):
    from codistill.evaluation.config import EvalConfig

    return EvalConfig(model=TEACHER, backend="openai", backend_options={"base_url": url, "max_retries": 0},
                      benchmarks=["humaneval+"], limit=3, strategy="reasoner-coder", reasoner=TEACHER, plans=2,
                      codes_per_plan=1, max_new_tokens=32, reasoner_max_new_tokens=32, batch_size=1,
                      prompt_mode="chat", perplexity=False, token_nll=False)


def _tokens(usage: dict) -> int:
    return usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.fixture(scope="module")
def evals(tmp_path_factory):
    """An uninterrupted eval, and one interrupted in its second batch then resumed (inside a
    recipe run's folder, for the report)."""
    from codistill.backends.openai_http import HTTPBackendError
    from codistill.evaluation.run import run_eval

    root = tmp_path_factory.mktemp("usage")
    straight_server, resumed_server = _Teacher(), _Teacher()
    with json_server(straight_server.answer) as url:
        straight = run_eval(_cfg(url), root / "straight", progress=False)
    run = root / "run"
    out = run / "arms" / "rc" / "eval"
    with json_server(resumed_server.answer) as url:
        resumed_server.fail_coder_after = 2  # the first batch's two plans get their code, the second's not
        with pytest.raises(HTTPBackendError, match="interrupted"):
            run_eval(_cfg(url), out, progress=False)
        first_log = [json.loads(x) for x in (out / "generation_log.jsonl").read_text().splitlines()]
        resumed_server.fail_coder_after = None
        resumed = run_eval(_cfg(url), out, progress=False)
    (run / "recipe.yaml").write_text(yaml.safe_dump({
        "name": "usage", "serve": {"model": TEACHER},
        "arms": {"rc": {"kind": "pipeline", "reasoner": "teacher", "coder": "teacher"}}}))
    return {"straight": straight, "resumed": resumed, "first_log": first_log, "run": run, "out": out,
            "straight_server": straight_server, "resumed_server": resumed_server, "root": root}


def test_the_interrupted_call_kept_one_batch_and_its_usage(evals):
    (line,) = evals["first_log"]  # one batch written before the interruption
    assert line["samples"] == 2 and _tokens(line["usage"]) > 0 and _tokens(line["reasoner_usage"]) > 0
    gens = (evals["out"] / "generations.jsonl").read_text().splitlines()
    assert len(gens) == 3 * 2  # resumed: the other two tasks' answers, nothing asked twice


def test_a_resumed_pipeline_reports_the_same_teacher_tokens(evals):
    straight, resumed = evals["straight"], evals["resumed"]
    # the last call alone saw only two of the three batches: what the report used to show
    assert _tokens(resumed["pipeline"]["reasoner_usage_this_call"]) < _tokens(straight["pipeline"]["reasoner_usage"])
    assert resumed["pipeline"]["reasoner_usage"] == straight["pipeline"]["reasoner_usage"]
    assert resumed["generation"]["usage"] == straight["generation"]["usage"]
    assert resumed["generation"]["reasoner_usage"] == straight["pipeline"]["reasoner_usage"]
    assert resumed["generation"]["samples_priced"] == resumed["generation"]["samples"] == 6
    # ... which is what the teacher served for the answers kept: all of it without the interruption;
    # with it, all but the Reasoner's plans of the batch that was lost (asked again, counted once)
    srv = evals["straight_server"].served
    assert _tokens(straight["pipeline"]["reasoner_usage"]) == srv["reasoner"]
    assert _tokens(straight["generation"]["usage"]) == srv["coder"]
    rsrv = evals["resumed_server"].served
    assert rsrv["coder"] == srv["coder"] and rsrv["reasoner"] > srv["reasoner"]
    # an uninterrupted eval's one call is all of it
    assert straight["pipeline"]["reasoner_usage_this_call"] == straight["pipeline"]["reasoner_usage"]


def test_the_report_prices_the_resumed_pipeline_exactly(evals, tmp_path):
    from codistill.report import write_report

    rep = write_report([evals["run"]], out=tmp_path / "out", plots=False, n_boot=50)
    (row,) = [r for r in rep["cost"] if r["arm"] == "rc"]
    straight = evals["straight"]
    want = _tokens(straight["pipeline"]["reasoner_usage"]) + _tokens(straight["generation"]["usage"])
    assert row["teacher_tokens_inference"] == want and row["lower_bound"] == []
    assert any("summed over the eval's generation batches" in s for s in row["sources"])


def test_a_log_without_usage_is_a_lower_bound(evals, tmp_path):
    """An eval resumed over batches logged before per-batch usage: the sum is marked ≥."""
    import shutil

    from codistill.evaluation.generate import generation_totals
    from codistill.report import write_report

    run = tmp_path / "run"
    shutil.copytree(evals["run"], run)
    out = run / "arms" / "rc" / "eval"
    lines = [json.loads(x) for x in (out / "generation_log.jsonl").read_text().splitlines()]
    for k in ("usage", "reasoner_usage"):
        lines[0].pop(k)
    (out / "generation_log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    totals = generation_totals(out, 6)
    assert totals["samples_priced"] == 4 and _tokens(totals["reasoner_usage"]) < _tokens(
        evals["straight"]["pipeline"]["reasoner_usage"])
    res = json.loads((out / "results.json").read_text())
    res["generation"] = {**res["generation"], **totals}
    res["pipeline"]["reasoner_usage"] = totals["reasoner_usage"]
    (out / "results.json").write_text(json.dumps(res))
    rep = write_report([run], out=tmp_path / "out", plots=False, n_boot=50)
    (row,) = [r for r in rep["cost"] if r["arm"] == "rc"]
    assert row["lower_bound"] == ["teacher_tokens_inference"]
    assert any("recorded for 4 of 6 answers" in s for s in row["sources"])
