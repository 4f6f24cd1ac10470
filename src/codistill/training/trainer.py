"""The train stage: a generic LoRA training loop on Hugging Face Accelerate; the loss is an
objective's (``training/objectives/``: token + structure-aware by default).

``train(config) -> dict`` is the single entry point (the CLI's ``train`` verb maps to it). It runs
unchanged in one process (CPU or one GPU) and under ``accelerate launch`` with DDP, FSDP or
DeepSpeed ZeRO-2 configs (examples/accelerate/).

Why a loop of our own and not TRL's ``SFTTrainer`` with a custom ``compute_loss``: the loss
needs, per optimizer step, (a) the objective's weights for that step (α/β from the curriculum),
(b) the target-token *and* example counts of the whole accumulated batch across processes (the
Trainer passes only ``num_items_in_batch``), (c) a ``code_mask`` column the Trainer's collators
drop, and resuming must restore the data position exactly. Each is a fight with the Trainer's
internals; in a loop of our own they are explicit. The loop is also faster on CPU
(benchmarks/train_step.py: 1.6-1.7x TRL's tokens per CPU-second on the 0.5B student, same
settings): it computes the vocabulary projection only at target positions (``logits_to_keep``),
not over the prompt, and skips TRL's per-step entropy/accuracy metrics.

Not tested here (no GPU on the development machine): FSDP and DeepSpeed runs. The DDP path is
tested with two CPU processes (tests/test_trainer.py).

One optimizer step ``s`` (0-based) of ``total`` steps, with ``objective`` from
:func:`~codistill.training.objectives.make_objective` (interface: objectives/base.py):

1. every process takes its ``grad_accum`` micro-batches from :class:`~codistill.training.data.
   ExampleStream` (a pure function of seed and step: the data position is the step number);
2. ``objective.counts`` of all micro-batches of all processes are summed (one all-reduce);
3. each micro-batch's ``objective.loss(model, batch, s, totals)`` is its share of the step's
   loss, so the summed micro-batch gradients equal the gradient of one big batch; Accelerate
   divides by ``grad_accum`` and DDP/FSDP/ZeRO average over processes, so the loss handed to
   ``backward`` is multiplied by both to undo that;
4. clip, AdamW step (the adapter and ``objective.extra_parameters()``), learning-rate schedule
   step (warm-up then linear/cosine/constant).

Checkpoints every ``save_every`` steps and resume: training/checkpoints.py. Logs
(``train_log.jsonl``, TensorBoard, progress): training/logs.py. The run's summary:
``train_summary.json``.

Threads (CPU): ``num_threads`` when set, else :func:`codistill.cpu.default_threads` (the physical
cores this process may use, less those other processes keep busy at this moment), divided among
the processes of a multi-process CPU run.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codistill.store import atomic_write_json
from codistill.training.checkpoints import (
    CONFIG_FILE,
    TrainState,
    register_adapter_hooks,
    resume_point,
    save_checkpoint,
    save_final,
)
from codistill.training.config import TrainConfig
from codistill.training.data import ExampleStream, steps_per_epoch
from codistill.training.logs import LOG_FILE, TrainLogs, truncate_log
from codistill.training.objectives import make_objective
from codistill.training.objectives.base import Objective

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- small helpers
def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def available_cpus() -> int:
    """CPUs this process may run on (affinity mask, cgroup quota): :func:`codistill.cpu.usable_cores`."""
    from codistill.cpu import usable_cores

    return usable_cores()


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 in /proc/cpuinfo (where bf16 matmuls are fast on CPU)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str, device: torch.device) -> str:
    """'auto' → bfloat16 on CUDA with bf16 support or a CPU with native bf16, else float32."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device.type == "cpu" and cpu_has_native_bf16() else "float32"


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Learning-rate multiplier for optimizer step ``step`` (0-based): linear warm-up reaching
    1 at step ``warmup − 1``, then constant / linear / cosine decay that stays > 0 at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _sum_parts(parts: list[dict[str, float]], use: list[bool] | None = None) -> dict[str, float]:
    """Key-wise sum of dicts with the same keys, leaving out those whose ``use`` is False."""
    use = use or [True] * len(parts)
    return {k: sum(p[k] for p, u in zip(parts, use) if u) for k in parts[0]}


def _over_processes(accelerator: Any, values: dict[str, float]) -> dict[str, float]:
    """Sums over all processes of a dict with the same keys everywhere, in one all-reduce."""
    if accelerator.num_processes == 1:
        return values
    packed = torch.tensor(list(values.values()), dtype=torch.float64, device=accelerator.device)
    return dict(zip(values, accelerator.reduce(packed, reduction="sum").cpu().tolist()))


