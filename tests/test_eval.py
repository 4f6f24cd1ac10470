"""codistill eval: code extraction, perplexity arithmetic, and a whole resumable run on a tiny model."""

from __future__ import annotations

import json
import math

import pytest

from codistill.evaluation.extract import build_program, extract_code
from codistill.evaluation.perplexity import perplexity_from_logprobs, split_ids

PROMPT = 'from typing import List\n\n\ndef add(a: int, b: int) -> int:\n    """Add two numbers."""\n'


@pytest.mark.parametrize("answer,mode,expected", [
    ("Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\nIt adds.", "chat",
     "from typing import List\ndef add(a, b):\n    return a + b\n"),
    ("```python\nimport math\n```\n```python\ndef add(a, b):\n    return a + b\n```", "chat",
     "from typing import List\ndef add(a, b):\n    return a + b\n"),
    ("    return a + b\n", "completion", PROMPT + "    return a + b\n"),
    ("    return a + b\n```", "chat", PROMPT + "    return a + b\n"),
    ("def add(a, b):\n    return a + b\n\nThis function returns the sum.", "chat",
     "from typing import List\ndef add(a, b):\n    return a + b\n"),
])
def test_build_program(answer, mode, expected):
    assert build_program(answer, PROMPT, "add", mode) == expected


def test_language_line_and_model_asserts_are_removed():
    answer = ("```\npython\ndef f(x):\n    return x * 2\n\n# Test\nassert f(2) == 5\nprint(f(3))\n"
              "if __name__ == '__main__':\n    f(1)\n```")
    assert build_program(answer, "", "f", "chat") == "def f(x):\n    return x * 2\n"


def test_sanitize_keeps_definitions():
    from codistill.evaluation.extract import sanitize

    code = "import math\nK = 3\n@staticmethod\ndef g():\n    return K\nclass A:\n    pass\ng()\n"
    assert sanitize(code) == "import math\nK = 3\n@staticmethod\ndef g():\n    return K\nclass A:\n    pass\n"


def test_extract_prefers_block_defining_entry_point():
    text = "```python\nprint('hi')\n```\nand\n```\ndef f(x):\n    return x\n```"
    assert extract_code(text, "f") == "def f(x):\n    return x\n"


def test_mbpp_style_prose_prompt():
    code = build_program("```python\ndef f(x):\n    return x * 2\n```", "", "f", "chat")
    assert code == "def f(x):\n    return x * 2\n"


def test_perplexity_arithmetic():
    assert split_ids(list(range(100)), 0.1) == 10
    assert split_ids(list(range(5)), 0.1) == 1
    assert split_ids([7], 0.1) == 1
    assert perplexity_from_logprobs([math.log(0.5)] * 4) == pytest.approx(2.0)
    assert perplexity_from_logprobs([]) is None


def test_question_perplexity_matches_manual_computation(tiny_llama_dir):
    torch = pytest.importorskip("torch")
    from codistill.backends import make_generator
    from codistill.evaluation.perplexity import question_completion_perplexity

    gen = make_generator("hf", model=str(tiny_llama_dir), batch_size=2, prompt_mode="completion", num_threads=1)
    texts = ["Write a function to add two numbers and return the sum.", "Reverse a string."]
    got = question_completion_perplexity(gen, texts, prefix=0.1, batch_size=2)
    for text, ppl in zip(texts, got):
        ids = gen.tokenizer(text, add_special_tokens=True)["input_ids"]
        k = split_ids(ids, 0.1)
        with torch.no_grad():
            logits = gen.model(input_ids=torch.tensor([ids])).logits[0].float()
        lp = torch.log_softmax(logits, -1)
        nll = [-lp[t - 1, ids[t]].item() for t in range(k, len(ids))]
        assert ppl == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-4)


