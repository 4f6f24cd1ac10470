"""The interface of an inference strategy (see the package docstring)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from codistill.problems.schema import Problem


@dataclass
class Unit:
    """One prompt to answer: a task of a benchmark (prompts shared by two benchmarks, such as
    HumanEval and HumanEval+, are one unit)."""

    key: str
    task_id: str
    prompt: str
    problem: Problem
    stops: tuple[str, ...] = ()


class InferenceStrategy(ABC):
    """Produces answers for units. ``generator``: the backend (:class:`codistill.backends.Generator`)."""

    name = "strategy"

    def __init__(self, generator: Any, **options: Any):
        self.generator = generator
        self.options = options

    @abstractmethod
    def answer(self, units: list[Unit], params: Any) -> list[list[dict]]:
        """``params.n`` answers per unit, in unit order; each a dict with ``completion_raw``."""

    @property
    def concurrent(self) -> bool:
        """Whether units may be answered from several threads at once (every model behind it is a server):
        the eval then asks one unit at a time, many in flight, and writes each answer as it comes."""
        return bool(getattr(getattr(self.generator, "capabilities", None), "concurrent", False))

    @property
    def usage(self):
        """Token accounting of the model calls (the generator's, for a one-model strategy)."""
        return getattr(self.generator, "usage", None)

    def usages(self) -> dict:
        """Every model's token accounting (a :class:`~codistill.backends.base.Usage` or None) by the
        key its per-batch share gets in ``generation_log.jsonl`` and its sum in results.json
        ``generation``: ``usage`` is the answering model's; a strategy with more models adds theirs."""
        return {"usage": self.usage}

    def close(self) -> None:
        """Release what the strategy holds beyond the generator (the eval closes that)."""