def _totals(accelerator: Any, objective: Objective, batches: list[dict],
            use: list[bool] | None = None) -> dict[str, int]:
    """``objective.counts`` summed over ``batches`` (see :func:`_sum_parts`) and processes."""
    counts = _over_processes(accelerator, _sum_parts([objective.counts(b) for b in batches], use))
    return {k: int(v) for k, v in counts.items()}


def adapter_checksum(model: Any) -> tuple[str, float]:
    """(sha256 of the trainable tensors' bytes in name order, sum of their absolute values):
    lets processes of one run, or two runs, compare their adapters cheaply."""
    import hashlib

    h = hashlib.sha256()
    total = 0.0
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if p.requires_grad:
            t = p.detach().float().cpu().contiguous()
            h.update(name.encode())
            h.update(t.numpy().tobytes())
            total += float(t.abs().sum())
    return h.hexdigest(), total


# ---------------------------------------------------------------------- the student
def load_student(config: TrainConfig, dtype: str) -> tuple[Any, Any]:
    """(peft model with a fresh LoRA adapter, or ``init_adapter`` loaded trainable, tokenizer).
    LoRA weights are float32."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codistill.models import resolve_model

    # a packaged model is converted once per dtype (as the HF generation backend does): loading
    # bf16 weights from the fp32 folder would map 2.4 GB of fp32 files and raise peak RSS by that
    path = resolve_model(config.model, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype))
    model.config.use_cache = False
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.init_adapter is not None:  # continue an adapter (e.g. DPO after SFT): its own LoRA settings
        from peft import PeftModel

        if not (Path(config.init_adapter) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"init_adapter {config.init_adapter} is not a peft adapter folder (no "
                                    "adapter_config.json): give a trained arm's adapter/ folder")
        return PeftModel.from_pretrained(model, str(config.init_adapter), is_trainable=True), tokenizer
    lcfg = config.lora
    targets: Any = lcfg.target_modules
    if targets == ["all-linear"]:
        targets = "all-linear"
    lora = LoraConfig(r=lcfg.r, lora_alpha=lcfg.alpha, lora_dropout=lcfg.dropout, target_modules=targets,
                      bias=lcfg.bias, task_type="CAUSAL_LM")
    try:
        model = get_peft_model(model, lora)
    except ValueError as e:
        raise ValueError(f"LoRA target modules {lcfg.target_modules} do not match the model's layers: set "
                         "lora.target_modules to names of its linear layers (or ['all-linear'])") from e
    return model, tokenizer


# ---------------------------------------------------------------------- setup
@dataclass
class _Run:
    """Everything one training run holds (built by :func:`_setup`)."""

    config: TrainConfig
    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    objective: Objective
    stream: ExampleStream
    collate: Any
    train_size: int
    val_set: list
    data_info: dict
    total: int
    dtype: str
    state: TrainState
    resume_from: Path | None

    @property
    def world(self) -> int:
        return self.accelerator.num_processes


def _setup(config: TrainConfig) -> _Run:
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, GradientAccumulationPlugin, set_seed

    accelerator = Accelerator(gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=config.grad_accum))
    on_cpu = accelerator.device.type == "cpu"
    if on_cpu or config.num_threads:  # never more threads than this process's share of the CPUs
        from codistill.cpu import TORCH_ENV, default_threads

        world = accelerator.state.num_processes if on_cpu else 1
        # under DDP the other busy processes are this run's own ranks: do not count them as load
        torch.set_num_threads(config.num_threads or max(1, default_threads(
            None, measure=world == 1, physical=True, env_names=TORCH_ENV, what="torch threads") // world))
    dist_type = accelerator.distributed_type
    sharded = dist_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    objective = make_objective(config)
    problem = objective.sharding_problem() if sharded else None
    if problem:
        raise ValueError(problem)
    if dist_type == DistributedType.DEEPSPEED:  # codistill's config decides these, not the yaml
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        ds["train_micro_batch_size_per_gpu"] = config.batch_size
        ds["gradient_accumulation_steps"] = config.grad_accum
        ds["gradient_clipping"] = config.optim.max_grad_norm or 0.0  # DeepSpeed clips itself

    resume_from = resume_point(config)  # checked before anything expensive
    dtype = resolve_dtype(config.dtype, accelerator.device)
    set_seed(config.seed)
    with accelerator.main_process_first():  # converts a packaged model once, not per process
        model, tokenizer = load_student(config, dtype)
    if not sharded:  # before the "self" encoder takes references to the weights
        model.to(accelerator.device)
    train_set, val_set, data_info = objective.data(tokenizer)
    per_epoch = steps_per_epoch(len(train_set), config.batch_size, config.grad_accum, accelerator.num_processes)
    total = config.max_steps or max(1, math.ceil(config.epochs * per_epoch))
    with accelerator.main_process_first():  # builds caches (the structure bridge) once
        objective.setup(model, tokenizer, accelerator.device, total)

    ocfg = config.optim
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    extra = objective.extra_parameters()
    if extra:
        groups.append({"params": extra})
    optimizer = torch.optim.AdamW(groups, lr=ocfg.lr, betas=ocfg.betas, eps=ocfg.eps, weight_decay=ocfg.weight_decay)
    # not passed to prepare(): Accelerate's scheduler wrapper steps once per process
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, ocfg.warmup_steps, ocfg.schedule))
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    state = TrainState()
    accelerator.register_for_checkpointing(scheduler, state)
    if objective.state_dict():  # a stateless objective adds no file to the checkpoints
        accelerator.register_for_checkpointing(objective)
    register_adapter_hooks(accelerator)
    return _Run(config, accelerator, model, optimizer, scheduler, objective,
                ExampleStream(train_set, config.seed, config.data.order), objective.collator(tokenizer),
                len(train_set), val_set, data_info, total, dtype, state, resume_from)


# ---------------------------------------------------------------------- one step, validation
def _optimizer_step(run: _Run) -> dict:
    """One optimizer step (all micro-batches of all processes); returns its log record."""
    cfg, acc, state, objective = run.config, run.accelerator, run.state, run.objective
    t0, c0 = time.perf_counter(), time.process_time()
    s = state.step
    micro = [run.collate(b) for b in run.stream.micro_batches(s, cfg.batch_size, cfg.grad_accum, run.world,
                                                              acc.process_index)]
    totals = _totals(acc, objective, micro)
    scale = cfg.grad_accum * run.world  # Accelerate divides by grad_accum, DDP/FSDP/ZeRO average: undo both
    parts = []
    for batch in micro:
        batch = {k: v.to(acc.device) for k, v in batch.items()}
        with acc.accumulate(run.model):
            loss, loss_parts = objective.loss(run.model, batch, s, totals)
            acc.backward(loss * scale)
        parts.append({"loss": float(loss.detach())} | loss_parts)
    extra = objective.extra_parameters()
    if extra and run.world > 1:  # not wrapped by DDP: average their gradients here
        for p in extra:
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= run.world
    grad_norm = None
    if cfg.optim.max_grad_norm is not None and acc.sync_gradients:
        norm = acc.clip_grad_norm_(list(run.model.parameters()) + extra, cfg.optim.max_grad_norm)
        grad_norm = None if norm is None else float(norm)
    lr = run.optimizer.param_groups[0]["lr"]
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.examples_seen += totals["examples"]
    state.tokens_seen += totals["tokens"]
    sums = _over_processes(acc, _sum_parts(parts))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "step": state.step, "epoch": round(state.examples_seen / run.train_size, 4), "loss": sums.pop("loss"),
        **objective.summarize(sums, totals), **objective.weights(s), "lr": lr, "grad_norm": grad_norm, **totals,
        "tokens_per_s": totals["tokens"] / wall, "step_s": wall, "step_cpu_s": cpu, "peak_rss_gib": peak_rss_gib(),
    }


@torch.no_grad()
def evaluate(run: _Run) -> dict:
    """Validation losses (no dropout, no gradient) after step ``state.step``, at the weights of
    that step: the objective's loss over the whole validation set as one batch. Every process
    runs the same number of batches (a process whose shard is exhausted runs a throw-away
    batch); counts and sums are reduced over processes."""
    acc, cfg, objective, examples = run.accelerator, run.config, run.objective, run.val_set
    world, rank, step = acc.num_processes, acc.process_index, max(run.state.step - 1, 0)
    shard = examples[rank::world]
    n_batches = max(1, math.ceil(math.ceil(len(examples) / world) / cfg.batch_size))
    chunks = [shard[i * cfg.batch_size:(i + 1) * cfg.batch_size] for i in range(n_batches)]
    batches = [run.collate(chunk or examples[:1]) for chunk in chunks]
    real = [bool(chunk) for chunk in chunks]
    totals = _totals(acc, objective, batches, real)
    parts = []
    was_training = run.model.training
    run.model.eval()
    try:
        for batch in batches:
            loss, loss_parts = objective.loss(run.model, {k: v.to(acc.device) for k, v in batch.items()}, step, totals)
            parts.append({"loss": float(loss)} | loss_parts)
    finally:
        run.model.train(was_training)
    sums = _over_processes(acc, _sum_parts(parts, real))
    return {"split": "val", "step": run.state.step, "loss": sums.pop("loss"), **objective.summarize(sums, totals),
            **objective.weights(step), "examples": totals["examples"]}


# ---------------------------------------------------------------------- the entry point
def train(config: TrainConfig) -> dict:
    """Train a LoRA adapter on the teach stage's examples; returns a summary dict.

    Keys: output_dir, adapter_dir (None when stopped early), steps, total_steps, dtype, device,
    num_processes, structure, data (build statistics and split sizes), last (the last train log
    record), val (the last validation record or None), step_times_s (this invocation),
    tokens_per_s (mean after the first step), peak_rss_gib, wall_s, resumed_from, stopped_early,
    adapter_sha256 / adapter_abs_sum (fingerprint of this process's adapter weights).
    """
    t_start = time.perf_counter()
    config = TrainConfig.model_validate(config.model_dump() if isinstance(config, TrainConfig) else config)
    output_dir = Path(config.output_dir)
    run = _setup(config)
    acc, state, objective = run.accelerator, run.state, run.objective
    format_record = run.data_info.get("format_record")
    if run.resume_from is not None:
        acc.load_state(str(run.resume_from))
        if acc.is_main_process:
            truncate_log(output_dir / LOG_FILE, state.step)
    elif acc.is_main_process and (output_dir / LOG_FILE).exists():
        (output_dir / LOG_FILE).unlink()  # a fresh run starts a fresh log
    if acc.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(output_dir / CONFIG_FILE, config.resolved())
    acc.wait_for_everyone()

    def validate() -> dict:
        rec = evaluate(run)
        logs.record(rec)
        return rec

    stop_at = min(run.total, config.stop_at_step or run.total)
    logs = TrainLogs(config, output_dir, acc.is_main_process, run.total, state.step, logger=log,
                     progress_fields=objective.progress_fields)
    step_times: list[float] = []
    rates: list[float] = []
    last = val = adapter_dir = None
    finished = False
    try:
        while state.step < stop_at:
            rec = _optimizer_step(run)
            step_times.append(rec["step_s"])
            rates.append(rec["tokens_per_s"])
            logged = state.step % config.logging.log_every == 0 or state.step == stop_at
            if logged:
                last = rec
                logs.record(rec)
            logs.advance(rec if logged else None)
            if run.val_set and config.eval_every and state.step % config.eval_every == 0 and state.step < run.total:
                val = validate()
            interrupted = state.step == stop_at and stop_at < run.total
            if interrupted or (config.save_every and state.step % config.save_every == 0):
                save_checkpoint(acc, run.model, config, state, output_dir, format_record=format_record,
                                **objective.weights(state.step - 1), lr=rec["lr"])
        stopped = state.step < run.total
        if not stopped:
            if run.val_set:
                val = validate()
            adapter_dir = save_final(acc, run.model, config, output_dir, format_record=format_record)
            if acc.is_main_process:
                objective.export(output_dir)
        finished = True
    finally:
        logs.close(ok=finished)
    timed = rates[1:] or rates
    checksum, abs_sum = adapter_checksum(acc.unwrap_model(run.model))
    summary = {
        "output_dir": str(output_dir), "adapter_dir": None if adapter_dir is None else str(adapter_dir),
        "steps": state.step, "total_steps": run.total, "dtype": run.dtype, "device": str(acc.device),
        "num_processes": run.world, "structure": config.structure.enabled, "data": run.data_info,
        "last": last, "val": val, "step_times_s": step_times,
        "tokens_per_s": sum(timed) / len(timed) if timed else None, "peak_rss_gib": peak_rss_gib(),
        "wall_s": time.perf_counter() - t_start,
        "resumed_from": None if run.resume_from is None else str(run.resume_from), "stopped_early": stopped,
        "adapter_sha256": checksum, "adapter_abs_sum": abs_sum,
    }
    if acc.is_main_process:
        atomic_write_json(output_dir / "train_summary.json", summary)
    acc.wait_for_everyone()
    acc.free_memory()
    return summary
