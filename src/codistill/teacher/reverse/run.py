"""One row of ``teach --mode reverse``: draft, segments, search, record (see
:mod:`codistill.teacher.modes.reverse`)."""

from __future__ import annotations

import hashlib
import time

from codistill.store import sha256_json
from codistill.teacher.client import EmptyAnswerError
from codistill.teacher.parse import PARSER_VERSION, split_sections
from codistill.teacher.reverse.search import SearchSettings, search
from codistill.teacher.reverse.segments import clean_rewrite, describe, render_sections, split_segments
from codistill.teacher.runner import row_hash
from codistill.teacher.templates import render_context

__all__ = ["ask_rewrite", "reverse_row", "rewrite_params"]

_SEED_STRIDE = 1000  # rewrite k of round r: seed + 1000·(r + 1) + k (attempts use seed + attempt)


def rewrite_params(cfg, opts, rnd: int, k: int):
    from codistill.backends import SamplingParams

    temp = opts.temperature
    return SamplingParams(n=1, temperature=temp, top_p=cfg.sampling.top_p if temp > 0 else 1.0,
                          max_new_tokens=opts.max_new_tokens, seed=cfg.sampling.seed + _SEED_STRIDE * (rnd + 1) + k,
                          stop=("\n### Problem", "\n### Reference solution", "\n### Current explanation",
                                "\n### Part to rewrite"))


def ask_rewrite(runner, row: dict, prompt: str, params, template_sha: str) -> tuple[str, dict, bool]:
    """``(text, usage, cached)`` of a rewrite: from the teach stage's response cache, else from the
    teacher (then cached). An empty answer raises :class:`EmptyAnswerError` and is not cached (the
    row is a teacher error, asked again on the next run)."""
    cfg = runner.cfg
    key = {"purpose": "reverse-rewrite", "teacher": cfg.teacher.model, "template": template_sha,
           "prompt": hashlib.sha256(prompt.encode()).hexdigest(), "params": params.model_dump(),
           "row": row["id"], "row_hash": row_hash(row)}
    if cfg.teacher.extra_body:
        key["extra_body"] = cfg.teacher.extra_body
    k = sha256_json(key)
    hit = runner.cache.get(k)
    if hit is not None:
        return hit["text"], hit["usage"], True
    text, usage = runner.client(prompt, params)
    if not text.strip():
        raise EmptyAnswerError("the teacher answered a rewrite with no text; not cached: the row is asked again "
                               "on the next run")
    runner.cache.put({"key": k, "id": row["id"], "attempt": -1, "purpose": "reverse-rewrite", "text": text,
                      "usage": usage, "teacher": cfg.teacher.model, "template": template_sha})
    return text, usage, False


def _student_draft(mode, runner, row: dict, opts, scorer) -> dict:
    """A record shaped like the attempt loop's, holding the scorer's own plan as the draft."""
    cfg = runner.cfg
    plan = scorer.plan(row["prompt"], opts.student_max_new_tokens)
    sections = split_sections(plan, mode.spec.aliases) or ({"plan": plan} if plan.strip() else {})
    valid = bool(render_context(sections, mode.name).strip())
    return {"id": row["id"], "problem_id": row.get("problem_id", row["id"]), "mode": cfg.mode,
            "sections": sections, "context": render_context(sections, mode.name), "raw": plan, "code": row["code"],
            "valid": valid, "reason": None if valid else "empty student plan", "leakage": None,
            "leakage_detail": None, "teacher": cfg.teacher.model, "template_hash": runner.template.sha256,
            "template": runner.template.source, "params": runner.params(0).model_dump(),
            "parser_version": PARSER_VERSION, "attempts": 0, "attempt_log": [],
            "tokens": {"prompt": 0, "completion": 0}, "seconds": 0.0}


