"""The interface between the generic training loop (``training/trainer.py``) and an objective.

The loop owns everything a paradigm does not change: Accelerate, the optimiser and its
learning-rate schedule, the data position, checkpoints and resume, logs and progress. An
:class:`Objective` owns what it does change: which examples are streamed and how they are
collated, the loss of a micro-batch, the settings its schedule gives each step, parameters of
its own that train with the adapter (a projection head), and any state a checkpoint must keep.

One optimizer step ``s`` as the loop drives it:

1. ``counts(batch)`` of every micro-batch of every process are summed (one all-reduce) into
   ``totals`` before any forward pass;
2. ``loss(model, batch, s, totals)`` per micro-batch returns that micro-batch's *share* of the
   step's loss, normalised by ``totals`` (so the summed micro-batch gradients equal the gradient
   of one big batch, whatever the accumulation and the number of processes), and float ``parts``
   for the logs;
3. the parts are summed over micro-batches and processes and ``summarize(sums, totals)`` turns
   them into log fields, next to ``weights(s)`` (e.g. α and β).

Validation runs the same ``counts`` → ``loss`` → ``summarize`` over the whole validation set as
one batch, at the step just taken.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codistill.training.config import TrainConfig
from codistill.training.data import (
    IGNORE_INDEX,
    Collator,
    build_examples,
    format_record,
    load_records,
    split_train_val,
)

if TYPE_CHECKING:
    from torch import Tensor


class Objective:
    """A training paradigm's loss and what comes with it; the defaults fit SFT examples.

    Subclasses implement :meth:`loss` and usually :meth:`summarize`; the rest have defaults for
    an objective with no parameters or state of its own.
    """

    #: log-record keys shown on the progress line after the loss, with their labels
    progress_fields: dict[str, str] = {}

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.total_steps = 1

    # ------------------------------------------------------------------ before training
    def sharding_problem(self) -> str | None:
        """Why this objective cannot run under FSDP/DeepSpeed, or None when it can; the loop
        asks before loading the model, so a bad combination fails at once."""
        return None

    def data(self, tokenizer: Any) -> tuple[list, list, dict]:
        """(training examples, validation examples, build statistics for the summary; a
        ``format_record`` there is written beside the adapter as ``codistill_format.json``).
        Default: the teach stage's SFT examples (training/data.py)."""
        cfg = self.config
        if cfg.data.train_file is None:
            raise ValueError("data.train_file is not set: point it at the teach stage's training examples (JSONL or datasets folder)")
        records = load_records(cfg.data.train_file)
        examples, stats = build_examples(records, tokenizer, cfg.data)
        fmt_record = format_record(records, tokenizer, cfg.data)
        train_set, val_set = split_train_val(examples, cfg.data.val_fraction, cfg.seed)
        if not train_set:
            raise ValueError(f"no training examples left from {cfg.data.train_file} ({stats.as_dict()}): "
                             "raise data.max_length or check the records")
        info = stats.as_dict() | {"train": len(train_set), "val": len(val_set), "format_record": fmt_record}
        return train_set, val_set, info

    def collator(self, tokenizer: Any) -> Callable[[Sequence[Any]], dict]:
        """Examples → one micro-batch of tensors (default: right-padded SFT tensors)."""
        return Collator(tokenizer.pad_token_id)

    def setup(self, model: Any, tokenizer: Any, device: Any, total_steps: int) -> None:
        """Build what the loss needs once the student is loaded and on its device (encoders,
        heads). The loop runs it on the main process first, so caches are built once."""
        self.total_steps = total_steps

    # ------------------------------------------------------------------ each step
    def counts(self, batch: dict) -> dict[str, int]:
        """Counts of one micro-batch that depend on the data only. ``tokens`` (input tokens)
        and ``examples`` are required: the loop's throughput and epoch come from them; every
        count is logged with the step."""
        labels = batch["labels"]
        return {"tokens": int(batch["attention_mask"].sum()),
                "target_tokens": int((labels[:, 1:] != IGNORE_INDEX).sum()),
                "examples": len(labels)}

    def loss(self, model: Any, batch: dict, step: int, totals: dict[str, int]) -> tuple[Tensor, dict[str, float]]:
        """(this micro-batch's share of the loss of optimizer step ``step`` (0-based), float
        parts to sum for the logs). ``totals``: :meth:`counts` summed over the step's
        micro-batches and processes; the shares must add up to the loss of the whole step."""
        raise NotImplementedError

    def weights(self, step: int) -> dict[str, float]:
        """What the objective's schedule sets at ``step`` (e.g. α, β): logged with every
        record and saved in each checkpoint's trainer_state.json."""
        return {}

    def summarize(self, sums: dict[str, float], totals: dict[str, int]) -> dict[str, Any]:
        """Log fields from the parts of :meth:`loss` summed over micro-batches and processes."""
        return {}

    # ------------------------------------------------------------------ what it trains and keeps
    def extra_parameters(self) -> list:
        """Parameters outside the model that the optimiser trains too (e.g. a projection
        head); the loop averages their gradients over processes and clips them with the model's."""
        return []

    def state_dict(self) -> dict:
        """State a checkpoint must keep. Non-empty after :meth:`setup`: the objective is
        registered with Accelerate's checkpointing, and resume calls :meth:`load_state_dict`."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` in place (the optimiser holds the parameter objects)."""

    def export(self, output_dir: Path) -> None:
        """Files of the objective's own beside the final adapter (main process only)."""


def target_positions(labels: Tensor) -> Tensor:
    """Positions ``t`` whose logits predict a target (``labels[:, t + 1] != -100`` in some row),
    as a contiguous range: the vocabulary projection is computed only there."""
    import torch

    hits = (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
    if hits.numel() == 0:
        return torch.arange(0, 1, device=labels.device)
    return torch.arange(int(hits[0]), int(hits[-1]) + 1, device=labels.device)


def forward_at_targets(model: Any, batch: dict, *, hidden_states: bool = False) -> tuple[Any, Tensor, Tensor]:
    """(model output, logits ``[B, K, V]`` at the target positions, those positions ``keep``):
    ``logits[:, j]`` predicts ``labels[:, keep[j] + 1]``. Projecting to the vocabulary only
    there (``logits_to_keep``) saves the prompt's share of the largest matmul."""
    keep = target_positions(batch["labels"])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False,
              "output_hidden_states": hidden_states}
    try:
        out = model(**inputs, logits_to_keep=keep)
        return out, out.logits, keep
    except TypeError as e:  # an architecture without logits_to_keep: full logits, then slice
        if "logits_to_keep" not in str(e):
            raise
        out = model(**inputs)
        return out, out.logits[:, keep], keep
