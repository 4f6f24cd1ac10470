"""The pairs stage: preference pairs for cross-model collaborative DPO (SuperCorrect, Yang et al.,
ICLR 2025, stage 2), for code, resumable and priced.

``make_pairs(cfg, out_dir)`` (:mod:`.stage`, settings :class:`~.config.PairsConfig`):

1. **attempts**: the student (the model the DPO starts from: the base, or base + the SFT adapter
   it continues) answers each training problem ``sampling.n`` times in the run's student format,
   and every program is judged in the sandbox (the correct stage's step,
   :func:`codistill.correct.attempts.sample_attempts`: untrusted code never runs in this process);
2. **corrections**: for each failure (up to ``failures_per_problem`` distinct failed answers per
   problem, each with reasoning steps and code), the teacher in mode ``first_error``
   (:mod:`codistill.teacher.modes.first_error`) sees the problem, the reference, the student's
   numbered steps, its code and the judge's report, names the first wrong step ``k`` and rewrites
   the steps from ``k`` on, with the code that follows; the chosen answer this makes is judged
   and the correction kept only if it passes;
3. **pairs** (:mod:`.layout`): prefix = the student's answer up to step ``k`` (prompt + steps
   s<k: the prompt is the problem, rendered by the trainer in the student format), chosen = the
   corrected steps + the code section with the teacher's code, rejected = the student's steps
   from ``k`` + its failing code; ``k`` None (every step right, the code wrong): the prefix is the
   whole reasoning and the pair differs in the code;
4. **cost** in ``pairs_manifest.json``: student samples and tokens, teacher tokens
   (prompt/completion), judge runs, seconds; counts and why failures gave no pair.

Files in ``out_dir``::

    attempts.jsonl          one record per problem: every sample, its program and verdict (append-only)
    attempts_log.jsonl      one line per generate call: tokens, generate/judge seconds
    corrections.jsonl       one record per failure: the teacher's sections (check, first_wrong,
                            revision, code), validity, reason, attempt log (the judge's verdict of
                            each chosen answer), first_error {k, student_steps, judge}, tokens
    cache/responses.jsonl   the teacher's raw answers (the teach stage's cache; cache_dir shares it)
    pairs.jsonl             one pair per kept correction: id, problem_id, prompt, prefix, chosen,
                            rejected, first_wrong_step, student_steps, difficulty, source,
                            sample_index, student_status, teacher_tokens, format: what
                            ``codistill train`` with ``dpo`` reads (data.train_file)
    pairs_manifest.json     config, format, counts, dropped corrections by reason, cost

Resumable: stored attempts (same student, format, sampling, judge limit) are not sampled again; a
stored correction (same teacher, template, sampling, checks, and the same attempt shown) is not
asked again; an answer in the cache is never paid for twice. A failure whose pair could not fit
DPO training (``max_pair_tokens``) is never shown to the teacher (``skipped_too_long``); one whose
prompt the teacher's server refuses for its size is a recorded rejection (``over_teacher_context``),
not a teacher error: the stage completes, and a resumed run does not ask it again.

>>> from codistill.pairs import PairsConfig, make_pairs                       # doctest: +SKIP
>>> make_pairs(PairsConfig(dataset="runs/x/data", student={"model": "smollm2-135m"}), "runs/x/pairs")  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["PairsConfig", "PairsIncompleteError", "incomplete_error", "make_pairs"]


def __getattr__(name: str):
    import importlib

    where = {"PairsConfig": "config", "make_pairs": "stage", "PairsIncompleteError": "stage",
             "incomplete_error": "stage"}.get(name)
    if where is None:
        raise AttributeError(f"module 'codistill.pairs' has no attribute {name!r}")
    return getattr(importlib.import_module(f"codistill.pairs.{where}"), name)
