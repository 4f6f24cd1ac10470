"""Evaluation's plug points: inference strategies and declared backend capabilities."""

from __future__ import annotations

import pytest

from codistill.backends.base import Generator, SamplingParams, Usage


class _Echo(Generator):
    name = "echo"

    def __init__(self):
        super().__init__()
        self.calls = []

    def generate(self, prompts, params):
        self.calls.append((list(prompts), params))
        return [[f"{p}|{i}" for i in range(params.n)] for p in prompts]


def test_unknown_strategy_is_a_clear_error():
    from codistill.evaluation.config import EvalConfig

    with pytest.raises(ValueError, match="unknown inference strategy 'reasoner'; choose one of direct"):
        EvalConfig(model="m", strategy="reasoner")


def test_direct_strategy_asks_once_with_every_units_stops():
    from codistill.evaluation.strategies import make_strategy
    from codistill.evaluation.strategies.base import Unit
    from codistill.problems.schema import Problem

    p = Problem(id="t", prompt="x", tests=[], source="test")
    gen = _Echo()
    s = make_strategy("direct", generator=gen)
    units = [Unit("k1", "t", "a", p, stops=("\nA",)), Unit("k2", "t", "b", p, stops=("\nB", "\nA"))]
    out = s.answer(units, SamplingParams(n=2, max_new_tokens=5))
    assert out == [[{"completion_raw": "a|0"}, {"completion_raw": "a|1"}],
                   [{"completion_raw": "b|0"}, {"completion_raw": "b|1"}]]
    assert gen.calls[0][1].stop == ("\nA", "\nB") and s.usage is gen.usage and isinstance(s.usage, Usage)


def test_capabilities_are_declared_and_decide_the_scorer():
    from codistill.backends.hf import HFGenerator
    from codistill.backends.llama_server import LlamaServerGenerator
    from codistill.backends.openai_http import OpenAIGenerator
    from codistill.evaluation.config import EvalConfig
    from codistill.evaluation.score import scorer_for

    assert HFGenerator.capabilities.score and HFGenerator.capabilities.tokenizer
    assert LlamaServerGenerator.capabilities.adapter and not LlamaServerGenerator.capabilities.score
    assert not OpenAIGenerator.capabilities.local_weights
    gen = _Echo()  # the base class declares nothing: no logits, no local weights
    assert scorer_for(EvalConfig(model="m"), gen, {}) is None
    assert scorer_for(EvalConfig(model="m", perplexity=False, token_nll=False), gen, {}) is None
