"""Checkpoints, resume and the final adapter of the train stage (the loop is in trainer.py).

``output_dir/checkpoints/step-XXXXXXXX/`` is written to a hidden temporary folder and renamed
when complete: ``adapter/`` (plain peft folder), Accelerate's state (optimizer, RNG states of
every process, and the registered objects: scheduler, :class:`TrainState`, and the objective
when it has state), ``trainer_state.json`` (step, data position, the objective's weights such as
α and β, lr), ``train_config.json`` and ``codistill_format.json``. Resuming loads the newest;
the config must be the same up to ``RESUME_FREE_FIELDS``.

The final adapter is ``output_dir/adapter`` (load it with ``PeftModel.from_pretrained(base,
output_dir / "adapter")``), with ``train_config.json`` and ``codistill_format.json`` beside the
peft files, replaced atomically.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from codistill.store import atomic_write_json, replace_dir, sha256_file, sha256_json
from codistill.training.config import RESUME_FREE_FIELDS, TrainConfig

CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
CONFIG_FILE = "train_config.json"
STATE_FILE = "trainer_state.json"


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


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = checkpoint_dirs(output_dir)
    return found[-1] if found else None


# fields that name a file or folder: the same content under another spelling of the path (relative
# vs absolute, a run folder moved or copied) is the same config
PATH_FIELDS = {"data.train_file", "init_adapter"}


def _tree_digest(path: Path) -> str:
    if path.is_file():
        return sha256_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return sha256_json([[str(p.relative_to(path)), sha256_file(p)] for p in files])


def _same_path(a: Any, b: Any) -> bool:
    if not (isinstance(a, str) and isinstance(b, str)):
        return a == b
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.resolve() == pb.resolve():
        return True
    return pa.exists() and pb.exists() and _tree_digest(pa) == _tree_digest(pb)


def _config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(saved) | set(current)):
        if not prefix and key in RESUME_FREE_FIELDS | {"stop_at_step"}:
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _config_differences(a, b, prefix + key + ".")
        elif prefix + key in PATH_FIELDS and a != b and _same_path(a, b):
            continue
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


def register_adapter_hooks(accelerator: Any) -> None:
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


def _write_records(folder: Path, config: TrainConfig, format_record: dict | None) -> None:
    """``train_config.json`` and, when the data gave one, ``codistill_format.json`` (the student
    format and its training target lengths, which ``eval`` checks) into ``folder``."""
    atomic_write_json(folder / CONFIG_FILE, config.resolved())
    if format_record is not None:
        from codistill.formats import FORMAT_FILE

        atomic_write_json(folder / FORMAT_FILE, format_record)


def save_checkpoint(accelerator: Any, model: Any, config: TrainConfig, state: TrainState, output_dir: Path,
                    format_record: dict | None = None, **info: Any) -> Path:
    """Write ``checkpoints/step-XXXXXXXX`` atomically (temporary folder, then rename); all
    processes must call it. ``info`` goes into trainer_state.json. Keeps the newest
    ``keep_checkpoints``."""
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
        _write_records(tmp, config, format_record)
        atomic_write_json(tmp / STATE_FILE, state.state_dict() | {"data_position": state.step, **info,
                                                                  "saved_at": time.time()})
        replace_dir(tmp, final)
        if config.keep_checkpoints:
            for old in checkpoint_dirs(output_dir)[:-config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def save_final(accelerator: Any, model: Any, config: TrainConfig, output_dir: Path,
               format_record: dict | None = None) -> Path:
    """The final adapter as a plain peft folder ``output_dir/adapter`` (+ train_config.json and
    codistill_format.json), replaced atomically; all processes must call it."""
    dest = Path(output_dir) / ADAPTER
    tmp = _atomic_dir(dest)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    _save_adapter(accelerator, model, tmp)
    if accelerator.is_main_process:
        _write_records(tmp, config, format_record)
        replace_dir(tmp, dest)
    accelerator.wait_for_everyone()
    return dest
