"""Training step cost: structure-loss overhead, codistill's loop vs TRL, memory (and dtype).

Runs with no arguments on the packaged default student (Qwen2.5-Coder-0.5B-Instruct, converted
from its GGUF once per dtype and cached; each first conversion takes a minute or two) with the
default training settings (LoRA r=32 on all attention + MLP projections, dropout 0.1, AdamW,
dtype "auto" = bfloat16 on this CPU), batch 4 of ~180-token examples (the test fixture's
problems, their reasoning padded to that length). Each part runs in its own process:

1. ``overhead``: one process, one model; optimizer steps alternate between the token loss alone
   and token + structure loss (MiniLM encoder, soft top-k, k=16), both through
   ``trainer.micro_batch_loss`` (what ``train`` uses), after one warm-up step of each; both
   steps of a pair see the same batch, and the alternation makes the machine's load hit both
   arms alike. → ``structure_overhead_ratio`` (median over pairs of CPU seconds structure /
   token; goal ≤ 1.25) and ``peak_rss_gib`` (this
   process: the 0.5B student, MiniLM, the bridge and a structure step; goal < 8).
2. ``codistill``: ``train()`` itself, token loss only, 1 warm-up + ``TIMED_STEPS`` steps.
3. ``trl``: TRL ``SFTTrainer`` on the same model, LoRA, pre-tokenised examples, batch,
   optimizer, schedule, dtype, thread count and no gradient checkpointing (TRL's default turns
   it on, which saves memory and costs time; codistill's default leaves it off), otherwise TRL's
   defaults (it also computes entropy and token-accuracy metrics each step), timed per step by a
   callback.
   → ``ratio_vs_trl`` = tokens per CPU-second of 2 / 3 (goal ≥ 1.0).
4. with ``CODISTILL_BENCH_DTYPE=1`` in the environment: float32 vs bfloat16 steps alternating in
   one process → ``bf16_speedup`` (what ``dtype="auto"`` is based on).

CPU seconds (``time.process_time``) are the primary measure and wall seconds are reported next
to them: this machine has 2 cores shared with other jobs, and a process that waits for a core
loses wall time, not CPU time. The thread count is chosen at start from the load average (torch
with 2 threads on a loaded 2-core machine is several times slower than with 1: its threads wait
for each other at every operation) and used by every part. Ends with one line of JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

MODEL = "qwen2.5-coder-0.5b"
BATCH = 4
TIMED_STEPS = 3
OVERHEAD_PAIRS = 4
TARGET_TOKENS = 180
CHILD_ENV = "CODISTILL_TRAIN_STEP_CHILD"
FIXTURE = ROOT / "tests" / "fixtures" / "train_examples.jsonl"
PADDING_LINE = "Check each edge case above against the tests before returning the result."


def make_records(tokenizer) -> list[dict]:
    """The fixture's records, each context padded with reasoning lines to ~TARGET_TOKENS."""
    from codistill.training.config import DataConfig
    from codistill.training.data import build_example, load_records

    cfg = DataConfig()
    out = []
    for rec in load_records(FIXTURE):
        rec = dict(rec)
        while len(build_example(rec, tokenizer, cfg)[0].input_ids) < TARGET_TOKENS - 10:
            rec["context"] = (rec["context"] + "\n" + PADDING_LINE).strip()
        out.append(rec)
    return out


def base_config(spec: dict, **overrides):
    from codistill.training.config import TrainConfig

    cfg = {
        "model": MODEL, "output_dir": str(Path(spec["workdir"]) / "out"),
        "data": {"train_file": spec["data_file"], "max_length": 512, "order": "random"},
        "batch_size": BATCH, "max_steps": 1 + TIMED_STEPS, "seed": 0, "num_threads": spec["threads"],
        "logging": {"tensorboard": False, "progress": False},
        "structure": {"enabled": False, "encoder": "minilm", "mode": "topk"},
    }
    for key, value in overrides.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    return TrainConfig.model_validate(cfg)


# ---------------------------------------------------------------------- parts (child processes)
def _timed_step(model, optimizer, batch, cfg, encoder, beta: float) -> tuple[float, float]:
    from codistill.training.objectives.structure import StructureObjective

    objective = StructureObjective(cfg)
    objective.encoder = encoder
    t0, c0 = time.perf_counter(), time.process_time()
    loss, _ = objective.weighted_loss(model, batch, 1.0 - beta, beta)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - t0, time.process_time() - c0


def _batches(cfg, tokenizer):
    from codistill.training.data import Collator, build_examples, load_records

    examples, _ = build_examples(load_records(cfg.data.train_file), tokenizer, cfg.data)
    collate = Collator(tokenizer.pad_token_id)
    return [collate(examples[i:i + BATCH]) for i in range(0, len(examples) - BATCH + 1, BATCH)]


