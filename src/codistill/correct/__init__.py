"""The correct stage: learning from mistakes (LEMA, An et al. 2024) as correction data for the
student, resumable and priced.

``correct(cfg, out_dir)`` (:mod:`.stage`, settings :class:`~.config.CorrectConfig`):

1. **attempts** (:mod:`.attempts`): the student (a backend generator, an adapter optional) answers
   each training problem ``sampling.n`` times in the run's student format; every program is
   judged in the sandbox; every attempt and verdict is stored, failures with the judge's details
   (failing input, expected vs got, error);
2. **corrections**: for each failure (up to ``failures_per_problem`` distinct failed programs per
   problem), the teacher in mode ``correction`` (:mod:`codistill.teacher.modes.correction`) sees
   the problem, the failed answer and the judge's report, and writes the incorrect step, the
   explanation of the error, and the corrected solution (reasoning + code); the corrected code is
   judged and the correction kept only if it passes (dropped ones are counted by reason);
3. **rows** (:mod:`.rows`, layouts there): ``lema`` and ``corrected-only`` training sets in the
   teach stage's row format, and their mixes with the teach stage's ``train.jsonl`` at
   ``mix_ratio`` correction rows per context-distillation row; both variants hold the same ids:
   with ``max_row_tokens`` (a recipe: the correction arms' ``train.data.max_length``) an id whose
   row the trainer would drop is left out of both, and a failure whose lema prompt alone could not
   fit is never shown to the teacher (:mod:`.fit`);
4. **cost** in ``correct_manifest.json``: student samples and tokens, teacher tokens
   (prompt/completion, from the client's usage), judge runs, seconds.

Files in ``out_dir``::

    attempts.jsonl            one record per problem: every sample, its program and verdict (append-only)
    attempts_log.jsonl        one line per generate call: tokens, generate/judge seconds
    corrections.jsonl         one record per failure: the teacher's sections, code, validity, reason,
                              attempt log (with the judge's verdict of each corrected program), tokens
    cache/responses.jsonl     the teacher's raw answers (the teach stage's cache; ``cache_dir`` shares it)
    train_lema.jsonl          training rows, lema variant
    train_corrected_only.jsonl  training rows, corrected-only variant
    train_cd_lema.jsonl       (context_data given) context rows + chosen lema rows
    train_cd_corrected_only.jsonl  (context_data given) context rows + the same ids, corrected-only
    correct_manifest.json     config, counts, dropped corrections by reason, mix arithmetic, cost

Resumable: a problem whose attempts are stored (same student, format, sampling and judge limit) is
not sampled again; a failure whose correction is stored (same teacher, template, sampling, checks,
and the same attempt and report shown) is not asked again; an answer in the cache is never paid
for twice. Teacher errors leave failures to do (``complete: false``; the command exits 1 or 3).

>>> from codistill.correct import CorrectConfig, correct                       # doctest: +SKIP
>>> correct(CorrectConfig(dataset="runs/x/data", student={"model": "smollm2-135m"}), "runs/x/correct")  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["CorrectConfig", "CorrectIncompleteError", "StudentConfig", "StudentSampling", "correct",
           "incomplete_error"]


def __getattr__(name: str):
    import importlib

    where = {"CorrectConfig": "config", "StudentConfig": "config", "StudentSampling": "config",
             "correct": "stage", "CorrectIncompleteError": "stage", "incomplete_error": "stage"}.get(name)
    if where is None:
        raise AttributeError(f"module 'codistill.correct' has no attribute {name!r}")
    return getattr(importlib.import_module(f"codistill.correct.{where}"), name)
