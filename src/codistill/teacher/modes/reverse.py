"""``reverse``: REER (reverse-engineered reasoning, 2025) for code. For a problem x with oracle code y,
search a reasoning z that minimises PPL(y | x, z) under a scorer model (the student by default),
with x and z rendered as the student sees them in training (:mod:`codistill.teacher.reverse.scoring`).

Per row (:meth:`ReverseMode.run_row`):

1. **draft** z₀: the teacher's ``explain`` context (``draft: teacher``: the explain prompt, the
   same attempt loop, parser and leakage check as ``explain``, and the same cache keys, so a run
   sharing the cache with an explain run gets its drafts free), or the scorer's own plan
   (``draft: student``: its greedy answer to x in its format, cut to the reasoning section);
   a draft over ``leakage_threshold`` is refused like an explain answer (the row is invalid);
2. **segments** (:mod:`codistill.teacher.reverse.segments`): the sections, a numbered list one
   segment per item;
3. **search** (:mod:`codistill.teacher.reverse.search`): the teacher rewrites one segment at a
   time (``prompts/reverse_rewrite.txt``, showing x, y and the current z — REER's proposer sees the
   solution; ``show_solution: false`` uses ``reverse_rewrite_blind.txt``, x and z only); a
   rewrite is kept only if it lowers PPL(y|x,z); a candidate z whose leakage against y is over
   ``leakage_threshold`` is refused before it is scored, so the z kept is the best one under the
   cap; stops at ``target_ppl``, ``max_rounds``, ``max_teacher_tokens`` or a round that kept
   nothing.

Rewrites are teacher calls cached in the teach stage's response cache (keyed by the teacher, the
rewrite template, the prompt's hash, the sampling settings with a seed per round and proposal, and
the row); scores in ``scores.jsonl`` beside it. The search is a deterministic function of those
answers, so an interrupted run replays a row from the caches without asking or scoring anything
already answered. The record (``contexts.jsonl``) is an explain-shaped record whose sections and
``context`` are the final z (so ``train.jsonl`` keeps its shape: ``codistill train`` trains on it
unchanged) and ``leakage`` is z's; ``reverse`` holds PPL before/after, rounds, proposals,
accepted, refused, teacher tokens, scorer passes, leakage before/after, the stop reason, the draft
and a trace. ``tokens`` counts the draft's and the rewrites' teacher tokens. The manifest's
``mode_summary`` (:mod:`codistill.teacher.reverse.summary`) has the means, the ΔPPL and leakage
distributions and the ΔPPL–leakage correlations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from importlib import resources
from pathlib import Path

from codistill.metrics import leakage as leak
from codistill.teacher.modes.base import RunContext
from codistill.teacher.modes.explain import ExplainMode, ShowsReference
from codistill.teacher.reverse.config import ReverseOptions

__all__ = ["REVERSE_VERSION", "ReverseMode"]

REVERSE_VERSION = 1  # part of the resume key: a changed search re-runs finished rows (from the caches)

_PLACEHOLDER = re.compile(r"\{(problem|solution|context|segment|where)\}")


class ReverseMode(ShowsReference):
    spec = dataclasses.replace(
        ExplainMode.spec, name="reverse",
        sections=ExplainMode.spec.sections + ("plan",),  # plan: a student draft without known headings
        titles={**ExplainMode.spec.titles, "plan": "Plan"},
    )
    options = ReverseOptions

    # ------------------------------------------------------------------ templates and keys
    def template(self) -> tuple[str, str]:
        """The draft's prompt: explain's (its text, hence its cache keys)."""
        return ExplainMode().template()

    def rewrite_template(self, opts: ReverseOptions) -> tuple[str, str]:
        if opts.rewrite_template:
            text, source = Path(opts.rewrite_template).read_text(encoding="utf-8"), opts.rewrite_template
        else:
            name = "reverse_rewrite.txt" if opts.show_solution else "reverse_rewrite_blind.txt"
            text = resources.files("codistill.teacher").joinpath("prompts", name).read_text(encoding="utf-8")
            source = f"codistill/teacher/prompts/{name}"
        missing = [p for p in ("problem", "context", "segment") if "{" + p + "}" not in text]
        if opts.show_solution and "{solution}" not in text:
            missing.append("solution")
        if missing:
            raise ValueError(f"rewrite template {source} lacks {', '.join('{' + m + '}' for m in missing)}")
        if not opts.show_solution and "{solution}" in text:
            raise ValueError(f"rewrite template {source} shows {{solution}} but show_solution is false")
        return text, source

    def run_key(self, cfg) -> dict:
        opts = self.settings(cfg)
        text, _ = self.rewrite_template(opts)
        return {"options": opts.model_dump(), "rewrite_template": hashlib.sha256(text.encode()).hexdigest(),
                "version": REVERSE_VERSION}

    # ------------------------------------------------------------------ the run
    def open(self, run: RunContext) -> None:
        from codistill.teacher.reverse.scoring import ScoreCache, Scorer

        cfg = run.cfg
        opts = self.settings(cfg)
        fmt = opts.student_format()
        names = [next(f for f in ("context", "code", "tests") if "{" + f + "}" in s) for s in fmt.sections]
        if "context" not in names or names.index("context") > names.index("code"):
            raise ValueError(f"format {fmt.name!r} has no reasoning section before the code: there is no z to search")
        cache = ScoreCache(Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.out_dir) / "cache")
        scorer = Scorer(opts.scorer, fmt, cache)
        run.resources.callback(cache.close)
        run.resources.callback(scorer.close)
        run.state.update(opts=opts, scorer=scorer, rewrite=self.rewrite_template(opts))

    def run_row(self, runner, row: dict) -> dict:
        from codistill.teacher.reverse.run import reverse_row

        return reverse_row(self, runner, row)

    def summarize(self, run: RunContext, records: list[dict]) -> dict | None:
        from codistill.teacher.reverse.summary import summarize

        out = summarize(records, run.cfg.leakage_threshold)
        scorer = run.state.get("scorer")
        out["this_run"] = {"scorer_passes": scorer.counts["passes"], "score_cache_hits": scorer.counts["hits"],
                           "student_plans": scorer.counts["plans"], "student_plan_cache_hits": scorer.counts["plan_hits"]
                           } if scorer is not None else {"scorer_passes": 0, "score_cache_hits": 0,
                                                         "student_plans": 0, "student_plan_cache_hits": 0}
        return out

    @staticmethod
    def render_rewrite(template: str, values: dict[str, str]) -> str:
        """The rewrite prompt: the placeholders filled in one pass (braces in code are safe)."""
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)

    def leakage(self, run: RunContext, row: dict, context: str) -> dict:
        return leak.leakage(context, row["code"], public=row["prompt"], n=run.cfg.leakage_n)