def reverse_row(mode, runner, row: dict) -> dict:
    run = runner.run_ctx
    cfg, st = runner.cfg, run.state
    opts, scorer = st["opts"], st["scorer"]
    rewrite_text, rewrite_source = st["rewrite"]
    rewrite_sha = hashlib.sha256(rewrite_text.encode()).hexdigest()
    if opts.draft == "teacher":
        rec = runner.attempts(row)  # explain's loop: parse, leakage check, retries
    else:
        rec = _student_draft(mode, runner, row, opts, scorer)
        if rec["valid"]:
            lk = mode.leakage(run, row, rec["context"])
            rec.update(leakage=lk["score"], leakage_detail=lk)
            if cfg.leakage_threshold is not None and lk["score"] > cfg.leakage_threshold:
                rec.update(valid=False, reason=f"leakage {lk['score']:.2f} > {cfg.leakage_threshold}")
    rec["reverse"] = None
    if not rec["valid"]:
        return rec

    x, y, tests = row["prompt"], row["code"], row.get("tests") or ""
    titles = mode.spec.titles
    segments = split_segments(rec["sections"], mode.spec.sections, opts.split_steps)
    draft_context = render_context(render_sections(segments), mode.name)
    seconds = [0.0]

    def render(segs):
        return render_context(render_sections(segs), mode.name)

    def score(contexts):
        return scorer.ppl(x, contexts, y, tests)

    def propose(segs, i, rnd, k):
        prompt = mode.render_rewrite(rewrite_text, {"problem": x.strip(), "solution": y.strip("\n"),
                                                    "context": render(segs), "segment": segs[i].text,
                                                    "where": describe(segs[i], titles)})
        text, usage, _ = ask_rewrite(runner, row, prompt, rewrite_params(cfg, opts, rnd, k), rewrite_sha)
        seconds[0] += usage.get("seconds", 0.0)
        return text, usage

    def clean(raw, seg):
        return clean_rewrite(raw, seg, titles, cfg.validation.max_section_chars)

    def leakage(context):
        return mode.leakage(run, row, context)["score"]

    settings = SearchSettings(proposals=opts.proposals, max_rounds=opts.max_rounds, target_ppl=opts.target_ppl,
                              max_teacher_tokens=opts.max_teacher_tokens, min_gain=opts.min_gain,
                              stop_when_stale=opts.stop_when_stale, leakage_threshold=cfg.leakage_threshold)
    t0 = time.perf_counter()
    res = search(segments, render, score, propose, clean, leakage, settings)
    sections = render_sections(res["segments"])
    context = render_context(sections, mode.name)
    lk_before = mode.leakage(run, row, draft_context)["score"]
    lk = mode.leakage(run, row, context)
    tok = res["teacher_tokens"]
    rec.update(sections=sections, context=context, leakage=lk["score"], leakage_detail=lk,
               tokens={"prompt": rec["tokens"]["prompt"] + tok["prompt"],
                       "completion": rec["tokens"]["completion"] + tok["completion"]},
               seconds=round(rec["seconds"] + seconds[0], 3))
    rec["reverse"] = {
        "draft": opts.draft, "draft_context": draft_context, "segments": len(segments),
        "ppl_before": res["ppl_before"], "ppl_after": res["ppl_after"],
        "delta_ppl": res["ppl_after"] - res["ppl_before"],
        "leakage_before": lk_before, "leakage_after": lk["score"],
        "rounds": res["rounds"], "proposals": res["proposals"], "accepted": res["accepted"],
        "invalid_proposals": res["invalid"], "refused_leakage": res["refused_leakage"],
        "teacher_tokens": tok, "draft_teacher_tokens": {"prompt": rec["tokens"]["prompt"] - tok["prompt"],
                                                        "completion": rec["tokens"]["completion"] - tok["completion"]},
        "scorer_passes": res["scorer_passes"], "stop": res["stop"],
        "scorer": opts.scorer.identity(), "format": opts.student_format().name,
        "rewrite_template": rewrite_source, "search_seconds": round(time.perf_counter() - t0, 3),
        "trace": res["trace"],
    }
    return rec
