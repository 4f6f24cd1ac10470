"""The token + structure-aware objective ``L = α·L_token + β·L_s`` on an α/β curriculum.

``L_token`` is the token cross-entropy per target token, ``L_s = 1 − cos(E_gt, E_gen)`` per
example with ``E_gen`` made from the student's distribution over the code span (modes topk,
softmax, st; training/structure_loss.py), α and β from ``loss_weights`` (training/curriculum.py).
With ``structure.enabled = false`` it is the token-only arm: α = 1, β = 0, no encoder.

Both terms are normalised by the totals of the whole optimizer step (target tokens, examples;
``combined_loss``), so a micro-batch's loss is its share of the step's loss.
"""

from __future__ import annotations

from typing import Any

import torch

from codistill.training.config import TrainConfig
from codistill.training.curriculum import loss_weights
from codistill.training.objectives.base import Objective, forward_at_targets
from codistill.training.structure_loss import (
    combined_loss,
    count_structure_examples,
    load_structure_encoder,
    structure_loss,
    token_cross_entropy,
)


class StructureObjective(Objective):
    """Token cross-entropy plus β·L_s; the encoder is loaded in :meth:`setup`."""

    progress_fields = {"beta": "β"}
    #: whether the forward pass must return hidden states (the hidden mode's subclass)
    needs_hidden_states = False

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.settings = config.structure
        self.encoder: Any = None

    def sharding_problem(self) -> str | None:
        if self.settings.enabled and self.settings.encoder == "self":
            return ("structure.encoder='self' runs in one process or under DDP only; under FSDP/DeepSpeed use "
                    "encoder 'minilm' or a separate encoder folder")
        return None

    def setup(self, model: Any, tokenizer: Any, device: Any, total_steps: int) -> None:
        super().setup(model, tokenizer, device, total_steps)
        s = self.settings
        if s.enabled:
            self.encoder = load_structure_encoder(
                s.encoder, student_tokenizer=tokenizer, student_vocab_size=int(model.config.vocab_size),
                student_model=model, self_layers=s.self_layers, pooling=s.pooling, device=device)

    def weights(self, step: int) -> dict[str, float]:
        s = self.settings
        alpha, beta = loss_weights(step, self.total_steps, s.curriculum) if s.enabled else (1.0, 0.0)
        return {"alpha": alpha, "beta": beta}

    def loss(self, model: Any, batch: dict, step: int, totals: dict[str, int]) -> tuple[torch.Tensor, dict[str, float]]:
        w = self.weights(step)
        return self.weighted_loss(model, batch, w["alpha"], w["beta"], totals)

    def weighted_loss(self, model: Any, batch: dict, alpha: float, beta: float,
                      totals: dict[str, int] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss at given weights (what :meth:`loss` computes at the curriculum's; tests and
        benchmarks fix them). ``totals`` None: normalised by this micro-batch's own counts."""
        labels, code_mask = batch["labels"], batch["code_mask"]
        out, logits, keep = forward_at_targets(model, batch, hidden_states=self.needs_hidden_states)
        lab = labels[:, keep + 1]
        ce_sum, n_tok = token_cross_entropy(logits, lab, shift=False)
        if self.encoder is not None:
            cm = code_mask[:, keep + 1]
            ls = self.structure_term(out, logits, lab, cm, keep)
            n_struct = count_structure_examples(lab, cm, self.encoder, shift=False)
        else:
            ls = torch.zeros(labels.shape[0], device=logits.device)
            n_struct = 0
        totals = totals or {}
        loss = combined_loss(ce_sum, n_tok, ls, alpha, beta, num_items_in_batch=totals.get("target_tokens"),
                             num_examples_in_batch=totals.get("examples"))
        return loss, {"ce_sum": float(ce_sum.detach()), "ls_sum": float(ls.detach().sum()), "n_structure": n_struct}

    def structure_term(self, out: Any, logits: torch.Tensor, labels: torch.Tensor, code_mask: torch.Tensor,
                       keep: torch.Tensor) -> torch.Tensor:
        """Per-example ``L_s`` ``[B]`` at the target positions ``keep`` (labels and code mask
        already aligned with ``logits``)."""
        s = self.settings
        return structure_loss(logits, labels, code_mask, encoder=self.encoder, mode=s.mode, k=s.k, target=s.target,
                              shift=False, reduction="none")

    def summarize(self, sums: dict[str, float], totals: dict[str, int]) -> dict[str, Any]:
        return {"token_loss": sums["ce_sum"] / max(totals["target_tokens"], 1),
                "structure_loss": sums["ls_sum"] / max(sums["n_structure"], 1) if self.settings.enabled else None}
