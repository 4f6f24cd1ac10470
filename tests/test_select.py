"""codistill select (ELAD for code) with scripted students: the scores against a hand-computed
case, intra-uncertainty from a student whose code depends on a step, budgeted vs random choice,
the subsets' files, resume without re-sampling, and the cost in the manifest."""

from __future__ import annotations

import json
import math
import re

import pytest

from codistill.backends.base import Generator
from codistill.problems.rows import problem_rows
from codistill.problems.schema import CallTests, Problem
from codistill.select.scores import budget_count, choose, combined_score, entropy, inter_uncertainty, intra_uncertainty
from codistill.store import read_jsonl, write_jsonl

FORMAT = {"base": "paper", "prompt_mode": "completion"}  # no tokenizer needed to render prompts

ABS = "def f(x):\n    return abs(x)\n"
ABS2 = "def f(x):\n    return x if x > 0 else -x\n"  # other code, the same outputs
IDENT = "def f(x):\n    return x\n"
REASONING = "### Steps\n1. Take the absolute value of x.\n2. Return the result."


def answer(code: str | None, reasoning: str = REASONING) -> str:
    if code is None:
        return f"### Reasoning\n{reasoning}\n\nI cannot write it."
    return f"### Reasoning\n{reasoning}\n\n### Code\n```python\n{code}```"


class Scripted(Generator):
    """A student: ``samples[problem marker]`` is its k answers; code regenerated after a prefill is
    ``abs`` when the prefilled reasoning still mentions the absolute value, else the identity."""

    name = "scripted"

    def __init__(self, samples: dict[str, list[str]], fail_after: int | None = None):
        super().__init__()
        self.samples, self.calls, self.fail_after = samples, [], fail_after

    def generate(self, prompts, params):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls.append((list(prompts), params))
        out = []
        for p in prompts:
            if p.rstrip().endswith("```python"):  # an ablation / baseline: code only
                body = ABS if "absolute" in p.split("### Reasoning")[-1] else IDENT
                out.append([body + "```"] * params.n)
                self.usage.add(completion_tokens=3 * params.n, requests=1)
            else:
                pid = re.search(r"\[\[(\w+)\]\]", p).group(1)
                out.append(self.samples[pid][:params.n])
                self.usage.add(completion_tokens=10 * params.n, requests=1)
        return out


def _problem(pid: str) -> Problem:
    return Problem(id=pid, source="toy", prompt=f"[[{pid}]] Write f(x): the absolute value of x.", entry_point="f",
                   solutions=[ABS], tests=[CallTests(fn_name="f", inputs=[[-2], [3], [0]], outputs=[2, 3, 0])])


def _dataset(folder, pids) -> str:
    probs = [_problem(p) for p in pids]
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "rows.jsonl", [r for p in probs for r in problem_rows(p, p.solutions[:1])])
    write_jsonl(folder / "problems.jsonl", [p.model_dump() for p in probs])
    return str(folder)


@pytest.fixture(scope="module")
def judge():
    from codistill.execution.judge import Judge, JudgeConfig
    from codistill.execution.sandbox import SandboxConfig

    with Judge(JudgeConfig(timeout_s=1.0, sandbox=SandboxConfig(workers=2, timeout_s=1.0))) as j:
        yield j


def _cfg(ds, **kw):
    from codistill.select.config import SelectConfig

    base = dict(dataset=ds, model="scripted", format=FORMAT, k=4, ablate_samples=1, budget=0.5, seed=0,
                problems_per_batch=2)
    base.update(kw)
    return SelectConfig.model_validate(base)


# four problems: "mixed" is the hand-computed case; the others agree more
SAMPLES = {
    "mixed": [answer(ABS), answer(ABS2), answer(IDENT), answer(None)],
    "agree": [answer(ABS)] * 4,
    "split": [answer(ABS), answer(ABS), answer(IDENT), answer(IDENT)],
    "flat": [answer(IDENT, "### Steps\n1. Return x.")] * 4,
}


# ------------------------------------------------------------------------------ pure scores
def test_scores_by_hand():
    assert entropy([2, 1, 1]) == pytest.approx(1.5 * math.log(2))
    inter = inter_uncertainty(["a", "a", "b", "no_code"])
    assert inter["clusters"] == {"a": 2, "b": 1, "no_code": 1}
    assert inter["inter_norm"] == pytest.approx(0.75)  # 1.5 ln 2 / ln 4
    assert inter_uncertainty(["a"] * 4)["inter_norm"] == 0.0 and inter_uncertainty(["a"])["inter_norm"] == 0.0
    assert intra_uncertainty([{"baseline": "a", "steps": ["b", "a"]}, {"baseline": "c", "steps": ["c"]}]) == 0.25
    assert intra_uncertainty([{"baseline": "a", "steps": []}]) is None
    assert combined_score(0.75, 0.5) == 1.25 and combined_score(0.75, None) == 0.75
    assert combined_score(0.75, 0.5, "intra") == 0.5 and combined_score(0.75, 0.5, "sum", 2.0) == 1.75


