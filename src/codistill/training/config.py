"""Configuration of the train stage: one pydantic model, sub-configs nested (no torch here).

``TrainConfig`` holds everything ``codistill.training.trainer.train`` needs; every field has help
text (``TrainConfig.model_json_schema()`` lists them). Defaults follow the paper (LoRA rank 32,
alpha 32, dropout 0.1, AdamW, lr 5e-5, 20 warm-up steps) where it says something, and plain SFT
practice where it does not. The resolved config is saved next to every checkpoint and the final
adapter (``train_config.json``); a YAML/JSON recipe loads with ``TrainConfig.from_file``.

``dtype="auto"`` resolves to bfloat16 on a CUDA device that supports it and on a CPU with native
bf16 instructions (AVX512-BF16/AMX), otherwise float32 (where bf16 is emulated and slow). Measured
on this 2-core EPYC (AVX512-BF16) for the 0.5B student, LoRA r=32 on all projections, batch 4 x
~180 tokens, 1 thread: a bf16 step takes 2-2.4x less time than an fp32 step (8.2 vs 19.4 CPU-s,
benchmarks/train_step.py with CODISTILL_BENCH_DTYPE=1) and peaks at 5.9 instead of 8.7 GiB RSS.
LoRA weights and optimizer states stay float32 in both cases.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from codistill.training.curriculum import StructureLossConfig

from codistill.formats import DEFAULT_SECTIONS, section_problems  # noqa: E402 - the format owns the layout
# Llama / Qwen2 / Mistral / Gemma names of the attention and MLP projections
DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DIFFICULTY_BUCKETS = ("easy", "medium", "hard", "unknown")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """How training examples are read and turned into token sequences (training/data.py)."""

    train_file: Path | None = Field(None, description="training examples from the teach stage: a JSONL file (optionally .gz) or a `datasets` folder written with save_to_disk")
    prompt_mode: Literal["auto", "chat", "completion"] = Field("auto", description="chat: the problem statement goes through the tokenizer's chat template as a user turn (with the generation prompt); completion: the statement verbatim (a newline appended if it lacks one); auto: chat when the tokenizer has a template. Use the same mode at evaluation")
    system_prompt: str | None = Field(None, description="chat mode: a system message (None keeps the template's default)")
    prompt_template: str = Field("{prompt}", description="the user turn (chat) or prompt text (completion): text with {prompt}, a packaged template (bare, evalplus) or a template file; see codistill.formats")
    format_name: str = Field("custom", description="the name of the student format these fields make (a recipe's `format:` sets it); stored with the adapter, shown in reports")
    stop_after_code: bool = Field(True, description="the format's eval-time stop: generation may end where the section after the code begins; sets which target tokens the budget guard counts")
    target_sections: list[str] = Field(default_factory=lambda: list(DEFAULT_SECTIONS), description="the target text, in order: each section is a template with exactly one of {context}, {code}, {tests}; a section whose field is empty is left out; the code section is required")
    section_separator: str = Field("\n\n", description="text between the sections that are present")
    append_eos: bool = Field(True, description="end the target with the tokenizer's eos token (the chat end-of-turn for chat models), which is trained on")
    max_length: int = Field(1024, ge=16, description="longest prompt + target in tokens")
    truncation: Literal["sections", "drop"] = Field("sections", description="an example longer than max_length: 'sections' shortens the tests, then the context (whole lines from the end; a section cut to nothing is left out) and never the prompt or the code, dropping the example only if prompt + code alone are too long; 'drop' drops it")
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of examples held out for validation, chosen by a hash of (seed, id): stable when examples are added or reordered")
    order: Literal["random", "easy_first", "weighted"] = Field("easy_first", description="order of examples within an epoch: random (seeded shuffle); easy_first (by difficulty bucket easy→medium→hard, unknown with medium, shuffled within a bucket; the seed review found prioritising easier problems helped); weighted (draw each epoch with replacement, probability ∝ difficulty_weights)")
    difficulty_weights: dict[str, float] = Field(default_factory=lambda: {"easy": 1.0, "medium": 0.7, "hard": 0.4, "unknown": 0.7}, description="order=weighted: sampling weight per difficulty bucket (easy, medium, hard, unknown); also stored on each example as `weight`")
    difficulty_map: dict[str, str] = Field(default_factory=dict, description="extra raw difficulty label → bucket (easy|medium|hard|unknown), checked before the built-in table (case-insensitive)")

    @model_validator(mode="after")
    def _check_sections(self) -> "DataConfig":
        problems = section_problems(self.target_sections, "target_sections")
        bad = [k for k in self.difficulty_weights if k not in DIFFICULTY_BUCKETS]
        bad += [v for v in self.difficulty_map.values() if v not in DIFFICULTY_BUCKETS]
        if bad:
            problems.append(f"difficulty buckets must be among {DIFFICULTY_BUCKETS}, got {bad}")
        if any(w < 0 for w in self.difficulty_weights.values()):
            problems.append("difficulty_weights must be >= 0")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class LoraSettings(_Strict):
    """The LoRA adapter (peft); the base model stays frozen."""

    r: int = Field(32, ge=1, description="LoRA rank (paper: 32)")
    alpha: int = Field(32, ge=1, description="LoRA alpha; the update is scaled by alpha / r (paper: 32)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout on the LoRA input (paper: 0.1)")
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGET_MODULES), description="names of the linear layers that get adapters; the default covers attention and MLP projections of Llama/Qwen/Mistral-style models ('all-linear' as the only entry: every linear layer but the output head)")
    bias: Literal["none", "lora_only", "all"] = Field("none", description="which biases train")


class OptimizerConfig(_Strict):
    """AdamW and the learning-rate schedule (one value per optimizer step)."""

    lr: float = Field(5e-5, gt=0.0, description="peak learning rate (paper: 5e-5)")
    warmup_steps: int = Field(20, ge=0, description="linear warm-up from 0 over this many optimizer steps (paper: 20)")
    schedule: Literal["constant", "linear", "cosine"] = Field("linear", description="after warm-up: constant, linear decay to 0, or cosine decay to 0 at the last step")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW decoupled weight decay")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas")
    eps: float = Field(1e-8, gt=0.0, description="Adam epsilon")
    max_grad_norm: float | None = Field(1.0, description="clip the gradient norm of each optimizer step to this (None: no clipping)")


class LoggingConfig(_Strict):
    """What a run writes about itself besides checkpoints."""

    log_every: int = Field(1, ge=1, description="write a log record every N optimizer steps")
    jsonl: bool = Field(True, description="append records to <output_dir>/train_log.jsonl (step, losses, α, β, lr, tokens/s, peak RSS)")
    tensorboard: bool = Field(True, description="write TensorBoard scalars to <output_dir>/tensorboard")
    progress: bool = Field(True, description="show a rich progress bar in a terminal (main process only); progress lines (steps, rate, ETA, loss) are logged either way")


class DPOSettings(_Strict):
    """Direct preference optimisation on chosen/rejected pairs (training/objectives/dpo.py): the
    pairs stage's ``pairs.jsonl`` is ``data.train_file``; ``epochs`` / ``max_steps`` set the passes."""

    beta: float = Field(0.1, gt=0.0, description="β: how far the policy may move from the reference (the student DPO starts from); for ipo the regularisation τ")
    loss_type: Literal["sigmoid", "ipo"] = Field("sigmoid", description="sigmoid: −log σ(β·((log π_c − log π_ref_c) − (log π_r − log π_ref_r))) (DPO); ipo: (Δ/n − 1/(2β))² with the log-ratios averaged per completion token (TRL's IPO)")
    max_pairs: int | None = Field(None, ge=1, description="pairs budget: train on at most this many pairs, chosen by the order of sha256(seed:id) (stable when pairs are added); None: all")


