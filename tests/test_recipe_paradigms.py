"""`codistill run` with every paradigm arm kind in ONE tiny recipe: cd, hsft (SuperCorrect stage 1),
cd+dpo / hsft+dpo (stage 2: pairs, then DPO from the start arm's adapter), reer (REER), cd+lema
(LEMA), elad / elad-random / elad+claer (ELAD), beside the base. The teacher is one canned
OpenAI-compatible server that tells each mode's prompt by its template's wording and answers it in
that mode's format (every corrected program is the problem's reference solution, so corrections
pass the sandbox); the student is the tiny random Llama of conftest taught one fixed, wrong answer
in the run's format (a random model never writes a code fence, and SuperCorrect's pairs need a
failed answer with steps and code). The teach section has an explain template of its own. Checked:
every stage completes and each mode is asked in its own template (REER's drafts are the teach
stage's answers); each trained arm trained on its own file; a DPO arm's adapter record and log carry
DPO and its reward margins; REER's contexts record PPL before and after; the report prices each arm
(its `cost` part); a second call skips every stage and asks the teacher nothing; a change to a start
arm's training re-runs that arm and the DPO arm continuing it, nothing else."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
import yaml

from conftest import chat_server

FORMAT = {"base": "paper", "prompt_mode": "completion"}  # the tiny tokenizer has no chat template
DATA = {"sources": [{"name": "mbpp:train", "limit": 4, "max_problems": 3}], "tokenizer": "whitespace",
        "decontam": {"enabled": False}}
# what the student writes for every training problem: two steps and a program that defines no entry point
STUDENT_ANSWER = ("### Reasoning\n1. Read the input.\n2. Return it unchanged.\n\n### Code\n```python\n"
                  "def solve(x):\n    return x\n```")


@pytest.fixture()
def ml():
    pytest.importorskip("torch")
    pytest.importorskip("peft")


# --------------------------------------------------------------------------- the student


@pytest.fixture(scope="module")
def parrot_dir(tmp_path_factory, smollm2_tok) -> Path:
    """conftest's tiny random Llama (same shape, same seed) fine-tuned in full until it writes
    STUDENT_ANSWER (greedy or sampled) after each training problem's prompt in the run's format."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from codistill.data.prepare import PrepareConfig, prepare_dataset
    from codistill.formats import get_format
    from codistill.store import read_jsonl

    tok = smollm2_tok
    data = tmp_path_factory.mktemp("parrot-data")
    prepare_dataset(PrepareConfig.model_validate({**DATA, "out_dir": str(data)}))
    fmt = get_format(FORMAT)
    statements = [r["prompt"] for r in read_jsonl(data / "rows.jsonl")] + ["Write a function.", "def f(x):\n    pass"]
    answer = tok(STUDENT_ANSWER, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    seqs = []
    for s in statements:
        prompt = tok(fmt.render_prompt(tok, s)[0], add_special_tokens=True)["input_ids"]  # as the hf backend does
        seqs.append((torch.tensor([prompt + answer]), torch.tensor([[-100] * len(prompt) + answer])))
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=True, initializer_range=0.2,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    model = transformers.LlamaForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(150):
            opt.zero_grad()
            total = 0.0
            for ids, labels in seqs:
                loss = model(input_ids=ids, labels=labels).loss / len(seqs)
                loss.backward()
                total += loss.item()
            opt.step()
            if total < 0.003:
                break
    finally:
        torch.set_num_threads(threads)
    assert total < 0.01, f"the student did not learn its answer (loss {total:.4f})"
    path = tmp_path_factory.mktemp("parrot-llama")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


# --------------------------------------------------------------------------- the teacher

# each mode's prompt, told by its template's own wording (src/codistill/teacher/prompts/), first match wins
MODES = (("reverse", "### Part to rewrite"), ("hierarchical", "hierarchical thought template"),
         ("correction", "## Incorrect step"), ("first_error", "### The student's code"),
         ("claer", "### The student's steps"), ("explain", "Explain to a student HOW the solution works"))

EXPLAIN = """## Intent
Compute the value the statement asks for from the given arguments.

## Steps
1. Go through the input once and keep what the statement needs.
2. Build the answer from what was kept and return it.

## Formulas
None

## Edge cases
Empty or minimal inputs are handled by the same pass without special treatment.

## Built-ins
None
"""

HIERARCHICAL = """<Generalized>
Questions of this family are answered by one careful pass over the arguments.
</Generalized>
<Step>
Decide what must be remembered while reading the arguments.
<Key>Remembering only what matters keeps the pass simple.</Key>
</Step>
<Step>
Read the arguments in order and update what is remembered.
<Key>Updating in order respects the statement's rules.</Key>
</Step>
<Step>
Return the value that was built.
<Key>Nothing else has to be computed afterwards.</Key>
</Step>
"""


def _steps_shown(prompt: str) -> int:
    """How many steps of the student's the prompt shows (``Step N: ...`` lines)."""
    part = prompt.split("### The student's steps", 1)[1].split("\n### ", 1)[0]
    return len(re.findall(r"^Step \d+:", part, re.M))


def _check(n: int) -> str:
    return "\n".join([f"Step {i}: correct" for i in range(1, n)] + [f"Step {n}: wrong, the input is not the answer"])


class Teacher:
    """Answers each mode's prompt in its format, deterministically; records (mode, prompt) per request.
    ``data``: the run's data folder, where a correction's program is looked up (the reference)."""

    def __init__(self):
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.data: Path | None = None

    def reference(self, prompt: str) -> str:
        from codistill.store import read_jsonl

        rows = [r for r in read_jsonl(self.data / "rows.jsonl") if r["prompt"].strip() in prompt]
        assert len(rows) == 1, "the teacher could not tell the problem"
        return rows[0]["code"].replace("\r\n", "\n")

    def text(self, mode: str, prompt: str) -> str:
        if mode == "explain":
            return EXPLAIN
        if mode == "hierarchical":
            return HIERARCHICAL
        if mode == "reverse":
            where = re.search(r"### Part to rewrite \((.*?)\)", prompt).group(1)
            return f"State plainly what the {where} needs before the pass begins."
        if mode == "correction":
            return ("## Incorrect step\n`return x` gives the input back.\n\n## Explanation of the error\nThe input "
                    "is not the answer, so the first test's expected value differs from what came back.\n\n"
                    "## Corrected solution\nCompute the asked value from the arguments in one pass.\n\n"
                    f"## Corrected code\n```python\n{self.reference(prompt)}\n```\n")
        n = _steps_shown(prompt)
        revision = f"{n}. Compute the asked value from the arguments in one pass and return it."
        text = f"## Check\n{_check(n)}\n\n## First wrong step\n{n}\n\n## Revision\n{revision}\n"
        if mode == "first_error":
            text += f"\n## Code\n```python\n{self.reference(prompt)}\n```\n"
        return text

    def answer(self, body: dict) -> tuple[int, dict]:
        prompt = body["messages"][-1]["content"]
        mode = next((m for m, mark in MODES if mark in prompt), None)
        with self.lock:
            self.requests.append((mode, prompt))
        if mode is None:
            return 400, {"error": {"message": "the canned teacher does not know this prompt"}}
        text = self.text(mode, prompt)
        return 200, {"id": "x", "object": "chat.completion", "model": body.get("model"),
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}}

    def modes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m, _ in self.requests:
            out[m] = out.get(m, 0) + 1
        return out


