"""``teach --mode reverse`` (REER for code) end to end: the canned teacher server of test_teacher for
the drafts and the rewrites, a tiny random Llama (conftest ``tiny_llama_dir``) or a scripted
scorer for PPL(y|x,z). Checked: PPL against a manual computation from the model's logits over the
training example's code tokens; the records and train.jsonl keep their shape; kept and rejected
rewrites; the leakage cap; resume (no teacher call, no scorer pass); an interrupted run re-asks
nothing answered; the manifest's summary; the options' checks."""

from __future__ import annotations

import math
import re

import pytest

from test_teacher import SOLUTION, _cfg, _dataset, _problem, server  # noqa: F401  (the canned teacher)
from codistill.formats import get_format
from codistill.store import read_jsonl
from codistill.teacher.outputs import TRAIN_KEYS
from codistill.teacher.reverse.config import DEFAULT_STUDENT, ScorerConfig
from codistill.teacher.reverse.scoring import ScoreCache, Scorer, layout, plan_from_answer
from codistill.teacher.teach import TeachConfig, teach

X = "Write running_max(xs): the running maximum of a list."
Z1 = "### Intent\nReturn the running maximum.\n\n### Steps\n1. Keep the best so far.\n2. Record it after each element."
Z2 = "### Intent\nPrefix maxima of a list of numbers."
TESTS = "assert running_max([1, 3, 2]) == [1, 3, 3]"


# --------------------------------------------------------------------------- PPL against the model's logits


