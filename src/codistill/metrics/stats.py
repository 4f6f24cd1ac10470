"""Paired comparison of two arms evaluated on the same tasks, and a binomial CI for pass@1.

* :func:`mcnemar_exact` -- exact McNemar test (two-sided binomial test on the discordant pairs),
  for per-task pass/fail of arm A vs arm B.
* :func:`paired_bootstrap_ci` -- percentile bootstrap CI of the mean per-task difference
  ``b - a`` (resampling tasks, keeping the pairing).
* :func:`wilson_interval` -- Wilson score interval for a binomial proportion (pass@1 = k / n).
* :func:`holm_adjust` -- Holm-Bonferroni adjusted p-values for a family of comparisons
  (scipy has no Holm: ``scipy.stats.false_discovery_control`` does Benjamini-Hochberg/Yekutieli only).

No scipy needed: the binomial tail is summed exactly with :func:`math.comb`, and the normal
quantile comes from :class:`statistics.NormalDist`. numpy is imported inside
:func:`paired_bootstrap_ci` only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

__all__ = ["holm_adjust", "mcnemar_exact", "paired_bootstrap_ci", "wilson_interval"]


def mcnemar_exact(a_pass: Sequence[bool], b_pass: Sequence[bool]) -> dict[str, Any]:
    """Exact (binomial) McNemar test of paired pass/fail outcomes.

    Args:
        a_pass: per-task outcome of arm A (truthy = passed).
        b_pass: per-task outcome of arm B, same tasks in the same order.

    Returns:
        ``{"b01": int, "b10": int, "p_value": float}`` where ``b01`` counts tasks that A failed and
        B passed, ``b10`` tasks that A passed and B failed. ``p_value`` is the two-sided exact
        binomial test of ``b01`` successes in ``b01 + b10`` trials with p = 1/2, i.e.
        ``min(1, 2 * P[X <= min(b01, b10)])`` -- the same value as
        ``scipy.stats.binomtest(b01, b01 + b10, 0.5).pvalue``. With no discordant pair it is 1.0.
    """
    if len(a_pass) != len(b_pass):
        raise ValueError(f"arms differ in length: {len(a_pass)} vs {len(b_pass)}")
    b01 = b10 = 0
    for a, b in zip(a_pass, b_pass):
        a, b = bool(a), bool(b)
        if b and not a:
            b01 += 1
        elif a and not b:
            b10 += 1
    n = b01 + b10
    if n == 0:
        p_value = 1.0
    else:
        # Exact integer tail; one rounding at the final division (Python divides big ints exactly
        # rounded), so no underflow even for thousands of discordant pairs.
        tail = sum(math.comb(n, i) for i in range(min(b01, b10) + 1))
        p_value = min(1.0, (2 * tail) / (2**n))
    return {"b01": b01, "b10": b10, "p_value": p_value}


def paired_bootstrap_ci(
    a: Sequence[float],
    b: Sequence[float],
    n_boot: int = 10000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """Percentile bootstrap CI for the mean per-task difference ``b - a`` of paired scores.

    Tasks are resampled with replacement (the same resample for both arms, so the pairing is
    kept); each resample gives ``mean(b - a)`` and the CI is the ``alpha/2`` and ``1 - alpha/2``
    quantiles (numpy's default linear interpolation) of those ``n_boot`` means.

    Args:
        a, b: per-task scores of arms A and B (e.g. pass@1 or 0/1 pass), same tasks, same order.
        n_boot: number of bootstrap resamples.
        alpha: 1 - confidence level.
        seed: seed of ``numpy.random.default_rng``; the result is deterministic given it.

    Returns:
        ``{"diff": mean(b) - mean(a), "lo": float, "hi": float}`` -- positive means B is better.
    """
    import numpy as np

    a_arr = np.asarray(a, dtype=np.float64).reshape(-1)
    b_arr = np.asarray(b, dtype=np.float64).reshape(-1)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"arms differ in length: {a_arr.size} vs {b_arr.size}")
    if a_arr.size == 0:
        raise ValueError("need at least one task")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    d = b_arr - a_arr
    n = d.size
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    # Chunk the resampling so memory stays ~16 MB whatever the number of tasks.
    chunk = max(1, min(n_boot, 2_000_000 // n))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return {"diff": float(d.mean()), "lo": float(lo), "hi": float(hi)}


def wilson_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``k / n`` (e.g. pass@1 over n tasks).

    With ``p = k / n`` and ``z`` the ``1 - alpha/2`` standard-normal quantile::

        centre = (p + z^2 / (2n)) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))

    (the formula of ``statsmodels.stats.proportion.proportion_confint(method="wilson")``).

    Returns:
        ``(lo, hi)`` within [0, 1]; exactly 0 when ``k == 0`` and exactly 1 when ``k == n``.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    # k == 0 and k == n have exact endpoints 0 and 1; pin them against rounding (~1e-17).
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the order given.

    With the m p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted value of the
    i-th smallest (1-based) is ``max_{j <= i} min(1, (m - j + 1) * p_(j))`` -- the values of
    ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]``. Rejecting where the adjusted
    value is below alpha controls the family-wise error rate at alpha. Ties keep their input order.
    """
    ps = [float(p) for p in p_values]
    m = len(ps)
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: ps[i])):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out