@pytest.fixture()
def teacher():
    with chat_server(Teacher()) as t:
        yield t


# --------------------------------------------------------------------------- the recipe

TRAINED = {  # arm -> (kind, its training file under the run directory)
    "cd": ("trained", "teach/train.jsonl"),
    "hsft": ("hsft", "hsft/train.jsonl"),
    "cd_dpo": ("cd+dpo", "arms/cd_dpo/pairs/pairs.jsonl"),
    "hsft_dpo": ("hsft+dpo", "arms/hsft_dpo/pairs/pairs.jsonl"),
    "reer": ("reer", "reer/train.jsonl"),
    "lema": ("cd+lema", "correct/train_cd_lema.jsonl"),
    "elad": ("elad", "elad/selected.jsonl"),
    "rand": ("elad-random", "elad/random.jsonl"),
    "claer": ("elad+claer", "elad/claer/train.jsonl"),
}


EXPLAIN_NOTE = "Keep every section brief.\n"


def _recipe(tmp_path: Path, student: Path, teacher_url: str) -> Path:
    arms: dict = {"base": {"base": True}}
    for arm, (kind, _) in TRAINED.items():
        arms[arm] = {"kind": kind}
    arms["cd_dpo"]["start"] = "cd"
    arms["hsft_dpo"]["start"] = "hsft"
    recipe = {
        "name": "paradigms", "smoke": True,
        "data": DATA,
        "teach": {"mode": "explain", "teacher": {"base_url": teacher_url, "concurrency": 2, "max_retries": 1},
                  "sampling": {"seed": 100, "max_new_tokens": 200}},
        "reer": {"proposals": 1, "max_rounds": 1, "scorer": {"batch_size": 4, "options": {"num_threads": 1}}},
        "select": {"k": 2, "max_new_tokens": 64, "code_max_new_tokens": 16, "max_steps": 2, "budget": 1,
                   "judge_timeout_s": 5},
        "correct": {"sampling": {"n": 2, "max_new_tokens": 64}},
        "pairs": {"sampling": {"n": 1, "temperature": 0.0, "max_new_tokens": 64}},
        "train": {"model": str(student), "max_steps": 2, "batch_size": 2, "num_threads": 1,
                  "data": {"max_length": 256}, "structure": {"enabled": False},
                  "logging": {"tensorboard": False, "progress": False}},
        # a smoke run: 8 new tokens, far under the training targets, on purpose (recorded)
        "eval": {"backend": "hf", "benchmarks": ["humaneval"], "limit": 2, "max_new_tokens": 8,
                 "prompt_mode": "completion", "perplexity": False, "token_nll": False,
                 "backend_options": {"num_threads": 1}, "allow_short_budget": True},
        "format": FORMAT,
        "arms": arms,
    }
    # an explain template of the recipe's own: teach uses it, and REER's drafts (explain answers) with it;
    # hsft asks in its own mode, with its own template
    from importlib import resources

    tpl = tmp_path / "explain_brief.txt"
    tpl.write_text(EXPLAIN_NOTE + resources.files("codistill.teacher").joinpath("prompts", "explain.txt").read_text())
    recipe["teach"]["template"] = str(tpl)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _manifest(run: Path) -> dict:
    return json.loads((run / "run_manifest.json").read_text())["stages"]


