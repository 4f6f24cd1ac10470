"""REER's pieces without a model or a server: z as segments, the cleaning of a rewrite, the search
with a scripted scorer and proposer (a rewrite that raises PPL is rejected, one that lowers it is
kept; the stop rules; the leakage cap), and the manifest summary against scipy."""

from __future__ import annotations

import math

import pytest

from codistill.teacher.modes import get_mode
from codistill.teacher.reverse.search import SearchSettings, search
from codistill.teacher.reverse.segments import (
    Segment,
    clean_rewrite,
    describe,
    render_sections,
    split_segments,
)
from codistill.teacher.reverse.summary import correlation, summarize
from codistill.teacher.templates import render_context

SPEC = get_mode("reverse").spec
SECTIONS = {"intent": "Return the running maximum.",
            "steps": "1. Keep the best so far.\n2) Walk the list;\n   update the best.\n3. Return the records.",
            "formulas": "None", "edge_cases": "Empty input gives an empty list.", "builtins": "N/A"}


# --------------------------------------------------------------------------- segments


def test_segments_rule_and_round_trip():
    segs = split_segments(SECTIONS, SPEC.sections)
    assert [(s.section, s.item) for s in segs] == [("intent", 0), ("steps", 1), ("steps", 2), ("steps", 3),
                                                  ("edge_cases", 0)]  # "None" / "N/A" sections are not z
    assert segs[2] == Segment("steps", "Walk the list;\n   update the best.", "2) ", 2)
    back = render_sections(segs)
    assert back["steps"] == SECTIONS["steps"] and set(back) == {"intent", "steps", "edge_cases"}
    assert render_context(back, "reverse") == render_context(SECTIONS, "reverse")
    # one segment per section when asked, or when a list has one item or text before it
    assert len(split_segments(SECTIONS, SPEC.sections, split_steps=False)) == 3
    assert len(split_segments({"steps": "Do this:\n1. a\n2. b"}, SPEC.sections)) == 1
    assert len(split_segments({"steps": "1. only one"}, SPEC.sections)) == 1
    assert describe(segs[1], SPEC.titles) == 'step 1 of the section "Steps"'
    assert describe(segs[0], SPEC.titles) == 'the section "Intent"'


def test_clean_rewrite():
    titles = SPEC.titles
    item = Segment("steps", "Keep the best so far.", "1. ", 1)
    whole = Segment("intent", "Return the running maximum.")
    assert clean_rewrite("### Steps\n1. Track the largest value.", item, titles, 4000) == ("Track the largest value.", "")
    assert clean_rewrite("Step 1: Track it.\nthen more", item, titles, 4000) == ("Track it.\n   then more", "")
    assert clean_rewrite("**Intent:**\nGive the prefix maxima.", whole, titles, 4000) == ("Give the prefix maxima.", "")
    assert clean_rewrite("```\nGive the prefix maxima.\n```", whole, titles, 4000) == ("Give the prefix maxima.", "")
    assert clean_rewrite("  ", whole, titles, 4000) == (None, "empty rewrite")
    assert clean_rewrite("Use\n```python\nmax(xs)\n```", whole, titles, 4000)[1] == "rewrite holds a code block"
    assert clean_rewrite("x" * 50, whole, titles, 10)[1].startswith("rewrite too long")
    assert clean_rewrite("Return the running maximum.", whole, titles, 4000) == (None, "rewrite unchanged")


# --------------------------------------------------------------------------- the search, scripted


def _render(segs):
    return render_context(render_sections(segs), "reverse")


class Script:
    """PPL = 10 − 2·(count of "good") + 3·(count of "bad") (at least 1.1); the leakage is 0.9 for a z
    holding "PASTE", else 0. Proposals: ``answers[(round, segment, k)]`` or ``default(k)``."""

    def __init__(self, answers=None, default=None, usage=100):
        self.answers = answers or {}
        self.default = default or (lambda i, k: ["bad idea", f"good idea {i}"][k % 2])
        self.usage = usage
        self.asked: list[tuple] = []
        self.scored: list[str] = []

    def ppl(self, ctx):
        return max(1.1, 10 - 2 * ctx.count("good") + 3 * ctx.count("bad"))

    def score(self, ctxs):
        self.scored += ctxs
        return [self.ppl(c) for c in ctxs]

    def propose(self, segs, i, rnd, k):
        self.asked.append((rnd, i, k))
        text = self.answers.get((rnd, i, k), self.default(i, k))
        return text, {"prompt_tokens": self.usage - 10, "completion_tokens": 10}

    @staticmethod
    def clean(raw, seg):
        return clean_rewrite(raw, seg, SPEC.titles, 4000)

    @staticmethod
    def leakage(ctx):
        return 0.9 if "PASTE" in ctx else 0.0