def test_eval_run_end_to_end_and_resume(tiny_llama_dir, tmp_path):
    from codistill.evaluation.run import EvalConfig, run_eval

    cfg = EvalConfig(model=str(tiny_llama_dir), benchmarks=["humaneval", "humaneval+", "mbpp"], limit=2,
                     max_new_tokens=8, batch_size=4, prompt_mode="completion", backend_options={"num_threads": 1})
    res = run_eval(cfg, tmp_path / "run", progress=False)
    assert set(res["benchmarks"]) == {"humaneval", "humaneval+", "mbpp"}
    for b in res["benchmarks"].values():
        assert b["tasks"] == 2 and 0.0 <= b["pass@k"]["pass@1"] <= 1.0
        assert b["syntax_match"] is not None
    gens = (tmp_path / "run" / "generations.jsonl").read_text().splitlines()
    assert len(gens) == 4  # HumanEval and HumanEval+ share their prompts: generated once
    rows = [json.loads(x) for x in (tmp_path / "run" / "tasks.jsonl").read_text().splitlines()]
    assert {r["benchmark"] for r in rows} >= {"humaneval", "humaneval+", "mbpp", "mbpp-questions"}
    he = [r for r in rows if r["benchmark"] == "humaneval"]
    assert all(r["program"].startswith("from typing import List") or "def " in r["program"] for r in he)
    assert res["question_perplexity"]["n"] == 2 and res["question_perplexity"]["mean"] > 1
    assert (tmp_path / "run" / "token_nll.jsonl").exists()
    samples = [json.loads(x) for x in (tmp_path / "run" / "humaneval+" / "verdicts.jsonl").read_text().splitlines()]
    assert all("base_status" in s and "solution" in s for s in samples)
    # resume: nothing new is generated, same verdicts
    res2 = run_eval(cfg, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "generations.jsonl").read_text().splitlines() == gens
    # generation speed counts every call that generated, not only the last one
    g1, g2 = res["generation"], res2["generation"]
    assert g2["this_call"]["new_tokens"] == 0 and g1["this_call"]["new_tokens"] == g1["new_tokens"] > 0
    assert g2["new_tokens"] == g1["new_tokens"] and g2["seconds"] == g1["seconds"] > 0
    assert g2["samples_timed"] == g2["samples"] == 4
    assert g1["new_tokens"] == sum(json.loads(x)["n_tokens"] for x in gens)
    assert res2["benchmarks"]["humaneval"]["passed"] == res["benchmarks"]["humaneval"]["passed"]
    # changed settings are refused instead of mixing runs
    with pytest.raises(ValueError, match="different settings"):
        run_eval(cfg.model_copy(update={"max_new_tokens": 9}), tmp_path / "run", progress=False)


def test_interrupted_generation_resumes(tiny_llama_dir, tmp_path):
    """A half-written last line (killed mid-append) is dropped and the rest is reused."""
    from codistill.evaluation.run import EvalConfig, run_eval

    cfg = EvalConfig(model=str(tiny_llama_dir), benchmarks=["humaneval"], limit=3, max_new_tokens=4,
                     batch_size=2, prompt_mode="completion", perplexity=False, token_nll=False,
                     backend_options={"num_threads": 1})
    run_eval(cfg, tmp_path / "r", progress=False)
    path = tmp_path / "r" / "generations.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])
    res = run_eval(cfg, tmp_path / "r", progress=False)
    assert len(path.read_text().splitlines()) == 3
    assert res["benchmarks"]["humaneval"]["tasks"] == 3


def test_progress_lines_for_a_log_file(tiny_llama_dir, tmp_path, caplog, capsys):
    """Generation and judging log prompts/samples done of total, rate and ETA as plain lines
    (codistill.progress); with no terminal there is no bar and no escape code."""
    import logging

    from codistill.evaluation.run import EvalConfig, run_eval

    cfg = EvalConfig(model=str(tiny_llama_dir), benchmarks=["humaneval"], limit=3, max_new_tokens=4,
                     batch_size=2, prompt_mode="completion", perplexity=False, token_nll=False,
                     backend_options={"num_threads": 1})
    with caplog.at_level(logging.INFO, logger="codistill.evaluation.run"):
        run_eval(cfg, tmp_path / "r", progress=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "codistill.evaluation.run"]
    gen = [x for x in lines if x.startswith("generate: ")]
    assert gen[0] == "generate: 0/3 prompts (0%), starting"
    assert gen[-1].startswith("generate: 3/3 prompts, ") and " prompts/s, done in " in gen[-1] and "tok/s" in gen[-1]
    judged = [x for x in lines if x.startswith("judge humaneval: ")]
    assert judged[0].startswith("judge humaneval: 0/3 samples") and judged[-1].startswith("judge humaneval: 3/3 samples, ")
    assert " passed" in judged[-1]
    assert "\x1b[" not in capsys.readouterr().err


