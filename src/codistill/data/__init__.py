"""Training-data preparation: load, budget, decontaminate, verify, augment (``codistill data``)."""

from __future__ import annotations

from codistill.data.decontam import DecontamConfig, EvalIndex
from codistill.data.prepare import PrepareConfig, SourceSpec, prepare_dataset, render_tests

__all__ = ["DecontamConfig", "EvalIndex", "PrepareConfig", "SourceSpec", "prepare_dataset", "render_tests"]