def test_budget_and_choice():
    assert budget_count(0.5, 5) == 3 and budget_count(0.5, 4) == 2 and budget_count(0.01, 10) == 1
    assert budget_count(3, 2) == 2 and budget_count(1.0, 7) == 7
    with pytest.raises(ValueError):
        budget_count(1.5, 4)
    order = [f"p{i}" for i in range(10)]
    scores = {p: float(i % 4) for i, p in enumerate(order)}  # ties: p3, p7 score 3
    chosen, drawn = choose(scores, order, 0.3, seed=1)
    assert sorted(chosen[:2]) == ["p3", "p7"] and scores[chosen[2]] == 2.0
    assert choose(scores, order, 0.3, seed=1) == (chosen, drawn)  # seeded
    assert len(drawn) == 3 and set(drawn) <= set(order) and drawn == sorted(drawn, key=order.index)
    other = {choose(scores, order, 0.3, seed=s)[1][0] for s in range(8)}
    assert len(other) > 1  # the draw depends on the seed


def test_config_budget_forms(tmp_path):
    assert _cfg("x", budget=0.5).budget == 0.5 and _cfg("x", budget=3).budget == 3
    with pytest.raises(ValueError, match="fraction"):
        _cfg("x", budget=2.5)
    with pytest.raises(ValueError):
        _cfg("x", budget=0)
    key = _cfg("x").sampling_key()
    assert "budget" not in key and _cfg("x", budget=0.2).sampling_key() == key and _cfg("x", k=2).sampling_key() != key


# ------------------------------------------------------------------------------ the stage
def test_select_scores_choice_files_and_cost(tmp_path, judge):
    from codistill.select import select

    ds = _dataset(tmp_path / "data", list(SAMPLES))
    gen = Scripted(SAMPLES)
    m = select(_cfg(ds), tmp_path / "sel", generator=gen, judge=judge, progress=False)
    recs = {r["problem_id"]: r for r in read_jsonl(tmp_path / "sel" / "records.jsonl")}
    mixed = recs["mixed"]
    # inter: abs and abs2 share a cluster (same outputs), identity is another, no code a third
    sigs = [s["outcome"] for s in mixed["samples"]]
    assert sigs[0] == sigs[1] != sigs[2] and sigs[3] == "no_code" and len(set(sigs)) == 3
    assert [s["passed"] for s in mixed["samples"]] == [True, True, False, False]
    assert mixed["inter_norm"] == pytest.approx(0.75) and mixed["pass_rate"] == 0.5
    # intra: sample 0 has 2 steps; without step 1 (the absolute value) the code changes, without step 2 not
    (abl,) = mixed["ablations"]
    assert abl["sample"] == 0 and abl["steps"] == 2 and [v["changed"] for v in abl["variants"]] == [True, False]
    assert mixed["intra"] == 0.5
    # the hand-computed scores of the four problems
    scores = {r["problem_id"]: r for r in read_jsonl(tmp_path / "sel" / "scores.jsonl")}
    assert scores["mixed"]["score"] == pytest.approx(1.25)
    assert scores["agree"]["score"] == pytest.approx(0.5)  # inter 0, intra 1/2
    assert scores["split"]["score"] == pytest.approx(0.5 + 0.5)  # two clusters of 2: ln2/ln4 = 0.5
    assert scores["flat"]["score"] == 0.0  # "Return x." only: nothing changes
    # budget 0.5 of 4 = 2: the two highest; the random control as many, seeded
    sub = m["subsets"]
    assert sub["selected"]["ids"] == ["mixed", "split"] and len(sub["random"]["ids"]) == 2
    assert [scores[p]["rank"] for p in ("mixed", "split")] == [0, 1]
    # the subsets are data-stage folders (rows + problems) with the student's attempt on each row
    rows = list(read_jsonl(tmp_path / "sel" / "selected" / "rows.jsonl"))
    assert [r["problem_id"] for r in rows] == ["mixed", "split"]
    assert {"id", "prompt", "code", "tests"} <= set(rows[0])
    st = rows[0]["student"]
    assert st["sample"] == 2 and not st["passed"] and st["code"].startswith("def f") and st["steps"] == 2
    assert [p["id"] for p in read_jsonl(tmp_path / "sel" / "random" / "problems.jsonl")] == sub["random"]["ids"]
    # the cost of selection: 16 samples; mixed/agree/split ablate 2 steps + 1 baseline each, flat 1 + 1
    cost = m["cost"]
    assert cost["student_samples"] == 16 and cost["step_ablations"] == 7 and cost["baseline_regenerations"] == 4
    assert cost["generations"] == 27 and cost["generated_tokens"] is None  # no tokenizer: counted by the backend
    assert cost["usage"]["completion_tokens"] == 16 * 10 + 11 * 3 and cost["seconds"] >= 0
    assert m["complete"] and m["counts"] == {"candidates": 4, "scored": 4, "remaining": 0}
    # ablation prompts: the format's prompt + the reasoning without the step + the code section's start
    abl_prompts = [p for prompts, _ in gen.calls for p in prompts if p.rstrip().endswith("```python")]
    assert any("2. Return the result." in p and "absolute" not in p.split("### Reasoning")[-1] for p in abl_prompts)


