"""Training objectives: the loss of a paradigm, behind the small interface in ``base.py``.

``OBJECTIVES`` maps a name to (module, class), imported only when chosen (torch stays out of
``import codistill``). :func:`objective_name` chooses from the ``TrainConfig`` fields that exist
already, so recipes and stage keys do not change:

- ``structure``: token cross-entropy + β·(1 − cos) on the α/β curriculum (``structure.py``);
  with ``structure.enabled = false`` the token-only arm (α = 1, β = 0);
- ``hidden``: ``structure.mode = "hidden"``, a trained projection of the hidden states
  (``hidden.py``);
- ``dpo``: ``dpo`` set, DPO on chosen/rejected pairs against the starting student (``dpo.py``).

Adding one, e.g. DPO: a new file ``objectives/dpo.py`` with an :class:`~.base.Objective`
subclass (its ``data`` builds chosen/rejected pairs and its ``collator`` pads them; ``loss``
returns the micro-batch's share of the DPO loss, normalised by the pair count in ``totals``; a
frozen reference model is built in ``setup`` and, since it does not train, stays out of
``extra_parameters`` and ``state_dict``), plus one line in ``OBJECTIVES``; then a way to choose
it in :func:`objective_name` (a new config field, which enters the stage key).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codistill.training.config import TrainConfig
    from codistill.training.objectives.base import Objective

OBJECTIVES: dict[str, tuple[str, str]] = {
    "structure": ("codistill.training.objectives.structure", "StructureObjective"),
    "hidden": ("codistill.training.objectives.hidden", "HiddenStructureObjective"),
    "dpo": ("codistill.training.objectives.dpo", "DPOObjective"),
}


def objective_name(config: TrainConfig) -> str:
    """The registry name the config asks for."""
    if config.dpo is not None:
        return "dpo"
    s = config.structure
    return "hidden" if s.enabled and s.mode == "hidden" else "structure"


def make_objective(config: TrainConfig) -> Objective:
    """The config's objective, constructed (cheap: encoders and heads load in ``setup``)."""
    module, cls = OBJECTIVES[objective_name(config)]
    return getattr(importlib.import_module(module), cls)(config)