def part_overhead(spec: dict) -> dict:
    import torch

    from codistill.training.structure_loss import load_structure_encoder
    from codistill.training.trainer import load_student, peak_rss_gib, resolve_dtype

    cfg = base_config(spec, structure={"enabled": True})
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    dtype = resolve_dtype(cfg.dtype, torch.device("cpu"))
    model, tokenizer = load_student(cfg, dtype)
    model.train()
    encoder = load_structure_encoder("minilm", student_tokenizer=tokenizer,
                                     student_vocab_size=int(model.config.vocab_size))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr)
    batches = _batches(cfg, tokenizer)
    times: dict[str, list] = {"token": [], "structure": []}
    for i in range(1 + OVERHEAD_PAIRS):
        for j, arm in enumerate(("token", "structure")):
            batch = batches[i % len(batches)]  # both arms of a pair see the same batch
            enc = encoder if arm == "structure" else None
            wall, cpu = _timed_step(model, optimizer, batch, cfg, enc, 0.14 if enc is not None else 0.0)
            if i > 0:  # the first pair warms up
                times[arm].append((wall, cpu))
    return {"dtype": dtype, "peak_rss_gib": peak_rss_gib(), "times": times}


def part_dtype(spec: dict) -> dict:
    import torch

    from codistill.training.trainer import load_student

    cfg = base_config(spec)
    torch.set_num_threads(spec["threads"])
    models = {}
    for dtype in ("bfloat16", "float32"):
        torch.manual_seed(0)
        model, tokenizer = load_student(cfg, dtype)
        model.train()
        models[dtype] = (model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr))
    batches = _batches(cfg, tokenizer)
    times: dict[str, list] = {"bfloat16": [], "float32": []}
    for i in range(3):  # one warm-up pair, two timed pairs (float32 steps are slow)
        for dtype, (model, opt) in models.items():
            wall, cpu = _timed_step(model, opt, batches[i % len(batches)], cfg, None, 0.0)
            if i > 0:
                times[dtype].append((wall, cpu))
    return {"times": times}


def part_codistill(spec: dict) -> dict:
    from codistill.store import read_jsonl
    from codistill.training.trainer import train

    cfg = base_config(spec)
    summary = train(cfg)
    timed = [r for r in read_jsonl(Path(cfg.output_dir) / "train_log.jsonl") if r["step"] > 1]
    return {"dtype": summary["dtype"], "peak_rss_gib": summary["peak_rss_gib"],
            "steps": [(r["step_s"], r["step_cpu_s"], r["tokens"]) for r in timed]}


def part_trl(spec: dict) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from codistill.training.data import build_examples, load_records
    from codistill.training.trainer import load_student, peak_rss_gib, resolve_dtype

    cfg = base_config(spec)
    torch.set_num_threads(spec["threads"])
    dtype = resolve_dtype(cfg.dtype, torch.device("cpu"))
    torch.manual_seed(cfg.seed)
    model, tokenizer = load_student(cfg, dtype)
    examples, _ = build_examples(load_records(cfg.data.train_file), tokenizer, cfg.data)
    ds = Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels} for e in examples])
    o = cfg.optim
    args = SFTConfig(
        output_dir=str(Path(spec["workdir"]) / "trl"), per_device_train_batch_size=BATCH, max_steps=cfg.max_steps,
        learning_rate=o.lr, warmup_steps=o.warmup_steps, lr_scheduler_type="linear", weight_decay=o.weight_decay,
        adam_beta1=o.betas[0], adam_beta2=o.betas[1], adam_epsilon=o.eps, max_grad_norm=o.max_grad_norm,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=False, max_length=None,
        dataloader_num_workers=0, seed=cfg.seed, disable_tqdm=True,
        gradient_checkpointing=cfg.gradient_checkpointing)  # TRL's default is True; codistill's False
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)
    tokens: list[int] = []
    inner = trainer.data_collator

    def counting_collator(features):
        batch = inner(features)
        tokens.append(int(batch["attention_mask"].sum()))
        return batch

    trainer.data_collator = counting_collator
    times: list[tuple[float, float]] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, *a, **k):
            times.append((time.perf_counter() - self.t0, time.process_time() - self.c0))

    trainer.add_callback(Timer())
    trainer.train()
    # the collator runs just before each step: tokens[i] belongs to step i
    steps = [(w, c, n) for (w, c), n in zip(times, tokens)][1:]
    return {"dtype": dtype, "peak_rss_gib": peak_rss_gib(), "steps": steps}


