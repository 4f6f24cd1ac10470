"""Inference strategies: how answers are produced for a batch of prompts.

A strategy gets the loaded generator(s) and a batch of :class:`~.base.Unit` (one prompt of one
task) and returns ``n`` answers per unit, each a dict with at least ``completion_raw`` (the text
the judge reads); extra keys (an intermediate plan, a second model's tokens, ...) are kept in
``generations.jsonl``. The eval loop around it (resumable generations, progress, judging,
metrics) is the same for every strategy.

Add one: a new file here with a subclass of :class:`~.base.InferenceStrategy`, and a line in
``STRATEGIES`` below (name → module, class).
"""

from __future__ import annotations

STRATEGIES = {
    "direct": ("codistill.evaluation.strategies.direct", "DirectStrategy"),
    "reasoner-coder": ("codistill.evaluation.strategies.reasoner_coder", "ReasonerCoderStrategy"),
}


def check_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise ValueError(f"unknown inference strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return name


def make_strategy(name: str, **kwargs):
    import importlib

    module, cls = STRATEGIES[check_strategy(name)]
    return getattr(importlib.import_module(module), cls)(**kwargs)
