"""The DPO objective (training/objectives/dpo.py) on the tiny random Llama of conftest: the loss
equals its closed form computed by hand from the model's logits, gradients reach only the LoRA
weights, malformed pairs are refused, and a 2-step run writes an adapter with its format record
and logs reward margins and accuracies (seconds)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

import torch.nn.functional as F  # noqa: E402

from codistill.store import write_jsonl  # noqa: E402
from codistill.training.config import DataConfig, TrainConfig  # noqa: E402
from codistill.training.data import build_example  # noqa: E402
from codistill.training.objectives import make_objective, objective_name  # noqa: E402
from codistill.training.objectives.dpo import (  # noqa: E402
    DPOObjective,
    PairCollator,
    PairError,
    build_pair_example,
    build_pair_examples,
)

PREFIX = "### Reasoning\n1. Read the two numbers a and b.\n"


def pair(pid: str, good: str = "a + b", bad: str = "a - b", prefix: str = PREFIX, **extra) -> dict:
    def answer(op: str, word: str) -> str:
        return f"{prefix}2. Return their {word}.\n\n### Code\n```python\ndef add(a, b):\n    return {op}\n```"

    return {"id": pid, "prompt": f"Write add(a, b) that returns the sum of a and b. [{pid}]", "prefix": prefix,
            "chosen": answer(good, "sum"), "rejected": answer(bad, "difference"), **extra}


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_llama_dir))


def lora_model(model_dir: Path, seed: int = 1, b_std: float = 0.3):
    """The tiny Llama with a LoRA adapter whose B is random (so the policy is not the reference)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, b_std)
    return model


def dpo_config(**dpo) -> TrainConfig:
    return TrainConfig(model="unused", dpo={"beta": 0.5, **dpo}, structure={"enabled": False})


def by_hand(model, tokenizer, rec: dict, beta: float) -> tuple[float, float]:
    """(−log σ(β·margin), margin) computed from full-sequence logits with plain log_softmax."""
    sft = build_example({"id": "x", "prompt": rec["prompt"], "code": "pass"}, tokenizer, DataConfig())[0]
    prompt_ids = sft.input_ids[:next(i for i, x in enumerate(sft.labels) if x != -100)]
    prefix_ids = tokenizer(rec["prefix"], add_special_tokens=False)["input_ids"]
    shared = prompt_ids + prefix_ids

    def logp(answer: str) -> float:
        comp = tokenizer(answer[len(rec["prefix"]):], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([shared + comp])
        logprobs = F.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
        return sum(float(logprobs[len(shared) - 1 + j, t]) for j, t in enumerate(comp))

    with torch.no_grad():
        pi_c, pi_r = logp(rec["chosen"]), logp(rec["rejected"])
        with model.disable_adapter():
            ref_c, ref_r = logp(rec["chosen"]), logp(rec["rejected"])
    margin = (pi_c - ref_c) - (pi_r - ref_r)
    return -float(F.logsigmoid(torch.tensor(beta * margin, dtype=torch.float64))), margin


def test_dpo_loss_equals_the_closed_form(tiny_llama_dir, tokenizer):
    model = lora_model(tiny_llama_dir)
    model.eval()
    cfg = dpo_config()
    objective = DPOObjective(cfg)
    objective.setup(model, tokenizer, torch.device("cpu"), 1)
    recs = [pair("p1"), pair("p2", good="b + a", bad="a * b", prefix="### Reasoning\n")]
    examples = [build_pair_example(r, tokenizer, cfg.data, key=i)[0] for i, r in enumerate(recs)]
    batch = PairCollator(tokenizer.pad_token_id)(examples)
    totals = objective.counts(batch)
    assert totals["examples"] == 2
    loss, parts = objective.loss(model, batch, 0, totals)
    expected = [by_hand(model, tokenizer, r, 0.5) for r in recs]
    assert loss.item() == pytest.approx(sum(e[0] for e in expected) / 2, rel=1e-4, abs=1e-5)
    assert all(abs(m) > 1e-3 for _, m in expected)  # the adapter moved the policy off the reference
    logged = objective.summarize(parts, totals)
    assert logged["reward_margin"] == pytest.approx(0.5 * sum(m for _, m in expected) / 2, rel=1e-4, abs=1e-5)
    assert logged["reward_accuracy"] == sum(m > 0 for _, m in expected) / 2
    # the reference log-probs are now cached per pair: the same loss without a reference pass
    assert set(objective.ref_cache) == {0, 1}
    assert objective.loss(model, batch, 1, totals)[0].item() == pytest.approx(loss.item(), rel=1e-6)


def test_ipo_loss(tiny_llama_dir, tokenizer):
    model = lora_model(tiny_llama_dir)
    model.eval()
    cfg = dpo_config(loss_type="ipo")
    objective = DPOObjective(cfg)
    ex, _ = build_pair_example(pair("p1"), tokenizer, cfg.data)
    batch = PairCollator(tokenizer.pad_token_id)([ex])
    loss, _ = objective.loss(model, batch, 0, objective.counts(batch))
    with torch.no_grad():
        def seq(row, adapter: bool):
            ids = torch.tensor([row])
            ctx = model.disable_adapter() if not adapter else contextlib.nullcontext()
            with ctx:
                lp = F.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            return sum(float(lp[t - 1, row[t]]) for t in range(len(ex.shared), len(row)))
        c, r = ex.rows()
        delta = ((seq(c, True) - seq(c, False)) / len(ex.chosen) - (seq(r, True) - seq(r, False)) / len(ex.rejected))
    assert loss.item() == pytest.approx((delta - 1 / (2 * 0.5)) ** 2, rel=1e-4)


def test_gradients_reach_only_lora_parameters(tiny_llama_dir, tokenizer):
    model = lora_model(tiny_llama_dir)
    model.train()
    cfg = dpo_config()
    objective = DPOObjective(cfg)
    ex, _ = build_pair_example(pair("p1"), tokenizer, cfg.data)
    batch = PairCollator(tokenizer.pad_token_id)([ex])
    loss, _ = objective.loss(model, batch, 0, objective.counts(batch))
    loss.backward()
    with_grad = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad and all("lora_" in n for n in with_grad)
    assert any(float(g.abs().sum()) > 0 for n, g in with_grad.items() if "lora_A" in n)
    assert any(float(g.abs().sum()) > 0 for n, g in with_grad.items() if "lora_B" in n)
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)