def test_new_budget_reselects_without_sampling(tmp_path, judge):
    from codistill.select import select

    ds = _dataset(tmp_path / "data", list(SAMPLES))
    select(_cfg(ds), tmp_path / "sel", generator=Scripted(SAMPLES), judge=judge, progress=False)
    gen = Scripted(SAMPLES)
    m = select(_cfg(ds, budget=1, combine="inter"), tmp_path / "sel", generator=gen, judge=judge, progress=False)
    assert gen.calls == [] and m["subsets"]["selected"]["ids"] == ["mixed"]
    assert m["cost"]["student_samples"] == 16  # selection's cost is still what the records cost


def test_resume_after_an_interruption_does_not_resample(tmp_path, judge):
    from codistill.select import select

    ds = _dataset(tmp_path / "data", list(SAMPLES))
    out = tmp_path / "sel"
    # killed during the second batch (calls: batch 1 samples, batch 1 ablations, then batch 2)
    with pytest.raises(KeyboardInterrupt):
        select(_cfg(ds), out, generator=Scripted(SAMPLES, fail_after=2), judge=judge, progress=False)
    assert [r["problem_id"] for r in read_jsonl(out / "records.jsonl")] == ["mixed", "agree"]
    assert not (out / "scores.jsonl").exists()
    gen = Scripted(SAMPLES)
    m = select(_cfg(ds), out, generator=gen, judge=judge, progress=False)
    asked = {re.search(r"\[\[(\w+)\]\]", p).group(1) for prompts, _ in gen.calls for p in prompts}
    assert asked == {"split", "flat"}
    assert m["complete"] and len(list(read_jsonl(out / "records.jsonl"))) == 4
    assert m["cost"]["student_samples"] == 16 and len(m["runs"]) == 2
    assert m["subsets"]["selected"]["ids"] == ["mixed", "split"]
    # a changed sampling setting makes every record stale: sampled again
    gen = Scripted(SAMPLES)
    select(_cfg(ds, temperature=0.5), out, generator=gen, judge=judge, progress=False)
    assert len(gen.calls) == 4


def test_clear_errors(tmp_path):
    from codistill.select import select

    with pytest.raises(FileNotFoundError, match="codistill data"):
        select(_cfg(str(tmp_path / "none")), tmp_path / "o", generator=Scripted({}))
    ds = _dataset(tmp_path / "data", ["a"])
    with pytest.raises(ValueError, match="reasoning section"):
        select(_cfg(ds, format="code-only"), tmp_path / "o", generator=Scripted({}))
    with pytest.raises(ValueError, match="ids not in"):
        select(_cfg(ds, ids=["zz"]), tmp_path / "o", generator=Scripted({}))


def test_command_line(tmp_path, judge, monkeypatch, capsys):
    from codistill.cli import main

    ds = _dataset(tmp_path / "data", ["mixed", "flat"])
    monkeypatch.setattr("codistill.select.run.make_student", lambda cfg, fmt: (Scripted(SAMPLES), None))
    fmt = tmp_path / "format.yaml"
    fmt.write_text(json.dumps(FORMAT))
    rc = main(["select", "--dataset", ds, "--model", "scripted", "--format", str(fmt), "--out", str(tmp_path / "o"),
               "--budget", "1", "--k", "4", "--workers", "1", "--no-progress"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and line["subsets"] == {"selected": 1, "random": 1} and line["cost"]["student_samples"] == 8
    m = json.loads((tmp_path / "o" / "select_manifest.json").read_text())
    assert m["subsets"]["selected"]["ids"] == ["mixed"] and m["config"]["budget"] == 1
    assert main(["select", "--dataset", ds, "--model", "m", "--out", str(tmp_path / "p"), "--budget", "1.5"]) == 2
    assert "budget" in capsys.readouterr().err


def test_a_tiny_random_model_through_the_hf_backend(tmp_path, judge, tiny_llama_dir):
    """The student built from the config (hf backend, the paper format through the chat template):
    whatever a random model writes is sampled, split, ablated, judged and counted in tokens."""
    from codistill.select import select

    ds = _dataset(tmp_path / "data", ["mixed"])
    cfg = _cfg(ds, model=str(tiny_llama_dir), format="paper", k=2, max_new_tokens=24, code_max_new_tokens=16,
               max_steps=2, budget=1, batch_size=4)
    m = select(cfg, tmp_path / "sel", judge=judge, progress=False)
    (rec,) = read_jsonl(tmp_path / "sel" / "records.jsonl")
    assert len(rec["samples"]) == 2 and all(s["tokens"] is not None and 0 < s["tokens"] <= 24 for s in rec["samples"])
    sampled = sum(s["tokens"] for s in rec["samples"])
    ablations = m["cost"]["step_ablations"] + m["cost"]["baseline_regenerations"]
    # counted by re-tokenising each generated text; the backend's own count is at most the budgets
    assert m["cost"]["generated_tokens"] >= sampled + ablations
    assert 0 < m["cost"]["usage"]["completion_tokens"] <= 2 * 24 + 16 * ablations and m["cost"]["student_samples"] == 2
    assert m["subsets"]["selected"]["ids"] == ["mixed"]
