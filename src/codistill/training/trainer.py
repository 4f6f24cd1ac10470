"""The train stage: LoRA SFT with the structure-aware loss, on Hugging Face Accelerate.

``train(config) -> dict`` is the single entry point (the CLI's ``train`` verb maps to it). It runs
unchanged in one process (CPU or one GPU) and under ``accelerate launch`` with DDP, FSDP or
DeepSpeed ZeRO-2 configs (examples/accelerate/).

Why a loop of our own and not TRL's ``SFTTrainer`` with a custom ``compute_loss``: the loss
needs, per optimizer step, (a) α/β from the curriculum, (b) the target-token *and* example counts
of the whole accumulated batch across processes (``combined_loss``; the Trainer passes only
``num_items_in_batch``), (c) a ``code_mask`` column the Trainer's collators drop, and resuming
must restore the data position exactly. Each is a fight with the Trainer's internals; in a
loop of our own they are explicit. The loop is also faster on CPU (benchmarks/train_step.py:
1.6-1.7x TRL's tokens per CPU-second on the 0.5B student, same settings): it computes the
vocabulary projection only at target positions (``logits_to_keep``), not over the prompt, and
skips TRL's per-step entropy/accuracy metrics.

Not tested here (no GPU on the development machine): FSDP and DeepSpeed runs. The DDP path is
tested with two CPU processes (tests/test_trainer.py).

One optimizer step ``s`` (0-based) of ``total`` steps:

1. every process takes its ``grad_accum`` micro-batches from :class:`~codistill.training.data.
   ExampleStream` (a pure function of seed and step: the data position is the step number);
2. target tokens and examples are counted over all micro-batches of all processes (one
   all-reduce), α, β = ``loss_weights(s, total)`` (token-only arm: α = 1, β = 0);
3. each micro-batch's ``combined_loss`` uses those totals, so the summed micro-batch gradients
   equal the gradient of one big batch; Accelerate divides by ``grad_accum`` and DDP/FSDP/ZeRO
   average over processes, so the loss handed to ``backward`` is multiplied by both to undo that;
4. clip, AdamW step, learning-rate schedule step (warm-up then linear/cosine/constant).

Checkpoints (``save_every``): ``output_dir/checkpoints/step-XXXXXXXX/`` written to a hidden
temporary folder and renamed when complete: ``adapter/`` (plain peft folder), optimizer,
scheduler, RNG states of every process, ``trainer_state.json`` (step, data position, α, β, lr)
and ``train_config.json``. ``resume=True`` loads the newest and continues with the same step
count, schedule, data order and dropout RNG. The final adapter is ``output_dir/adapter`` (load it
with ``PeftModel.from_pretrained(base, output_dir / "adapter")``).

Logs: ``train_log.jsonl`` (one record per ``log_every`` steps: step, loss, token_loss,
structure_loss, alpha, beta, lr, grad_norm, tokens_per_s, step_s, peak_rss_gib; validation
records have ``"split": "val"``), TensorBoard scalars under ``tensorboard/``, and progress
(:class:`codistill.progress.Progress`): a rich bar in a terminal, and a logged line with steps
done/total, steps/s, ETA and the loss at least every 30 s (``logging.progress`` turns the bar
off, not the lines).

Threads (CPU): ``num_threads`` when set, else :func:`codistill.cpu.default_threads` (the physical
cores this process may use, less those other processes keep busy at this moment), divided among
the processes of a multi-process CPU run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codistill.store import JsonlAppender, atomic_write_json, read_jsonl
from codistill.training.config import RESUME_FREE_FIELDS, TrainConfig
from codistill.training.curriculum import loss_weights
from codistill.training.data import (
    Collator,
    ExampleStream,
    build_examples,
    format_record,
    load_records,
    split_train_val,
    steps_per_epoch,
)
from codistill.training.structure_loss import (
    IGNORE_INDEX,
    combined_loss,
    count_structure_examples,
    load_structure_encoder,
    make_hidden_projection,
    structure_loss,
    token_cross_entropy,
)

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
LOG_FILE = "train_log.jsonl"
CONFIG_FILE = "train_config.json"
STATE_FILE = "trainer_state.json"


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


class TrainState:
    """Counters saved with every checkpoint (``register_for_checkpointing`` needs state_dict)."""

    def __init__(self) -> None:
        self.step = 0
        self.examples_seen = 0
        self.tokens_seen = 0

    def state_dict(self) -> dict:
        return {"step": self.step, "examples_seen": self.examples_seen, "tokens_seen": self.tokens_seen}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.examples_seen = int(state["examples_seen"])
        self.tokens_seen = int(state["tokens_seen"])


@dataclass
class LossParts:
    """One micro-batch: the loss to back-propagate and detached sums for logging."""

    loss: torch.Tensor
    ce_sum: float
    n_tokens: int
    ls_sum: float
    n_structure: int


# ---------------------------------------------------------------------- the loss of a micro-batch
def target_positions(labels: torch.Tensor) -> torch.Tensor:
    """Positions ``t`` whose logits predict a target (``labels[:, t + 1] != -100`` in some row),
    as a contiguous range: the vocabulary projection is computed only there."""
    hits = (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
    if hits.numel() == 0:
        return torch.arange(0, 1, device=labels.device)
    return torch.arange(int(hits[0]), int(hits[-1]) + 1, device=labels.device)


def micro_batch_loss(
    model: Any,
    batch: dict,
    *,
    config: TrainConfig,
    encoder: Any,
    alpha: float,
    beta: float,
    num_items: int | None = None,
    num_examples: int | None = None,
    projection: Any = None,
) -> LossParts:
    """``combined_loss`` of one micro-batch, normalised by the accumulated totals ``num_items``
    (target tokens) and ``num_examples``. With the structure loss off, ``L_s`` is 0."""
    labels, code_mask = batch["labels"], batch["code_mask"]
    keep = target_positions(labels)
    scfg = config.structure
    use_structure = scfg.enabled and encoder is not None
    hidden_mode = use_structure and scfg.mode == "hidden"
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False,
              "output_hidden_states": hidden_mode}
    try:
        out = model(**inputs, logits_to_keep=keep)
        logits = out.logits  # [B, K, V]: logits[:, j] predicts labels[:, keep[j] + 1]
    except TypeError as e:  # an architecture without logits_to_keep: full logits, then slice
        if "logits_to_keep" not in str(e):
            raise
        out = model(**inputs)
        logits = out.logits[:, keep]
    lab = labels[:, keep + 1]
    ce_sum, n_tok = token_cross_entropy(logits, lab, shift=False)
    if use_structure:
        cm = code_mask[:, keep + 1]
        if hidden_mode:
            ls = structure_loss(None, lab, cm, encoder=encoder, mode="hidden", target=scfg.target, shift=False,
                                reduction="none", hidden_states=out.hidden_states[-1][:, keep], projection=projection)
        else:
            ls = structure_loss(logits, lab, cm, encoder=encoder, mode=scfg.mode, k=scfg.k, target=scfg.target,
                                shift=False, reduction="none")
        n_struct = count_structure_examples(lab, cm, encoder, shift=False)
    else:
        ls = torch.zeros(labels.shape[0], device=logits.device)
        n_struct = 0
    loss = combined_loss(ce_sum, n_tok, ls, alpha, beta, num_items_in_batch=num_items,
                         num_examples_in_batch=num_examples)
    return LossParts(loss, float(ce_sum.detach()), n_tok, float(ls.detach().sum()), n_struct)


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


def count_targets(batch: dict) -> int:
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


# ---------------------------------------------------------------------- model and data
def load_student(config: TrainConfig, dtype: str) -> tuple[Any, Any]:
    """(peft model with a fresh LoRA adapter, tokenizer). LoRA weights are float32."""
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


def prepare_data(config: TrainConfig, tokenizer: Any) -> tuple[list, list, dict]:
    if config.data.train_file is None:
        raise ValueError("data.train_file is not set: point it at the teach stage's training examples (JSONL or datasets folder)")
    records = load_records(config.data.train_file)
    examples, stats = build_examples(records, tokenizer, config.data)
    fmt_record = format_record(records, tokenizer, config.data)
    train_set, val_set = split_train_val(examples, config.data.val_fraction, config.seed)
    if not train_set:
        raise ValueError(f"no training examples left from {config.data.train_file} ({stats.as_dict()}): "
                         "raise data.max_length or check the records")
    info = stats.as_dict() | {"train": len(train_set), "val": len(val_set), "format_record": fmt_record}
    return train_set, val_set, info


# ---------------------------------------------------------------------- checkpoints
def checkpoint_dirs(output_dir: Path) -> list[Path]:
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = checkpoint_dirs(output_dir)
    return found[-1] if found else None


def _config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(saved) | set(current)):
        if not prefix and key in RESUME_FREE_FIELDS | {"stop_at_step"}:
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _config_differences(a, b, prefix + key + ".")
        elif a != b:
            diffs.append(f"{prefix}{key}: checkpoint {a!r}, now {b!r}")
    return diffs


def resume_point(config: TrainConfig) -> Path | None:
    """The checkpoint to resume from (None: start fresh). A fresh run refuses an output_dir that
    holds checkpoints (they would mix with the new run's); resuming needs the same config up to
    ``RESUME_FREE_FIELDS`` (logging, saving, resume/stop settings)."""
    ckpt = latest_checkpoint(Path(config.output_dir))
    if ckpt is None:
        return None
    if not config.resume:
        raise ValueError(f"{config.output_dir} holds checkpoints of an earlier run (newest {ckpt.name}): pass "
                         "resume=True to continue it, or choose another output_dir (or remove its checkpoints/) "
                         "to start over")
    saved = json.loads((ckpt / CONFIG_FILE).read_text())
    diffs = _config_differences(saved, config.resolved())
    if diffs:
        raise ValueError(f"cannot resume from {ckpt}: the config differs in {'; '.join(diffs)}. "
                         "Use the same config, or a new output_dir to start over.")
    return ckpt


def _save_adapter(accelerator: Any, model: Any, dest: Path) -> None:
    """A plain peft folder at ``dest`` (main process writes; all processes must call)."""
    state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(str(dest), state_dict=state, safe_serialization=True)


def _atomic_dir(final: Path) -> Path:
    return final.parent / f".tmp-{final.name}"


# ---------------------------------------------------------------------- logging
class _Logs:
    """JSONL + TensorBoard + progress (a rich bar in a terminal, logged lines), main process only."""

    def __init__(self, config: TrainConfig, output_dir: Path, active: bool, total: int, start: int):
        self.active = active
        self.jsonl = self.tb = self.progress = None
        if not active:
            return
        lcfg = config.logging
        if lcfg.jsonl:
            self.jsonl = JsonlAppender(output_dir / LOG_FILE, fsync=False)
        if lcfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(output_dir / "tensorboard"), purge_step=start + 1 if start else None)
            except ImportError:
                self.tb = None
        from codistill.progress import Progress

        # the bar only with logging.progress; the lines always (they go through logging)
        self.progress = Progress("train", total, unit="steps", done=start, logger=log,
                                 bar=None if lcfg.progress else False, echo=lcfg.progress).start()

    def record(self, rec: dict) -> None:
        if not self.active:
            return
        if self.jsonl is not None:
            self.jsonl.append(rec)
        if self.tb is not None:
            split = rec.get("split", "train")
            for key, value in rec.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.tb.add_scalar(f"{split}/{key}", value, rec["step"])

    def advance(self, rec: dict | None) -> None:
        if self.progress is not None:
            info = None if rec is None else f"loss {rec['loss']:.4f} β {rec['beta']:.3f} lr {rec['lr']:.2e}"
            self.progress.advance(1, info=info)

    def close(self, ok: bool = True) -> None:
        if self.progress is not None:
            self.progress.close(ok=ok)
        if self.jsonl is not None:
            self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


def _truncate_log(path: Path, step: int) -> None:
    """Keep only records up to ``step`` (a resumed run rewrites what came after its checkpoint)."""
    if not path.is_file():
        return
    from codistill.store import write_jsonl

    write_jsonl(path, [r for r in read_jsonl(path, resumable=True) if int(r.get("step", 0)) <= step])


# ---------------------------------------------------------------------- the entry point
@dataclass
class _Run:
    """Everything one training run holds (built by :func:`_setup`)."""

    config: TrainConfig
    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    encoder: Any
    projection: Any
    stream: ExampleStream
    collate: Collator
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
    scfg = config.structure
    if sharded and scfg.enabled and (scfg.encoder == "self" or scfg.mode == "hidden"):
        raise ValueError("structure.encoder='self' and structure.mode='hidden' run in one process or under DDP only; "
                         "under FSDP/DeepSpeed use encoder 'minilm' or a separate encoder folder")
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
    train_set, val_set, data_info = prepare_data(config, tokenizer)
    per_epoch = steps_per_epoch(len(train_set), config.batch_size, config.grad_accum, accelerator.num_processes)
    total = config.max_steps or max(1, math.ceil(config.epochs * per_epoch))

    encoder = projection = None
    if scfg.enabled:
        with accelerator.main_process_first():  # builds/caches the bridge once
            encoder = load_structure_encoder(
                scfg.encoder, student_tokenizer=tokenizer, student_vocab_size=int(model.config.vocab_size),
                student_model=model, self_layers=scfg.self_layers, pooling=scfg.pooling, device=accelerator.device)
        if scfg.mode == "hidden":
            projection = make_hidden_projection(int(model.config.hidden_size), encoder.dim).to(accelerator.device)

    ocfg = config.optim
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    if projection is not None:
        groups.append({"params": list(projection.parameters())})
    optimizer = torch.optim.AdamW(groups, lr=ocfg.lr, betas=ocfg.betas, eps=ocfg.eps, weight_decay=ocfg.weight_decay)
    # not passed to prepare(): Accelerate's scheduler wrapper steps once per process
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, ocfg.warmup_steps, ocfg.schedule))
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    state = TrainState()
    accelerator.register_for_checkpointing(scheduler, state)
    if projection is not None:
        accelerator.register_for_checkpointing(projection)
    _register_adapter_hooks(accelerator)
    return _Run(config, accelerator, model, optimizer, scheduler, encoder, projection,
                ExampleStream(train_set, config.seed, config.data.order), Collator(tokenizer.pad_token_id),
                len(train_set), val_set, data_info, total, dtype, state, resume_from)


def _optimizer_step(run: _Run) -> dict:
    """One optimizer step (all micro-batches of all processes); returns its log record."""
    cfg, acc, state = run.config, run.accelerator, run.state
    t0, c0 = time.perf_counter(), time.process_time()
    s = state.step
    alpha, beta = loss_weights(s, run.total, cfg.structure.curriculum) if cfg.structure.enabled else (1.0, 0.0)
    micro = [run.collate(b) for b in run.stream.micro_batches(s, cfg.batch_size, cfg.grad_accum, run.world,
                                                              acc.process_index)]
    local = torch.tensor([sum(count_targets(b) for b in micro), sum(len(b["labels"]) for b in micro),
                          sum(int(b["attention_mask"].sum()) for b in micro)], device=acc.device)
    totals = acc.reduce(local, reduction="sum") if run.world > 1 else local
    n_items, n_examples, n_input = (int(x) for x in totals.tolist())
    scale = cfg.grad_accum * run.world  # Accelerate divides by grad_accum, DDP/FSDP/ZeRO average: undo both
    sums = torch.zeros(4, dtype=torch.float64)  # CE sum, L_s sum, examples with code, loss
    for batch in micro:
        batch = {k: v.to(acc.device) for k, v in batch.items()}
        with acc.accumulate(run.model):
            parts = micro_batch_loss(run.model, batch, config=cfg, encoder=run.encoder, alpha=alpha, beta=beta,
                                     num_items=n_items, num_examples=n_examples, projection=run.projection)
            acc.backward(parts.loss * scale)
        sums += torch.tensor([parts.ce_sum, parts.ls_sum, parts.n_structure, float(parts.loss.detach())],
                             dtype=torch.float64)
    extra = list(run.projection.parameters()) if run.projection is not None else []
    if extra and run.world > 1:  # the projection is not wrapped by DDP: average its gradient here
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
    state.examples_seen += n_examples
    state.tokens_seen += n_input
    if run.world > 1:
        sums = acc.reduce(sums.to(acc.device), reduction="sum").cpu()
    ce, ls_sum, n_struct, loss_sum = sums.tolist()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "step": state.step, "epoch": round(state.examples_seen / run.train_size, 4), "loss": loss_sum,
        "token_loss": ce / max(n_items, 1),
        "structure_loss": ls_sum / max(n_struct, 1) if cfg.structure.enabled else None,
        "alpha": alpha, "beta": beta, "lr": lr, "grad_norm": grad_norm,
        "tokens": n_input, "target_tokens": n_items, "examples": n_examples,
        "tokens_per_s": n_input / wall, "step_s": wall, "step_cpu_s": cpu, "peak_rss_gib": peak_rss_gib(),
    }


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
    acc, state = run.accelerator, run.state
    if run.resume_from is not None:
        acc.load_state(str(run.resume_from))
        if acc.is_main_process:
            _truncate_log(output_dir / LOG_FILE, state.step)
    elif acc.is_main_process and (output_dir / LOG_FILE).exists():
        (output_dir / LOG_FILE).unlink()  # a fresh run starts a fresh log
    if acc.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(output_dir / CONFIG_FILE, config.resolved())
    acc.wait_for_everyone()

    def validate() -> dict:
        rec = evaluate(run.model, run.val_set, config, run.encoder, run.collate, acc, state.step, run.total,
                       run.projection)
        logs.record(rec)
        return rec

    stop_at = min(run.total, config.stop_at_step or run.total)
    logs = _Logs(config, output_dir, acc.is_main_process, run.total, state.step)
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
                save_checkpoint(acc, run.model, config, state, output_dir,
                                alpha=rec["alpha"], beta=rec["beta"], lr=rec["lr"])
        stopped = state.step < run.total
        if not stopped:
            if run.val_set:
                val = validate()
            adapter_dir = save_final(acc, run.model, config, output_dir, run.projection,
                                     format_record=run.data_info.get("format_record"))
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


# ---------------------------------------------------------------------- evaluation and saving
@torch.no_grad()
def evaluate(model: Any, examples: list, config: TrainConfig, encoder: Any, collate: Collator, accelerator: Any,
             step: int, total: int, projection: Any = None) -> dict:
    """Validation losses (no dropout, no gradient) at ``step``: every process runs the same
    number of batches (a process whose shard is exhausted runs a throw-away batch), sums are
    reduced over processes."""
    world, rank = accelerator.num_processes, accelerator.process_index
    scfg = config.structure
    alpha, beta = loss_weights(max(step - 1, 0), total, scfg.curriculum) if scfg.enabled else (1.0, 0.0)
    shard = examples[rank::world]
    per_rank = math.ceil(len(examples) / world)
    n_batches = max(1, math.ceil(per_rank / config.batch_size))
    sums = torch.zeros(4, dtype=torch.float64)  # ce, tokens, L_s sum, examples with code
    n_examples = 0
    was_training = model.training
    model.eval()
    try:
        for i in range(n_batches):
            chunk = shard[i * config.batch_size:(i + 1) * config.batch_size]
            dummy = not chunk
            batch = {k: v.to(accelerator.device) for k, v in collate(chunk or examples[:1]).items()}
            parts = micro_batch_loss(model, batch, config=config, encoder=encoder, alpha=alpha, beta=beta,
                                     projection=projection)
            if not dummy:
                sums += torch.tensor([parts.ce_sum, parts.n_tokens, parts.ls_sum, parts.n_structure], dtype=torch.float64)
                n_examples += len(chunk)
    finally:
        model.train(was_training)
    packed = torch.cat([sums, torch.tensor([float(n_examples)], dtype=torch.float64)]).to(accelerator.device)
    if world > 1:
        packed = accelerator.reduce(packed, reduction="sum")
    ce, ntok, ls, n_struct, n_ex = packed.cpu().tolist()
    token_loss = ce / max(ntok, 1)
    rec = {"split": "val", "step": step, "token_loss": token_loss, "examples": int(n_ex),
           "structure_loss": ls / max(n_struct, 1) if scfg.enabled else None,
           "loss": alpha * token_loss + beta * ls / max(n_ex, 1), "alpha": alpha, "beta": beta}
    return rec


def _register_adapter_hooks(accelerator: Any) -> None:
    """Checkpoints hold the adapter (written by :func:`save_checkpoint`), not the frozen base:
    drop the full model state Accelerate would save, and load the adapter back instead. Under
    FSDP/DeepSpeed Accelerate saves and loads the (sharded) model itself and these do nothing."""

    def save_hook(models: list, weights: list, output_dir: str) -> None:
        weights.clear()

    def load_hook(models: list, input_dir: str) -> None:
        if not models:
            return
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        path = Path(input_dir) / ADAPTER / "adapter_model.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {input_dir} has no {ADAPTER}/adapter_model.safetensors: it is "
                                    "incomplete or not a codistill checkpoint; remove it to resume from an older one")
        peft_model = accelerator.unwrap_model(models[0])
        result = set_peft_model_state_dict(peft_model, load_file(str(path), device=str(accelerator.device)))
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise ValueError(f"adapter in {input_dir} does not fit the model (unexpected keys {unexpected[:3]} ...)")
        models.clear()

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def save_checkpoint(accelerator: Any, model: Any, config: TrainConfig, state: TrainState, output_dir: Path,
                    **info: Any) -> Path:
    """Write ``checkpoints/step-XXXXXXXX`` atomically (temporary folder, then rename); all
    processes must call it. Keeps the newest ``keep_checkpoints``."""
    root = Path(output_dir) / CHECKPOINTS
    final = root / f"step-{state.step:08d}"
    tmp = _atomic_dir(final)
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while saving
    accelerator.wait_for_everyone()
    _save_adapter(accelerator, model, tmp / ADAPTER)
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / CONFIG_FILE, config.resolved())
        if format_record is not None:
            from codistill.formats import FORMAT_FILE

            atomic_write_json(tmp / FORMAT_FILE, format_record)
        atomic_write_json(tmp / STATE_FILE, state.state_dict() | {"data_position": state.step, **info,
                                                                  "saved_at": time.time()})
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        if config.keep_checkpoints:
            for old in checkpoint_dirs(output_dir)[:-config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def save_final(accelerator: Any, model: Any, config: TrainConfig, output_dir: Path, projection: Any = None,
               format_record: dict | None = None) -> Path:
    """The final adapter as a plain peft folder ``output_dir/adapter`` (+ train_config.json, and
    codistill_format.json: the student format and its training target lengths, which ``eval``
    checks), replaced atomically."""
    dest = Path(output_dir) / ADAPTER
    tmp = _atomic_dir(dest)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    _save_adapter(accelerator, model, tmp)
    if accelerator.is_main_process:
        atomic_write_json(tmp / CONFIG_FILE, config.resolved())
        if format_record is not None:
            from codistill.formats import FORMAT_FILE

            atomic_write_json(tmp / FORMAT_FILE, format_record)
        if projection is not None:
            torch.save(projection.state_dict(), Path(output_dir) / "structure_projection.pt")
        old = Path(output_dir) / ".old-adapter"
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            os.rename(dest, old)
        os.rename(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return dest