PARTS = {"overhead": part_overhead, "codistill": part_codistill, "trl": part_trl, "dtype": part_dtype}


# ---------------------------------------------------------------------- driver
def run_part(name: str, spec: dict) -> dict:
    env = dict(os.environ, **{CHILD_ENV: json.dumps({**spec, "part": name})})
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"part {name} failed:\n{proc.stderr[-4000:]}")
    line = next(x for x in reversed(proc.stdout.splitlines()) if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def _median(pairs: list, index: int) -> float:
    return statistics.median(p[index] for p in pairs)


def _throughput(steps: list) -> dict:
    n = sum(s[2] for s in steps)
    return {"tokens_per_cpu_s": n / sum(s[1] for s in steps), "tokens_per_s": n / sum(s[0] for s in steps),
            "median_step_s": _median(steps, 0), "median_step_cpu_s": _median(steps, 1)}


def main() -> None:
    from transformers import AutoTokenizer

    from codistill.models import resolve_model
    from codistill.store import write_jsonl
    from codistill.training.trainer import available_cpus, cpu_has_native_bf16

    t0 = time.perf_counter()
    cores = available_cpus()
    load_before = os.getloadavg()
    threads = max(1, min(cores, cores - round(load_before[0])))
    path = resolve_model(MODEL)  # converted once, then cached
    want_dtype = os.environ.get("CODISTILL_BENCH_DTYPE") == "1"
    if cpu_has_native_bf16() or want_dtype:
        resolve_model(MODEL, dtype="bfloat16")  # what dtype "auto" loads here: convert before timing
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    results = {}
    with tempfile.TemporaryDirectory(prefix="codistill-train-step-") as tmp:
        data_file = Path(tmp) / "examples.jsonl"
        write_jsonl(data_file, make_records(tokenizer))
        for name in ("overhead", "codistill", "trl") + (("dtype",) if want_dtype else ()):
            work = Path(tmp) / name
            work.mkdir()
            results[name] = run_part(name, {"workdir": str(work), "data_file": str(data_file), "threads": threads})
            print(f"{name}: done in {results[name]['wall_s']:.0f}s", file=sys.stderr, flush=True)
    ov, ours, trl = results["overhead"], results["codistill"], results["trl"]
    tok_t, str_t = ov["times"]["token"], ov["times"]["structure"]
    ours_tp, trl_tp = _throughput(ours["steps"]), _throughput(trl["steps"])
    load_after = os.getloadavg()
    summary = {
        "structure_overhead_ratio": round(statistics.median(s[1] / t[1] for s, t in zip(str_t, tok_t)), 3),
        "ratio_vs_trl": round(ours_tp["tokens_per_cpu_s"] / trl_tp["tokens_per_cpu_s"], 3),
        "peak_rss_gib": round(ov["peak_rss_gib"], 2),
        "structure_overhead_ratio_wall": round(statistics.median(s[0] / t[0] for s, t in zip(str_t, tok_t)), 3),
        "ratio_vs_trl_wall": round(ours_tp["tokens_per_s"] / trl_tp["tokens_per_s"], 3),
        "overhead_step_cpu_s": {"token": [round(c, 2) for _, c in tok_t], "structure": [round(c, 2) for _, c in str_t]},
        "codistill": {k: round(v, 2) for k, v in ours_tp.items()} | {"peak_rss_gib": round(ours["peak_rss_gib"], 2)},
        "trl": {k: round(v, 2) for k, v in trl_tp.items()} | {"peak_rss_gib": round(trl["peak_rss_gib"], 2)},
        "dtype": ours["dtype"], "threads": threads, "model": MODEL, "batch": BATCH,
        "tokens_per_step": round(statistics.mean(s[2] for s in ours["steps"]), 1), "timed_steps": TIMED_STEPS,
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
        "noisy": max(load_before[0], load_after[0]) > 0.5 * cores,
        "wall_s": round(time.perf_counter() - t0, 1),
        "goals": {"structure_overhead_ratio": "<= 1.25", "ratio_vs_trl": ">= 1.0", "peak_rss_gib": "< 8"},
    }
    if want_dtype:
        dt = results["dtype"]["times"]
        summary["bf16_speedup"] = round(_median(dt["float32"], 1) / _median(dt["bfloat16"], 1), 3)
        summary["dtype_step_cpu_s"] = {k: [round(c, 2) for _, c in v] for k, v in dt.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    if os.environ.get(CHILD_ENV):
        child = json.loads(os.environ[CHILD_ENV])
        print("RESULT " + json.dumps(PARTS[child["part"]](child)), flush=True)
    else:
        main()
