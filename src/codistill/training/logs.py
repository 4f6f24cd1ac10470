"""What a training run writes about itself besides checkpoints (main process only).

``train_log.jsonl``: one record per ``log_every`` steps (the loop's fields: step, epoch, loss,
lr, grad_norm, the step's counts, tokens_per_s, step_s, step_cpu_s, peak_rss_gib; and the
objective's, e.g. token_loss, structure_loss, alpha, beta); validation records have
``"split": "val"``. TensorBoard scalars under ``tensorboard/``. Progress
(:class:`codistill.progress.Progress`): a rich bar in a terminal, and a logged line with steps
done/total, steps/s, ETA and the loss at least every 30 s (``logging.progress`` turns the bar
off, not the lines).
"""

from __future__ import annotations

import logging
from pathlib import Path

from codistill.store import JsonlAppender, read_jsonl, write_jsonl
from codistill.training.config import TrainConfig

LOG_FILE = "train_log.jsonl"


class TrainLogs:
    """JSONL + TensorBoard + progress. ``progress_fields``: record keys shown on the progress
    line after the loss, with their labels (the objective's); the lines go to ``logger``."""

    def __init__(self, config: TrainConfig, output_dir: Path, active: bool, total: int, start: int, *,
                 logger: logging.Logger, progress_fields: dict[str, str]):
        self.active = active
        self.fields = progress_fields
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
        from codistill.progress import PROGRESS_FILE, Progress

        # the bar only with logging.progress; the lines always (they go through logging)
        self.progress = Progress("train", total, unit="steps", done=start, logger=logger,
                                 bar=None if lcfg.progress else False, echo=lcfg.progress,
                                 state=output_dir / PROGRESS_FILE if active else None).start()

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
            info = None
            if rec is not None:
                shown = "".join(f" {label} {rec[key]:.3f}" for key, label in self.fields.items())
                info = f"loss {rec['loss']:.4f}{shown} lr {rec['lr']:.2e}"
            self.progress.advance(1, info=info)

    def close(self, ok: bool = True) -> None:
        if self.progress is not None:
            self.progress.close(ok=ok)
        if self.jsonl is not None:
            self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


def truncate_log(path: Path, step: int) -> None:
    """Keep only records up to ``step`` (a resumed run rewrites what came after its checkpoint)."""
    if not path.is_file():
        return
    write_jsonl(path, [r for r in read_jsonl(path, resumable=True) if int(r.get("step", 0)) <= step])
