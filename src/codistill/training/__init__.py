"""Training pieces: structure-aware loss, the vocabulary bridge, the α/β curriculum.

Importing this package is cheap: torch-based names load on first use.

- ``combined_loss``, ``token_cross_entropy``, ``StructureEncoder``, ``load_structure_encoder``:
  codistill.training.structure_loss. The loss function itself is imported from its module,
  ``from codistill.training.structure_loss import structure_loss`` (the package attribute of
  that name is the submodule once it is imported).
- ``build_bridge``: codistill.training.bridge
- ``train``, ``TrainConfig``: the LoRA trainer (codistill.training.trainer / .config; its
  checkpoints and logs in .checkpoints / .logs)
- objectives (the loss of a paradigm, chosen from the config): codistill.training.objectives
- ``CurriculumConfig``, ``StructureLossConfig``, ``loss_weights``, ``average_beta``:
  codistill.training.curriculum (pydantic only, no torch)
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "combined_loss": "codistill.training.structure_loss",
    "token_cross_entropy": "codistill.training.structure_loss",
    "count_structure_examples": "codistill.training.structure_loss",
    "make_hidden_projection": "codistill.training.structure_loss",
    "StructureEncoder": "codistill.training.structure_loss",
    "load_structure_encoder": "codistill.training.structure_loss",
    "build_bridge": "codistill.training.bridge",
    "CurriculumConfig": "codistill.training.curriculum",
    "StructureLossConfig": "codistill.training.curriculum",
    "loss_weights": "codistill.training.curriculum",
    "average_beta": "codistill.training.curriculum",
    "train": "codistill.training.trainer",
    "TrainConfig": "codistill.training.config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