def _manual_ppl(model_dir, tok, fmt, z, x=X, tests=TESTS):
    """exp(-mean log p) over the code tokens of the training example (build_example's code_mask)."""
    import torch
    import transformers

    from codistill.training.config import DataConfig
    from codistill.training.data import build_example

    dcfg = DataConfig(**fmt.data_fields(), max_length=100_000, append_eos=False)
    ex, why = build_example({"id": "t", "prompt": x, "context": z, "code": SOLUTION, "tests": tests}, tok, dcfg)
    assert ex is not None, why
    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    ids = torch.tensor([ex.input_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    lps = [logp[p - 1, ex.input_ids[p]].item() for p, m in enumerate(ex.code_mask) if m]
    return math.exp(-sum(lps) / len(lps))


@pytest.mark.parametrize("fmt_spec", ["paper", {"base": "paper", "prompt_mode": "completion"}],
                         ids=["chat", "completion"])
def test_ppl_equals_a_manual_computation_from_the_logits(tmp_path, tiny_llama_dir, smollm2_tok, fmt_spec):
    fmt = get_format(fmt_spec)
    cache = ScoreCache(tmp_path / "cache")
    scorer = Scorer(ScorerConfig(model=str(tiny_llama_dir), batch_size=2), fmt, cache)
    got = scorer.ppl(X, [Z1, Z2, Z1], SOLUTION, TESTS)
    want = [_manual_ppl(tiny_llama_dir, smollm2_tok, fmt, z) for z in (Z1, Z2)]
    assert got[0] == pytest.approx(want[0], rel=1e-4) and got[1] == pytest.approx(want[1], rel=1e-4)
    assert got[2] == got[0] and got[0] != got[1]
    assert scorer.counts == {"passes": 2, "hits": 0, "plans": 0, "plan_hits": 0}  # Z1 twice: scored once
    # the cache: a new scorer on the same folder answers without loading the model
    scorer.close()
    cache.close()
    again = Scorer(ScorerConfig(model=str(tiny_llama_dir)), fmt, ScoreCache(tmp_path / "cache"))
    assert again.ppl(X, [Z2, Z1], SOLUTION, TESTS) == [got[1], got[0]]
    assert again.counts["passes"] == 0 and again.counts["hits"] == 2 and again._gen is None
    # another scorer identity (an adapter, a revision) or another format is another key
    assert again.key(X, Z1, SOLUTION, TESTS) != Scorer(ScorerConfig(model=str(tiny_llama_dir), revision="b"), fmt,
                                                       cache).key(X, Z1, SOLUTION, TESTS)
    other = get_format("paper-no-tests" if fmt.prompt_mode == "chat" else "paper")
    assert again.key(X, Z1, SOLUTION, TESTS) != Scorer(ScorerConfig(model=str(tiny_llama_dir)), other,
                                                       cache).key(X, Z1, SOLUTION, TESTS)


def test_layout_is_the_training_target_through_the_code():
    fmt = get_format({"base": "paper", "sections": ["### Tests\n{tests}", "### Reasoning\n{context}",
                                                    "### Code\n```python\n{code}\n```"]})
    user, target, span = layout(fmt, X, Z2 + "\n\n", SOLUTION, TESTS)
    assert user == X
    assert target == f"### Tests\n{TESTS}\n\n### Reasoning\n{Z2}\n\n### Code\n```python\n{SOLUTION.rstrip()}\n```"
    assert target[span[0]:span[1]] == SOLUTION.rstrip()
    assert plan_from_answer(get_format("paper"), "### Reasoning\n1. a\n2. b\n\n### Code\n```python\nx\n```") == "1. a\n2. b"


# --------------------------------------------------------------------------- the teach stage, scripted scorer


class ScriptedScorer:
    """A score-capable generator: every code token gets log p = -log(f(text)), so PPL = f(text) with
    f = 20 − 2·("good idea") + 3·("bad idea"), at least 1.1. ``generate`` writes a fixed plan."""

    from codistill.backends.base import Capabilities

    capabilities = Capabilities(score=True, tokenizer=True, local_weights=True)
    loads = 0

    def __init__(self, tokenizer, **kw):
        type(self).loads += 1
        self.tokenizer = tokenizer
        self.kw = kw

    @staticmethod
    def f(text):
        return max(1.1, 20 - 2 * text.count("good idea") + 3 * text.count("bad idea"))

    def score(self, prompts, conts):
        return [[-math.log(self.f(c))] * len(self.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in conts]

    def generate(self, prompts, params):
        return [["### Reasoning\n1. Keep the largest value seen.\n2. Append it after each element.\n\n### Code\n"]]

    def close(self):
        pass


@pytest.fixture()
def scripted(monkeypatch, smollm2_tok):
    import codistill.backends

    ScriptedScorer.loads = 0
    made = []
    real = codistill.backends.make_generator

    def make(kind, **kw):
        if kind != "hf":  # the teacher's client
            return real(kind, **kw)
        made.append(kw)
        return ScriptedScorer(smollm2_tok, **kw)

    monkeypatch.setattr(codistill.backends, "make_generator", make)
    return made


def _rewrites(server, fail_after=None):
    """The canned server answers rewrite prompts too: proposal 0 "bad idea" (PPL up), proposal 1
    "good idea" (PPL down); for problems marked ``paste``, proposal 0 pastes the solution as prose."""
    draft_answer = server.answer
    server.rewrites = []
    server.ok = 0

    def answer(body):
        prompt = body["messages"][-1]["content"]
        if "### Part to rewrite" not in prompt:
            return draft_answer(body)
        pid = re.search(r"\[\[(\w+)\]\]", prompt).group(1)
        rnd, k = divmod(int(body["seed"]) - 100, 1000)
        where = re.search(r"### Part to rewrite \((.*?)\)", prompt).group(1)
        with server.lock:
            server.rewrites.append({"pid": pid, "round": rnd - 1, "k": k, "where": where,
                                    "shows_solution": "### Reference solution" in prompt,
                                    "key": (prompt, body["seed"])})
            if fail_after is not None and server.ok >= fail_after:
                return 503, {"error": {"message": "down"}}
            server.ok += 1
        if k == 0:
            text = SOLUTION.replace("\n    ", "\n") + "good idea " * 6 if pid.startswith("paste") else "a bad idea"
        else:
            text = f"A good idea for {where}."
        return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                     "usage": {"prompt_tokens": 50, "completion_tokens": 5}}

    server.answer = answer
    return server


def test_teach_reverse_records_train_rows_and_summary(tmp_path, server, scripted):  # noqa: F811
    _rewrites(server)
    ds = _dataset(tmp_path / "data", [_problem(p) for p in ("good", "good2", "leak")])
    m = teach(_cfg(tmp_path, server.url, ds, mode="reverse",
                   mode_options={"scorer": {"model": "scripted"}, "proposals": 2, "max_rounds": 2}))
    recs = {r["id"]: r for r in read_jsonl(tmp_path / "run" / "contexts.jsonl")}
    assert not recs["leak"]["valid"] and recs["leak"]["reason"].startswith("leakage") and recs["leak"]["reverse"] is None
    r = recs["good"]
    rv = r["reverse"]
    n = rv["segments"]
    assert r["valid"] and r["mode"] == "reverse" and n == 6  # intent, 3 steps, formulas, edge cases (built-ins: None)
    assert rv["draft_context"].startswith("### Intent\nReturn, for every position")
    assert rv["ppl_before"] == pytest.approx(20) and rv["ppl_after"] == pytest.approx(20 - 2 * n)
    assert rv["accepted"] == n and rv["proposals"] == 2 * n * 2 and rv["rounds"] == 2 and rv["stop"] == "rounds"
    assert [t["kept"] for t in rv["trace"][:n]] == [1] * n and all(t["kept"] is None for t in rv["trace"][n:])
    assert rv["invalid_proposals"] == n  # round 2's "good idea" repeats are unchanged
    assert rv["teacher_tokens"] == {"prompt": 50 * 4 * n, "completion": 5 * 4 * n, "total": 55 * 4 * n}
    assert r["tokens"]["prompt"] == rv["teacher_tokens"]["prompt"] + rv["draft_teacher_tokens"]["prompt"]
    # the draft, 2 candidates a segment in round 1, the "bad" one in round 2 (the last segment's repeats
    # round 1's last candidate: not rescored)
    assert rv["scorer_passes"] == 1 + 2 * n + n - 1 and rv["scorer"]["model"] == "scripted"
    assert r["context"].count("A good idea for") == n and "1. A good idea for step 1" in r["context"]
    assert r["leakage"] == rv["leakage_after"] < 0.5 and r["leakage_detail"]["score"] == r["leakage"]
    assert all(w["shows_solution"] for w in server.rewrites)
    assert scripted[0]["prompt_mode"] == "completion" and scripted[0]["model"] == "scripted"

    train = {t["id"]: t for t in read_jsonl(tmp_path / "run" / "train.jsonl")}
    assert set(train) == {"good", "good2"}
    assert all(tuple(t) == TRAIN_KEYS for t in train.values())
    assert train["good"]["context"] == r["context"] and train["good"]["code"] == SOLUTION

    s = m["mode_summary"]
    assert s["mode"] == "reverse" and s["rows"] == 2
    assert s["ppl_before"]["mean"] == pytest.approx(20) and s["ppl_after"]["mean"] == pytest.approx(20 - 2 * n)
    assert s["delta_ppl"]["improved"] == 2 and s["leakage"]["count"] == 2
    assert s["correlation"]["delta_ppl_vs_leakage"]["pearson"] is None  # 2 rows
    assert s["this_run"]["scorer_passes"] == 2 * 3 * n == s["totals"]["scorer_passes"]
    assert m["this_run"]["teacher_calls"] == len(server.rewrites) + 1 + 1 + 3
    assert m["tokens"]["prompt"] == sum(x["tokens"]["prompt"] for x in recs.values())


def test_leakage_cap_and_the_blind_proposer(tmp_path, server, scripted):  # noqa: F811
    _rewrites(server)
    ds = _dataset(tmp_path / "data", [_problem("paste")])
    teach(_cfg(tmp_path, server.url, ds, mode="reverse", leakage_threshold=0.3,
               mode_options={"scorer": {"model": "scripted"}, "max_rounds": 1, "show_solution": False}))
    r = next(read_jsonl(tmp_path / "run" / "contexts.jsonl"))
    rv = r["reverse"]
    # proposal 0 pastes the solution (and would have the lowest PPL): refused unscored; proposal 1 kept
    assert rv["refused_leakage"] == rv["segments"] == rv["accepted"]
    assert r["leakage"] <= 0.3 and "good idea good idea" not in r["context"]
    assert all(t["proposals"][0]["dropped"].startswith("leakage") for t in rv["trace"])
    assert not any(w["shows_solution"] for w in server.rewrites)


def test_resume_makes_no_teacher_call_and_no_scorer_pass(tmp_path, server, scripted):  # noqa: F811
    _rewrites(server)
    ds = _dataset(tmp_path / "data", [_problem(p) for p in ("good", "good2")])
    cache = str(tmp_path / "cache")
    opts = {"scorer": {"model": "scripted"}, "max_rounds": 2}
    m1 = teach(_cfg(tmp_path, server.url, ds, mode="reverse", cache_dir=cache, mode_options=opts))
    n_req, loads = len(server.rewrites) + len(server.requests), ScriptedScorer.loads
    assert loads == 1
    # a fresh run directory on the same caches: every draft, rewrite and score is answered from them
    m2 = teach(_cfg(tmp_path, server.url, ds, mode="reverse", cache_dir=cache, mode_options=opts,
                    out_dir=str(tmp_path / "run2")))
    assert len(server.rewrites) + len(server.requests) == n_req and m2["this_run"]["teacher_calls"] == 0
    assert m2["mode_summary"]["this_run"]["scorer_passes"] == 0 and ScriptedScorer.loads == loads
    assert m2["mode_summary"]["this_run"]["score_cache_hits"] == m1["mode_summary"]["this_run"]["scorer_passes"]
    a = {r["id"]: r["context"] for r in read_jsonl(tmp_path / "run" / "contexts.jsonl")}
    b = {r["id"]: r["context"] for r in read_jsonl(tmp_path / "run2" / "contexts.jsonl")}
    assert a == b
    # changed search settings: finished records are redone (from the caches where they agree)
    m3 = teach(_cfg(tmp_path, server.url, ds, mode="reverse", cache_dir=cache,
                    mode_options={**opts, "max_rounds": 1}))
    assert m3["this_run"]["new_contexts"] == 2 and m3["this_run"]["teacher_calls"] == 0


def test_an_interrupted_run_asks_nothing_twice(tmp_path, server, scripted):  # noqa: F811
    ds = _dataset(tmp_path / "data", [_problem(p) for p in ("good", "good2")])
    teacher = {"base_url": server.url, "concurrency": 2, "max_retries": 0, "timeout_s": 30}
    opts = {"scorer": {"model": "scripted"}, "max_rounds": 2}
    # the whole run once, for the count
    _rewrites(server)
    teach(_cfg(tmp_path, server.url, ds, mode="reverse", teacher=teacher, cache_dir=str(tmp_path / "c1"),
               mode_options=opts, out_dir=str(tmp_path / "full")))
    total = len(server.rewrites)
    # the teacher goes down after 9 rewrites: both rows are teacher errors, the run is incomplete
    _rewrites_down = _rewrites(_restore(server), fail_after=9)
    m = teach(_cfg(tmp_path, server.url, ds, mode="reverse", teacher=teacher, cache_dir=str(tmp_path / "c2"),
                   mode_options=opts))
    assert not m["complete"] and len(m["teacher_errors"]) == 2 and m["counts"]["finished"] == 0
    answered = [w["key"] for w in _rewrites_down.rewrites][:9]
    passes = m["mode_summary"]["this_run"]["scorer_passes"]
    # back up: the rerun asks only what was not answered, and scores nothing twice
    _rewrites(_restore(server))
    m = teach(_cfg(tmp_path, server.url, ds, mode="reverse", teacher=teacher, cache_dir=str(tmp_path / "c2"),
                   mode_options=opts))
    assert m["complete"] and m["counts"]["valid"] == 2
    asked_again = [w["key"] for w in server.rewrites]
    assert len(asked_again) == total - 9 and not set(asked_again) & set(answered)
    full = next(iter(read_jsonl(tmp_path / "full" / "contexts.jsonl")))["reverse"]["scorer_passes"]
    assert passes + m["mode_summary"]["this_run"]["scorer_passes"] == 2 * full


def _restore(server):
    """The canned server's own answer (before :func:`_rewrites` wrapped it)."""
    server.answer = type(server).answer.__get__(server)
    return server


def test_student_draft(tmp_path, server, scripted):  # noqa: F811
    _rewrites(server)
    ds = _dataset(tmp_path / "data", [_problem("good")])
    teach(_cfg(tmp_path, server.url, ds, mode="reverse",
               mode_options={"scorer": {"model": "scripted"}, "draft": "student", "max_rounds": 1}))
    r = next(read_jsonl(tmp_path / "run" / "contexts.jsonl"))
    assert server.requests == []  # no explain draft asked
    assert r["valid"] and r["attempts"] == 0 and r["reverse"]["draft"] == "student"
    assert r["reverse"]["draft_context"] == "### Plan\n1. Keep the largest value seen.\n2. Append it after each element."
    assert r["reverse"]["segments"] == 2 and r["reverse"]["accepted"] == 2
    assert r["context"] == "### Plan\n1. A good idea for step 1 of the section \"Plan\".\n" \
                           "2. A good idea for step 2 of the section \"Plan\"."


def test_the_tiny_model_as_scorer_through_teach(tmp_path, server, tiny_llama_dir, smollm2_tok):  # noqa: F811
    _rewrites(server)
    ds = _dataset(tmp_path / "data", [_problem("good")])
    teach(_cfg(tmp_path, server.url, ds, mode="reverse",
               mode_options={"scorer": {"model": str(tiny_llama_dir)}, "max_rounds": 1, "proposals": 2}))
    r = next(read_jsonl(tmp_path / "run" / "contexts.jsonl"))
    rv = r["reverse"]
    fmt = get_format("paper")
    x = _problem("good").prompt
    assert r["valid"] and rv["ppl_after"] <= rv["ppl_before"]
    scorer = Scorer(ScorerConfig(model=str(tiny_llama_dir)), fmt, ScoreCache(tmp_path / "run" / "cache"))
    tests = next(read_jsonl(tmp_path / "run" / "train.jsonl"))["tests"]
    assert scorer.ppl(x, [rv["draft_context"], r["context"]], SOLUTION, tests) == [rv["ppl_before"], rv["ppl_after"]]
    assert scorer.counts["passes"] == 0  # both from the run's score cache
    assert rv["ppl_before"] == pytest.approx(_manual_ppl(tiny_llama_dir, smollm2_tok, fmt, rv["draft_context"], x, tests),
                                             rel=1e-4)


# --------------------------------------------------------------------------- settings


def test_options_and_keys():
    from codistill.training.config import TrainConfig

    assert DEFAULT_STUDENT == TrainConfig.model_fields["model"].default
    assert ScorerConfig().identity()["model"] == DEFAULT_STUDENT
    base = {"out_dir": "o", "dataset": "d"}
    assert "mode_options" not in TeachConfig(**base).key()  # stage keys of other modes unchanged
    cfg = TeachConfig(**base, mode="reverse", mode_options={"max_rounds": 3})
    assert cfg.key()["mode_options"] == {"max_rounds": 3}
    with pytest.raises(ValueError, match=r"mode_options\.scorer\.batch_size"):
        TeachConfig(**base, mode="reverse", mode_options={"scorer": {"batch_size": 0}})
    with pytest.raises(ValueError, match="unknown format"):
        TeachConfig(**base, mode="reverse", mode_options={"format": "nope"})
    with pytest.raises(ValueError, match="takes no mode_options"):
        TeachConfig(**base, mode="explain", mode_options={"max_rounds": 3})


def test_a_format_without_reasoning_before_the_code_is_refused(tmp_path, server, scripted):  # noqa: F811
    ds = _dataset(tmp_path / "data", [_problem("good")])
    with pytest.raises(ValueError, match="no reasoning section before the code"):
        teach(_cfg(tmp_path, server.url, ds, mode="reverse",
                   mode_options={"scorer": {"model": "scripted"}, "format": "code-only"}))


def test_drafts_share_the_cache_with_an_explain_run(tmp_path, server, scripted):  # noqa: F811
    _rewrites(server)
    ds = _dataset(tmp_path / "data", [_problem("good")])
    cache = str(tmp_path / "cache")
    teach(_cfg(tmp_path, server.url, ds, cache_dir=cache, out_dir=str(tmp_path / "explain")))
    assert len(server.requests) == 1
    teach(_cfg(tmp_path, server.url, ds, mode="reverse", cache_dir=cache,
               mode_options={"scorer": {"model": "scripted"}, "max_rounds": 1}))
    assert len(server.requests) == 1 and server.rewrites  # the draft from the explain run's answer
    r = next(read_jsonl(tmp_path / "run" / "contexts.jsonl"))
    e = next(read_jsonl(tmp_path / "explain" / "contexts.jsonl"))
    assert r["raw"] == e["raw"] and r["reverse"]["draft_context"] == e["context"]