def _run(script, segs=None, **kw):
    segs = segs or split_segments(SECTIONS, SPEC.sections)
    return search(segs, _render, script.score, script.propose, script.clean, script.leakage, SearchSettings(**kw))


def test_a_rewrite_that_raises_ppl_is_rejected_and_one_that_lowers_it_kept():
    sc = Script()
    res = _run(sc, proposals=2, max_rounds=1)
    segs = split_segments(SECTIONS, SPEC.sections)
    assert res["ppl_before"] == 10 and res["stop"] == "rounds" and res["rounds"] == 1
    # every segment: proposal 0 ("bad", PPL up) rejected, proposal 1 ("good", PPL down) kept
    assert [t["kept"] for t in res["trace"]] == [1] * len(segs)
    assert [p["ppl"] > t_prev for t, t_prev in zip(res["trace"], [10] + [t["ppl"] for t in res["trace"]])
            for p in t["proposals"][:1]] == [True] * len(segs)
    assert [s.text for s in res["segments"]] == [f"good idea {i}" for i in range(len(segs))]
    assert [s.marker for s in res["segments"]] == [s.marker for s in segs]  # list markers kept
    assert res["ppl_after"] == max(1.1, 10 - 2 * len(segs)) == sc.ppl(_render(res["segments"]))
    assert res["accepted"] == len(segs) and res["proposals"] == 2 * len(segs)
    assert res["scorer_passes"] == 1 + 2 * len(segs) == len(sc.scored)
    assert res["teacher_tokens"] == {"prompt": 90 * 2 * len(segs), "completion": 20 * len(segs),
                                     "total": 200 * len(segs)}

    # only bad rewrites: nothing kept, the draft stays, the search stops after a stale round
    sc = Script(default=lambda i, k: "a bad idea")
    res = _run(sc, proposals=2, max_rounds=3)
    assert res["accepted"] == 0 and res["segments"] == segs and res["ppl_after"] == res["ppl_before"] == 10
    assert res["stop"] == "stale" and res["rounds"] == 1
    assert res["scorer_passes"] == 1 + len(segs)  # equal candidates are scored once


def test_min_gain_and_invalid_rewrites():
    sc = Script(default=lambda i, k: ["", "good"][k])  # an empty rewrite is invalid, never scored
    res = _run(sc, proposals=2, max_rounds=1, min_gain=0.5)  # 10 → 8 is less than half: not kept
    assert res["invalid"] == len(res["trace"]) and res["accepted"] == 0
    assert res["trace"][0]["proposals"][0] == {"dropped": "empty rewrite"}


def test_stop_rules():
    # target: reached after the first kept rewrite (10 → 8); the next segment is not asked
    sc = Script()
    res = _run(sc, proposals=2, max_rounds=5, target_ppl=8.5)
    assert res["stop"] == "target" and res["accepted"] == 1 and sc.asked == [(0, 0, 0), (0, 0, 1)]
    # a draft already under the target: nothing is asked
    sc = Script()
    res = _run(sc, target_ppl=50)
    assert res["stop"] == "target" and sc.asked == [] and res["rounds"] == 0 and res["scorer_passes"] == 1
    # budget: 100 tokens a call, checked before each segment: 2 calls → 200 ≥ 150 stops at segment 1
    sc = Script()
    res = _run(sc, proposals=2, max_rounds=5, max_teacher_tokens=150)
    assert res["stop"] == "budget" and len(sc.asked) == 2 and res["teacher_tokens"]["total"] == 200
    # rounds: rewrites that keep improving run every round
    sc = Script(default=lambda i, k: "good " * (k + 1) + f"{len(sc.asked)}")
    res = _run(sc, proposals=1, max_rounds=3, stop_when_stale=False)
    assert res["stop"] == "rounds" and res["rounds"] == 3 and {a[0] for a in sc.asked} == {0, 1, 2}
    # stale: round 0 keeps rewrites; round 1 only repeats them (unchanged: invalid) → stop before round 2
    sc = Script(default=lambda i, k: f"good idea {i}")
    res = _run(sc, proposals=1, max_rounds=4)
    assert res["stop"] == "stale" and res["rounds"] == 2 and {a[0] for a in sc.asked} == {0, 1}


