"""Decontamination: drop training problems that overlap an evaluation set.

Two checks, each an n-gram *containment* score between a training item and every eval item:

* statements: lower-cased word n-grams (default n=8) of the problem statement;
* solutions: Python token n-grams (default n=10, comments and layout dropped) of the reference code.

``score(A, B) = |A ∩ B| / min(|A|, |B|)`` over the two n-gram sets (so a training item that copies
an eval item, or embeds one in a longer text, scores 1.0; texts shorter than n use the whole text
as one n-gram). A training item is removed when its best score against any eval item reaches the
threshold (default 0.5); the report keeps the matched eval id, which check fired and the score.
The scoring is done with an inverted index, so 1k x 1k items take well under a second.

Eval sets default to HumanEval, HumanEval+, the MBPP test split and MBPP+ (v0.1.0 copy). MBPP+ was
built from sanitized MBPP, which includes some task ids of MBPP's *train* split: those
``mbpp:train`` problems are removed too, which is right (they are in an eval set).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from codistill.problems.tokens import code_tokens

__all__ = ["DecontamConfig", "EvalIndex", "Match", "statement_text", "word_ngrams", "code_ngrams"]

_WORD = re.compile(r"[a-z0-9]+")


class DecontamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="run decontamination at all")
    benchmarks: list[str] = Field(
        default_factory=lambda: ["humaneval", "humaneval+", "mbpp:test", "mbpp+"],
        description="eval sets to decontaminate against (load_benchmark names)")
    statement_n: int = Field(8, ge=1, description="word n-gram size for statements")
    solution_n: int = Field(10, ge=1, description="Python-token n-gram size for solutions")
    threshold: float = Field(0.5, gt=0, le=1, description="remove at containment score >= this")
    check_statements: bool = True
    check_solutions: bool = True


def statement_text(problem) -> str:
    """The natural-language statement of a problem (MBPP keeps it in ``meta['text']``)."""
    meta = problem.meta or {}
    return meta.get("text") or meta.get("task_description") or problem.prompt


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def code_ngrams(code: str, n: int) -> set[tuple[str, ...]]:
    toks = code_tokens(code)
    if len(toks) < n:
        return {tuple(toks)} if toks else set()
    return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


@dataclass
class Match:
    eval_id: str
    kind: str  # "statement" | "solution"
    score: float

    def as_dict(self) -> dict:
        return {"matched_eval_id": self.eval_id, "check": self.kind, "score": round(self.score, 4)}


class _Index:
    def __init__(self) -> None:
        self.sets: dict[str, set] = {}
        self.inv: dict[tuple, set[str]] = defaultdict(set)

    def add(self, key: str, grams: set) -> None:
        if not grams:
            return
        self.sets[key] = self.sets.get(key, set()) | grams
        for g in grams:
            self.inv[g].add(key)

    def best(self, grams: set) -> tuple[str, float] | None:
        if not grams:
            return None
        hits: Counter = Counter()
        for g in grams:
            for key in self.inv.get(g, ()):
                hits[key] += 1
        best = None
        for key, h in hits.items():
            score = h / min(len(grams), len(self.sets[key]))
            if best is None or score > best[1]:
                best = (key, score)
        return best


class EvalIndex:
    """N-gram index over eval problems; :meth:`match` returns the worst overlap of a training item."""

    def __init__(self, config: DecontamConfig):
        self.config = config
        self.statements = _Index()
        self.solutions = _Index()
        self.sizes: dict[str, int] = {}

    @classmethod
    def build(cls, config: DecontamConfig, data_dir=None) -> "EvalIndex":
        from codistill.problems.loaders import load_benchmark

        idx = cls(config)
        for name in config.benchmarks:
            problems = load_benchmark(name, data_dir=data_dir)
            idx.sizes[name] = len(problems)
            idx.add_problems(problems, prefix=f"{name}:")
        return idx

    def add_problems(self, problems, prefix: str = "") -> None:
        c = self.config
        for p in problems:
            key = prefix + p.id
            if c.check_statements:
                self.statements.add(key, word_ngrams(statement_text(p), c.statement_n))
            if c.check_solutions:
                for sol in p.solutions:
                    self.solutions.add(key, code_ngrams(sol, c.solution_n))

    def match(self, statement: str, solutions: list[str]) -> Match | None:
        """The highest-scoring overlap at or above the threshold, else None."""
        c = self.config
        found: list[Match] = []
        if c.check_statements:
            b = self.statements.best(word_ngrams(statement, c.statement_n))
            if b:
                found.append(Match(b[0], "statement", b[1]))
        if c.check_solutions:
            for sol in solutions:
                b = self.solutions.best(code_ngrams(sol, c.solution_n))
                if b:
                    found.append(Match(b[0], "solution", b[1]))
        found = [m for m in found if m.score >= c.threshold]
        return max(found, key=lambda m: m.score) if found else None
