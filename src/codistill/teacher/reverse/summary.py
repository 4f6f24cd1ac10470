"""The ``mode_summary`` of a reverse teach run (``teach_manifest.json``), over the valid records
that went through the search:

* ``ppl_before`` / ``ppl_after``: mean and median of PPL(y|x,z) of the drafts and of the final z;
* ``delta_ppl``: the distribution of ΔPPL = PPL_after − PPL_before (≤ 0: only decreases are kept;
  count, mean, min, quantiles, max, how many improved) and of the relative ΔPPL / PPL_before;
* ``leakage`` / ``leakage_before``: the leakage distributions of the final z and of the drafts
  (:func:`codistill.metrics.leakage.summarize`);
* ``correlation``: Pearson and Spearman (``scipy.stats``) between ΔPPL and the final z's leakage
  across the set (does lowering the perplexity push z towards a paraphrase of y? a negative r
  means larger decreases go with more leakage), and between ΔPPL and the leakage change; each
  ``{"r", "p"}``, or None with ``why`` when fewer than 3 rows or a constant column make it
  undefined;
* ``totals``: rounds, proposals, accepted, invalid, refused for leakage, teacher tokens of the
  rewrites, scorer passes; ``stop``: rows per stop reason.
"""

from __future__ import annotations

import math
from collections import Counter

from codistill.metrics import leakage as leak

__all__ = ["correlation", "distribution", "summarize"]


def _q(xs: list[float], p: float) -> float:
    i = (len(xs) - 1) * p
    lo, hi = int(i), min(int(i) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)


def distribution(values: list[float], digits: int = 4) -> dict:
    xs = sorted(float(v) for v in values)
    if not xs:
        return {"count": 0}
    r = lambda v: round(v, digits)  # noqa: E731
    return {"count": len(xs), "mean": r(sum(xs) / len(xs)), "min": r(xs[0]), "p10": r(_q(xs, 0.1)),
            "p25": r(_q(xs, 0.25)), "median": r(_q(xs, 0.5)), "p75": r(_q(xs, 0.75)), "p90": r(_q(xs, 0.9)),
            "max": r(xs[-1])}


def correlation(xs: list[float], ys: list[float]) -> dict:
    """``{"n", "pearson": {"r", "p"} | None, "spearman": {"r", "p"} | None, "why"?}``."""
    out: dict = {"n": len(xs), "pearson": None, "spearman": None}
    if len(xs) < 3:
        out["why"] = f"{len(xs)} rows (need 3)"
        return out
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        out["why"] = "a constant column"
        return out
    from scipy import stats

    for name, fn in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr)):
        res = fn(xs, ys)
        r, p = float(res[0]), float(res[1])
        out[name] = {"r": r, "p": p} if math.isfinite(r) else None
    return out


def summarize(records: list[dict], threshold: float | None = None) -> dict:
    rs = [r["reverse"] for r in records if r.get("valid") and r.get("reverse")]
    before = [r["ppl_before"] for r in rs]
    after = [r["ppl_after"] for r in rs]
    delta = [r["delta_ppl"] for r in rs]
    rel = [r["delta_ppl"] / r["ppl_before"] for r in rs if r["ppl_before"]]
    lk_after = [r["leakage_after"] for r in rs]
    lk_change = [r["leakage_after"] - r["leakage_before"] for r in rs]

    def center(xs):
        d = distribution(xs)
        return {"mean": d.get("mean"), "median": d.get("median")}

    totals = {k: sum(r[k] for r in rs) for k in ("rounds", "proposals", "accepted", "invalid_proposals",
                                                "refused_leakage", "scorer_passes")}
    totals["teacher_tokens"] = sum(r["teacher_tokens"]["total"] for r in rs)
    return {
        "mode": "reverse",
        "rows": len(rs),
        "ppl_before": center(before),
        "ppl_after": center(after),
        "delta_ppl": {**distribution(delta), "improved": sum(1 for d in delta if d < 0)},
        "relative_delta_ppl": distribution(rel),
        "leakage": leak.summarize(lk_after, threshold),
        "leakage_before": leak.summarize([r["leakage_before"] for r in rs], threshold),
        "correlation": {"delta_ppl_vs_leakage": correlation(delta, lk_after),
                        "delta_ppl_vs_leakage_change": correlation(delta, lk_change)},
        "totals": totals,
        "stop": dict(Counter(r["stop"] for r in rs)),
    }
