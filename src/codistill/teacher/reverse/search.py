"""The segment-by-segment search of REER for code, as a pure function of its callables (the
teacher's rewrites, the scorer, the leakage score), so that it is tested with scripted ones.

Algorithm (:func:`search`):

1. score the draft z₀ (the rendered segments): ``best = PPL(y | x, z₀)``;
2. a round visits the segments in order; for segment i, before anything is asked: stop if
   ``best <= target_ppl`` (``target``) or the rewrites so far cost ``max_teacher_tokens``
   (``budget``); else ask ``proposals`` rewrites of segment i (sampling seeds differ by proposal
   and round), clean each (:func:`~codistill.teacher.reverse.segments.clean_rewrite`: invalid ones
   are counted and dropped), build each candidate z (z with segment i replaced), refuse a
   candidate whose leakage against y is above ``leakage_threshold`` (before it is scored: it can
   never be kept), score the rest in one batch, and keep the lowest-PPL candidate only if it
   lowers ``best`` by more than ``min_gain · best``; the next segment is rewritten in the z that
   resulted;
3. after ``max_rounds`` rounds (``rounds``), or after a round that kept nothing when
   ``stop_when_stale`` (``stale``), the search ends. The budget is checked before a segment, so
   the last segment's proposals may pass it by at most ``proposals`` calls.

The z returned is therefore the lowest-PPL z seen among those under the leakage cap (the draft is
one of them: a draft over the cap is refused before the search, by the caller).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from codistill.teacher.reverse.segments import Segment, replace_text

__all__ = ["SearchSettings", "search"]


@dataclass(frozen=True)
class SearchSettings:
    proposals: int = 2
    max_rounds: int = 2
    target_ppl: float | None = None
    max_teacher_tokens: int | None = None
    min_gain: float = 0.0
    stop_when_stale: bool = True
    leakage_threshold: float | None = None


def search(segments: list[Segment], render: Callable[[list[Segment]], str],
           score: Callable[[list[str]], list[float]],
           propose: Callable[[list[Segment], int, int, int], tuple[str, dict]],
           clean: Callable[[str, Segment], tuple[str | None, str]],
           leakage: Callable[[str], float], s: SearchSettings) -> dict:
    """Run the search (see the module docstring). ``propose(segments, i, round, k)`` → (the
    teacher's raw rewrite of segment i, its usage); ``score(contexts)`` → PPL of each;
    ``clean(raw, segment)`` → (text or None, why); ``leakage(context)`` → score.

    Returns ``{"segments", "ppl_before", "ppl_after", "rounds", "proposals", "accepted",
    "invalid", "refused_leakage", "teacher_tokens", "scorer_passes", "stop", "trace"}``
    (``scorer_passes``: the distinct contexts scored, one forward pass each on a cold cache: a z
    met again is not rescored; ``trace``: one
    entry per visited segment: round, segment, each proposal's PPL or the reason it was dropped,
    the proposal kept and the PPL after)."""
    cur = list(segments)
    seen: dict[str, float] = {}  # context -> PPL: a z met again (the same rewrite in a later round) is not rescored

    def ppls_of(ctxs: list[str]) -> list[float]:
        new = [c for c in dict.fromkeys(ctxs) if c not in seen]
        if new:
            seen.update(zip(new, score(new)))
        return [seen[c] for c in ctxs]

    best = ppls_of([render(cur)])[0]
    out = {"ppl_before": best, "rounds": 0, "proposals": 0, "accepted": 0, "invalid": 0, "refused_leakage": 0,
           "teacher_tokens": {"prompt": 0, "completion": 0, "total": 0}, "stop": "rounds",
           "trace": []}
    tok = out["teacher_tokens"]
    stop = None
    for rnd in range(s.max_rounds):
        kept_this_round = 0
        for i in range(len(cur)):
            if s.target_ppl is not None and best <= s.target_ppl:
                stop = "target"
                break
            if s.max_teacher_tokens is not None and tok["total"] >= s.max_teacher_tokens:
                stop = "budget"
                break
            out["rounds"] = rnd + 1
            step: dict = {"round": rnd, "segment": i, "proposals": [], "kept": None}
            candidates: dict[str, int] = {}  # context -> proposal index (first of equal ones)
            for k in range(s.proposals):
                raw, usage = propose(cur, i, rnd, k)
                out["proposals"] += 1
                tok["prompt"] += int(usage.get("prompt_tokens", 0))
                tok["completion"] += int(usage.get("completion_tokens", 0))
                tok["total"] = tok["prompt"] + tok["completion"]
                text, why = clean(raw, cur[i])
                if text is None:
                    out["invalid"] += 1
                    step["proposals"].append({"dropped": why})
                    continue
                ctx = render(replace_text(cur, i, text))
                lk = leakage(ctx)
                if s.leakage_threshold is not None and lk > s.leakage_threshold:
                    out["refused_leakage"] += 1
                    step["proposals"].append({"dropped": f"leakage {lk:.2f} > {s.leakage_threshold}", "leakage": lk})
                    continue
                step["proposals"].append({"text": text, "leakage": lk})
                candidates.setdefault(ctx, k)
            if candidates:
                ctxs = list(candidates)
                ppls = ppls_of(ctxs)
                for ctx, p in zip(ctxs, ppls):
                    step["proposals"][candidates[ctx]]["ppl"] = p
                j = min(range(len(ctxs)), key=lambda n: ppls[n])
                if ppls[j] < best * (1.0 - s.min_gain):
                    k = candidates[ctxs[j]]
                    cur = replace_text(cur, i, step["proposals"][k]["text"])
                    best = ppls[j]
                    step["kept"] = k
                    out["accepted"] += 1
                    kept_this_round += 1
            step["ppl"] = best
            for p in step["proposals"]:
                p.pop("text", None)  # the kept text is in the final z; the trace stays small
            out["trace"].append(step)
        if stop is not None:
            break
        if s.stop_when_stale and kept_this_round == 0 and rnd + 1 < s.max_rounds:
            stop = "stale"
            break
    out["stop"] = stop or "rounds"
    out["scorer_passes"] = len(seen)
    out["segments"] = cur
    out["ppl_after"] = best
    return out