class TrainConfig(_Strict):
    """Everything the train stage needs. ``train(TrainConfig(...))`` runs it."""

    model: str = Field("qwen2.5-coder-0.5b", description="student: a packaged short name (qwen2.5-coder-0.5b, smollm2-135m, ...), an HF folder or a .gguf file (see codistill.models.resolve_model)")
    output_dir: Path = Field(Path("runs/train"), description="where checkpoints/, adapter/, train_log.jsonl, tensorboard/ and train_config.json go")
    data: DataConfig = Field(default_factory=DataConfig, description="training data and how it is tokenised")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA adapter")
    optim: OptimizerConfig = Field(default_factory=OptimizerConfig, description="optimizer and learning-rate schedule")
    structure: StructureLossConfig = Field(default_factory=StructureLossConfig, description="structure-aware loss L = α·L_token + β·L_s and its α/β curriculum; enabled=false trains on the token loss alone (α = 1, β = 0)")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="logs")
    batch_size: int = Field(4, ge=1, description="examples per micro-batch on each process")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step; the loss is normalised by the target tokens (and examples) of the whole accumulated batch across processes")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps to train; None: epochs × steps per epoch")
    epochs: float = Field(1.0, gt=0.0, description="passes over the training examples when max_steps is None")
    seed: int = Field(0, description="seed for LoRA initialisation, data order, dropout and the validation split")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="base-model weight dtype; auto: bfloat16 where the hardware has native bf16 (CUDA, or a CPU with AVX512-BF16/AMX: faster here), else float32")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass (less memory, ~30% slower)")
    save_every: int = Field(0, ge=0, description="write a resumable checkpoint every N optimizer steps (0: none; the final adapter is always saved)")
    keep_checkpoints: int | None = Field(2, ge=1, description="keep only the newest N checkpoints (None: all)")
    eval_every: int = Field(0, ge=0, description="validation losses every N steps (needs data.val_fraction > 0; 0: only at the end)")
    stop_at_step: int | None = Field(None, ge=1, description="end this invocation after this optimizer step, writing a checkpoint there (for time-sliced jobs; resume=True continues); the schedule still spans max_steps")
    resume: bool = Field(False, description="continue from the newest checkpoint in output_dir/checkpoints (same config required); starts fresh when there is none")
    dpo: DPOSettings | None = Field(None, description="train with DPO on the pairs in data.train_file (the pairs stage's pairs.jsonl) instead of SFT; structure.* is not used then. None: SFT")
    init_adapter: Path | None = Field(None, description="start from this LoRA adapter (a peft folder, e.g. an SFT arm's adapter/) instead of a fresh one; its own LoRA settings are kept (lora.* is not used). With dpo, the reference model is this starting student")
    num_threads: int | None = Field(None, ge=1, description="CPU threads for torch; default: this process's share of the physical cores it may use, less those other processes keep busy at start (codistill.cpu.default_threads; CODISTILL_THREADS or OMP_NUM_THREADS set it too). On a machine shared with other busy jobs, 1 can be several times faster (measured 4-9x on a loaded 2-core VM: threads wait for each other at every operation when a core is taken)")

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.structure.enabled and self.structure.mode == "hidden" and self.structure.encoder == "self":
            raise ValueError("structure.mode='hidden' compares with an encoder embedding; use encoder 'minilm' or a folder")
        return self

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> "TrainConfig":
        """Load a YAML (.yaml/.yml) or JSON recipe; keyword overrides replace top-level keys."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        if "train" in data and isinstance(data["train"], dict) and "model" not in data:
            data = data["train"]  # a whole experiment recipe: take its train section
        data.update(overrides)
        return cls.model_validate(data)

    def resolved(self) -> dict:
        """JSON-ready dict of every field (what is saved beside checkpoints and adapters); the
        fields of :data:`ABSENT_WHEN_UNSET` are left out while unset, so records written before
        they existed still match (resume compares these dicts)."""
        return _drop_unset(self.model_dump(mode="json"))

    def key(self) -> dict:
        """The stage's identity: every setting that changes the update. The fields in
        ``RESUME_FREE_FIELDS`` (saving, logging, threads, resume/stop) are out, and so is the
        training file's path (a recipe keys the file by its content hash)."""
        d = _drop_unset(self.model_dump(mode="json", exclude=RESUME_FREE_FIELDS))
        d["data"]["train_file"] = None
        if "init_adapter" in d:
            d["init_adapter"] = "given"  # like the training file: a recipe keys the adapter by its content
        return d


# fields added after keys were first written: absent from key() and resolved() while None, so the
# keys and saved configs of runs that do not use them stay what they were
ABSENT_WHEN_UNSET = ("dpo", "init_adapter")


def _drop_unset(d: dict) -> dict:
    for name in ABSENT_WHEN_UNSET:
        if d.get(name) is None:
            d.pop(name, None)
    return d


# fields that may change between a run and its resumption without breaking equivalence
RESUME_FREE_FIELDS = {"resume", "stop_at_step", "logging", "save_every", "keep_checkpoints", "eval_every", "num_threads",
                      "output_dir", "gradient_checkpointing"}  # none of these changes the update (checkpointing replays the RNG)