def test_prompt_ids_are_sfts(tokenizer):
    rec = pair("p1")
    ex, _ = build_pair_example(rec, tokenizer, DataConfig())
    sft, _ = build_example({"id": "p1", "prompt": rec["prompt"], "code": "pass"}, tokenizer, DataConfig())
    n_prompt = next(i for i, x in enumerate(sft.labels) if x != -100)
    assert ex.shared[:ex.prompt_len] == sft.input_ids[:n_prompt] and ex.prompt_len == n_prompt
    assert ex.shared[ex.prompt_len:] == tokenizer(PREFIX, add_special_tokens=False)["input_ids"]
    batch = PairCollator(tokenizer.pad_token_id)([ex])
    # loss on the completion tokens only: labels start after prompt + prefix, in both rows
    for row in range(2):
        first = int((batch["labels"][row] != -100).nonzero()[0])
        assert first == len(ex.shared)


def test_a_pair_whose_prefix_differs_is_refused(tokenizer):
    rec = pair("bad")
    rec["rejected"] = rec["rejected"].replace("two numbers", "2 numbers")
    with pytest.raises(PairError, match=r"pair 'bad': the rejected answer does not begin with the pair's prefix"):
        build_pair_example(rec, tokenizer, DataConfig())
    same = pair("same")
    same["rejected"] = same["chosen"]
    with pytest.raises(PairError, match="the same answer"):
        build_pair_example(same, tokenizer, DataConfig())
    other = pair("fmt", format={"name": "code-only", "sections": ["### Code\n```python\n{code}\n```"]})
    with pytest.raises(PairError, match="student format 'code-only'"):
        build_pair_examples([other], tokenizer, DataConfig())


def test_pairs_budget_and_length(tokenizer):
    recs = [pair(f"p{i}") for i in range(6)]
    kept, stats = build_pair_examples(recs, tokenizer, DataConfig(), max_pairs=4, seed=3)
    assert len(kept) == 4 and stats.over_budget == 2
    again, _ = build_pair_examples(recs + [pair("p9")], tokenizer, DataConfig(), max_pairs=4, seed=3)
    assert len({e.id for e in again} & {e.id for e in kept}) >= 3  # stable order: a new pair moves at most one
    short, stats = build_pair_examples(recs[:2], tokenizer, DataConfig(max_length=40))
    assert not short and stats.dropped_too_long == 2


def test_objective_is_chosen_by_the_config():
    assert objective_name(dpo_config()) == "dpo"
    assert isinstance(make_objective(dpo_config()), DPOObjective)
    assert objective_name(TrainConfig(model="m")) == "structure"