def _stamps(run: Path) -> dict:
    return {k: (v.get("status"), v.get("finished")) for k, v in _manifest(run).items()}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_every_paradigm_arm_in_one_recipe(ml, tmp_path, parrot_dir, teacher):
    from codistill.recipe import load_recipe, run_recipe

    path = _recipe(tmp_path, parrot_dir, teacher.url)
    run = tmp_path / "run"
    teacher.data = run / "data"
    run_recipe(load_recipe(path), out_dir=run)

    # every stage of every arm completed
    stages = _manifest(run)
    run_stages = {"data", "teach", "hsft", "reer", "select", "elad", "correct", "report"}
    arm_stages = {f"{s}:{a}" for a in TRAINED for s in ("train", "eval")} | {"eval:base", "pairs:cd_dpo",
                                                                            "pairs:hsft_dpo"}
    assert {k for k, v in stages.items() if v.get("status") == "complete"} >= run_stages | arm_stages, \
        {k: v.get("status") for k, v in stages.items()}
    # the teacher was asked in every mode, always in a prompt it knew
    asked = teacher.modes()
    assert None not in asked and set(asked) == {m for m, _ in MODES}, asked
    assert all(p.startswith(EXPLAIN_NOTE) for m, p in teacher.requests if m == "explain")
    assert not any(EXPLAIN_NOTE in p for m, p in teacher.requests if m != "explain")
    # once per problem for teach and hsft (REER's drafts are the teach stage's answers, from the run's
    # teacher cache), once per distinct failure for correct and pairs (both start students fail alike:
    # hsft_dpo's corrections come from the cache), once per chosen problem for claer
    assert {m: asked[m] for m in ("explain", "hierarchical", "correction", "first_error", "claer")} == {
        "explain": 3, "hierarchical": 3, "correction": 3, "first_error": 3, "claer": 1}, asked

    # each trained arm trained on its own file, for the steps asked
    for arm, (kind, rel) in TRAINED.items():
        train = run / "arms" / arm / "train"
        cfg = json.loads((train / "train_config.json").read_text())
        assert cfg["data"]["train_file"] == str(run / rel), (arm, cfg["data"]["train_file"])
        assert _jsonl(run / rel), f"{arm}: {rel} is empty"
        summary = json.loads((train / "train_summary.json").read_text())
        assert summary["steps"] == 2 and (train / "adapter" / "adapter_model.safetensors").is_file(), arm
        res = json.loads((run / "arms" / arm / "eval" / "results.json").read_text())
        assert res["benchmarks"]["humaneval"]["tasks"] == 2
        assert res["config"]["adapter"] == str(train / "adapter")

    # DPO arms: pairs of the start student's failures; DPO from the start adapter; margins logged
    for arm, start in (("cd_dpo", "cd"), ("hsft_dpo", "hsft")):
        train = run / "arms" / arm / "train"
        cfg = json.loads((train / "train_config.json").read_text())
        assert cfg["init_adapter"] == str(run / "arms" / start / "train" / "adapter") and cfg["dpo"]["beta"] > 0
        pm = json.loads((run / "arms" / arm / "pairs" / "pairs_manifest.json").read_text())
        assert pm["config"]["student"]["adapter"] == str(run / "arms" / start / "train" / "adapter")
        assert pm["counts"]["pairs_by_first_error"] == {"step": 3}
        for p in _jsonl(run / "arms" / arm / "pairs" / "pairs.jsonl"):
            assert p["rejected"] == STUDENT_ANSWER and p["first_wrong_step"] == 2
            assert p["chosen"].startswith("### Reasoning\n1. Read the input.\n2. Compute the asked value")
        assert pm["counts"]["pairs"] == 3
        kept = json.loads((train / "train_summary.json").read_text())
        record = json.loads((train / "adapter" / "codistill_format.json").read_text())
        assert record["objective"] == "dpo" and record["examples"] == kept["data"]["kept"] >= 1, record
        log = _jsonl(train / "train_log.jsonl")
        assert [r["step"] for r in log] == [1, 2]
        assert all(isinstance(r["reward_margin"], float) and "reward_accuracy" in r for r in log), log
        assert kept["last"]["reward_margin"] == log[-1]["reward_margin"]

    # REER: each problem's searched reasoning with its PPL before and after under the student
    recs = _jsonl(run / "reer" / "contexts.jsonl")
    assert len(recs) == 3
    for r in recs:
        rv = r["reverse"]
        assert r["valid"] and rv["ppl_before"] > 1 and rv["ppl_after"] > 1 and rv["ppl_after"] <= rv["ppl_before"]
        assert rv["scorer"]["model"] == str(parrot_dir)
    assert len(_jsonl(run / "reer" / "train.jsonl")) == 3

    # LEMA: the student's three failures corrected with the reference, kept
    cm = json.loads((run / "correct" / "correct_manifest.json").read_text())
    assert cm["counts"]["kept"] == 3

    # ELAD: one problem chosen, one at random; claer revised the chosen one
    assert len(_jsonl(run / "elad" / "selected.jsonl")) == 1 and len(_jsonl(run / "elad" / "random.jsonl")) == 1
    claer = _jsonl(run / "elad" / "claer" / "contexts.jsonl")
    assert len(claer) == 1 and claer[0]["claer"]["first_wrong"] == 2

    # the report's cost part: a row per arm (the base twice: both its protocols), each number from its file
    rows = json.loads((run / "report.json").read_text())["cost"]
    assert sorted(r["arm"] for r in rows) == sorted(["base", "base@standard", *TRAINED])
    cost = {r["arm"]: r for r in rows}
    assert cost["base"]["teacher_tokens"] == 0 and cost["base"]["training_examples"] == 0
    for arm, (kind, _) in TRAINED.items():
        assert cost[arm]["kind"] == kind and cost[arm]["teacher_tokens_data"] > 0 and not cost[arm]["notes"], cost[arm]
    teach_tokens = cost["cd"]["teacher_tokens_data"]
    assert teach_tokens == json.loads((run / "teach" / "teach_manifest.json").read_text())["tokens"]["total"]
    assert cost["lema"]["teacher_tokens_data"] == teach_tokens + cm["cost"]["teacher"]["total_tokens"]
    for arm, start in (("cd_dpo", "cd"), ("hsft_dpo", "hsft")):  # the start arm's price + the pairs'
        pm = json.loads((run / "arms" / arm / "pairs" / "pairs_manifest.json").read_text())
        pairs_tokens = pm["cost"]["teacher"]["total_tokens"]
        assert cost[arm]["teacher_tokens_data"] == cost[start]["teacher_tokens_data"] + pairs_tokens
        assert cost[arm]["training_examples"] == cost[start]["training_examples"] + 4
        assert cost[arm]["student_samples"] == 3
    assert cost["cd"]["training_examples"] == 4 and cost["cd"]["student_samples"] == 0
    assert cost["reer"]["student_scoring_passes"] > 0 and cost["reer"]["teacher_tokens_data"] > teach_tokens
    assert cost["elad"]["student_samples"] == cost["claer"]["student_samples"] > 0 == cost["rand"]["student_samples"]

    # the same recipe again: every stage skipped (the report is always rebuilt), no teacher call
    n = len(teacher.requests)
    before = _stamps(run)
    run_recipe(load_recipe(path), out_dir=run)
    after = _stamps(run)
    assert {k: v for k, v in after.items() if k != "report"} == {k: v for k, v in before.items() if k != "report"}
    assert len(teacher.requests) == n

    # one start arm's training changes: it and the DPO arm that continues it run again (new pairs from
    # the new student, answered by the cache), nothing else
    raw = yaml.safe_load(path.read_text())
    raw["arms"]["cd"]["train"] = {"optim": {"lr": 1e-3}}
    path.write_text(yaml.safe_dump(raw))
    run_recipe(load_recipe(path), out_dir=run)
    third = _stamps(run)
    assert {k for k in third if k != "report" and third[k] != after[k]} == {
        "train:cd", "eval:cd", "pairs:cd_dpo", "train:cd_dpo", "eval:cd_dpo"}
    assert len(teacher.requests) == n
