"""The selection scores of ``codistill select`` and the budgeted choice (pure functions).

* **inter-uncertainty** of a problem: the entropy (natural log) of the distribution of its k
  sampled programs over outcome clusters, :func:`inter_uncertainty`. Two programs are in one
  cluster when they behaved identically on every test input (same outputs, same exceptions, same
  timeouts: :mod:`codistill.execution.outcomes`); an answer without code is the cluster
  ``no_code``. ``inter_norm`` = entropy / ln k, in [0, 1] (0: all k agree; 1: all differ).
* **intra-uncertainty** (:func:`intra_uncertainty`): for each ablated sample, the share of its
  reasoning steps whose removal changes the outcome cluster of the code regenerated from the
  reasoning (against the code regenerated from the whole reasoning, with the same decoding), then
  the mean over the ablated samples that have steps; None when none has.
* **score** (:func:`combined_score`): ``sum`` (default): ``inter_norm + intra_weight × intra``
  (intra None counts 0), both terms in [0, 1]; ``inter`` or ``intra`` alone.

The budgeted choice (:func:`choose`) takes the ``n`` highest scores (ties in a seeded random
order); the control takes ``n`` problems uniformly at random with the same seed, from the same
candidates.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["budget_count", "choose", "combined_score", "entropy", "inter_uncertainty", "intra_uncertainty"]


def entropy(counts: Iterable[int]) -> float:
    """Shannon entropy (nats) of a distribution given by counts."""
    counts = [c for c in counts if c > 0]
    total = sum(counts)
    if total == 0:
        return 0.0
    return max(0.0, -sum(c / total * math.log(c / total) for c in counts))


def inter_uncertainty(signatures: Sequence[str]) -> dict:
    """``{"clusters": {signature: count}, "entropy", "inter_norm"}`` of k samples' outcomes."""
    clusters = Counter(signatures)
    h = entropy(clusters.values())
    k = len(signatures)
    return {"clusters": dict(clusters), "entropy": h, "inter_norm": h / math.log(k) if k > 1 else 0.0}


def intra_uncertainty(ablations: Sequence[dict]) -> float | None:
    """Mean over ablated samples (``{"baseline": sig, "steps": [sig per ablated step]}``) of the
    share of steps whose ablated outcome differs from the baseline; None without any step."""
    shares = [sum(s != a["baseline"] for s in a["steps"]) / len(a["steps"]) for a in ablations if a["steps"]]
    return sum(shares) / len(shares) if shares else None


def combined_score(inter_norm: float, intra: float | None, combine: str = "sum", intra_weight: float = 1.0) -> float:
    if combine == "sum":
        return inter_norm + intra_weight * (intra or 0.0)
    if combine == "inter":
        return inter_norm
    if combine == "intra":
        return intra or 0.0
    raise ValueError(f"unknown combine {combine!r}: sum, inter or intra")


def budget_count(budget: int | float, n: int) -> int:
    """Problems a budget keeps out of ``n``: an int is a count (at most n), a float a fraction of n
    (rounded half up, at least 1 when n > 0)."""
    if isinstance(budget, bool):
        raise ValueError("budget is a count (int) or a fraction (float in (0, 1])")
    if isinstance(budget, int):
        return max(0, min(budget, n))
    if not 0 < budget <= 1:
        raise ValueError(f"a fractional budget is in (0, 1], got {budget}")
    return min(n, max(1 if n else 0, math.floor(budget * n + 0.5)))


def choose(scores: dict[str, float], order: Sequence[str], budget: int | float, seed: int = 0) -> tuple[list, list]:
    """(the ``n`` highest-scoring ids, highest first; ``n`` ids drawn at random), ``n`` from
    :func:`budget_count`. ``order``: the candidates in dataset order (the random draw is made in
    that order, so it does not depend on how the scores were stored)."""
    ids = [i for i in order if i in scores]
    n = budget_count(budget, len(ids))
    tie = list(ids)
    random.Random(f"select-ties:{seed}").shuffle(tie)
    rank = {i: r for r, i in enumerate(tie)}
    chosen = sorted(ids, key=lambda i: (-scores[i], rank[i]))[:n]
    drawn = set(random.Random(f"select-random:{seed}").sample(ids, n))
    return chosen, [i for i in ids if i in drawn]