def run_config(model_dir: Path, pairs_file: Path, out: Path, **overrides) -> TrainConfig:
    return TrainConfig.model_validate({
        "model": str(model_dir), "output_dir": str(out),
        "data": {"train_file": str(pairs_file), "max_length": 256, "order": "random"},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "optim": {"lr": 1e-2, "warmup_steps": 0, "schedule": "constant"},
        "structure": {"enabled": False}, "dpo": {"beta": 0.5},
        "logging": {"tensorboard": False, "progress": False},
        "batch_size": 2, "grad_accum": 1, "max_steps": 2, "dtype": "float32", "num_threads": 1, "seed": 0,
        **overrides,
    })


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if line]


def test_two_step_dpo_run_writes_an_adapter_and_logs_margins(tiny_llama_dir, tmp_path, monkeypatch):
    from codistill.training.trainer import train

    monkeypatch.setenv("CODISTILL_CACHE_DIR", str(tmp_path / "cache"))
    pairs_file = tmp_path / "pairs.jsonl"
    write_jsonl(pairs_file, [pair(f"p{i}", difficulty="easy") for i in range(4)])
    out = tmp_path / "dpo"
    summary = train(run_config(tiny_llama_dir, pairs_file, out))
    assert summary["adapter_dir"] and summary["steps"] == 2
    record = json.loads((out / "adapter" / "codistill_format.json").read_text())
    assert record["objective"] == "dpo" and record["format"]["name"] == "custom" and record["examples"] == 4
    assert record["generation_tokens"]["n"] == 4
    rows = read_log(out)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        for key in ("dpo_loss", "reward_margin", "reward_accuracy", "reward_chosen", "reward_rejected",
                    "logps_chosen", "logps_rejected", "beta"):
            assert key in r
        assert r["examples"] == 2 and 0.0 <= r["reward_accuracy"] <= 1.0
    assert rows[0]["reward_margin"] == pytest.approx(0.0, abs=1e-6)  # a fresh adapter is the reference
    assert rows[0]["dpo_loss"] == pytest.approx(0.6931, abs=1e-3)
    assert rows[1]["reward_margin"] > 0  # one step of DPO prefers the chosen answers
    saved = json.loads((out / "adapter" / "train_config.json").read_text())
    assert saved["dpo"]["beta"] == 0.5 and "init_adapter" not in saved


def test_dpo_from_an_init_adapter_uses_it_as_the_reference(tiny_llama_dir, tmp_path, monkeypatch):
    from codistill.training.trainer import train

    monkeypatch.setenv("CODISTILL_CACHE_DIR", str(tmp_path / "cache"))
    start = tmp_path / "sft-adapter"
    lora_model(tiny_llama_dir, seed=7).save_pretrained(str(start))  # an SFT student: B far from 0
    pairs_file = tmp_path / "pairs.jsonl"
    write_jsonl(pairs_file, [pair(f"p{i}") for i in range(4)])
    out = tmp_path / "dpo"
    summary = train(run_config(tiny_llama_dir, pairs_file, out, init_adapter=str(start), save_every=1,
                               stop_at_step=1))
    assert summary["stopped_early"]
    first = read_log(out)[0]
    # the reference is the starting student (not the base): at step 1 the policy equals it
    assert first["reward_margin"] == pytest.approx(0.0, abs=1e-5)
    assert first["reward_chosen"] == pytest.approx(0.0, abs=1e-5)
    assert first["dpo_loss"] == pytest.approx(0.6931, abs=1e-3)
    resumed = train(run_config(tiny_llama_dir, pairs_file, out, init_adapter=str(start), save_every=1, resume=True))
    assert resumed["adapter_dir"] and resumed["steps"] == 2
    second = read_log(out)[1]
    assert second["reward_margin"] > 0
    from safetensors.torch import load_file

    before = load_file(str(start / "adapter_model.safetensors"))
    after = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)


def test_train_key_is_unchanged_without_dpo_and_changes_with_it():
    plain = TrainConfig(model="m")
    assert "dpo" not in plain.key() and "init_adapter" not in plain.key() and "dpo" not in plain.resolved()
    with_dpo = TrainConfig(model="m", dpo={"beta": 0.1})
    assert with_dpo.key() != plain.key() and with_dpo.key() != TrainConfig(model="m", dpo={"beta": 0.2}).key()
    assert TrainConfig(model="m", dpo={}, init_adapter="a/adapter").key() == \
        TrainConfig(model="m", dpo={}, init_adapter="b/adapter").key()  # a recipe keys the adapter's content
    assert TrainConfig(model="m", dpo={}, init_adapter="a").key() != TrainConfig(model="m", dpo={}).key()
