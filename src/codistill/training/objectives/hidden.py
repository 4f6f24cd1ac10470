"""The hidden-state structure objective (``structure.mode = "hidden"``), DistillKit-style.

Same loss, curriculum and logs as the token + structure objective, but ``E_gen`` is a learned
linear projection of the student's last hidden states, mean-pooled over the code span, instead
of the encoder reading the student's distribution. It is weaker: the projection trains too and
can satisfy the cosine on its own without the student's predictions moving.

What the projection adds over its parent, each a hook of the loop: its parameters train with the
adapter (``extra_parameters``), its weights are kept in every checkpoint (``state_dict``) and
saved beside the final adapter as ``structure_projection.pt`` (``export``), and the forward pass
returns hidden states.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from codistill.training.config import TrainConfig
from codistill.training.objectives.structure import StructureObjective
from codistill.training.structure_loss import make_hidden_projection, structure_loss

PROJECTION_FILE = "structure_projection.pt"


class HiddenStructureObjective(StructureObjective):
    """``L = α·L_token + β·(1 − cos(E_gt, mean(P·h)))`` with a trainable projection ``P``."""

    needs_hidden_states = True

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.projection: torch.nn.Linear | None = None

    def sharding_problem(self) -> str | None:
        return ("structure.mode='hidden' runs in one process or under DDP only (its projection is trained outside "
                "the sharded model); under FSDP/DeepSpeed use mode 'topk', 'softmax' or 'st'")

    def setup(self, model: Any, tokenizer: Any, device: Any, total_steps: int) -> None:
        super().setup(model, tokenizer, device, total_steps)
        self.projection = make_hidden_projection(int(model.config.hidden_size), self.encoder.dim).to(device)

    def structure_term(self, out: Any, logits: torch.Tensor, labels: torch.Tensor, code_mask: torch.Tensor,
                       keep: torch.Tensor) -> torch.Tensor:
        return structure_loss(None, labels, code_mask, encoder=self.encoder, mode="hidden", target=self.settings.target,
                              shift=False, reduction="none", hidden_states=out.hidden_states[-1][:, keep],
                              projection=self.projection)

    def extra_parameters(self) -> list:
        return list(self.projection.parameters())

    def state_dict(self) -> dict:
        return self.projection.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.projection.load_state_dict(state)

    def export(self, output_dir: Path) -> None:
        torch.save(self.projection.state_dict(), Path(output_dir) / PROJECTION_FILE)