def test_mis_paired_fences_still_give_the_code():
    """A fine-tuned 0.5B answered "```\n```\n<code>\n```" (8 of 128 HumanEval answers): the regex
    pairs the first two fences into an empty block; the code between the later fences is used."""
    answer = "```\n```\nfrom typing import List\n\n\ndef f(xs: List[int]) -> int:\n    return len(xs)\n```"
    assert extract_code(answer, "f") == "from typing import List\n\n\ndef f(xs: List[int]) -> int:\n    return len(xs)\n"
    assert build_program(answer, "from typing import List\n\n\ndef f(xs):\n    pass\n", "f", "chat").endswith(
        "    return len(xs)\n")
    # a defining block, when there is one, still wins over text between other fences
    text = "def f(x):\n    return 2 + 2 + 2 + 2\n\n```python\ndef f(x):\n    return 1\n```\n"
    assert extract_code(text, "f") == "def f(x):\n    return 1\n"


def test_prompt_templates_default_bare_and_folder(tmp_path):
    """EvalPlus's instruction prompt by default; 'bare' = the statement alone (the training prompt)."""
    from codistill.evaluation.run import EvalConfig, _template, render_prompt
    from codistill.problems.schema import Problem

    p = Problem(id="T/0", source="humaneval", prompt="def f(x):\n    \"\"\"Return x.\"\"\"\n", entry_point="f")
    default = render_prompt(p, _template(EvalConfig(model="m"), "chat"))
    assert default.startswith("Please provide a self-contained Python script") and "```\ndef f(x):" in default
    assert render_prompt(p, _template(EvalConfig(model="m", template_dir="bare"), "chat")) == p.prompt
    # a set without a completion file falls back to the default completion template (the prompt itself)
    assert render_prompt(p, _template(EvalConfig(model="m", template_dir="bare"), "completion")) == p.prompt
    (tmp_path / "eval_chat.txt").write_text("Solve:\n{prompt}")
    assert render_prompt(p, _template(EvalConfig(model="m", template_dir=str(tmp_path)), "chat")) == "Solve:\n" + p.prompt
    with pytest.raises(ValueError, match="neither a folder nor a packaged template set"):
        _template(EvalConfig(model="m", template_dir="no-such-set"), "chat")


def test_eval_settings_are_checked_when_the_config_is_made(tmp_path):
    from codistill.evaluation.run import EvalConfig

    def problems(**kw) -> str:
        with pytest.raises(ValueError) as e:
            EvalConfig(model="m", **kw)
        return str(e.value)

    assert "unknown benchmark 'humaneavl'" in problems(benchmarks=["humaneval", "humaneavl"])
    assert "unknown split in 'mbpp:tst'" in problems(benchmarks=["mbpp:tst"])
    assert "no benchmarks given" in problems(benchmarks=[])
    assert "unknown backend 'vlm'" in problems(backend="vlm")
    msg = problems(backend="llama-server", backend_options={"n_paralel": 8})
    assert "unknown backend option 'n_paralel' for backend 'llama-server'; allowed: n_parallel, ctx" in msg
    assert "cannot apply a LoRA adapter" in problems(backend="openai", adapter="a",
                                                     backend_options={"base_url": "http://x/v1"})
    assert "neither a folder nor a packaged template set" in problems(template_dir=str(tmp_path / "nope"))
    # every problem at once
    msg = problems(benchmarks=["nope"], dtype="float8", backend_options={"x": 1})
    assert "unknown benchmark 'nope'" in msg and "float8" in msg and "'x'" in msg
    ok = EvalConfig(model="m", backend="vllm", backend_options={"base_url": "http://x/v1", "concurrency": 8},
                    benchmarks=["mbpp", "mbpp+", "humaneval+"], template_dir="bare")
    assert ok.backend == "vllm"  # aliases are kept as written (the run's key does not change)


def test_a_second_eval_on_one_directory_is_refused(tmp_path):
    import os

    from codistill.evaluation.run import EvalConfig, run_eval
    from codistill.store import RunDirBusyError, RunDirLock

    cfg = EvalConfig(model="m", backend="openai", backend_options={"base_url": "http://127.0.0.1:9/v1"},
                     benchmarks=["humaneval"], limit=1)
    with RunDirLock(tmp_path / "run", "eval"):
        with pytest.raises(RunDirBusyError, match=rf"another eval run \(pid {os.getpid()} on .*\) is using "
                                                  rf"{tmp_path / 'run'}"):
            run_eval(cfg, tmp_path / "run", progress=False)
    assert [p.name for p in (tmp_path / "run").iterdir()] == [".eval.lock"]  # nothing written
