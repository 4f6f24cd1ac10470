"""``direct``: the model answers each prompt once per sample (the paper's zero-shot setting)."""

from __future__ import annotations

from codistill.evaluation.strategies.base import InferenceStrategy, Unit


class DirectStrategy(InferenceStrategy):
    name = "direct"

    def answer(self, units: list[Unit], params) -> list[list[dict]]:
        stops = tuple(dict.fromkeys(s for u in units for s in u.stops))
        outs = self.generator.generate([u.prompt for u in units], params.model_copy(update={"stop": stops}))
        return [[{"completion_raw": text} for text in comps] for comps in outs]
