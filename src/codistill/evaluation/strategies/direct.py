"""``direct``: the model answers each prompt once per sample (the paper's zero-shot setting)."""

from __future__ import annotations

from codistill.evaluation.strategies.base import InferenceStrategy, Unit


class DirectStrategy(InferenceStrategy):
    name = "direct"

    def answer(self, units: list[Unit], params) -> list[list[dict]]:
        stops = tuple(dict.fromkeys(s for u in units for s in u.stops))
        prompts, params = [u.prompt for u in units], params.model_copy(update={"stop": stops})
        detailed = getattr(self.generator, "generate_detailed", None)  # why each answer ended, where known
        outs = detailed(prompts, params) if detailed is not None else \
            [[(text, None) for text in comps] for comps in self.generator.generate(prompts, params)]
        return [[{"completion_raw": text, **({"finish_reason": why} if why else {})} for text, why in comps]
                for comps in outs]