def test_leakage_cap_refuses_before_scoring_and_keeps_the_next_best():
    # proposal 0 pastes the solution and would be the best by far (PPL 1.1); it is refused unscored,
    # proposal 1 ("good", PPL 8) is kept
    sc = Script(default=lambda i, k: ["PASTE good good good good good", "good"][k])
    res = _run(sc, proposals=2, max_rounds=1, leakage_threshold=0.5)
    assert res["refused_leakage"] == len(res["trace"]) and res["accepted"] == len(res["trace"])
    assert not any("PASTE" in c for c in sc.scored)
    assert "PASTE" not in _render(res["segments"])
    assert res["trace"][0]["proposals"][0] == {"dropped": "leakage 0.90 > 0.5", "leakage": 0.9}
    # without a cap the paste is kept
    sc = Script(default=lambda i, k: ["PASTE good good good good good", "good"][k])
    res = _run(sc, proposals=2, max_rounds=1, leakage_threshold=None)
    assert res["refused_leakage"] == 0 and "PASTE" in _render(res["segments"])


# --------------------------------------------------------------------------- the manifest summary


def _rec(before, after, lk_before, lk_after, valid=True):
    return {"valid": valid, "reverse": {
        "ppl_before": before, "ppl_after": after, "delta_ppl": after - before, "leakage_before": lk_before,
        "leakage_after": lk_after, "rounds": 1, "proposals": 4, "accepted": 1, "invalid_proposals": 0,
        "refused_leakage": 1, "scorer_passes": 5, "teacher_tokens": {"total": 100}, "stop": "rounds"}}


def test_summary_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    before = [10.0, 8.0, 12.0, 5.0, 9.0]
    after = [6.0, 7.5, 6.0, 5.0, 4.0]
    lk_b = [0.0, 0.1, 0.05, 0.2, 0.0]
    lk_a = [0.3, 0.1, 0.4, 0.2, 0.25]
    recs = [_rec(*v) for v in zip(before, after, lk_b, lk_a)] + [_rec(1, 1, 0, 0, valid=False), {"valid": True}]
    s = summarize(recs, threshold=0.5)
    delta = [a - b for a, b in zip(after, before)]
    assert s["rows"] == 5
    assert s["ppl_before"]["mean"] == pytest.approx(sum(before) / 5)
    assert s["ppl_after"]["mean"] == pytest.approx(sum(after) / 5)
    assert s["delta_ppl"]["mean"] == pytest.approx(sum(delta) / 5, abs=1e-4)
    assert s["delta_ppl"]["min"] == -6 and s["delta_ppl"]["max"] == 0 and s["delta_ppl"]["improved"] == 4
    assert s["leakage"]["count"] == 5 and s["leakage"]["max"] == 0.4 and s["leakage"]["above_threshold"] == 0
    c = s["correlation"]["delta_ppl_vs_leakage"]
    assert c["n"] == 5
    assert c["pearson"]["r"] == pytest.approx(stats.pearsonr(delta, lk_a)[0])
    assert c["pearson"]["p"] == pytest.approx(stats.pearsonr(delta, lk_a)[1])
    assert c["spearman"]["r"] == pytest.approx(stats.spearmanr(delta, lk_a)[0])
    assert c["spearman"]["p"] == pytest.approx(stats.spearmanr(delta, lk_a)[1])
    change = [a - b for a, b in zip(lk_a, lk_b)]
    assert s["correlation"]["delta_ppl_vs_leakage_change"]["pearson"]["r"] == pytest.approx(stats.pearsonr(delta, change)[0])
    assert s["totals"] == {"rounds": 5, "proposals": 20, "accepted": 5, "invalid_proposals": 0, "refused_leakage": 5,
                           "scorer_passes": 25, "teacher_tokens": 500}
    assert s["stop"] == {"rounds": 5}


def test_correlation_is_none_when_undefined():
    assert correlation([1.0, 2.0], [1.0, 3.0])["pearson"] is None
    c = correlation([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert c["pearson"] is None and c["spearman"] is None and c["why"] == "a constant column"
    assert summarize([])["rows"] == 0 and summarize([])["delta_ppl"]["count"] == 0
    assert math.isfinite(correlation([1.0, 2.0, 4.0], [0.1, 0.3, 0.2])["spearman"]["r"])
